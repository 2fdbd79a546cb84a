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
``COMFYKIT_DISABLE_PLUGIN_AUTOLOAD=1`` skips third-party entry points; bundled
plugins still load.

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

    ``no:NAME`` disables NAME; anything else is a module or entry-point name to load.
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

    # -- registration -------------------------------------------------

    def register(self, plugin: object, name: str | None = None, *, origin: str = "python") -> str | None:
        """Register ``plugin`` under ``name`` unless that name is disabled."""
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
        registry.disabled_plugins |= self.disabled
        self.pm.hook.comfykit_add_config.call_historic(kwargs={"registry": registry})

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
            impl.function(**{name: staging for name in impl.argnames})
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
        self.pm.hook.comfykit_handle_event(event=event, client=client)

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
        answer = self.pm.hook.comfykit_should_retry(job=job, error=error, attempt=attempt)
        return bool(answer)

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
                results.append((impl, impl.function(**{name: kwargs[name] for name in impl.argnames})))
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
                stored = impl.function(**{name: kwargs[name] for name in impl.argnames})
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
) -> PluginManager:
    """Build a new plugin manager for one client or session.

    :param plugins: extra plugin objects (modules or instances) to register.
    :param enable: module or entry-point names to load explicitly (``-p NAME``).
    :param disable: names not to load (``-p no:NAME``); merged with ``COMFYKIT_DISABLE_PLUGINS``.
    :param autoload: load third-party entry points; default: on unless
        ``COMFYKIT_DISABLE_PLUGIN_AUTOLOAD`` is set.
    :param strict: raise :class:`PluginError` when a plugin fails to load
        instead of reporting it and going on.
    """
    manager = PluginManager()
    manager.disabled = set(disable) | set(_env_list("COMFYKIT_DISABLE_PLUGINS"))
    for essential in CORE_PLUGINS:
        manager.disabled.discard(essential)
    if autoload is None:
        autoload = not _truthy_env("COMFYKIT_DISABLE_PLUGIN_AUTOLOAD")

    for name, module_name in CORE_PLUGINS.items():
        manager.register(_load_module(module_name), name, origin="core")
    _register_entry_points(manager, autoload=autoload, strict=strict)
    for name in enable:
        if name in manager.disabled or manager.is_registered(name):
            continue
        try:
            manager.register(_load_module(name), name, origin="-p")
        except Exception as exc:
            _load_failed(manager, name, "-p", exc, strict=strict)
    for plugin in plugins:
        manager.register(plugin, origin="python")

    manager.check_pending()
    return manager


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


def _register_entry_points(manager: PluginManager, *, autoload: bool, strict: bool) -> None:
    """Register the ``comfykit`` entry points: the bundled ones always, third-party ones with ``autoload``."""
    # Bundled plugins first, so they own their command names and hook order does not depend on
    # the order distributions happen to be found in.
    entry_points = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: not _is_bundled(ep))
    for entry_point in entry_points:
        bundled = _is_bundled(entry_point)
        if not bundled and not autoload:
            continue
        if entry_point.name in manager.disabled:
            manager.pm.set_blocked(entry_point.name)
            continue
        if manager.is_registered(entry_point.name):
            continue
        dist_name = entry_point.dist.name if entry_point.dist is not None else "?"
        origin = "bundled" if bundled else f"entry point of {dist_name}"
        try:
            plugin = entry_point.load()
        except Exception as exc:
            _load_failed(manager, entry_point.name, origin, exc, strict=strict)
            continue
        manager.register(plugin, entry_point.name, origin=origin)


def __getattr__(name: str) -> Any:
    # ``open_session`` lives in comfykit.session (which imports this module); kept importable from here.
    if name == "open_session":
        from comfykit.session import open_session

        return open_session
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
