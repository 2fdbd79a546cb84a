"""What the built-in commands share: the ``--server`` and ``--json`` options, ``NAME=VALUE`` parsing, a client, printing.

Every command takes ``--server`` and ``--json`` itself too, so they may be given
before or after the command name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click

from comfykit_cli.state import get_state

if TYPE_CHECKING:
    from comfykit.client import ComfyUIClient

__all__ = ["emit", "json_option", "open_client", "parse_assignment", "server_option"]

server_option = click.option(
    "--server", "servers", multiple=True, metavar="URL",
    help="ComfyUI server URL (default: the global --server, the config, else http://127.0.0.1:8188).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")


def open_client(servers: Sequence[str], overrides: Mapping[str, Any] | None = None) -> ComfyUIClient:
    """A client for the command's server (else the global one, else the config's), with the run's config and plugins."""
    return get_state().client(servers, overrides)


def emit(data: Any, as_json: bool, text: str) -> None:
    """Print ``data`` as JSON when ``as_json`` (or the global ``--json``), else ``text``."""
    click.echo(json.dumps(data, indent=2, default=str) if get_state().json(as_json) else text)


def parse_assignment(text: str, option: str) -> tuple[str, str]:
    """Split ``NAME=VALUE`` (as given to ``--input`` and ``--set``); a usage error when there is no ``=``."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise click.BadParameter(f"{text!r} is not NAME=VALUE", param_hint=option)
    return name.strip(), value
