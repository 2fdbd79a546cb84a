"""Print the size budgets of issue 15: lines per module, the kernel's total, and repeated code.

    python benchmarks/budgets.py

A printout to read, not a test: it exits 0 whatever it finds.  Budgets: no module over
600 lines in ``comfykit/`` or ``plugins/``; the kernel (``comfykit/*.py`` and
``comfykit/defaults/``) at most 3,800 lines; no pair of 6+ repeated lines outside
``tests/`` in the output of the ``duplicates`` tool (skipped when it is not on PATH).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULE_BUDGET = 600
KERNEL_BUDGET = 3_800
#: a ``duplicates`` row: ``D3 a.py:10-24 ~ b.py:40-54 ...``
_PAIR = re.compile(r"^D\d+ (\S+):\d+-\d+ ~ (\S+):\d+-\d+")


def lines_of(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for _ in handle)


def modules() -> dict[str, int]:
    """Physical lines of every Python module of the package and the bundled plugins."""
    found: dict[str, int] = {}
    for top in ("comfykit", "plugins"):
        for path in sorted((ROOT / top).rglob("*.py")):
            found[path.relative_to(ROOT).as_posix()] = lines_of(path)
    return found


def kernel_lines(sizes: dict[str, int]) -> int:
    return sum(
        count for name, count in sizes.items()
        if re.fullmatch(r"comfykit/[^/]+\.py", name) or name.startswith("comfykit/defaults/")
    )


def part_of(name: str) -> str:
    parts = name.split("/")
    if parts[0] == "plugins":
        return f"plugins/{parts[1]}"
    return "comfykit (kernel)" if len(parts) == 2 or parts[1] == "defaults" else f"comfykit/{parts[1]}"


def duplicate_pairs() -> tuple[int, list[str]] | None:
    """(pairs with both sides outside tests/, those rows); ``None`` without the tool."""
    tool = shutil.which("duplicates")
    if tool is None:
        return None
    answer = subprocess.run(
        [tool, "--repo", str(ROOT), "--most", "200", "--seconds", "120"],
        capture_output=True, text=True, check=False,
    )
    rows = []
    for line in answer.stdout.splitlines():
        match = _PAIR.match(line)
        if match and not any(side.startswith("tests/") for side in match.groups()):
            rows.append(line)
    return len(rows), rows


def main() -> int:
    sizes = modules()
    print(f"## Modules over {MODULE_BUDGET} lines\n")
    over = {name: count for name, count in sizes.items() if count > MODULE_BUDGET}
    for name, count in sorted(over.items(), key=lambda item: -item[1]):
        print(f"- {name}: {count:,}")
    if not over:
        print("none")

    print("\n## Lines per part\n")
    parts: dict[str, int] = {}
    for name, count in sizes.items():
        parts[part_of(name)] = parts.get(part_of(name), 0) + count
    for part, count in sorted(parts.items()):
        print(f"- {part}: {count:,}")
    kernel = kernel_lines(sizes)
    verdict = "within" if kernel <= KERNEL_BUDGET else "OVER"
    print(f"\nkernel (comfykit/*.py + comfykit/defaults/): {kernel:,} lines, {verdict} the budget of {KERNEL_BUDGET:,}")

    print("\n## Repeated code outside tests (duplicates, 6+ lines)\n")
    pairs = duplicate_pairs()
    if pairs is None:
        print("the `duplicates` tool is not on PATH: skipped")
    else:
        count, rows = pairs
        print(f"{count} pairs")
        for row in rows:
            print(f"- {row}")

    print("\n## Every module\n")
    for name, count in sizes.items():
        flag = "  <-- over budget" if count > MODULE_BUDGET else ""
        print(f"{count:6,}  {name}{flag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
