"""The commands about comfykit itself: ``plugins`` (what loaded, and what did not; the hooks there are) and
``config`` (the effective values, or with ``--describe`` every key a run knows)."""

from __future__ import annotations

import inspect
import json
from typing import TYPE_CHECKING, Any

import click

from comfykit_cli.options import json_option
from comfykit_cli.state import get_state

if TYPE_CHECKING:
    from comfykit.plugins import PluginManager

__all__ = ["hookspec_summaries", "plugins", "show_config"]


def hookspec_summaries() -> list[dict[str, Any]]:
    """Every hook a plugin can implement: name, signature, firstresult/historic, and the first line of its doc."""
    from comfykit import hookspecs

    found = []
    for name, function in inspect.getmembers(hookspecs, inspect.isfunction):
        if not name.startswith("comfykit_"):
            continue
        options = getattr(function, "comfykit_spec", {})
        found.append({
            "name": name,
            "signature": f"{name}({', '.join(inspect.signature(function).parameters)})",
            "firstresult": bool(options.get("firstresult")),
            "historic": bool(options.get("historic")),
            "doc": (inspect.getdoc(function) or "").splitlines()[0] if inspect.getdoc(function) else "",
        })
    return found


def _distribution(manager: PluginManager, name: str, plugin: object) -> tuple[str, str] | None:
    """(distribution, version) of a loaded plugin: its entry point's, else the one that installed its module."""
    if name in manager.distributions:
        return manager.distributions[name]
    from importlib import metadata

    top = (getattr(plugin, "__name__", None) or type(plugin).__module__).partition(".")[0]
    owners = metadata.packages_distributions().get(top) or []
    if not owners:
        return None
    return owners[0], metadata.version(owners[0])


def _show_hookspecs(as_json: bool) -> None:
    specs = hookspec_summaries()
    if as_json:
        click.echo(json.dumps({"hooks": specs}, indent=2))
        return
    for spec in specs:
        marks = [mark for mark in ("firstresult", "historic") if spec[mark]]
        click.echo(spec["signature"] + (f"  [{', '.join(marks)}]" if marks else ""))
        click.echo(f"    {spec['doc']}")


@click.command()
@click.option("--hooks", "list_hooks", is_flag=True, help="List every hook a plugin can implement, with its signature.")
@json_option
def plugins(list_hooks: bool, as_json: bool) -> None:
    """List the loaded plugins, their distribution, version and hooks; disabled ones, load failures, command clashes."""
    state = get_state()
    if list_hooks:
        _show_hookspecs(state.json(as_json))
        return
    # As built: listing the plugins must not need a readable config file, nor configure them.
    manager = state.plugins if state.plugins is not None else state.plugin_manager()
    loaded: list[dict[str, Any]] = []
    for name, plugin in manager.plugins():
        dist = _distribution(manager, name, plugin)
        loaded.append({"name": name, "origin": manager.origins.get(name, "?"), "hooks": manager.hooks_of(name),
                       "distribution": dist[0] if dist else None, "version": dist[1] if dist else None})
    failures = [{"name": f.name, "origin": f.origin, "error": f.error} for f in manager.failures]
    disabled = sorted(manager.disabled)
    conflicts = [{"command": c.command, "owner": c.owner, "refused": c.refused} for c in manager.command_conflicts]
    data = {"plugins": loaded, "disabled": disabled, "failures": failures, "conflicts": conflicts,
            "unmatched_disables": manager.unmatched_disables}
    if state.json(as_json):
        click.echo(json.dumps(data, indent=2))
        return
    for item in loaded:
        where = f"{item['distribution']} {item['version']}, {item['origin']}" if item["distribution"] else item["origin"]
        click.echo(f"{item['name']}  ({where})")
        click.echo(f"    {', '.join(item['hooks']) or 'no hooks'}")
    if disabled:
        click.echo("disabled: " + ", ".join(disabled))
    for name in manager.unmatched_disables:
        click.echo(f"UNMATCHED no:{name}: no plugin has that name")
    for failure in failures:
        click.echo(f"FAILED {failure['name']} ({failure['origin']}): {failure['error']}")
    for conflict in manager.command_conflicts:
        click.echo(f"CONFLICT {conflict}")


def _describe(as_json: bool) -> None:
    config = get_state().config()
    keys = sorted(config.registry, key=lambda key: key.dotted)
    data = [{"key": key.dotted, "type": key.type, "default": key.default, "env": key.env_var,
             "declared_by": key.owner or "comfykit", "secret": key.secret, "help": key.help} for key in keys]
    if as_json:
        click.echo(json.dumps({"keys": data}, indent=2, default=str))
        return
    for item in data:
        default = "none" if item["default"] is None else json.dumps(item["default"], default=str)
        click.echo(f"{item['key']} ({item['type']}, default {default}, ${item['env']}, {item['declared_by']})")
        click.echo(f"    {item['help'] or 'no help given'}")


@click.command("config")
@click.option("--describe", is_flag=True, help="List every key instead: type, default, env variable, owner and help.")
@json_option
def show_config(describe: bool, as_json: bool) -> None:
    """Show the effective config, where each value came from, with secrets hidden."""
    state = get_state()
    if describe:
        _describe(state.json(as_json))
        return
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
