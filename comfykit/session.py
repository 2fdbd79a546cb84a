"""One session's plugin manager and effective config, built together.

A client, a queue and a CLI run each work with one plugin manager and the config
read against the keys those plugins declare.  The two depend on each other: the
config's ``plugins.*`` keys decide which plugins load, and the loaded plugins
declare the rest of the keys (``comfykit_add_config``).  So the config file is
read twice: first for the ``plugins.*`` keys only (:func:`session_plugin_manager`),
then against the full registry (:func:`session_config`).  :func:`open_session`
does both and configures the plugins.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from comfykit.config import Config, ConfigRegistry, core_registry, load_config
from comfykit.plugin_loader import get_plugin_manager, parse_plugin_options
from comfykit.plugins import PluginManager

__all__ = ["open_session", "session_config", "session_plugin_manager", "session_registry"]

ConfigArgument = Config | str | os.PathLike[str] | None


def session_plugin_manager(
    config: ConfigArgument = None, *, plugins: Iterable[object] = (), plugin_options: Iterable[str] = ()
) -> PluginManager:
    """The plugin manager the config's ``plugins.*`` keys and the ``-p`` values ask for, not configured yet.

    ``config`` is a loaded :class:`Config` or the path of a config file (``None``: the
    usual search).  Raises :class:`comfykit.errors.ConfigError` when the file cannot be read.
    """
    base = config if isinstance(config, Config) else load_config(path=config, registry=core_registry(), warn_unknown=False)
    enable, disable = parse_plugin_options(plugin_options)
    return get_plugin_manager(
        plugins=plugins,
        enable=[*enable, *base["plugins.enable"]],
        disable=[*disable, *base["plugins.disable"]],
        strict=bool(base["plugins.strict"]),
        autoload=None if base["plugins.autoload"] else False,
    )


def session_registry(manager: PluginManager) -> ConfigRegistry:
    """The core keys plus every key the plugins of ``manager`` declare."""
    registry = core_registry()
    manager.add_config(registry)
    return registry


def session_config(
    manager: PluginManager, config: ConfigArgument = None, *, overrides: Mapping[str, Any] | None = None
) -> Config:
    """The effective config read against the keys of ``manager``'s plugins; nothing is configured.

    A :class:`Config` given as ``config`` keeps its values; keys the plugins declared after
    it was built start at their defaults.
    """
    registry = session_registry(manager)
    if not isinstance(config, Config):
        return load_config(path=config, overrides=overrides, registry=registry)
    values = {key.dotted: key.default for key in registry} | dict(config)
    effective = Config(values, {k: config.source(k) for k in config}, registry, config.path)
    return effective.with_overrides(overrides or {})


def open_session(
    config: ConfigArgument = None,
    *,
    plugins: Iterable[object] = (),
    plugin_options: Iterable[str] = (),
    overrides: Mapping[str, Any] | None = None,
    plugin_manager: PluginManager | None = None,
) -> tuple[PluginManager, Config]:
    """A plugin manager and the effective config, built together: what one client, queue or CLI run works with.

    With ``plugin_manager`` given, only the config is built and nothing is configured:
    whoever built that manager configured it.
    """
    if plugin_manager is not None:
        return plugin_manager, session_config(plugin_manager, config, overrides=overrides)
    manager = session_plugin_manager(config, plugins=plugins, plugin_options=plugin_options)
    effective = session_config(manager, config, overrides=overrides)
    manager.configure(effective)
    return manager, effective
