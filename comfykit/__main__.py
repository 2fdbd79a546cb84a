"""``python -m comfykit`` and the ``comfykit`` console script."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--version"]:
        # Answered before any plugin loads: scripts call this to probe for comfykit, so it must be instant.
        from comfykit._version import __version__

        print(f"comfykit, version {__version__}")
        return 0
    from comfykit_cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
