"""The built-in ``comfykit`` commands that talk to one server or check workflows.

Registered by the cli plugin through ``comfykit_register_commands``, like any plugin's
commands.  Heavy modules are imported inside each command so ``--help`` stays fast.
Every command takes ``--server`` and ``--json`` itself too, so they may be given
before or after the command name.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click

from comfykit_cli.state import get_state

server_option = click.option(
    "--server", "servers", multiple=True, metavar="URL",
    help="ComfyUI server URL (default: the global --server, the config, else http://127.0.0.1:8188).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")


def _client(servers: Sequence[str], overrides: dict[str, Any] | None = None) -> Any:
    return get_state().client(servers, overrides)


def _emit(data: Any, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)


def parse_assignment(text: str, option: str) -> tuple[str, str]:
    """Split ``NAME=VALUE`` (as given to ``--input`` and ``--set``); a usage error when there is no ``=``."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise click.BadParameter(f"{text!r} is not NAME=VALUE", param_hint=option)
    return name.strip(), value


def _download_enabled(client: Any, no_download: bool) -> bool:
    return (not no_download and bool(client.config.get("output.download_results", True))
            and client.plugin_manager.is_registered("download"))


def _cancel_prompt(client: Any, prompt_id: str) -> None:
    """Take ``prompt_id`` off the server: out of the queue when pending, interrupted when running."""
    client.delete_from_queue([prompt_id])
    running = [item[1] for item in client.get_queue().get("queue_running", [])]
    if prompt_id in running:
        client.interrupt_execution(prompt_id)


def register(cli: click.Group) -> None:
    from comfykit_cli.batch import register as register_batch
    from comfykit_cli.more import register as register_more
    from comfykit_cli.templates import register as register_templates

    @cli.command()
    @click.argument("workflows", nargs=-1, required=True, type=click.Path(dir_okay=False))
    @click.option("--offline", is_flag=True, help="Only structural checks; do not ask the server for /object_info.")
    @server_option
    @json_option
    def validate(workflows: tuple[str, ...], offline: bool, servers: tuple[str, ...], as_json: bool) -> None:
        """Check workflows for structural and schema problems (exit 1 when any error)."""
        from comfykit.workflow import load_workflow, validate_workflow

        state = get_state()
        as_json = state.json(as_json)
        client = None if offline else _client(servers)
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

    @cli.command()
    @click.argument("workflow", type=click.Path(dir_okay=False))
    @click.option("--update", "updates", multiple=True, metavar="NODE.INPUT=VALUE",
                  help='Change an input: 3.seed=42 or "Positive Prompt".text=a cat (repeatable).')
    @click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
                  help='A template parameter (prompt=a cat), or an input by node title or class: '
                       '"Positive Prompt.text=a cat" (repeatable).')
    @click.option("--random-seeds", is_flag=True,
                  help="Fresh random seeds for every seed not set explicitly (template seed parameters too).")
    @click.option("--input", "inputs", multiple=True, metavar="INPUT=FILE",
                  help="Upload a local file and use it: image=cat.png or 10.image=cat.png (repeatable).")
    @click.option("--wait/--no-wait", default=False, help="Wait for the job to finish and download its outputs.")
    @click.option("--timeout", type=float, default=None, help="Seconds to wait with --wait.")
    @click.option("--output-dir", type=click.Path(file_okay=False), default=None,
                  help="Where outputs are downloaded (default: output.output_dir).")
    @click.option("--no-download", is_flag=True, help="With --wait, do not download the outputs.")
    @server_option
    @json_option
    def send(workflow: str, updates: tuple[str, ...], sets: tuple[str, ...], random_seeds: bool, inputs: tuple[str, ...],
             wait: bool, timeout: float | None, output_dir: str | None, no_download: bool, servers: tuple[str, ...],
             as_json: bool) -> None:
        """Queue a workflow (API or editor format, or a template by name or path) on the server, and optionally wait.

        A template's parameters are given with --set NAME=VALUE; a NAME with a
        dot addresses a node input instead.

        With --wait, progress is shown while the job runs (NDJSON events with
        --json) and its outputs are downloaded; exit 1 when the job fails.
        """
        from comfykit.errors import JobError
        from comfykit.jobs import Job
        from comfykit.uploads import UploadCache, apply_inputs
        from comfykit.utils import extract_output_images
        from comfykit.workflow import validate_before_send
        from comfykit_cli.progress import emit_event, follow_job, job_mode
        from comfykit_cli.templates import build_graph, load_target, split_sets

        as_json = get_state().json(as_json)
        node_sets, params = split_sets(sets)
        edits = [*updates, *node_sets]
        files = dict(parse_assignment(text, "--input") for text in inputs)
        overrides = {"output.output_dir": output_dir} if output_dir else None
        with _client(servers, overrides) as client:
            graph = build_graph(load_target(workflow, client), params=params, updates=edits, random_seeds=random_seeds,
                                source=workflow)
            if files:
                apply_inputs(graph, files, client, UploadCache())
            job = Job(workflow=graph, metadata={"source": workflow})
            client.plugin_manager.prepare_prompt(graph, job, client)
            validate_before_send(graph, client=client, path=workflow)
            answer = client.queue_prompt(graph, extra_data=job.extra_data or None)
            prompt_id = answer["prompt_id"]
            if not wait:
                _emit(answer, as_json, f"queued {prompt_id}")
                return
            mode = job_mode(as_json)
            try:
                # Inside the try: a Ctrl-C right after the job was queued must cancel it too.
                if mode == "json":
                    emit_event("queued", prompt_id=prompt_id, number=answer.get("number"), server=client.base_url)
                else:
                    click.echo(f"queued {prompt_id}")
                entry = follow_job(client, prompt_id, timeout, mode)
            except KeyboardInterrupt:
                _cancel_prompt(client, prompt_id)
                if mode == "json":
                    emit_event("cancelled", prompt_id=prompt_id)
                raise
            except JobError as exc:
                if mode == "json":
                    emit_event("failed", prompt_id=prompt_id, status="failed", error=exc.message,
                               error_type=type(exc).__name__)
                raise
            stored: list[str] = []
            if _download_enabled(client, no_download):
                from comfykit_download import download_outputs

                section = client.config.section("output")
                records = download_outputs(
                    client, prompt_id, section["output_dir"], naming=section["naming"],
                    include_temp=bool(section["include_temp"]), max_concurrent=int(section["concurrent_downloads"]),
                )
                stored = [record.location for record in records]
            images = extract_output_images(entry)
            if mode == "json":
                emit_event("completed", prompt_id=prompt_id, status="completed", images=images, files=stored)
            else:
                click.echo(f"completed {prompt_id}: " + (", ".join(i["filename"] for i in images) or "no images"))
                for location in stored:
                    click.echo(f"  {location}")

    @cli.command()
    @click.option("--verbose", "details", is_flag=True, help="Also list the pending prompts' ids.")
    @server_option
    @json_option
    def queue(details: bool, servers: tuple[str, ...], as_json: bool) -> None:
        """Show the server's running and pending prompts."""
        with _client(servers) as client:
            data = client.get_queue()
        running = [item[1] for item in data["queue_running"]]
        pending = [item[1] for item in data["queue_pending"]]
        text = f"running: {', '.join(running) or '-'}\npending: {len(pending)}"
        if details:
            text += "".join(f"\n  {prompt_id}" for prompt_id in pending)
        _emit({"running": running, "pending": pending}, get_state().json(as_json), text)

    @cli.command()
    @server_option
    @json_option
    def system(servers: tuple[str, ...], as_json: bool) -> None:
        """Show the server's version, devices and features."""
        with _client(servers) as client:
            info = client.server_info()
        _emit({"version": info.version, "jobs_api": info.has_jobs_api, "features": info.features,
               "system_stats": info.system_stats}, get_state().json(as_json),
              f"ComfyUI {info.version} (jobs API: {'yes' if info.has_jobs_api else 'no'})")

    register_batch(cli)
    register_more(cli)
    register_templates(cli)

