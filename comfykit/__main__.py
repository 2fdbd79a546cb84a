"""``python -m comfykit``: runs the ``comfykit`` console script, whichever installed package provides it."""

from __future__ import annotations

import sys
from importlib import metadata


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--version"]:
        # Answered before any plugin loads: scripts call this to probe for comfykit, so it must be instant.
        from comfykit import __version__

        print(f"comfykit, version {__version__}")
        return 0
    scripts = metadata.entry_points(group="console_scripts", name="comfykit")
    if not scripts:
        print("comfykit: no `comfykit` console script is installed (reinstall comfykit: pip install comfykit)",
              file=sys.stderr)
        return 1
    run = next(iter(scripts)).load()
    if run is main:
        # Metadata installed before the console script moved to the CLI plugin points back here.
        print("comfykit: the installed `comfykit` script points at `python -m comfykit` itself; reinstall comfykit "
              "(pip install -e . in a checkout)", file=sys.stderr)
        return 1
    return int(run(list(args)) or 0)


if __name__ == "__main__":
    sys.exit(main())
