"""What one ``comfykit`` run decided, shared by every command of the run: the context object (``ctx.obj``).

The root group builds the run's one plugin manager before parsing (it decides which
commands exist) and hands it to a :class:`CliState`; commands ask the state for the
effective config, the server(s), a client, and whether to print JSON.  Options given
to a command (``comfykit send --server URL``) win over the same options given before
it (``comfykit --server URL send``).  Nothing heavy is imported here: the config and
the client are built on first use.

A plugin's command reaches the same state with ``@click.pass_obj`` (or as
``click.get_current_context().obj``): ``config()``, ``plugin_manager()``,
``client(servers)``, ``server(servers)`` and ``json(as_json)``.  These are public
API, documented in the hook reference under ``comfykit_register_commands``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from comfykit.client import ComfyUIClient
    from comfykit.config import Config
    from comfykit.plugins import PluginManager
    from comfykit.secrets import SecretMask

__all__ = ["LEVELS", "CliState", "get_state"]

log = logging.getLogger("comfykit.cli")

#: Log levels from most to least verbose; ``-v`` moves one step left, ``-q`` one step right.
LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class CliState:
    """The global options of one ``comfykit`` run, its plugin manager, and the config built from them.

    :param plugins: the run's plugin manager, built from the config's ``plugins.*`` keys and ``-p``.
    :param startup_error: why the config file could not be read while building it; raised by
        :meth:`config`, so ``--help`` still works with a broken config file.
    """

    def __init__(self, plugins: PluginManager | None = None, *, startup_error: Exception | None = None) -> None:
        self.servers: tuple[str, ...] = ()
        self.config_path: str | None = None
        #: ``-o KEY=VALUE`` settings, applied over file and environment
        self.settings: tuple[tuple[str, str], ...] = ()
        self.as_json = False
        self.verbose = 0
        self.quiet = 0
        #: the run's plugin manager as built (not configured yet until :meth:`config` ran)
        self.plugins = plugins
        self.startup_error = startup_error
        self._config: Config | None = None
        self._mask: tuple[tuple[bool, tuple[str, ...]], SecretMask] | None = None
        self._logging_done = False

    # -- options ----------------------------------------------------------------------

    def json(self, local: bool = False) -> bool:
        return local or self.as_json

    def server_list(self, local: Sequence[str] = ()) -> list[str]:
        """The servers named on the command line: the command's own, else the global ones."""
        return list(local or self.servers)

    def server(self, local: Sequence[str] = ()) -> str | None:
        """The server of a single-server command: the first one named, else the config's."""
        chosen = self.server_list(local)
        return chosen[0] if chosen else None

    # -- config and logging --------------------------------------------------------------------

    def config(self) -> Config:
        """The effective config (file, environment, plugins' keys), loaded once; configures the plugins and logging."""
        if self._config is None:
            from comfykit.session import session_config

            if self.startup_error is not None:
                raise self.startup_error
            manager = self._manager()
            self._config = session_config(manager, self.config_path, overrides=dict(self.settings))
            manager.configure(self._config)
            self.setup_logging(self._config)
        return self._config

    def secret_mask(self) -> SecretMask:
        """Masks every credential of this run (config, ``--server`` URLs) in what it shows."""
        from comfykit.secrets import SecretMask, secrets_of

        # Built once per state of the config (not loaded / loaded): NDJSON events ask for it per line.
        basis = (self._config is not None, self.servers)
        if self._mask is None or self._mask[0] != basis:
            values: dict[str, Any] = dict(self._config) if self._config is not None else {}
            values["cli.servers"] = list(self.servers)
            keys = self._config.secret_keys() if self._config is not None else []
            self._mask = (basis, SecretMask(secrets_of(values, keys)))
        return self._mask[1]

    def shown(self, text: object) -> str:
        """``text`` as it may reach the terminal: credentials masked, escape sequences and controls removed."""
        from comfykit.text import printable

        return printable(self.secret_mask().text(str(text)))

    def plugin_manager(self) -> PluginManager:
        """The run's one plugin manager, configured; every client and queue of the run shares it."""
        self.config()
        return self._manager()

    def _manager(self) -> PluginManager:
        if self.plugins is None:  # a command invoked outside the root group
            from comfykit.session import session_plugin_manager

            self.plugins = session_plugin_manager(self.config_path)
        return self.plugins

    def setup_logging(self, config: Mapping[str, Any]) -> None:
        """Log per the ``logging:`` section; ``-v`` lowers the level by one step, ``-q`` raises it."""
        if self._logging_done:
            return
        self._logging_done = True
        base = str(config.get("logging.level") or "WARNING").upper()
        index = LEVELS.index(base) if base in LEVELS else LEVELS.index("WARNING")
        index = min(len(LEVELS) - 1, max(0, index - self.verbose + self.quiet))
        level = getattr(logging, LEVELS[index])
        logger = logging.getLogger("comfykit")
        self.close_logging()
        formatter = logging.Formatter(str(config.get("logging.format") or "%(levelname)s %(name)s: %(message)s"))
        handlers: list[logging.Handler] = []
        if config.get("logging.console", True):
            handlers.append(logging.StreamHandler(sys.stderr))
        if config.get("logging.file"):
            handlers.append(logging.FileHandler(str(config["logging.file"]), encoding="utf-8"))
        from comfykit.secrets import MaskingFilter

        masking = MaskingFilter(self.secret_mask())
        for handler in handlers:
            handler.addFilter(masking)
            handler.setFormatter(formatter)
            handler.setLevel(level)
            handler._comfykit_cli = True  # type: ignore[attr-defined]
            logger.addHandler(handler)
        logger.setLevel(level)

    def close_logging(self) -> None:
        """Remove the handlers a run added, so in-process runs (tests, scripts calling main()) do not pile them up."""
        logger = logging.getLogger("comfykit")
        for handler in [h for h in logger.handlers if getattr(h, "_comfykit_cli", False)]:
            logger.removeHandler(handler)
            handler.close()

    def client(self, local_servers: Sequence[str] = (), overrides: Mapping[str, Any] | None = None) -> ComfyUIClient:
        """A client for the chosen server, with the run's config and plugin manager."""
        from comfykit import ComfyUIClient

        config = self.config()
        if overrides:
            config = config.with_overrides(overrides)
        client = ComfyUIClient(url=self.server(local_servers), config=config, plugin_manager=self.plugin_manager())
        log.debug("talking to %s (config file: %s)", client.base_url, config.path or "none")
        return client


def get_state() -> CliState:
    """The run's state (a fresh default one when a command runs outside the root group)."""
    ctx = click.get_current_context()
    return ctx.ensure_object(CliState)
