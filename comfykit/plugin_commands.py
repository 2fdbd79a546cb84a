"""Adding every plugin's CLI commands to one root group, where a name already taken keeps its first owner.

The ``comfykit_register_commands`` hookspec promises that a clash is reported, not
silently resolved by hook order: each plugin gets a staging group holding the
commands registered so far (so it may still add subcommands to another's group),
and only the names it added are copied to the root; a name that is already there
becomes a :class:`CommandConflict`, which the plugin manager logs and keeps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
import pluggy

from comfykit.hookcalls import call_impl

if TYPE_CHECKING:
    import click

__all__ = ["CommandConflict", "add_plugin_commands"]


@attrs.frozen
class CommandConflict:
    """A command a plugin registered under a name another plugin had already taken: it was not added."""

    command: str
    owner: str
    refused: str

    def __str__(self) -> str:
        return f"command {self.command!r} of plugin {self.refused!r} ignored: plugin {self.owner!r} registered it first"


def add_plugin_commands(
    hook: pluggy.HookCaller, cli: click.Group, describe: Callable[[str], str]
) -> tuple[dict[str, str], list[CommandConflict]]:
    """Ask each implementation of ``hook``, in registration order (bundled plugins first), for its commands.

    ``describe`` names a plugin for a person.  Returns (command name -> the plugin
    that added it, the commands refused because their name was taken).
    """
    import click

    owners: dict[str, str] = {}
    shown = {name: "?" for name in cli.commands}  # commands the root had before any plugin was asked
    conflicts: list[CommandConflict] = []
    for impl in hook.get_hookimpls():
        staging = click.Group(cli.name, commands=dict(cli.commands))
        call_impl(impl, cli=staging)
        for name, command in staging.commands.items():
            if cli.commands.get(name) is command:
                continue
            if name in cli.commands:
                conflicts.append(CommandConflict(command=name, owner=shown[name], refused=describe(impl.plugin_name)))
                continue
            cli.add_command(command, name)
            shown[name] = describe(impl.plugin_name)
            owners[name] = impl.plugin_name
    return owners, conflicts
