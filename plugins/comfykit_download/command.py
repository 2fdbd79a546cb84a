"""``comfykit download PROMPT_ID``: the download plugin's command, storing a finished prompt's outputs.

Registered by the plugin's own ``comfykit_register_commands``; it reaches the run's
config and plugins through the CLI's context object (``ctx.obj``), never by importing
the cli plugin.
"""

from __future__ import annotations

import json
from typing import Any

import click

__all__ = ["download"]


@click.command()
@click.argument("prompt_id")
@click.option("--output-dir", type=click.Path(file_okay=False), default=None,
              help="Where to write the files (default: output.output_dir).")
@click.option("--server", "servers", multiple=True, metavar="URL",
              help="ComfyUI server URL (default: the global --server, the config, else http://127.0.0.1:8188).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")
@click.pass_obj
def download(run: Any, prompt_id: str, output_dir: str | None, servers: tuple[str, ...], as_json: bool) -> None:
    """Download the outputs of a finished prompt."""
    from comfykit_download import download_outputs
    from comfykit_download.naming import DEFAULT_NAMING

    overrides = {"output.output_dir": output_dir} if output_dir else None
    with run.client(servers, overrides) as client:
        section = client.config.section("output")
        stored = download_outputs(
            client, prompt_id, section.get("output_dir") or "outputs", naming=section.get("naming") or DEFAULT_NAMING,
            include_temp=bool(section.get("include_temp", False)),
            max_concurrent=int(section.get("concurrent_downloads") or 4),
            verify_size=bool(section.get("verify_size", True)), attempts=int(section.get("download_attempts") or 3),
        )
    records = [{"node_id": s.node_id, "kind": s.kind, "location": s.location, "bytes": s.bytes, "sha256": s.sha256,
                "skipped": s.skipped} for s in stored]
    if run.json(as_json):
        click.echo(json.dumps(records, indent=2, default=str))
    else:
        click.echo("\n".join(str(r["location"]) for r in records) or "no outputs")
