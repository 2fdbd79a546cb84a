"""How many editor-made UI→API pairs the converter reproduces exactly, per frontend folder.

Run: ``python benchmarks/convert_pairs.py [--shared DIR] [-v]``.  Each folder of
``<shared>/ui-to-api`` is converted with the catalogue its README names (the simulator ships
both) and the frontend rules of that folder; a pair counts when the result equals the editor's
output and lists its nodes in the same order.  ``-v`` names the pairs that differ.  Copied into
a checkout from before the converter became the ``convert`` plugin, it measures the old
``comfykit.workflow.ui_to_api`` (which knew no frontend versions).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from comfykit.testing.catalog import load_object_info

FOLDERS = {"fe-1.27.10": ("0.3.64", "1.27.10"), "fe-1.49.6": ("0.33.0", "1.49.6")}


def _convert(ui: Any, info: Any, source: str, frontend: str) -> Any:
    try:
        from comfykit_convert import ui_to_api
    except ImportError:  # before the converter moved into its plugin
        from comfykit.workflow import ui_to_api
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ui_to_api(ui, info, source=source)
    return ui_to_api(ui, info, source=source, frontend_version=frontend)


def measure(shared: Path, verbose: bool) -> dict[str, tuple[int, int]]:
    results: dict[str, tuple[int, int]] = {}
    for folder, (server, frontend) in FOLDERS.items():
        info = load_object_info(server)
        names = sorted(p.name.removesuffix(".ui.json") for p in (shared / folder).glob("*.ui.json"))
        good = 0
        for name in names:
            ui = json.loads((shared / folder / f"{name}.ui.json").read_text(encoding="utf-8"))
            expected = json.loads((shared / folder / f"{name}.api.json").read_text(encoding="utf-8"))
            try:
                api = _convert(ui, info, name, frontend)
            except Exception as exc:  # a failed pair is a result here, not a crash of the benchmark
                if verbose:
                    print(f"  {folder}/{name}: {type(exc).__name__}: {exc}")
                continue
            if api == expected and list(api) == list(expected):
                good += 1
            elif verbose:
                print(f"  {folder}/{name}: differs")
        results[folder] = (good, len(names))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # ../shared beside the checkout, or beside the folder holding git worktrees.
    here = Path(__file__).resolve()
    default = next((p / "shared" for p in (here.parents[2], here.parents[3]) if (p / "shared" / "ui-to-api").is_dir()),
                   here.parents[2] / "shared")
    parser.add_argument("--shared", type=Path, default=default, help=f"the shared folder (default {default})")
    parser.add_argument("-v", "--verbose", action="store_true", help="name the pairs that differ")
    args = parser.parse_args()
    for folder, (good, total) in measure(args.shared / "ui-to-api", args.verbose).items():
        print(f"{folder}: {good}/{total} pairs match exactly ({100 * good / max(total, 1):.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
