"""Every recording copied into tests/fixtures/recordings is replayed by some test (named in a test module)."""

from __future__ import annotations

import ast
from pathlib import Path

RECORDINGS = Path(__file__).resolve().parent.parent / "fixtures" / "recordings"
#: recordings (name prefixes) not replayed yet, with the reason
KNOWN_GAPS = {
    "assets_": "0.33.0 with --enable-assets: the simulator serves the assets routes disabled only",
}


def _names_in_tests() -> set[str]:
    names: set[str] = set()
    for module in Path(__file__).parent.glob("test_*.py"):
        if module.name == Path(__file__).name:
            continue
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)
    return names


def test_every_recording_is_replayed_by_a_test() -> None:
    named = _names_in_tests()
    prefixes = [name for name in named if name.endswith("_") and len(name) > 4]
    missing = []
    for path in sorted(RECORDINGS.glob("*/*/*.json")):
        stem = path.stem
        covered = stem in named or f"{stem}.json" in named or any(stem.startswith(prefix) for prefix in prefixes)
        if path.parent.name == "workflows":
            covered = covered or any(stem in name for name in named)
        if not covered and not any(stem.startswith(gap) for gap in KNOWN_GAPS):
            missing.append(path.relative_to(RECORDINGS).as_posix())
    assert missing == []
