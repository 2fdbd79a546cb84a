"""What the root ``comfykit`` options decided, shared by every command of one run.

The root group stores a :class:`CliState` in the click context; commands ask it
for the effective config, the server(s), a client, and whether to print JSON.
Options given to a command (``comfykit send --server URL``) win over the same
options given before it (``comfykit --server URL send``).  Nothing heavy is
imported here: the config and the client are built on first use.
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

__all__ = ["CliState", "get_state"]

log = logging.getLogger("comfykit.cli")

_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class CliState:
    """The global options of one ``comfykit`` run, and the config built from them."""

    def __init__(self) -> None:
        self.servers: tuple[str, ...] = ()
        self.config_path: str | None = None
        self.as_json = False
        self.verbose = 0
        self.quiet = 0
        self.plugin_options: tuple[str, ...] = ()
        #: plugin objects given to ``build_cli`` (an application embedding the command, or a test)
        self.extra_plugins: tuple[object, ...] = ()
        self._config: Config | None = None
        self._plugin_manager: PluginManager | None = None
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
        """The effective config (file, environment, plugins' keys), loaded once; also sets up logging."""
        return self._open()[1]

    def plugin_manager(self) -> PluginManager:
        """The run's one plugin manager, configured; every client and queue of the run shares it."""
        return self._open()[0]

    def _open(self) -> tuple[PluginManager, Config]:
        if self._plugin_manager is None or self._config is None:
            from comfykit.plugins import open_session

            self._plugin_manager, self._config = open_session(
                self.config_path, plugins=self.extra_plugins, plugin_options=self.plugin_options
            )
            self.setup_logging(self._config)
        return self._plugin_manager, self._config

    def setup_logging(self, config: Mapping[str, Any]) -> None:
        """Log per the ``logging:`` section; ``-v`` lowers the level by one step, ``-q`` raises it."""
        if self._logging_done:
            return
        self._logging_done = True
        base = str(config.get("logging.level") or "INFO").upper()
        index = _LEVELS.index(base) if base in _LEVELS else 1
        index = min(len(_LEVELS) - 1, max(0, index - self.verbose + self.quiet))
        level = getattr(logging, _LEVELS[index])
        logger = logging.getLogger("comfykit")
        self.close_logging()
        formatter = logging.Formatter(str(config.get("logging.format") or "%(levelname)s %(name)s: %(message)s"))
        handlers: list[logging.Handler] = []
        if config.get("logging.console", True):
            handlers.append(logging.StreamHandler(sys.stderr))
        if config.get("logging.file"):
            handlers.append(logging.FileHandler(str(config["logging.file"]), encoding="utf-8"))
        for handler in handlers:
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
        """A client for the chosen server, with the run's config and ``-p`` plugin options."""
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
