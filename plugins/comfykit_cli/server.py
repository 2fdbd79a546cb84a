"""The commands that ask one server something or change its queue, and the workflow checks that use its catalogue.

validate, queue, system, history, cancel, interrupt, clear, upload, nodes and convert.
Each prints a short human summary, or with ``--json`` one JSON document on stdout.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from comfykit.answers import queue_prompt_ids
from comfykit_cli.options import emit, json_option, open_client, server_option
from comfykit_cli.state import get_state

__all__ = ["cancel", "clear", "convert", "history", "interrupt", "nodes", "queue", "system", "upload", "validate"]


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


@click.command()
@click.argument("workflows", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--offline", is_flag=True, help="Only structural checks; do not ask the server for /object_info.")
@server_option
@json_option
def validate(workflows: tuple[str, ...], offline: bool, servers: tuple[str, ...], as_json: bool) -> None:
    """Check workflows for structural and schema problems (exit 1 when any error)."""
    from comfykit.workflow import load_workflow, validate_workflow

    state = get_state()
    as_json = state.json(as_json)
    client = None if offline else open_client(servers)
    plugins = state.plugin_manager()  # offline too: installed validators and -p plugins take part
    report: dict[str, list[dict[str, Any]]] = {}
    failed = False
    try:
        for path in workflows:
            graph = load_workflow(path, client=client, plugin_manager=plugins)
            ok, problems = validate_workflow(graph, client=client, plugin_manager=plugins)
            failed = failed or not ok
            report[path] = [
                {"code": p.code, "severity": str(p.severity), "node_id": p.node_id, "class_type": p.class_type,
                 "input": p.input_name, "message": p.message, "hint": p.hint}
                for p in problems
            ]
            if not as_json:
                click.echo(f"{path}: {'ok' if ok else 'INVALID'}")
                for problem in problems:
                    click.echo(f"  {problem}")
    finally:
        if client is not None:
            client.close()
    if as_json:
        click.echo(json.dumps(report, indent=2))
    if failed:
        raise click.exceptions.Exit(1)


@click.command()
@click.option("--verbose", "details", is_flag=True, help="Also list the pending prompts' ids.")
@server_option
@json_option
def queue(details: bool, servers: tuple[str, ...], as_json: bool) -> None:
    """Show the server's running and pending prompts."""
    with open_client(servers) as client:
        running, pending = queue_prompt_ids(client.get_queue())
    text = f"running: {', '.join(running) or '-'}\npending: {len(pending)}"
    if details:
        text += "".join(f"\n  {prompt_id}" for prompt_id in pending)
    emit({"running": running, "pending": pending}, as_json, text)


@click.command()
@server_option
@json_option
def system(servers: tuple[str, ...], as_json: bool) -> None:
    """Show the server's version, devices and features."""
    with open_client(servers) as client:
        info = client.server_info()
    emit({"version": info.version, "jobs_api": info.has_jobs_api, "features": info.features,
           "system_stats": info.system_stats}, get_state().json(as_json),
          f"ComfyUI {info.version} (jobs API: {'yes' if info.has_jobs_api else 'no'})")


@click.command()
@click.argument("prompt_id", required=False)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Entries to list.")
@server_option
@json_option
def history(prompt_id: str | None, limit: int, servers: tuple[str, ...], as_json: bool) -> None:
    """List the server's finished prompts, or show one of them."""
    from comfykit.errors import NotFound

    as_json = get_state().json(as_json)
    with open_client(servers) as client:
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
    emit(summaries, as_json, "\n".join(lines) or "no history")


@click.command()
@click.argument("prompt_ids", nargs=-1, required=True)
@server_option
@json_option
def cancel(prompt_ids: tuple[str, ...], servers: tuple[str, ...], as_json: bool) -> None:
    """Cancel prompts: remove pending ones from the queue, interrupt a running one (exit 1 if one is unknown)."""
    result: dict[str, list[str]] = {"removed": [], "interrupted": [], "unknown": []}
    with open_client(servers) as client:
        running, pending = map(set, queue_prompt_ids(client.get_queue()))
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
    emit(result, as_json, "\n".join(lines))
    if result["unknown"]:
        raise click.exceptions.Exit(1)


@click.command()
@server_option
@json_option
def interrupt(servers: tuple[str, ...], as_json: bool) -> None:
    """Interrupt the prompt the server is running now."""
    with open_client(servers) as client:
        client.interrupt_execution()
    emit({"interrupted": True}, as_json, "interrupted")


@click.command()
@click.option("--history", "also_history", is_flag=True, help="Also clear the server's history.")
@server_option
@json_option
def clear(also_history: bool, servers: tuple[str, ...], as_json: bool) -> None:
    """Remove every pending prompt from the server's queue (the running one goes on)."""
    with open_client(servers) as client:
        client.clear_queue()
        if also_history:
            client.clear_history()
    emit({"queue_cleared": True, "history_cleared": also_history}, get_state().json(as_json),
          "queue cleared" + (" and history cleared" if also_history else ""))


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--subfolder", default="", help="Subfolder of the server's input folder.")
@click.option("--overwrite", is_flag=True, help="Replace a file of the same name instead of renaming.")
@server_option
@json_option
def upload(files: tuple[str, ...], subfolder: str, overwrite: bool, servers: tuple[str, ...], as_json: bool) -> None:
    """Upload files to the server's input folder; prints the name each got there."""
    answers = []
    with open_client(servers) as client:
        for path in files:
            answer = client.upload_image(path, subfolder=subfolder, overwrite=overwrite)
            answers.append({"file": path, **answer})
    emit(answers, get_state().json(as_json),
          "\n".join(f"{a['file']} -> {str(a['subfolder']) + '/' if a.get('subfolder') else ''}{a['name']}"
                    for a in answers))


@click.command()
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
        with open_client(servers) as client:
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
    emit(listing, as_json, "\n".join(f"{i['name']:40} {i['category']}" for i in listing) or "no matching nodes")
    if not matches:
        raise click.exceptions.Exit(1)


@click.command()
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
        with open_client(servers) as client:
            graph = load_workflow(workflow, client=client, frontend_version=frontend_version)
    text = json.dumps(graph, indent=2)
    if output:
        Path(output).write_text(text + "\n", encoding="utf-8")
        click.echo(f"wrote {output} ({len(graph)} nodes)", err=True)
    else:
        click.echo(text)

