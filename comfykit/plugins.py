"""The plugin manager of one client or session, and the typed facade comfykit calls hooks through.

:class:`PluginManager` wraps one :class:`pluggy.PluginManager` with one method per
hook, so callers never use the untyped ``pm.hook``.  Notifications, events, the
retry decision and the output sinks call each plugin on its own
(:mod:`comfykit.hookcalls`, :mod:`comfykit.sinks`): one plugin that raises is
logged by name and cannot change a job's fate or silence the others.  Command-name
clashes between plugins are settled by :mod:`comfykit.plugin_commands`.

Building a manager (core defaults, entry points, ``-p``, ``-p no:``) is
:mod:`comfykit.plugin_loader`, and building a session (manager and config
together) is :mod:`comfykit.session`; ``get_plugin_manager``,
``parse_plugin_options``, ``ENTRY_POINT_GROUP``, ``CORE_PLUGINS`` and
``open_session`` stay importable from here, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from comfykit import hookspecs
from comfykit.errors import PluginError
from comfykit.hookcalls import call_each, call_impl, in_call_order, where
from comfykit.plugin_commands import CommandConflict, add_plugin_commands
from comfykit.sinks import SinkResult, run_sinks

if TYPE_CHECKING:
    import click

    from comfykit.config import Config, ConfigRegistry
    from comfykit.events import Event
    from comfykit.jobs import Job
    from comfykit.outputs import OutputFile
    from comfykit.plugin_loader import CORE_PLUGINS as CORE_PLUGINS
    from comfykit.plugin_loader import ENTRY_POINT_GROUP as ENTRY_POINT_GROUP
    from comfykit.plugin_loader import get_plugin_manager as get_plugin_manager
    from comfykit.plugin_loader import parse_plugin_options as parse_plugin_options
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


@attrs.frozen
class LoadFailure:
    """A plugin that could not be loaded: its name, where it came from, and why."""

    name: str
    origin: str
    error: str


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
                call_impl(impl, registry=trial)
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
            self.record_failure(name, origin, exc)

    def record_failure(self, name: str, origin: str, exc: BaseException) -> None:
        """Record that plugin ``name`` (from ``origin``) could not be loaded; with :attr:`strict`, raise instead."""
        failure = LoadFailure(name=name, origin=origin, error=f"{type(exc).__name__}: {exc}")
        self.failures.append(failure)
        if self.strict:
            raise PluginError(
                f"plugin {name!r} ({origin}) failed to load: {failure.error}",
                plugin=name,
                hint=f"Fix or uninstall it, or disable it with `-p no:{name}`.",
            ) from exc
        log.warning("plugin %r (%s) failed to load and was skipped: %s", name, origin, failure.error)

    def configure(self, config: Config) -> None:
        self.pm.hook.comfykit_configure(config=config)

    def session_start(self, client: Client) -> None:
        self.pm.hook.comfykit_session_start(client=client)

    def session_finish(self, client: Client) -> None:
        self.pm.hook.comfykit_session_finish(client=client)

    def register_commands(self, cli: click.Group) -> list[CommandConflict]:
        """Let every plugin add its commands to ``cli``; a name already taken keeps its first owner.

        The rule is :func:`comfykit.plugin_commands.add_plugin_commands`; each clash is
        logged as a warning naming both plugins and kept in :attr:`command_conflicts`.
        """
        owners, conflicts = add_plugin_commands(self.pm.hook.comfykit_register_commands, cli, self.describe)
        self.command_owners.update(owners)
        for conflict in conflicts:
            log.warning("%s", conflict)
        self.command_conflicts.extend(conflicts)
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
        for impl in in_call_order(self.pm.hook.comfykit_handle_event):
            try:
                call_impl(impl, event=event, client=client)
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
        for impl in in_call_order(self.pm.hook.comfykit_should_retry):
            try:
                answer = call_impl(impl, job=job, error=error, attempt=attempt)
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
        for impl, outcome in call_each(getattr(self.pm.hook, hook_name), kwargs):
            if isinstance(outcome, Exception):
                log.error("plugin %r failed in %s (%s): %s", impl.plugin_name, hook_name, where(impl), outcome,
                          exc_info=outcome)

    # -- outputs ------------------------------------------------------

    def store_outputs(
        self, job: Job, outputs: Sequence[OutputFile], client: Client, *, sinks: Collection[str] | None = None,
        durable: bool = False,
    ) -> list[SinkResult]:
        """Run every output sink in isolation (see :func:`comfykit.sinks.run_sinks`), so one broken sink cannot silence the rest.

        ``sinks`` names the plugins to run (the ``output.sinks`` config key); ``None`` runs all.
        ``durable``: what they store must survive a power loss once they return.
        """
        return run_sinks(self.pm.hook.comfykit_store_outputs, job, outputs, client, sinks=sinks, durable=durable)



#: names that moved to :mod:`comfykit.plugin_loader` and :mod:`comfykit.session`, still importable from here
_MOVED = {
    "CORE_PLUGINS": "comfykit.plugin_loader",
    "ENTRY_POINT_GROUP": "comfykit.plugin_loader",
    "get_plugin_manager": "comfykit.plugin_loader",
    "parse_plugin_options": "comfykit.plugin_loader",
    "open_session": "comfykit.session",
}


def __getattr__(name: str) -> Any:
    # Imported on first use: both modules import this one, so importing them here would be a circle.
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
