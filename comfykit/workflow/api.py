"""Loading and checking workflows through the plugin hooks: the module functions the rest of comfykit calls.

``load_workflow`` reads a file (or copies data) and converts it to an API graph;
``check_workflow`` and ``validate_workflow`` run every installed validator;
``validate_before_send`` is the check a job passes before ``POST /prompt``.  The node
catalogue (``/object_info``) comes from a client, a mapping, or a saved JSON file; a
saved file read before sending is parsed once per version of the file, process-wide.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, overload

from comfykit.errors import ConversionError, WorkflowLoadError, WorkflowValidationError
from comfykit.plugins import PluginManager, open_session
from comfykit.workflow.loader import is_ui_workflow
from comfykit.workflow.problems import Problem, Severity

__all__ = [
    "SCHEMA_NOT_CHECKED",
    "Catalogue",
    "check_workflow",
    "load_workflow",
    "plugin_manager_for",
    "read_object_info",
    "saved_object_info",
    "validate_before_send",
    "validate_workflow",
]

#: a node catalogue as given by a caller: the ``/object_info`` mapping, or the path of a saved copy
Catalogue = Mapping[str, Any] | str | os.PathLike[str]


def plugin_manager_for(plugin_manager: PluginManager | None, client: Any) -> PluginManager:
    """The given plugin manager, else the client's, else a session of its own (so installed plugins take part)."""
    if plugin_manager is not None:
        return plugin_manager
    if client is not None and getattr(client, "plugin_manager", None) is not None:
        return client.plugin_manager
    return open_session()[0]


def _catalogue(client: Any, object_info: Catalogue | None) -> Mapping[str, Any] | None:
    if isinstance(object_info, (str, os.PathLike)):
        return saved_object_info(object_info)
    if object_info is not None:
        return object_info
    if client is not None:
        return client.get_object_info()
    return None


def _frontend_version(client: Any, frontend_version: str | None) -> str | None:
    """The editor whose conversion rules apply: the one named, else the one the client's server expects."""
    if frontend_version is not None or client is None:
        return frontend_version
    required = getattr(client, "required_frontend_version", None)
    return required() if callable(required) else None


def load_workflow(
    source: str | Path | Mapping[str, Any],
    *,
    client: Any = None,
    object_info: Catalogue | None = None,
    plugin_manager: PluginManager | None = None,
    frontend_version: str | None = None,
) -> dict[str, Any]:
    """Load a workflow file (or data) as a new API-format graph ``{node_id: {class_type, inputs}}``.

    An editor (UI-format) workflow is converted with ``object_info`` or the client's, following
    the rules of ``frontend_version``, else of the frontend the client's server expects, else
    the newest known (with a warning saying so).
    """
    manager = plugin_manager_for(plugin_manager, client)
    if isinstance(source, Mapping):
        data: Any = copy.deepcopy(dict(source))
        where = "<memory>"
    else:
        path = Path(source)
        if not path.exists():
            raise WorkflowLoadError("no such file", path=str(path), hint="Check the path.")
        data = manager.read_workflow(path)
        where = str(path)
    is_ui = is_ui_workflow(data)
    # Only an editor workflow needs the catalogue: an API graph is never worth a /object_info request.
    info = _catalogue(client, object_info) if is_ui else _catalogue(None, object_info)
    graph = manager.convert_workflow(data, where, info, _frontend_version(client, frontend_version) if is_ui else None)
    if graph is not None:
        return graph
    if is_ui:
        raise ConversionError(
            "this is an editor (UI-format) workflow and no installed plugin converts those",
            path=where,
            hint="The bundled 'convert' plugin does: check it is not disabled (-p no:convert, plugins.disable) "
                 "and that comfykit is installed with its plugins. Or in ComfyUI use Workflow > Export (API).",
        )
    raise WorkflowLoadError(
        "not a ComfyUI workflow: expected {node_id: {class_type, inputs}} or an editor workflow",
        path=where,
        hint="Export the workflow with 'Export (API)'.",
    )


def check_workflow(
    workflow: Mapping[str, Any],
    *,
    client: Any = None,
    object_info: Catalogue | None = None,
    plugin_manager: PluginManager | None = None,
) -> list[Problem]:
    """Every problem every validator finds (errors and warnings), as :class:`Problem` records.

    Without a catalogue (no ``client``, no ``object_info``) only the checks that need
    none run, and a ``schema_not_checked`` warning says so.
    """
    manager = plugin_manager_for(plugin_manager, client)
    catalogue = _catalogue(client, object_info)
    problems = manager.validate_workflow(workflow, catalogue)
    if catalogue is None:
        problems.append(SCHEMA_NOT_CHECKED)
    return problems


#: the notice an offline check ends with: what it could not look at
SCHEMA_NOT_CHECKED = Problem(
    "schema_not_checked",
    "no node catalogue was given, so node classes, required inputs, values and link types were not checked",
    severity=Severity.WARNING,
    hint="Pass client= (a ComfyUIClient) or object_info= (the /object_info answer, or the path of a saved copy).",
)


@overload
def validate_workflow(
    workflow: Mapping[str, Any], *, client: Any = ..., object_info: Catalogue | None = ...,
    plugin_manager: PluginManager | None = ..., detailed: Literal[True] = ...,
) -> tuple[bool, list[Problem]]: ...


@overload
def validate_workflow(
    workflow: Mapping[str, Any], *, client: Any = ..., object_info: Catalogue | None = ...,
    plugin_manager: PluginManager | None = ..., detailed: Literal[False],
) -> tuple[bool, list[str]]: ...


def validate_workflow(
    workflow: Mapping[str, Any],
    *,
    client: Any = None,
    object_info: Catalogue | None = None,
    plugin_manager: PluginManager | None = None,
    detailed: bool = True,
) -> tuple[bool, list[Problem]] | tuple[bool, list[str]]:
    """Run every validator; ``(is_valid, problems)`` where only errors (not warnings) make it invalid.

    Schema checks need ``object_info`` (the mapping, or a saved JSON file) or a ``client``
    (whose ``/object_info`` is cached); without either only the structural checks run and
    the problems include a ``schema_not_checked`` warning.  Problems print as readable
    lines (``str(problem)``); ``detailed=False`` returns those lines instead of the records.
    """
    problems = check_workflow(workflow, client=client, object_info=object_info, plugin_manager=plugin_manager)
    ok = not any(p.is_error for p in problems)
    if detailed:
        return ok, problems
    return ok, [str(p) for p in problems]


def _setting(config: Any, dotted: str, default: Any) -> Any:
    """A dotted config key from a :class:`~comfykit.config.Config` or a plain (possibly nested) mapping."""
    if not isinstance(config, Mapping):
        return default
    if dotted in config:
        return config[dotted]
    section, _, key = dotted.partition(".")
    nested = config.get(section)
    return nested.get(key, default) if isinstance(nested, Mapping) else default


def read_object_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A saved ``/object_info`` answer (JSON, optionally gzipped) for offline schema checks."""
    file = Path(path)
    try:
        raw = file.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        data = json.loads(raw)
    except OSError as exc:
        raise WorkflowLoadError(f"cannot read the saved /object_info: {exc.strerror or exc}", path=str(file),
                                hint="Save one with: curl http://SERVER/object_info > object_info.json") from None
    except (ValueError, EOFError, RecursionError) as exc:
        raise WorkflowLoadError(f"the saved /object_info is not valid JSON: {exc}", path=str(file)) from None
    if not isinstance(data, dict):
        raise WorkflowLoadError("the saved /object_info is not a JSON object", path=str(file))
    return data


class _SavedCatalogues:
    """The last saved catalogue read, by (path, mtime, size): a batch checks every job against the same file.

    Several submitter threads ask at once, possibly for different files; the lock makes
    the look-up and the replacement one step, and a file is parsed outside it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[str, int, int] | None = None
        self._data: dict[str, Any] = {}

    def get(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        file = Path(path)
        try:
            stat = file.stat()
        except OSError:
            return read_object_info(file)  # raises the readable error
        key = (str(file.resolve()), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key == self._key:
                return self._data
        data = read_object_info(file)
        with self._lock:
            # One catalogue at a time is what a run uses; the most recently read one is kept.
            self._key, self._data = key, data
        return data


_SAVED = _SavedCatalogues()


def saved_object_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A saved ``/object_info`` file's content, parsed again only when the file changed."""
    return _SAVED.get(path)


def validate_before_send(
    workflow: Mapping[str, Any],
    *,
    client: Any = None,
    config: Mapping[str, Any] | None = None,
    object_info: Mapping[str, Any] | None = None,
    plugin_manager: PluginManager | None = None,
    path: str | None = None,
) -> list[Problem]:
    """The check to run before ``POST /prompt``; raises :class:`WorkflowValidationError` listing every error.

    Does nothing (returns ``[]``) when the config's ``workflow.validate_before_send`` is
    off (``config`` defaults to the client's).  Schema checks use ``object_info``, else the
    saved copy named by ``workflow.object_info``, else the client's cached ``/object_info``.
    Returns the warnings when there are no errors.
    """
    settings = config if config is not None else getattr(client, "config", None)
    if not _setting(settings, "workflow.validate_before_send", True):
        return []
    info: Catalogue | None = object_info
    saved = _setting(settings, "workflow.object_info", None)
    if info is None and saved:
        info = saved_object_info(saved)
    problems = check_workflow(workflow, client=client if info is None else None, object_info=info,
                              plugin_manager=plugin_manager or getattr(client, "plugin_manager", None))
    errors = [p for p in problems if p.is_error]
    if errors:
        raise WorkflowValidationError(
            f"the workflow has {len(errors)} error{'s' if len(errors) > 1 else ''}; it was not sent", problems=errors,
            path=path,
        )
    return problems
