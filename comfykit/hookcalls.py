"""Calling hook implementations one at a time, so one plugin that raises can be named and passed over.

pluggy's ``pm.hook.NAME(...)`` runs every implementation in one call and stops at
the first exception.  Where comfykit must not let one plugin silence the others
(notifications, events, output sinks, the retry decision), it walks the
implementations itself in pluggy's call order and calls each with only the
arguments it names, as pluggy would.  Nothing here knows a hook by name.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pluggy

__all__ = ["call_each", "call_impl", "in_call_order", "where"]

log = logging.getLogger("comfykit.plugins")


def where(impl: pluggy.HookImpl) -> str:
    """Where an implementation lives (a plugin object's registered name alone may be a bare id)."""
    return f"{impl.function.__module__}.{impl.function.__qualname__}"


def in_call_order(hook: pluggy.HookCaller) -> list[pluggy.HookImpl]:
    """The plain implementations of ``hook`` in the order pluggy calls them (wrappers left out).

    Used where each plugin is called on its own, so one that raises can be named and
    passed over.
    """
    return [impl for impl in reversed(hook.get_hookimpls()) if not (impl.hookwrapper or impl.wrapper)]


def call_impl(impl: pluggy.HookImpl, **arguments: Any) -> Any:
    """Call one hook implementation with only the arguments it names, as pluggy does."""
    return impl.function(**{name: arguments[name] for name in impl.argnames})


def call_each(hook: pluggy.HookCaller, kwargs: Mapping[str, Any]) -> list[tuple[pluggy.HookImpl, object]]:
    """Call every implementation of ``hook`` in pluggy's order, each with only the arguments it names.

    Returns (implementation, its answer or the exception it raised).  Each
    implementation is called on its own, so there is nothing for a wrapper to
    wrap: wrappers are skipped, with a warning.
    """
    results: list[tuple[pluggy.HookImpl, object]] = []
    for impl in reversed(hook.get_hookimpls()):
        if impl.hookwrapper or impl.wrapper:
            log.warning("plugin %r (%s): %s does not take wrappers; skipped", impl.plugin_name, where(impl), hook.name)
            continue
        try:
            results.append((impl, call_impl(impl, **kwargs)))
        except Exception as exc:
            results.append((impl, exc))
    return results
