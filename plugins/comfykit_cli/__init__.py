"""The bundled ``cli`` plugin: the ``comfykit`` command, built from commands that plugins register.

The root group is built per run with its own plugin manager; every command, the
built-in ones included, arrives through ``comfykit_register_commands``.  Heavy
modules (httpx, aiohttp, the simulator) are imported inside commands only, so
``comfykit --help`` and ``--version`` stay fast.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from comfykit.hookspecs import hookimpl

__all__ = ["build_cli", "main"]


def _version() -> str:
    from comfykit._version import __version__

    return __version__


def build_cli(plugin_options: Sequence[str] = ()) -> click.Group:
    """The root ``comfykit`` group with every plugin's commands registered."""
    from comfykit.plugins import get_plugin_manager, parse_plugin_options

    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(_version(), prog_name="comfykit")
    @click.option("-p", "plugin_option", multiple=True, metavar="NAME",
                  help="Load plugin NAME, or disable it with no:NAME.")
    def cli(plugin_option: tuple[str, ...]) -> None:
        """Drive ComfyUI servers: send workflows, run batches, collect outputs."""

    enable, disable = parse_plugin_options(plugin_options)
    manager = get_plugin_manager(enable=enable, disable=disable)
    manager.register_commands(cli)
    return cli


def _plugin_options(argv: Sequence[str]) -> list[str]:
    """``-p`` values, read before click runs because they decide which commands exist."""
    options: list[str] = []
    for index, arg in enumerate(argv):
        if arg == "-p" and index + 1 < len(argv):
            options.append(argv[index + 1])
        elif arg.startswith("-p") and len(arg) > 2:
            options.append(arg[2:])
    return options


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    from comfykit.errors import ComfyKitError, RequestTimeout, ServerUnreachable

    try:
        cli = build_cli(_plugin_options(args))
        # Without standalone mode click returns the code of a command's Exit instead of raising it.
        result = cli.main(args=args, prog_name="comfykit", standalone_mode=False)
        if isinstance(result, int):
            return result
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except click.exceptions.Exit as exit_:
        return int(exit_.exit_code)
    except click.UsageError as exc:
        exc.show()
        return 2
    except (ServerUnreachable, RequestTimeout) as exc:
        click.echo(f"Error: {exc}", err=True)
        return 3
    except ComfyKitError as exc:
        click.echo(f"Error: {exc}", err=True)
        return 1
    return 0


@hookimpl
def comfykit_register_commands(cli: click.Group) -> None:
    from comfykit_cli.commands import register

    register(cli)

    @cli.command()
    @click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
    @click.option("--port", default=8188, show_default=True, type=int, help="Port to listen on (0: any free port).")
    @click.option("--comfyui-version", type=click.Choice(["0.3.64", "0.33.0"]), default="0.33.0", show_default=True,
                  help="Which recorded ComfyUI version to pose as.")
    @click.option("--root", type=click.Path(file_okay=False), default=None,
                  help="Folder for input/output/temp files (default: a temporary folder).")
    @click.option("--node-seconds", type=float, default=0.0, help="Seconds each executed node takes.")
    @click.option("--step-seconds", type=float, default=0.0, help="Seconds each sampler step takes.")
    @click.option("--drop-websocket-after", type=float, default=None, help="Close every WebSocket after N seconds.")
    @click.option("--history-delay", type=float, default=0.0, help="Delay the history write after success (s).")
    @click.option("--fail-next", type=int, default=0, help="Answer the next N requests with HTTP 500.")
    @click.option("--response-delay", type=float, default=0.0, help="Seconds to wait before every HTTP answer.")
    @click.option("--preview-method", type=click.Choice(["none", "latent2rgb"]), default="none",
                  help="Send sampler preview images.")
    def serve(host: str, port: int, comfyui_version: str, root: str | None, **knobs: object) -> None:
        """Run the ComfyUI simulator (for tests and trying comfykit without a GPU)."""
        from comfykit.testing import serve as run_simulator

        run_simulator(host=host, port=port, comfyui_version=comfyui_version, root=root, **knobs)
