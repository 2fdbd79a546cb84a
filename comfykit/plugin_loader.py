"""Which plugins one client or session gets, and from where: :func:`get_plugin_manager`.

There is no module-level plugin manager: every :class:`comfykit.ComfyUIClient`
(and every CLI run) builds its own with :func:`get_plugin_manager`, so tests
need no reloads and a broken third-party plugin cannot break comfykit at
import time.

Plugins come from four places, in registration order: core defaults (always
on), the ``comfykit`` entry-point group (comfykit's own distribution declares
the bundled plugins ``monitor``, ``download``, ``metadata``, ``convert`` and
``cli`` there, and they register before third-party ones), names given with ``-p NAME``, and
objects passed in Python.  The core imports no plugin module by name: an
editable checkout (``pip install -e .``) has the entry points too.  Any plugin
but the core ones can be disabled by name (``-p no:NAME``,
``COMFYKIT_DISABLE_PLUGINS``, the ``plugins.disable`` config key).
``COMFYKIT_DISABLE_PLUGIN_AUTOLOAD=1`` (or ``COMFYKIT_PLUGINS_AUTOLOAD=0``) skips
third-party entry points; bundled plugins still load.  ``COMFYKIT_PLUGINS=a,b``
is the hermetic mode for tests: of the third-party plugins, only those named load
(by entry-point or module name), whatever else is installed.

A plugin object registers once: a module given in ``plugins=`` or ``-p`` that an
entry point already loaded keeps its entry-point name.  What the manager is, and
how hooks are called through it, is :mod:`comfykit.plugins`; these names stay
importable from there too.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterable, Mapping
from importlib import metadata

from comfykit.plugins import PluginManager

__all__ = [
    "BUNDLED_DISTRIBUTION", "CORE_PLUGINS", "ENTRY_POINT_GROUP", "get_plugin_manager", "parse_plugin_options",
]

log = logging.getLogger("comfykit.plugins")

ENTRY_POINT_GROUP = "comfykit"

#: The distribution whose entry points are the bundled plugins.
BUNDLED_DISTRIBUTION = "comfykit"

#: Core defaults that cannot be disabled: they are the fallbacks the firstresult
#: hooks rely on.
CORE_PLUGINS: Mapping[str, str] = {
    "core.workflow": "comfykit.defaults.workflow",
    "core.polling": "comfykit.defaults.polling",
    "core.retry": "comfykit.defaults.retry",
}


def _env_list(name: str) -> list[str]:
    raw = os.environ.get(name, "")
    return [part.strip() for part in raw.replace(";", ",").split(",") if part.strip()]


def _truthy_env(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def parse_plugin_options(options: Iterable[str]) -> tuple[list[str], list[str]]:
    """Split ``-p`` values into (names to enable, names to disable).

    ``no:NAME`` disables NAME (a plugin's or its module's name); anything else is an
    entry-point or module name to load.
    """
    enable: list[str] = []
    disable: list[str] = []
    for option in options:
        option = option.strip()
        if option.startswith("no:"):
            disable.append(option[3:])
        elif option:
            enable.append(option)
    return enable, disable


def _load_module(module_name: str) -> object:
    return importlib.import_module(module_name)


def _is_bundled(entry_point: metadata.EntryPoint) -> bool:
    dist = entry_point.dist
    return dist is not None and dist.name.lower() == BUNDLED_DISTRIBUTION


def get_plugin_manager(
    *,
    plugins: Iterable[object] = (),
    enable: Iterable[str] = (),
    disable: Iterable[str] = (),
    autoload: bool | None = None,
    strict: bool = False,
    only: Iterable[str] | None = None,
    warn_unmatched: bool = True,
) -> PluginManager:
    """Build a new plugin manager for one client or session.

    :param plugins: extra plugin objects (modules or instances) to register; one an
        entry point registered already is not registered twice.
    :param enable: entry-point or module names to load explicitly (``-p NAME``).
    :param disable: plugin (or module) names not to load (``-p no:NAME``); merged with
        ``COMFYKIT_DISABLE_PLUGINS``.
    :param autoload: load third-party entry points; default: on unless
        ``COMFYKIT_DISABLE_PLUGIN_AUTOLOAD`` is set.
    :param strict: raise :class:`PluginError` when a plugin fails to load
        instead of reporting it and going on.
    :param only: the hermetic mode: of the third-party plugins, load only these (entry-point
        or module names); default: ``COMFYKIT_PLUGINS`` when it is set.  Bundled plugins still load.
    :param warn_unmatched: log a warning for each ``disable`` name that matches no plugin.
    """
    manager = PluginManager()
    manager.strict = strict
    asked_off = [*disable, *_env_list("COMFYKIT_DISABLE_PLUGINS")]
    manager.disabled = set(asked_off) - set(CORE_PLUGINS)
    if autoload is None:
        autoload = not _truthy_env("COMFYKIT_DISABLE_PLUGIN_AUTOLOAD")
    if only is None and "COMFYKIT_PLUGINS" in os.environ:
        only = _env_list("COMFYKIT_PLUGINS")
    chosen = None if only is None else set(only)

    entry_points = _entry_points()
    by_name = {ep.name: ep for ep in entry_points}
    # `-p no:MODULE` names the plugin by its module: disable the entry point that loads it.
    manager.disabled |= {ep.name for ep in entry_points if ep.module in manager.disabled}

    for name, module_name in CORE_PLUGINS.items():
        manager.register(_load_module(module_name), name, origin="core")
    for entry_point in entry_points:
        if _is_bundled(entry_point):
            _register_entry_point(manager, entry_point, "bundled")
        elif chosen is not None:
            if {entry_point.name, entry_point.module} & chosen:
                _register_entry_point(manager, entry_point, f"entry point of {_dist_name(entry_point)}")
        elif autoload:
            _register_entry_point(manager, entry_point, f"entry point of {_dist_name(entry_point)}")
    by_module = {ep.module: ep for ep in entry_points}
    named = [*enable, *sorted(chosen or ())]
    for name in named:
        # An entry point's own name or its module: load it as that entry point (disabled stays disabled).
        found = by_name.get(name) or by_module.get(name)
        if found is not None:
            _register_entry_point(manager, found, f"-p, entry point of {_dist_name(found)}")
            continue
        if name in manager.disabled or manager.is_registered(name):
            continue
        try:
            manager.register(_load_module(name), name, origin="-p")
        except Exception as exc:
            manager.record_failure(name, "-p", exc)
    given = list(plugins)
    for plugin in given:
        manager.register(plugin, origin="python")

    known = (set(CORE_PLUGINS) | set(by_name) | {ep.module for ep in entry_points} | set(named)
             | {name for name, _ in manager.plugins()} | {manager.pm.get_canonical_name(p) for p in given})
    manager.unmatched_disables = sorted({name for name in asked_off if name not in known})
    for name in manager.unmatched_disables if warn_unmatched else ():
        log.warning("no plugin is called %r, so disabling it (-p no:, plugins.disable, COMFYKIT_DISABLE_PLUGINS) "
                    "does nothing; `comfykit plugins` lists the plugins' names", name)
    manager.check_pending()
    return manager


def _entry_points() -> list[metadata.EntryPoint]:
    """The ``comfykit`` entry points, bundled ones first."""
    # Bundled plugins first, so they own their command names and hook order does not depend on
    # the order distributions happen to be found in.
    return sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: not _is_bundled(ep))


def _dist_name(entry_point: metadata.EntryPoint) -> str:
    return entry_point.dist.name if entry_point.dist is not None else "?"


def _register_entry_point(manager: PluginManager, entry_point: metadata.EntryPoint, origin: str) -> None:
    """Load and register one entry point under its name, unless it is disabled or there already."""
    if entry_point.name in manager.disabled:
        manager.pm.set_blocked(entry_point.name)
        if _is_bundled(entry_point):
            manager.disabled_bundled.append(entry_point)
        return
    if manager.is_registered(entry_point.name):
        return
    try:
        plugin = entry_point.load()
    except Exception as exc:
        manager.record_failure(entry_point.name, origin, exc)
        return
    if manager.register(plugin, entry_point.name, origin=origin) == entry_point.name and entry_point.dist is not None:
        manager.distributions[entry_point.name] = (entry_point.dist.name, entry_point.dist.version)

