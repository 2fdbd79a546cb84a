"""The smaller ``comfykit`` commands: history, cancel, interrupt, clear, upload, download, nodes,
convert, plugins and config.

Each prints a short human summary, or with ``--json`` one JSON document on stdout.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from comfykit_cli.commands import _client, _emit, json_option, server_option
from comfykit_cli.state import get_state


def _entry_summary(prompt_id: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    status = entry.get("status") or {}
    outputs = entry.get("outputs") or {}
    files = [
        item.get("filename") for ui in outputs.values() if isinstance(ui, Mapping)
        for items in ui.values() if isinstance(items, list)
        for item in items if isinstance(item, Mapping) and item.get("filename")
    ]
    times = [data.get("timestamp") for _, data in status.get("messages") or [] if isinstance(data, Mapping)]
    stamps = [t for t in times if isinstance(t, (int, float))]
    return {
        "prompt_id": prompt_id, "status": status.get("status_str"), "completed": status.get("completed"),
        "files": files, "duration": (max(stamps) - min(stamps)) / 1000 if len(stamps) > 1 else None,
    }


def _input_spec(spec: Any) -> dict[str, Any]:
    """One /object_info input ``[type or options, {default, min, max...}]`` as a flat dict."""
    kind: Any = spec[0] if isinstance(spec, list) and spec else spec
    extra = spec[1] if isinstance(spec, list) and len(spec) > 1 and isinstance(spec[1], Mapping) else {}
    result: dict[str, Any] = {}
    if isinstance(kind, list):
        result["type"], result["options"] = "COMBO", kind
    else:
        result["type"] = str(kind)
        if "options" in extra:
            result["options"] = list(extra["options"])
    for key in ("default", "min", "max", "step", "multiline", "tooltip"):
        if key in extra:
            result[key] = extra[key]
    return result


def _node_details(name: str, info: Mapping[str, Any]) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for group in ("required", "optional"):
        for input_name, spec in ((info.get("input") or {}).get(group) or {}).items():
            inputs[input_name] = {"required": group == "required", **_input_spec(spec)}
    return {
        "name": name, "display_name": info.get("display_name"), "category": info.get("category"),
        "description": info.get("description"), "output_node": info.get("output_node"),
        "inputs": inputs, "outputs": list(zip(info.get("output_name") or [], info.get("output") or [], strict=False)),
    }


def _show_node(details: Mapping[str, Any]) -> None:
    click.echo(f"{details['name']} ({details['display_name']}) [{details['category']}]")
    if details.get("description"):
        click.echo(f"  {details['description']}")
    for input_name, spec in details["inputs"].items():
        facts = [spec["type"] + ("" if spec["required"] else ", optional")]
        for key in ("default", "min", "max"):
            if key in spec:
                facts.append(f"{key} {spec[key]!r}")
        if "options" in spec:
            shown = ", ".join(map(str, spec["options"][:10]))
            more = len(spec["options"]) - 10
            facts.append(f"one of: {shown}" + (f" (+{more} more)" if more > 0 else ""))
        click.echo(f"  {input_name}: " + "; ".join(facts))
    for output_name, output_type in details["outputs"]:
        click.echo(f"  -> {output_name}: {output_type}")


def register(cli: click.Group) -> None:
    @cli.command()
    @click.argument("prompt_id", required=False)
    @click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Entries to list.")
    @server_option
    @json_option
    def history(prompt_id: str | None, limit: int, servers: tuple[str, ...], as_json: bool) -> None:
        """List the server's finished prompts, or show one of them."""
        from comfykit.errors import NotFound

        as_json = get_state().json(as_json)
        with _client(servers) as client:
            data = client.get_history(prompt_id) if prompt_id else client.get_history(max_items=limit)
        if prompt_id:
            entry = data.get(prompt_id)
            if not isinstance(entry, Mapping):
                raise NotFound(f"the server has no history for prompt {prompt_id}", status_code=404,
                               hint="History is lost when ComfyUI restarts; `comfykit history` lists what it has.")
            summary = _entry_summary(prompt_id, entry)
            if as_json:
                click.echo(json.dumps({**summary, "outputs": entry.get("outputs"), "status_detail": entry.get("status")},
                                      indent=2, default=str))
                return
            click.echo(f"{prompt_id}: {summary['status']}")
            for name in summary["files"]:
                click.echo(f"  {name}")
            return
        summaries = [_entry_summary(pid, entry) for pid, entry in list(data.items())[-limit:]]
        lines = [f"{s['prompt_id']}  {s['status'] or '?':8}  {len(s['files'])} file(s)" for s in summaries]
        _emit(summaries, as_json, "\n".join(lines) or "no history")

    @cli.command()
    @click.argument("prompt_ids", nargs=-1, required=True)
    @server_option
    @json_option
    def cancel(prompt_ids: tuple[str, ...], servers: tuple[str, ...], as_json: bool) -> None:
        """Cancel prompts: remove pending ones from the queue, interrupt a running one (exit 1 if one is unknown)."""
        result: dict[str, list[str]] = {"removed": [], "interrupted": [], "unknown": []}
        with _client(servers) as client:
            data = client.get_queue()
            running = {item[1] for item in data["queue_running"]}
            pending = {item[1] for item in data["queue_pending"]}
            to_remove = [pid for pid in prompt_ids if pid in pending]
            if to_remove:
                client.delete_from_queue(to_remove)
            for pid in prompt_ids:
                if pid in running:
                    client.interrupt_execution(pid)
                    result["interrupted"].append(pid)
                elif pid in pending:
                    result["removed"].append(pid)
                else:
                    result["unknown"].append(pid)
        lines = [f"{word} {pid}" for word, key in (("removed", "removed"), ("interrupted", "interrupted"),
                                                   ("not queued or running:", "unknown")) for pid in result[key]]
        _emit(result, get_state().json(as_json), "\n".join(lines))
        if result["unknown"]:
            raise click.exceptions.Exit(1)

    @cli.command()
    @server_option
    @json_option
    def interrupt(servers: tuple[str, ...], as_json: bool) -> None:
        """Interrupt the prompt the server is running now."""
        with _client(servers) as client:
            client.interrupt_execution()
        _emit({"interrupted": True}, get_state().json(as_json), "interrupted")

    @cli.command()
    @click.option("--history", "also_history", is_flag=True, help="Also clear the server's history.")
    @server_option
    @json_option
    def clear(also_history: bool, servers: tuple[str, ...], as_json: bool) -> None:
        """Remove every pending prompt from the server's queue (the running one goes on)."""
        with _client(servers) as client:
            client.clear_queue()
            if also_history:
                client.clear_history()
        _emit({"queue_cleared": True, "history_cleared": also_history}, get_state().json(as_json),
              "queue cleared" + (" and history cleared" if also_history else ""))

    @cli.command()
    @click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
    @click.option("--subfolder", default="", help="Subfolder of the server's input folder.")
    @click.option("--overwrite", is_flag=True, help="Replace a file of the same name instead of renaming.")
    @server_option
    @json_option
    def upload(files: tuple[str, ...], subfolder: str, overwrite: bool, servers: tuple[str, ...], as_json: bool) -> None:
        """Upload files to the server's input folder; prints the name each got there."""
        answers = []
        with _client(servers) as client:
            for path in files:
                answer = client.upload_image(path, subfolder=subfolder, overwrite=overwrite)
                answers.append({"file": path, **answer})
        _emit(answers, get_state().json(as_json),
              "\n".join(f"{a['file']} -> {str(a['subfolder']) + '/' if a.get('subfolder') else ''}{a['name']}"
                        for a in answers))

    @cli.command()
    @click.argument("prompt_id")
    @click.option("--output-dir", type=click.Path(file_okay=False), default=None,
                  help="Where to write the files (default: output.output_dir).")
    @server_option
    @json_option
    def download(prompt_id: str, output_dir: str | None, servers: tuple[str, ...], as_json: bool) -> None:
        """Download the outputs of a finished prompt."""
        from comfykit_download import download_outputs

        overrides = {"output.output_dir": output_dir} if output_dir else None
        with _client(servers, overrides) as client:
            section = client.config.section("output")
            stored = download_outputs(
                client, prompt_id, section["output_dir"], naming=section["naming"],
                include_temp=bool(section["include_temp"]), max_concurrent=int(section["concurrent_downloads"]),
            )
        records = [{"node_id": s.node_id, "kind": s.kind, "location": s.location, "bytes": s.bytes, "sha256": s.sha256,
                    "skipped": s.skipped} for s in stored]
        _emit(records, get_state().json(as_json), "\n".join(str(r["location"]) for r in records) or "no outputs")

    @cli.command()
    @click.argument("pattern", required=False)
    @click.option("--show", is_flag=True, help="Show the inputs of every matching node.")
    @click.option("--object-info", "object_info_file", type=click.Path(exists=True, dir_okay=False), default=None,
                  help="Read a saved /object_info JSON instead of asking the server.")
    @server_option
    @json_option
    def nodes(pattern: str | None, show: bool, object_info_file: str | None, servers: tuple[str, ...],
              as_json: bool) -> None:
        """Search the server's node classes by name, display name or category (* and ? are wildcards).

        With exactly one match, or --show, print the inputs with their types,
        defaults, limits and options.
        """
        as_json = get_state().json(as_json)
        if object_info_file:
            info: dict[str, Any] = json.loads(Path(object_info_file).read_text(encoding="utf-8"))
        else:
            with _client(servers) as client:
                info = client.get_object_info()
        needle = (pattern or "").lower()
        glob = needle if any(c in needle for c in "*?[") else f"*{needle}*"
        matches = sorted(
            name for name, entry in info.items()
            if any(fnmatch.fnmatchcase(str(text).lower(), glob)
                   for text in (name, entry.get("display_name") or "", entry.get("category") or ""))
        )
        exact = [name for name in matches if name.lower() == needle]
        if exact and not show:
            matches = exact
        if len(matches) == 1 or (show and matches):
            details = [_node_details(name, info[name]) for name in matches]
            if as_json:
                click.echo(json.dumps(details if show else details[0], indent=2, default=str))
                return
            for item in details:
                _show_node(item)
            return
        listing = [{"name": n, "display_name": info[n].get("display_name"), "category": info[n].get("category")}
                   for n in matches]
        _emit(listing, as_json, "\n".join(f"{i['name']:40} {i['category']}" for i in listing) or "no matching nodes")
        if not matches:
            raise click.exceptions.Exit(1)

    @cli.command()
    @click.argument("workflow", type=click.Path(exists=True, dir_okay=False))
    @click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
                  help="Write the API-format workflow here (default: stdout).")
    @click.option("--object-info", "object_info_file", type=click.Path(exists=True, dir_okay=False), default=None,
                  help="A saved /object_info JSON, so no server is needed.")
    @click.option("--frontend", "frontend_version", default=None, metavar="VERSION",
                  help="Follow this editor version's conversion rules (e.g. 1.27.10); default: the one the "
                       "server expects, or with --object-info the newest known.")
    @server_option
    def convert(workflow: str, output: str | None, object_info_file: str | None, frontend_version: str | None,
                servers: tuple[str, ...]) -> None:
        """Convert an editor (UI-format) workflow to the API format the server runs."""
        from comfykit.workflow import load_workflow

        if object_info_file:
            info = json.loads(Path(object_info_file).read_text(encoding="utf-8"))
            graph = load_workflow(workflow, object_info=info, frontend_version=frontend_version)
        else:
            with _client(servers) as client:
                graph = load_workflow(workflow, client=client, frontend_version=frontend_version)
        text = json.dumps(graph, indent=2)
        if output:
            Path(output).write_text(text + "\n", encoding="utf-8")
            click.echo(f"wrote {output} ({len(graph)} nodes)", err=True)
        else:
            click.echo(text)

    @cli.command()
    @json_option
    def plugins(as_json: bool) -> None:
        """List the loaded plugins, where each came from and its hooks; disabled ones and load failures."""
        manager = get_state().plugin_manager()
        loaded = [{"name": name, "origin": manager.origins.get(name, "?"), "hooks": manager.hooks_of(name)}
                  for name, _ in manager.plugins()]
        failures = [{"name": f.name, "origin": f.origin, "error": f.error} for f in manager.failures]
        disabled = sorted(manager.disabled)
        data = {"plugins": loaded, "disabled": disabled, "failures": failures}
        if get_state().json(as_json):
            click.echo(json.dumps(data, indent=2))
            return
        for item in loaded:
            click.echo(f"{item['name']}  ({item['origin']})")
            click.echo(f"    {', '.join(item['hooks']) or 'no hooks'}")
        if disabled:
            click.echo("disabled: " + ", ".join(disabled))
        for failure in failures:
            click.echo(f"FAILED {failure['name']} ({failure['origin']}): {failure['error']}")

    @cli.command("config")
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
