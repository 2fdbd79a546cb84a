"""The bundled ``cli`` plugin: the ``comfykit`` command, built from commands that plugins register.

The root group is built per run with its own plugin manager; every command, the
built-in ones included, arrives through ``comfykit_register_commands``.  Heavy
modules (httpx, aiohttp, the simulator) are imported inside commands only, so
``comfykit --help`` and ``--version`` stay fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from comfykit.hookspecs import hookimpl
from comfykit_cli.state import CliState

__all__ = ["CliState", "ComfykitGroup", "build_cli", "main", "report_error"]


def _version() -> str:
    from comfykit._version import __version__

    return __version__


class ComfykitGroup(click.Group):
    """The root group: turns comfykit's errors into one readable paragraph and an exit code.

    Done here rather than in :func:`main` so click's test runner sees the same
    exit codes as the console script: 1 for errors, 3 when the server cannot be
    reached, 130 on Ctrl-C.  The traceback is shown only with ``-v``.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            raise click.exceptions.Exit(130) from None
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Exception as exc:
            state = ctx.find_object(CliState)
            verbose = state is not None and state.verbose > 0
            raise click.exceptions.Exit(report_error(exc, verbose=verbose)) from None
        finally:
            state = ctx.find_object(CliState)
            if state is not None:
                state.close_logging()


def report_error(exc: BaseException, *, verbose: bool) -> int:
    """Print ``exc`` for a person (the traceback too when ``verbose``); return the exit code it means."""
    from comfykit.errors import ComfyKitError, RequestTimeout, ServerUnreachable

    if verbose:
        import traceback

        click.echo("".join(traceback.format_exception(exc)).rstrip(), err=True)
    if isinstance(exc, ComfyKitError):
        click.echo(f"Error: {exc}", err=True)
        return 3 if isinstance(exc, (ServerUnreachable, RequestTimeout)) else 1
    click.echo(f"Error: unexpected {type(exc).__name__}: {exc}", err=True)
    if not verbose:
        click.echo("Hint: run again with -v to see the traceback, and report it if it looks like a bug.", err=True)
    return 1


def build_cli(plugin_options: Sequence[str] = (), plugins: Sequence[object] = ()) -> click.Group:
    """The root ``comfykit`` group with every plugin's commands registered.

    ``plugin_options`` are ``-p`` values; ``plugins`` are extra plugin objects
    (as an application embedding the CLI, or a test, would pass them).
    """
    from comfykit.plugins import get_plugin_manager, parse_plugin_options

    @click.group(cls=ComfykitGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(_version(), prog_name="comfykit")
    @click.option("-p", "plugin_option", multiple=True, metavar="NAME",
                  help="Load plugin NAME, or disable it with no:NAME.")
    @click.option("--server", "servers", multiple=True, metavar="URL",
                  help="ComfyUI server URL; repeat for a pool (batch). Default: the config, else http://127.0.0.1:8188.")
    @click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                  help="Config file (default: ./comfykit.yaml, then the user config directory).")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout (NDJSON for progress).")
    @click.option("-v", "--verbose", count=True, help="More log output, and tracebacks on errors (repeatable).")
    @click.option("-q", "--quiet", count=True, help="Less log output (repeatable).")
    @click.pass_context
    def cli(ctx: click.Context, plugin_option: tuple[str, ...], servers: tuple[str, ...], config_path: str | None,
            as_json: bool, verbose: int, quiet: int) -> None:
        """Drive ComfyUI servers: send workflows, run batches, collect outputs."""
        state = ctx.ensure_object(CliState)
        state.plugin_options = plugin_option
        state.extra_plugins = tuple(plugins)
        state.servers = servers
        state.config_path = config_path
        state.as_json = as_json
        state.verbose = verbose
        state.quiet = quiet

    enable, disable = parse_plugin_options(plugin_options)
    manager = get_plugin_manager(plugins=plugins, enable=enable, disable=disable)
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
    verbose = any(arg in ("-v", "--verbose") or (arg.startswith("-v") and set(arg[1:]) == {"v"}) for arg in args)
    try:
        cli = build_cli(_plugin_options(args))
        # Without standalone mode click returns the code of a command's Exit instead of raising it.
        result = cli.main(args=args, prog_name="comfykit", standalone_mode=False, obj=CliState())
        if isinstance(result, int):
            return result
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 130
    except BrokenPipeError:
        # The reader went away (`comfykit --json batch ... | head`): stop quietly, and keep Python's
        # exit-time flush of stdout from raising again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except click.exceptions.Exit as exit_:
        return int(exit_.exit_code)
    except click.UsageError as exc:
        exc.show()
        return 2
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except Exception as exc:  # errors before a command runs (a broken plugin while building the group)
        return report_error(exc, verbose=verbose)
    return 0


@hookimpl
def comfykit_register_commands(cli: click.Group) -> None:
    from comfykit_cli.commands import register

    register(cli)

    @cli.command(cls=_ServeCommand)
    @click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
    @click.option("--port", default=8188, show_default=True, type=int, help="Port to listen on (0: any free port).")
    @click.option("--comfyui-version", type=click.Choice(["0.3.64", "0.33.0"]), default="0.33.0", show_default=True,
                  help="Which recorded ComfyUI version to pose as.")
    @click.option("--root", type=click.Path(file_okay=False), default=None,
                  help="Folder for input/output/temp files (default: a temporary folder).")
    def serve(host: str, port: int, comfyui_version: str, root: str | None, **knobs: object) -> None:
        """Run the ComfyUI simulator (for tests and trying comfykit without a GPU).

        Every fault and timing knob of comfykit.testing.Knobs is an option.
        """
        from comfykit.testing import serve as run_simulator

        run_simulator(host=host, port=port, comfyui_version=comfyui_version, root=root, **knobs)


class _ServeCommand(click.Command):
    """``serve``, whose knob options are made from :class:`comfykit.testing.Knobs` when first needed.

    Lazily, because the knobs module loads the simulator (aiohttp); and from the class
    itself, so a new knob is an option the moment it exists.
    """

    _knobs_added = False

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if not self._knobs_added:
            self._knobs_added = True
            self.params.extend(knob_options())
        return super().get_params(ctx)


def knob_options() -> list[click.Option]:
    """One option per public field of ``Knobs``, typed from its annotation, helped by its ``#:`` comment."""
    import inspect

    import attrs

    from comfykit.testing.knobs import Knobs

    helps: dict[str, str] = {}
    comment: list[str] = []
    for line in inspect.getsource(Knobs).splitlines():
        text = line.strip()
        if text.startswith("#:"):
            comment.append(text[2:].strip())
        elif ":" in text and comment:
            helps[text.split(":", 1)[0].strip()] = " ".join(comment)
            comment = []
        elif not text.startswith("#"):
            comment = []
    kinds: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}
    options: list[click.Option] = []
    for field in attrs.fields(Knobs):
        if field.name.startswith("_"):
            continue
        annotation = str(field.type).replace(" ", "")
        kind = kinds.get(annotation.removesuffix("|None"), str)
        flag = "--" + field.name.replace("_", "-")
        if kind is bool:
            options.append(click.Option([f"{flag}/--no-{flag[2:]}", field.name], default=field.default,
                                        show_default=True, help=helps.get(field.name)))
        else:
            options.append(click.Option([flag, field.name], type=kind, default=field.default, show_default=True,
                                        help=helps.get(field.name)))
    return options
