"""Builds the plugin manager of one client or session, and calls hooks through a typed facade.

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
entry point already loaded keeps its entry-point name.

Building a session (manager and config together) is :mod:`comfykit.session`;
``comfykit.plugins.open_session`` stays importable from here.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import attrs
import pluggy

from comfykit import hookspecs
from comfykit.errors import PluginError

if TYPE_CHECKING:
    import click

    from comfykit.config import Config, ConfigRegistry
    from comfykit.events import Event
    from comfykit.jobs import Job
    from comfykit.outputs import OutputFile, StoredOutput
    from comfykit.protocols import Client, EventSource, Queue
    from comfykit.session import open_session as open_session
    from comfykit.workflow.problems import Problem

__all__ = [
    "ENTRY_POINT_GROUP",
    "CommandConflict",
    "LoadFailure",
    "PluginManager",
    "SinkResult",
    "get_plugin_manager",
    "parse_plugin_options",
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


@attrs.frozen
class LoadFailure:
    """A plugin that could not be loaded: its name, where it came from, and why."""

    name: str
    origin: str
    error: str


@attrs.frozen
class CommandConflict:
    """A command a plugin registered under a name another plugin had already taken: it was not added."""

    command: str
    owner: str
    refused: str

    def __str__(self) -> str:
        return f"command {self.command!r} of plugin {self.refused!r} ignored: plugin {self.owner!r} registered it first"


@attrs.frozen
class SinkResult:
    """What one output sink did: what it stored, or the error it raised."""

    plugin: str
    stored: tuple[StoredOutput, ...] = ()
    error: BaseException | None = None


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


class PluginManager:
    """A typed facade over one :class:`pluggy.PluginManager`.

    Callers use one method per hook instead of the untyped ``pm.hook``; the
    raw manager is :attr:`pm` for the rare caller that needs it.
    """

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        #: plugin name -> where it came from ("core", "bundled", "entry point <dist>", "python", "-p")
        self.origins: dict[str, str] = {}
        self.disabled: set[str] = set()
        self.failures: list[LoadFailure] = []
        #: commands refused by :meth:`register_commands` because their name was taken
        self.command_conflicts: list[CommandConflict] = []
        #: command name -> the plugin that registered it (see :meth:`register_commands`)
        self.command_owners: dict[str, str] = {}
        #: plugin name -> (distribution, version) for plugins that came from an installed distribution
        self.distributions: dict[str, tuple[str, str]] = {}
        #: ``no:NAME`` values that matched no known plugin (each was warned about)
        self.unmatched_disables: list[str] = []
        #: raise instead of reporting when a plugin fails (``plugins.strict``)
        self.strict = False
        #: bundled plugins switched off: their keys stay welcome in a config file
        self.disabled_bundled: list[metadata.EntryPoint] = []
        #: plugins whose comfykit_handle_event raised already (their traceback was logged once)
        self._failing_event_plugins: set[str] = set()

    # -- registration -------------------------------------------------

    def register(self, plugin: object, name: str | None = None, *, origin: str = "python") -> str | None:
        """Register ``plugin`` under ``name`` unless that name is disabled; an object registered already keeps its name."""
        if self.pm.is_registered(plugin):
            return self.pm.get_name(plugin)
        plugin_name = name or self.pm.get_canonical_name(plugin)
        if plugin_name in self.disabled:
            self.pm.set_blocked(plugin_name)
            return None
        registered = self.pm.register(plugin, plugin_name)
        if registered is not None:
            self.origins[registered] = origin
        return registered

    def is_registered(self, name: str) -> bool:
        return self.pm.get_plugin(name) is not None

    def plugins(self) -> list[tuple[str, object]]:
        """(name, plugin object) of every registered plugin, in registration order."""
        return [(name, plugin) for name, plugin in self.pm.list_name_plugin() if plugin is not None]

    def describe(self, name: str) -> str:
        """``name`` for a person: a plugin object registered without a name also gets its class's name."""
        plugin = self.pm.get_plugin(name)
        if plugin is None or name != str(id(plugin)):
            return name
        return f"{name} ({type(plugin).__qualname__} object)"

    def hooks_of(self, name: str) -> list[str]:
        """Names of the hooks the plugin called ``name`` implements."""
        plugin = self.pm.get_plugin(name)
        if plugin is None:
            return []
        callers = self.pm.get_hookcallers(plugin) or []
        return sorted(caller.name for caller in callers)

    def check_pending(self) -> None:
        """Raise :class:`PluginError` when a plugin implements a hook that does not exist."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(str(exc), hint="Check the spelling of the hook name: see `comfykit plugins`.")

    # -- configuration and session ------------------------------------

    def add_config(self, registry: ConfigRegistry) -> None:
        """Let every plugin declare its keys in ``registry``; a plugin whose declaration raises is unloaded.

        Each plugin declares into a copy first, so a bad declaration (an unknown type, a
        key clash) leaves no half of its keys behind and becomes that plugin's load
        failure instead of every command's death (with ``strict``, a :class:`PluginError`).
        Disabled plugins' sections are remembered so the config file may keep them.
        """
        registry.disabled_plugins |= self.disabled
        registry.disabled_sections |= {name.removeprefix("comfykit_") for name in self.disabled}
        registry.disabled_keys |= self._bundled_keys_switched_off()
        for impl in self.pm.hook.comfykit_add_config.get_hookimpls():
            trial = registry.copy()
            trial.declaring = impl.plugin_name
            try:
                _call(impl, registry=trial)
            except Exception as exc:  # a plugin's mistake, whatever it is, is that plugin's load failure
                self._unload(impl.plugin_name, exc)
                continue
            trial.declaring = None
            registry.update(trial)

    def _bundled_keys_switched_off(self) -> set[str]:
        """The keys the disabled bundled plugins would declare (comfykit's own code, safe to ask)."""
        from comfykit.config import ConfigRegistry

        keys: set[str] = set()
        for entry_point in self.disabled_bundled:
            declare = getattr(entry_point.load(), "comfykit_add_config", None)
            if declare is None:
                continue
            scratch = ConfigRegistry()
            declare(registry=scratch)
            keys |= {key.dotted for key in scratch}
        return keys

    def _unload(self, name: str, exc: BaseException) -> None:
        """Take plugin ``name`` out of this manager after it broke while being set up: a load failure."""
        origin = self.origins.pop(name, "?")
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        self.pm.set_blocked(name)
        if not any(failure.name == name for failure in self.failures):
            _load_failed(self, name, origin, exc, strict=self.strict)

    def configure(self, config: Config) -> None:
        self.pm.hook.comfykit_configure(config=config)

    def session_start(self, client: Client) -> None:
        self.pm.hook.comfykit_session_start(client=client)

    def session_finish(self, client: Client) -> None:
        self.pm.hook.comfykit_session_finish(client=client)

    def register_commands(self, cli: click.Group) -> list[CommandConflict]:
        """Let every plugin add its commands to ``cli``; a name already taken keeps its first owner.

        Plugins are asked in registration order (bundled ones first), each with a
        staging group that starts with the commands registered so far, so a plugin
        may still add subcommands to another's group.  A clash is logged as a warning
        naming both plugins and kept in :attr:`command_conflicts`.
        """
        import click

        owners = {name: "?" for name in cli.commands}
        for impl in self.pm.hook.comfykit_register_commands.get_hookimpls():
            staging = click.Group(cli.name, commands=dict(cli.commands))
            _call(impl, cli=staging)
            for name, command in staging.commands.items():
                if cli.commands.get(name) is command:
                    continue
                if name in cli.commands:
                    conflict = CommandConflict(command=name, owner=owners[name], refused=self.describe(impl.plugin_name))
                    self.command_conflicts.append(conflict)
                    log.warning("%s", conflict)
                    continue
                cli.add_command(command, name)
                owners[name] = self.describe(impl.plugin_name)
                self.command_owners[name] = impl.plugin_name
        return list(self.command_conflicts)

    # -- workflows ----------------------------------------------------

    def read_workflow(self, path: Path) -> Any | None:
        return self.pm.hook.comfykit_read_workflow(path=path)

    def convert_workflow(
        self, data: Any, source: str | None, object_info: Mapping[str, Any] | None,
        frontend_version: str | None = None,
    ) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self.pm.hook.comfykit_convert_workflow(
            data=data, source=source, object_info=object_info, frontend_version=frontend_version
        )
        return result

    def validate_workflow(
        self, workflow: Mapping[str, Any], object_info: Mapping[str, Any] | None
    ) -> list[Problem]:
        problems: list[Problem] = []
        for found in self.pm.hook.comfykit_validate_workflow(workflow=workflow, object_info=object_info):
            if found:
                problems.extend(found)
        return problems

    def prepare_prompt(self, prompt: dict[str, Any], job: Job, client: Client) -> None:
        self.pm.hook.comfykit_prepare_prompt(prompt=prompt, job=job, client=client)

    # -- events -------------------------------------------------------

    def event_source(self, client: Client) -> EventSource | None:
        source: EventSource | None = self.pm.hook.comfykit_event_source(client=client)
        return source

    def handle_event(self, event: Event, client: Client) -> None:
        """Give ``event`` to every plugin; one that raises is logged by name (with its traceback the first time)."""
        for impl in _in_call_order(self.pm.hook.comfykit_handle_event):
            try:
                _call(impl, event=event, client=client)
            except Exception:
                first = impl.plugin_name not in self._failing_event_plugins
                self._failing_event_plugins.add(impl.plugin_name)
                log.log(logging.ERROR if first else logging.DEBUG,
                        "plugin %s failed in comfykit_handle_event on a %s event%s", self.describe(impl.plugin_name),
                        event.type,
                        "" if first else " again", exc_info=first)

    # -- job lifecycle ------------------------------------------------
    # Notifications: each implementation runs in isolation, so one that raises is logged with
    # its plugin's name and cannot change what happens to the job or stop the others.

    def job_submitted(self, job: Job, client: Client) -> None:
        self._notify("comfykit_job_submitted", job=job, client=client)

    def job_started(self, job: Job, client: Client) -> None:
        self._notify("comfykit_job_started", job=job, client=client)

    def job_completed(self, job: Job, client: Client) -> None:
        self._notify("comfykit_job_completed", job=job, client=client)

    def job_failed(self, job: Job, error: BaseException, client: Client | None) -> None:
        self._notify("comfykit_job_failed", job=job, error=error, client=client)

    def should_retry(self, job: Job, error: BaseException, attempt: int) -> bool:
        """The first plugin's answer (firstresult); a plugin that raises is logged by name and means no retry."""
        for impl in _in_call_order(self.pm.hook.comfykit_should_retry):
            try:
                answer = _call(impl, job=job, error=error, attempt=attempt)
            except Exception:
                log.exception("plugin %s failed in comfykit_should_retry for job %s; not retrying it",
                              self.describe(impl.plugin_name), job.job_id)
                return False
            if answer is not None:
                return bool(answer)
        return False

    def job_retrying(self, job: Job, error: BaseException, delay: float) -> None:
        self._notify("comfykit_job_retrying", job=job, error=error, delay=delay)

    def job_cancelled(self, job: Job) -> None:
        self._notify("comfykit_job_cancelled", job=job)

    def queue_empty(self, queue: Queue) -> None:
        self._notify("comfykit_queue_empty", queue=queue)

    def _notify(self, hook_name: str, **kwargs: Any) -> None:
        for impl, outcome in self._call_each(hook_name, kwargs):
            if isinstance(outcome, Exception):
                log.error("plugin %r failed in %s (%s): %s", impl.plugin_name, hook_name, _where(impl), outcome,
                          exc_info=outcome)

    def _call_each(self, hook_name: str, kwargs: Mapping[str, Any]) -> list[tuple[pluggy.HookImpl, object]]:
        """Call every implementation of ``hook_name`` in pluggy's order, each with only the arguments it names.

        Returns (implementation, its answer or the exception it raised).  Each
        implementation is called on its own, so there is nothing for a wrapper to
        wrap: wrappers are skipped, with a warning.
        """
        results: list[tuple[pluggy.HookImpl, object]] = []
        for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
            if impl.hookwrapper or impl.wrapper:
                log.warning("plugin %r (%s): %s does not take wrappers; skipped", impl.plugin_name, _where(impl), hook_name)
                continue
            try:
                results.append((impl, _call(impl, **kwargs)))
            except Exception as exc:
                results.append((impl, exc))
        return results

    # -- outputs ------------------------------------------------------

    def store_outputs(
        self, job: Job, outputs: Sequence[OutputFile], client: Client, *, sinks: Collection[str] | None = None
    ) -> list[SinkResult]:
        """Run every output sink in isolation, so one broken sink cannot silence the rest.

        ``sinks`` names the plugins to run (the ``output.sinks`` config key); ``None`` runs all.
        ``job.stored`` is extended as each sink returns, so a ``trylast`` sink sees the
        records of the others.
        """
        results: list[SinkResult] = []
        kwargs = {"job": job, "outputs": outputs, "client": client}
        for impl in reversed(self.pm.hook.comfykit_store_outputs.get_hookimpls()):
            if sinks is not None and impl.plugin_name not in sinks:
                continue
            try:
                stored = _call(impl, **kwargs)
            except Exception as exc:
                log.error("output sink %r (%s) failed for job %s: %s", impl.plugin_name, _where(impl), job.job_id, exc)
                results.append(SinkResult(plugin=impl.plugin_name, error=exc))
                continue
            records = tuple(cast("Sequence[StoredOutput]", stored or ()))
            job.stored.extend(records)
            results.append(SinkResult(plugin=impl.plugin_name, stored=records))
        return results


def _where(impl: pluggy.HookImpl) -> str:
    """Where an implementation lives (a plugin object's registered name alone may be a bare id)."""
    return f"{impl.function.__module__}.{impl.function.__qualname__}"


def _in_call_order(hook: pluggy.HookCaller) -> list[pluggy.HookImpl]:
    """The plain implementations of ``hook`` in the order pluggy calls them (wrappers left out).

    Used where each plugin is called on its own, so one that raises can be named and
    passed over.
    """
    return [impl for impl in reversed(hook.get_hookimpls()) if not (impl.hookwrapper or impl.wrapper)]


def _call(impl: pluggy.HookImpl, **arguments: Any) -> Any:
    """Call one hook implementation with only the arguments it names, as pluggy does."""
    return impl.function(**{name: arguments[name] for name in impl.argnames})


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
            _load_failed(manager, name, "-p", exc, strict=strict)
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


def _load_failed(manager: PluginManager, name: str, origin: str, exc: BaseException, *, strict: bool) -> None:
    """Record a plugin that could not be loaded; with ``strict``, raise instead of going on."""
    failure = LoadFailure(name=name, origin=origin, error=f"{type(exc).__name__}: {exc}")
    manager.failures.append(failure)
    if strict:
        raise PluginError(
            f"plugin {name!r} ({origin}) failed to load: {failure.error}",
            plugin=name,
            hint=f"Fix or uninstall it, or disable it with `-p no:{name}`.",
        ) from exc
    log.warning("plugin %r (%s) failed to load and was skipped: %s", name, origin, failure.error)


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
        _load_failed(manager, entry_point.name, origin, exc, strict=manager.strict)
        return
    if manager.register(plugin, entry_point.name, origin=origin) == entry_point.name and entry_point.dist is not None:
        manager.distributions[entry_point.name] = (entry_point.dist.name, entry_point.dist.version)


def __getattr__(name: str) -> Any:
    # ``open_session`` lives in comfykit.session (which imports this module); kept importable from here.
    if name == "open_session":
        from comfykit.session import open_session

        return open_session
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
