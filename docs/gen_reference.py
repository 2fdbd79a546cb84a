"""Regenerate the reference pages that come from the code: configuration keys and CLI help.

Run ``python docs/gen_reference.py`` after changing a config key or a command; the test
suite fails while the committed pages differ from what this script writes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from comfykit.config import ConfigKey

DOCS = Path(__file__).resolve().parent


def _key_table(keys: list[ConfigKey]) -> list[str]:
    lines = ["| key | default | env var | meaning |", "| --- | --- | --- | --- |"]
    for key in sorted(keys, key=lambda k: k.dotted):
        default = "—" if key.default is None else f"`{key.default!r}`"
        lines.append(f"| `{key.dotted}` | {default} | `{key.env_var}` | {key.help} |")
    return [*lines, ""]


def config_reference() -> str:
    from comfykit.config import ConfigRegistry, core_registry
    from comfykit.plugin_loader import get_plugin_manager

    core = core_registry()
    manager = get_plugin_manager(autoload=False)
    lines = [
        "# Configuration reference",
        "",
        "Generated from the code by `docs/gen_reference.py`; do not edit by hand.",
        "",
        "Values come from, highest first: explicit arguments, environment variables, the config file,",
        "defaults. Every key has an environment variable; `comfykit config` shows the effective value",
        "of each key and where it came from. Each plugin declares the keys it reads",
        "(`comfykit_add_config`): with a plugin disabled (`-p no:NAME`), its keys are not read, and a",
        "config file may keep them (a disabled bundled plugin's keys, and sections named after a disabled",
        "plugin, are skipped quietly). Any other key no loaded plugin declares is",
        "warned about once, in the log. `comfykit -o KEY=VALUE` sets a key for one run, and",
        "`comfykit config --describe` lists every key of the run, the installed plugins' included.",
        "",
        "Each key has a type, which checks and converts its value (from the environment, from text):",
        "",
        "| type | values | from text (environment, `-o`) |",
        "| --- | --- | --- |",
        "| `bool` | true or false | `1`, `true`, `yes`, `on` / `0`, `false`, `no`, `off`, empty |",
        "| `int` | a whole number | `42` |",
        "| `float` | a number | `2.5` |",
        "| `str` | text (numbers are taken as text) | as given |",
        "| `list` | a list | comma-separated: `a,b,c` |",
        "| `names` | a list of non-empty names | comma-separated |",
        "| `mapping` | a mapping | `NAME=VALUE,NAME=VALUE` |",
        "| `any` | anything YAML can say | as given |",
        "",
        "A key whose default is `None` also accepts `None` (`~` or `null` in YAML).",
        "",
        "## Core",
        "",
    ]
    for section in core.sections():
        lines += [f"### {f'`{section}:`' if section else 'Top level'}", "", *_key_table(core.keys_in(section))]
    for impl in sorted(manager.pm.hook.comfykit_add_config.get_hookimpls(), key=lambda impl: impl.plugin_name):
        own = ConfigRegistry()
        impl.function(registry=own)
        lines += [f"## The `{impl.plugin_name}` plugin", "", *_key_table(list(own))]
    return "\n".join(lines).rstrip("\n")


def cli_reference() -> str:
    from click.testing import CliRunner

    from comfykit_cli import build_cli

    cli = build_cli()
    runner = CliRunner()
    lines = [
        "# Command reference",
        "",
        "Generated from `--help` by `docs/gen_reference.py`; do not edit by hand.",
        "",
        "## comfykit",
        "",
        "```text",
        runner.invoke(cli, ["--help"], prog_name="comfykit", terminal_width=100).output.rstrip(),
        "```",
        "",
    ]
    import click

    def document(group: click.Group, path: list[str]) -> None:
        # Subcommands of groups (``templates list``...) get their own section too.
        for name in sorted(group.list_commands(None)):  # type: ignore[arg-type]
            words = [*path, name]
            result = runner.invoke(cli, [*words, "--help"], prog_name="comfykit", terminal_width=100)
            lines.extend([f"## comfykit {' '.join(words)}", "", "```text", result.output.rstrip(), "```", ""])
            command = group.get_command(None, name)  # type: ignore[arg-type]
            if isinstance(command, click.Group):
                document(command, words)

    document(cli, [])
    return "\n".join(lines)


PAGES = {
    "reference/config.md": config_reference,
    "reference/cli.md": cli_reference,
}


def main() -> int:
    for relative, build in PAGES.items():
        (DOCS / relative).write_text(build() + "\n", encoding="utf-8")
        print("wrote", DOCS / relative)
    return 0


if __name__ == "__main__":
    sys.exit(main())
