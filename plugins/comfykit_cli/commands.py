"""The built-in ``comfykit`` commands that talk to a server or check workflows.

Registered by the cli plugin through ``comfykit_register_commands``, like any plugin's
commands.  Heavy modules are imported inside each command so ``--help`` stays fast.
"""

from __future__ import annotations

import json
from typing import Any

import click

server_option = click.option(
    "--server", "server", envvar="COMFYKIT_URL", default=None, metavar="URL",
    help="ComfyUI server URL (default: from the config, else http://127.0.0.1:8188).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")


def _client(server: str | None) -> Any:
    from comfykit import ComfyUIClient

    return ComfyUIClient(url=server)


def _emit(data: Any, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)


def register(cli: click.Group) -> None:
    @cli.command()
    @click.argument("workflows", nargs=-1, required=True, type=click.Path(dir_okay=False))
    @click.option("--offline", is_flag=True, help="Only structural checks; do not ask the server for /object_info.")
    @server_option
    @json_option
    def validate(workflows: tuple[str, ...], offline: bool, server: str | None, as_json: bool) -> None:
        """Check workflows for structural and schema problems (exit 1 when any error)."""
        from comfykit.workflow import load_workflow, validate_workflow

        client = None if offline else _client(server)
        report: dict[str, list[dict[str, Any]]] = {}
        failed = False
        try:
            for path in workflows:
                graph = load_workflow(path, client=client)
                ok, problems = validate_workflow(graph, client=client)
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
    @click.option("--wait/--no-wait", default=False, help="Wait for the job to finish.")
    @click.option("--timeout", type=float, default=None, help="Seconds to wait with --wait.")
    @server_option
    @json_option
    def send(workflow: str, updates: tuple[str, ...], wait: bool, timeout: float | None, server: str | None,
             as_json: bool) -> None:
        """Queue a workflow on the server (and optionally wait for it)."""
        from comfykit.workflow import apply_updates, load_workflow

        with _client(server) as client:
            graph = apply_updates(load_workflow(workflow, client=client), updates)
            answer = client.queue_prompt(graph)
            prompt_id = answer["prompt_id"]
            if not wait:
                _emit(answer, as_json, f"queued {prompt_id}")
                return
            entry = client.wait_for_completion(prompt_id, timeout=timeout)
            from comfykit.utils import extract_output_images

            images = extract_output_images(entry)
            _emit({"prompt_id": prompt_id, "status": "completed", "images": images}, as_json,
                  f"completed {prompt_id}: " + ", ".join(i["filename"] for i in images))

    @cli.command()
    @server_option
    @json_option
    def queue(server: str | None, as_json: bool) -> None:
        """Show the server's running and pending prompts."""
        with _client(server) as client:
            data = client.get_queue()
        running = [item[1] for item in data["queue_running"]]
        pending = [item[1] for item in data["queue_pending"]]
        _emit({"running": running, "pending": pending}, as_json,
              f"running: {', '.join(running) or '-'}\npending: {len(pending)}")

    @cli.command()
    @server_option
    @json_option
    def system(server: str | None, as_json: bool) -> None:
        """Show the server's version, devices and features."""
        with _client(server) as client:
            info = client.server_info()
        _emit({"version": info.version, "jobs_api": info.has_jobs_api, "features": info.features,
               "system_stats": info.system_stats}, as_json,
              f"ComfyUI {info.version} (jobs API: {'yes' if info.has_jobs_api else 'no'})")
