"""The bundled ``cli`` plugin: the ``comfykit`` command, built from commands that plugins register.

Each run has one plugin manager, built before click parses the command line from
the root options (``-p``, ``--config``) and the config's ``plugins.*`` keys: it
decides which commands exist, and every client and queue of the run shares it.
Every command, the built-in ones included, arrives through
``comfykit_register_commands``.  Heavy modules (httpx, aiohttp, the simulator) are
imported inside commands only, so ``comfykit --help`` and ``--version`` stay fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import click

from comfykit import hookimpl
from comfykit_cli.options import parse_assignment
from comfykit_cli.state import CliState

if TYPE_CHECKING:
    from comfykit.config import ConfigRegistry
    from comfykit.plugins import PluginManager

__all__ = ["CliState", "ComfykitGroup", "RootOptions", "build_cli", "main", "report_error", "root_options"]


def _version() -> str:
    from comfykit import __version__

    return __version__


@attrs.frozen
class RootOptions:
    """The root options that decide which plugins load, read from the command line before click parses it."""

    plugin_options: tuple[str, ...] = ()
    config_path: str | None = None
    verbose: int = 0
    #: ``-o KEY=VALUE`` values, as given
    settings: tuple[str, ...] = ()

    def chooses_same_plugins(self, other: RootOptions) -> bool:
        return (self.plugin_options, self.config_path, self.plugin_settings()) == (
            other.plugin_options, other.config_path, other.plugin_settings())

    def plugin_settings(self) -> dict[str, str]:
        """The ``-o plugins.*=VALUE`` settings: they choose plugins, so they count before the rest."""
        pairs = (setting.partition("=") for setting in self.settings)
        return {key.strip(): value for key, eq, value in pairs if eq and key.strip().startswith("plugins.")}


#: Root options that take a value, as separate word or ``--opt=value``.
_VALUE_OPTIONS = {"-p", "--server", "--config", "-o", "--option"}


def root_options(args: Sequence[str]) -> RootOptions:
    """``-p``, ``-o``, ``--config`` and ``-v`` as given before the command name (the words click gives the root group)."""
    plugins: list[str] = []
    settings: list[str] = []
    config: str | None = None
    verbose = 0
    words = list(args)
    index = 0
    while index < len(words) and words[index].startswith("-") and words[index] != "--":
        word = words[index]
        name, eq, value = word.partition("=")
        if name in _VALUE_OPTIONS and not eq:
            value = words[index + 1] if index + 1 < len(words) else ""
            index += 1
        elif word.startswith(("-p", "-o")) and not word.startswith("--"):
            name, value = word[:2], word[2:]
        if name == "-p":
            plugins.append(value)
        elif name in ("-o", "--option"):
            settings.append(value)
        elif name == "--config":
            config = value
        elif word == "--verbose" or (word.startswith("-v") and set(word[1:]) == {"v"}):
            verbose += len(word) - 1 if word != "--verbose" else 1
        index += 1
    return RootOptions(tuple(p for p in plugins if p), config, verbose, tuple(settings))


class ComfykitGroup(click.Group):
    """The root group: loads the run's plugins before parsing, and turns errors into one paragraph and an exit code.

    Done here rather than in :func:`main` so click's test runner sees the same
    exit codes as the console script: 1 for errors, 3 when the server cannot be
    reached, 130 on Ctrl-C.  The traceback is shown only with ``-v``.
    """

    def __init__(self, *args: Any, plugin_options: Sequence[str] = (), plugins: Sequence[object] = (),
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._given_options = tuple(plugin_options)
        self._given_plugins = tuple(plugins)
        self._loaded: RootOptions | None = None
        self.plugin_manager: PluginManager | None = None
        #: why the config file could not be read while choosing the plugins (raised when a command needs it)
        self.startup_error: Exception | None = None

    def load_plugins(self, options: RootOptions) -> None:
        """Build the run's plugin manager for ``options`` and register every plugin's commands (once per options)."""
        from comfykit.config import core_registry, load_config
        from comfykit.errors import ConfigError
        from comfykit.plugin_loader import get_plugin_manager, parse_plugin_options
        from comfykit.session import session_plugin_manager

        if self._loaded is not None and self._loaded.chooses_same_plugins(options):
            return
        self.commands = {}
        every_option = [*self._given_options, *options.plugin_options]
        self.startup_error = None
        try:
            base = load_config(path=options.config_path, registry=core_registry(), warn_unknown=False)
            manager = session_plugin_manager(base.with_overrides(options.plugin_settings()),
                                             plugins=self._given_plugins, plugin_options=every_option)
        except ConfigError as exc:
            # A broken config file must not break --help: load without its plugins.* keys; commands report it.
            self.startup_error = exc
            enable, disable = parse_plugin_options(every_option)
            manager = get_plugin_manager(plugins=self._given_plugins, enable=enable, disable=disable)
        # A plugin whose key declarations are broken is unloaded now, before it can add commands.
        manager.add_config(core_registry())
        manager.register_commands(self)
        self.plugin_manager = manager
        self._loaded = options

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        options = root_options(args)
        try:
            self.load_plugins(options)
        except Exception as exc:  # a plugin that fails to load under plugins.strict, a hook that raises
            raise click.exceptions.Exit(report_error(exc, verbose=options.verbose > 0)) from None
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        if self._loaded is None:
            self.load_plugins(RootOptions())
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if self._loaded is None:
            self.load_plugins(RootOptions())
        return super().get_command(ctx, cmd_name)

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
            raise click.exceptions.Exit(report_error(exc, verbose=verbose, state=state)) from None
        finally:
            state = ctx.find_object(CliState)
            if state is not None:
                state.close_logging()


def report_error(exc: BaseException, *, verbose: bool, state: CliState | None = None) -> int:
    """Print ``exc`` for a person (the traceback too when ``verbose``); return the exit code it means.

    Errors quote what servers sent, so the text is shown through the run's ``state.shown``
    (credentials masked, terminal escapes removed).
    """
    from comfykit.errors import ComfyKitError, RequestTimeout, ServerUnreachable

    shown = (state or CliState()).shown
    if verbose:
        import traceback

        click.echo(shown("".join(traceback.format_exception(exc)).rstrip()), err=True)
    if isinstance(exc, ComfyKitError):
        click.echo(shown(f"Error: {exc}"), err=True)
        return 3 if isinstance(exc, (ServerUnreachable, RequestTimeout)) else 1
    click.echo(shown(f"Error: unexpected {type(exc).__name__}: {exc}"), err=True)
    if not verbose:
        click.echo("Hint: run again with -v to see the traceback, and report it if it looks like a bug.", err=True)
    return 1


def build_cli(plugin_options: Sequence[str] = (), plugins: Sequence[object] = ()) -> click.Group:
    """The root ``comfykit`` group; its plugins (and so its commands) load when it parses a command line.

    ``plugin_options`` are ``-p`` values added to those of the command line;
    ``plugins`` are extra plugin objects (as an application embedding the CLI,
    or a test, would pass them).
    """

    @click.group(cls=ComfykitGroup, context_settings={"help_option_names": ["-h", "--help"]},
                 plugin_options=plugin_options, plugins=plugins)
    @click.version_option(_version(), prog_name="comfykit")
    @click.option("-p", "plugin_option", multiple=True, metavar="NAME",
                  help="Load plugin NAME, or disable it with no:NAME.")
    @click.option("--server", "servers", multiple=True, metavar="URL",
                  help="ComfyUI server URL; repeat for a pool (batch). Default: the config, else http://127.0.0.1:8188.")
    @click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                  help="Config file (default: ./comfykit.yaml, then the user config directory).")
    @click.option("-o", "--option", "settings", multiple=True, metavar="KEY=VALUE",
                  help="Set a config key for this run, a plugin's too (`comfykit config --describe` lists them).")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout (NDJSON for progress).")
    @click.option("-v", "--verbose", count=True, help="More log output, and tracebacks on errors (repeatable).")
    @click.option("-q", "--quiet", count=True, help="Less log output (repeatable).")
    @click.pass_context
    def cli(ctx: click.Context, plugin_option: tuple[str, ...], servers: tuple[str, ...], config_path: str | None,
            settings: tuple[str, ...], as_json: bool, verbose: int, quiet: int) -> None:
        """Drive ComfyUI servers: send workflows, run batches, collect outputs."""
        group = ctx.command
        assert isinstance(group, ComfykitGroup)
        ctx.obj = state = CliState(group.plugin_manager, startup_error=group.startup_error)
        state.servers = servers
        state.config_path = config_path
        state.settings = tuple(parse_assignment(setting, "-o") for setting in settings)
        state.as_json = as_json
        state.verbose = verbose
        state.quiet = quiet
        owner = group.plugin_manager.command_owners.get(ctx.invoked_subcommand or "") if group.plugin_manager else None
        if owner is not None and owner != "cli" and not ctx.resilient_parsing:
            # Another plugin's command: its plugins see the effective config (comfykit_configure) before it runs.
            state.config()

    return cli


def main(argv: Sequence[str] | None = None) -> int:
    """The ``comfykit`` console script: run the command line ``argv`` (default: ``sys.argv``); return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = root_options(args).verbose > 0
    try:
        # Without standalone mode click returns the code of a command's Exit instead of raising it.
        result = build_cli().main(args=args, prog_name="comfykit", standalone_mode=False)
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
    except Exception as exc:  # errors before a command runs
        return report_error(exc, verbose=verbose)
    return 0


@hookimpl
def comfykit_add_config(registry: ConfigRegistry) -> None:
    # Only the CLI reads these: a script using the SDK configures logging itself.
    registry.add("logging", "level", "WARNING",
                 help="Log level of a comfykit run: DEBUG, INFO (each job's progress), WARNING, ERROR.")
    registry.add("logging", "file", None, type="str", help="Log file path.")
    registry.add("logging", "console", True, help="Log to the console (stderr).")
    registry.add("logging", "format", "%(asctime)s %(levelname)s %(name)s: %(message)s", help="Log line format.")


@hookimpl
def comfykit_register_commands(cli: click.Group) -> None:
    from comfykit_cli import admin, run, scaffold, serve, server, templates, work

    for command in (server.validate, run.send, run.batch, work.work, work.jobs, server.queue, server.system,
                    server.history, server.cancel, server.interrupt, server.clear, server.upload, server.nodes,
                    server.convert, admin.plugins, admin.show_config, templates.templates, serve.serve, scaffold.plugin):
        cli.add_command(command)
