"""The commands about comfykit itself: ``plugins`` (what loaded, and what did not) and ``config`` (the effective values)."""

from __future__ import annotations

import json

import click

from comfykit_cli.options import json_option
from comfykit_cli.state import get_state

__all__ = ["plugins", "show_config"]


@click.command()
@json_option
def plugins(as_json: bool) -> None:
    """List the loaded plugins, where each came from and its hooks; disabled ones, load failures, command clashes."""
    state = get_state()
    # As built: listing the plugins must not need a readable config file, nor configure them.
    manager = state.plugins if state.plugins is not None else state.plugin_manager()
    loaded = [{"name": name, "origin": manager.origins.get(name, "?"), "hooks": manager.hooks_of(name)}
              for name, _ in manager.plugins()]
    failures = [{"name": f.name, "origin": f.origin, "error": f.error} for f in manager.failures]
    disabled = sorted(manager.disabled)
    conflicts = [{"command": c.command, "owner": c.owner, "refused": c.refused} for c in manager.command_conflicts]
    data = {"plugins": loaded, "disabled": disabled, "failures": failures, "conflicts": conflicts}
    if state.json(as_json):
        click.echo(json.dumps(data, indent=2))
        return
    for item in loaded:
        click.echo(f"{item['name']}  ({item['origin']})")
        click.echo(f"    {', '.join(item['hooks']) or 'no hooks'}")
    if disabled:
        click.echo("disabled: " + ", ".join(disabled))
    for failure in failures:
        click.echo(f"FAILED {failure['name']} ({failure['origin']}): {failure['error']}")
    for conflict in manager.command_conflicts:
        click.echo(f"CONFLICT {conflict}")


@click.command("config")
@json_option
def show_config(as_json: bool) -> None:
    """Show the effective config, where each value came from, with secrets hidden."""
    state = get_state()
    # The run's config already knows every plugin's keys; only --server is laid on top.
    config = state.config().with_overrides({"comfyui.url": state.server()})
    shown = config.redacted()
    data = {key: {"value": shown[key], "source": str(config.source(key))} for key in sorted(shown)}
    if state.json(as_json):
        click.echo(json.dumps({"file": str(config.path) if config.path else None, "values": data}, indent=2,
                              default=str))
        return
    click.echo(f"config file: {config.path or 'none'}")
    for key, item in data.items():
        click.echo(f"{key} = {json.dumps(item['value'], default=str)}  [{item['source']}]")
