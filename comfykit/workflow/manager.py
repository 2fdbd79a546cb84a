"""``WorkflowManager`` and the module-level loading and validation functions.

Keeps the original tool's method names (load_workflow, save_workflow,
validate_workflow, register_workflow, get_workflow, update_node_input,
find_nodes_by_type, create_template, instantiate_template, get_workflow_info,
merge_workflows) on top of the workflow hooks and the edit/template modules.
"""

from __future__ import annotations

import copy
import difflib
import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, overload

import attrs

from comfykit.errors import ConversionError, WorkflowError, WorkflowLoadError, WorkflowValidationError
from comfykit.plugins import PluginManager, open_session
from comfykit.workflow.edit import Update, apply_updates, find_node, merge_workflows, node_address
from comfykit.workflow.loader import dump_yaml, is_ui_workflow
from comfykit.workflow.problems import Problem
from comfykit.workflow.templates import Template, create_template, find_template, instantiate, list_templates, save_template

__all__ = [
    "WorkflowInfo",
    "WorkflowManager",
    "check_workflow",
    "get_workflow_info",
    "load_workflow",
    "read_object_info",
    "validate_before_send",
    "validate_workflow",
]


def _manager(plugin_manager: PluginManager | None, client: Any) -> PluginManager:
    if plugin_manager is not None:
        return plugin_manager
    if client is not None and getattr(client, "plugin_manager", None) is not None:
        return client.plugin_manager
    # No client: a session of its own, so installed validators and readers take part too.
    return open_session()[0]


def _object_info(client: Any, object_info: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
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
    object_info: Mapping[str, Any] | None = None,
    plugin_manager: PluginManager | None = None,
    frontend_version: str | None = None,
) -> dict[str, Any]:
    """Load a workflow file (or data) as a new API-format graph ``{node_id: {class_type, inputs}}``.

    An editor (UI-format) workflow is converted with ``object_info`` or the client's, following
    the rules of ``frontend_version``, else of the frontend the client's server expects, else
    the newest known (with a warning saying so).
    """
    manager = _manager(plugin_manager, client)
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
    info = _object_info(client, object_info) if is_ui else object_info
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
    object_info: Mapping[str, Any] | None = None,
    plugin_manager: PluginManager | None = None,
) -> list[Problem]:
    """Every problem every validator finds (errors and warnings), as :class:`Problem` records."""
    return _manager(plugin_manager, client).validate_workflow(workflow, _object_info(client, object_info))


@overload
def validate_workflow(
    workflow: Mapping[str, Any], *, client: Any = ..., object_info: Mapping[str, Any] | None = ...,
    plugin_manager: PluginManager | None = ..., detailed: Literal[True] = ...,
) -> tuple[bool, list[Problem]]: ...


@overload
def validate_workflow(
    workflow: Mapping[str, Any], *, client: Any = ..., object_info: Mapping[str, Any] | None = ...,
    plugin_manager: PluginManager | None = ..., detailed: Literal[False],
) -> tuple[bool, list[str]]: ...


def validate_workflow(
    workflow: Mapping[str, Any],
    *,
    client: Any = None,
    object_info: Mapping[str, Any] | None = None,
    plugin_manager: PluginManager | None = None,
    detailed: bool = True,
) -> tuple[bool, list[Problem]] | tuple[bool, list[str]]:
    """Run every validator; ``(is_valid, problems)`` where only errors (not warnings) make it invalid.

    Schema checks need ``object_info`` or a ``client`` (whose ``/object_info`` is cached);
    without either only the structural checks run.  Problems print as readable lines
    (``str(problem)``); ``detailed=False`` returns those lines instead of the records.
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


def read_object_info(path: str | Path) -> dict[str, Any]:
    """A saved ``/object_info`` answer (JSON, optionally gzipped) for offline schema checks."""
    import gzip

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


# Saved catalogues read by validate-before-send, by (path, mtime, size): a batch checks every job
# against the same file, which is several megabytes of JSON to parse.
_SAVED_CATALOGUES: dict[tuple[str, int, int], dict[str, Any]] = {}


def _saved_object_info(path: str | Path) -> dict[str, Any]:
    file = Path(path)
    try:
        stat = file.stat()
    except OSError:
        return read_object_info(file)  # raises the readable error
    key = (str(file.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _SAVED_CATALOGUES:
        _SAVED_CATALOGUES.clear()  # one catalogue at a time is what a run uses
        _SAVED_CATALOGUES[key] = read_object_info(file)
    return _SAVED_CATALOGUES[key]


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
    info = object_info
    saved = _setting(settings, "workflow.object_info", None)
    if info is None and saved:
        info = _saved_object_info(saved)
    problems = check_workflow(workflow, client=client if info is None else None, object_info=info,
                              plugin_manager=plugin_manager or getattr(client, "plugin_manager", None))
    errors = [p for p in problems if p.is_error]
    if errors:
        raise WorkflowValidationError(
            f"the workflow has {len(errors)} error{'s' if len(errors) > 1 else ''}; it was not sent", problems=errors,
            path=path,
        )
    return problems


# Inputs a user usually wants to change between runs; ``text`` only on text encoders.
EXPOSED_INPUTS = ("seed", "noise_seed", "steps", "cfg", "text", "width", "height", "ckpt_name", "sampler_name",
                  "scheduler", "denoise", "filename_prefix")


@attrs.frozen
class WorkflowInfo:
    """What a workflow contains.

    ``nodes`` counts the nodes, ``classes`` maps each id to its class and ``titles`` each
    titled id to its title, ``types`` counts nodes per class, ``outputs`` lists output node
    ids, ``edges`` holds ``(source_id, output_index, target_id, input_name)`` links, and
    ``parameters`` maps the inputs worth exposing (seed, steps, cfg, prompt texts, sizes,
    checkpoint, sampler, scheduler, denoise, filename prefix), as ``NODE.INPUT`` names
    usable with ``--update``, to their current values.
    """

    nodes: int
    types: dict[str, int]
    outputs: list[str]
    edges: list[tuple[str, int, str, str]]
    parameters: dict[str, Any]
    classes: dict[str, str] = attrs.field(factory=dict)
    titles: dict[str, str] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["edges"] = [list(edge) for edge in self.edges]
        return data


def _is_output(class_type: str, object_info: Mapping[str, Any] | None) -> bool:
    entry = (object_info or {}).get(class_type)
    if isinstance(entry, Mapping):
        return bool(entry.get("output_node"))
    return class_type.startswith(("Save", "Preview"))


def get_workflow_info(workflow: Mapping[str, Any], *, object_info: Mapping[str, Any] | None = None) -> WorkflowInfo:
    """Summarise an API graph; output nodes come from ``object_info``'s ``output_node`` when given."""
    types: dict[str, int] = {}
    classes: dict[str, str] = {}
    titles: dict[str, str] = {}
    edges: list[tuple[str, int, str, str]] = []
    parameters: dict[str, Any] = {}
    outputs: list[str] = []
    for node_id, node in workflow.items():
        if not isinstance(node, Mapping):
            continue
        class_type = str(node.get("class_type"))
        classes[node_id] = class_type
        types[class_type] = types.get(class_type, 0) + 1
        meta = node.get("_meta")
        if isinstance(meta, Mapping) and isinstance(meta.get("title"), str):
            titles[node_id] = meta["title"]
        if _is_output(class_type, object_info):
            outputs.append(node_id)
        inputs = node.get("inputs")
        address: str | None = None
        for name, value in (inputs.items() if isinstance(inputs, Mapping) else ()):
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int):
                edges.append((value[0], value[1], node_id, str(name)))
            elif name in EXPOSED_INPUTS and (name != "text" or "TextEncode" in class_type):
                address = address or node_address(workflow, node_id)
                parameters[f"{address}.{name}"] = copy.deepcopy(value)
    return WorkflowInfo(nodes=len(workflow), types=types, outputs=outputs, edges=edges, parameters=parameters,
                        classes=classes, titles=titles)


class WorkflowManager:
    """Load, check, edit, template and keep named workflows (the original tool's method names)."""

    def __init__(
        self,
        workflows_dir: str | Path = "workflows",
        *,
        templates_dir: str | Path | None = None,
        client: Any = None,
        object_info: Mapping[str, Any] | None = None,
        plugin_manager: PluginManager | None = None,
    ) -> None:
        self.workflows_dir = Path(workflows_dir)
        self.templates_dir = Path(templates_dir) if templates_dir is not None else self.workflows_dir
        self.client = client
        self.object_info = object_info
        self.plugin_manager = _manager(plugin_manager, client)
        self._registry: dict[str, dict[str, Any]] = {}
        self._templates: dict[str, Template] = {}

    def load_workflow(
        self, path: str | Path, *, client: Any = None, object_info: Mapping[str, Any] | None = None,
        frontend_version: str | None = None,
    ) -> dict[str, Any]:
        candidate = Path(path)
        if not candidate.exists() and (self.workflows_dir / candidate).exists():
            candidate = self.workflows_dir / candidate
        return load_workflow(candidate, client=client or self.client, object_info=object_info or self.object_info,
                             plugin_manager=self.plugin_manager, frontend_version=frontend_version)

    def save_workflow(self, workflow: Mapping[str, Any], path: str | Path) -> Path:
        """Write the API graph as JSON, or YAML for ``.yaml``/``.yml``; the write is atomic."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.suffix.lower() in (".yaml", ".yml"):
            text = dump_yaml(dict(workflow))
        else:
            text = json.dumps(workflow, indent=2, ensure_ascii=False) + "\n"
        temporary = target.with_name(f".{target.name}.tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(target)
        return target

    def _info(self, client: Any, object_info: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        return object_info or self.object_info or _object_info(client or self.client, None)

    def check(
        self, workflow: Mapping[str, Any], *, client: Any = None, object_info: Mapping[str, Any] | None = None
    ) -> list[Problem]:
        """Every problem as a :class:`Problem` record (node, input, severity, message, hint)."""
        return check_workflow(workflow, object_info=self._info(client, object_info), plugin_manager=self.plugin_manager)

    def validate_workflow(
        self, workflow: Mapping[str, Any], *, client: Any = None, object_info: Mapping[str, Any] | None = None,
        detailed: bool = False,
    ) -> tuple[bool, list[Any]]:
        """The original shape: ``(is_valid, messages)``; ``detailed=True`` gives :class:`Problem` records instead."""
        problems = self.check(workflow, client=client, object_info=object_info)
        ok = not any(p.is_error for p in problems)
        return (ok, list(problems)) if detailed else (ok, [str(p) for p in problems])

    def register_workflow(self, name: str, workflow: Mapping[str, Any]) -> None:
        self._registry[name] = copy.deepcopy(dict(workflow))

    def get_workflow(self, name: str) -> dict[str, Any]:
        if name in self._registry:
            return copy.deepcopy(self._registry[name])
        for suffix in (".json", ".yaml", ".yml"):
            path = self.workflows_dir / f"{name}{suffix}"
            if path.exists():
                return self.load_workflow(path)
        known = sorted({*self._registry, *(p.stem for p in self.workflows_dir.glob("*.json"))})
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"Did you mean {', '.join(close)}?" if close else f"Register it or put {name}.json in {self.workflows_dir}."
        raise WorkflowError(f"no workflow named {name!r}", hint=hint)

    def update_node_input(self, workflow: Mapping[str, Any], node: str, input_name: str, value: Any) -> dict[str, Any]:
        """A new workflow with ``node``'s input set; ``node`` is an id, a title or a unique class name."""
        return apply_updates(workflow, [Update(node=str(node), input=input_name, value=value)])

    def find_nodes_by_type(self, workflow: Mapping[str, Any], class_type: str) -> list[str]:
        return [nid for nid, node in workflow.items() if node.get("class_type") == class_type]

    def find_nodes_by_title(self, workflow: Mapping[str, Any], title: str) -> list[str]:
        return [nid for nid, node in workflow.items() if (node.get("_meta") or {}).get("title") == title]

    def find_node(self, workflow: Mapping[str, Any], node: str) -> str:
        return find_node(workflow, node)

    def node_address(self, workflow: Mapping[str, Any], node_id: str) -> str:
        return node_address(workflow, node_id)

    def get_workflow_info(self, workflow: Mapping[str, Any], *, object_info: Mapping[str, Any] | None = None) -> WorkflowInfo:
        return get_workflow_info(workflow, object_info=object_info or self.object_info)

    def merge_workflows(
        self, first: Mapping[str, Any], second: Mapping[str, Any], *, prefix_a: str | None = None,
        prefix_b: str | None = "b_",
    ) -> dict[str, Any]:
        return merge_workflows(first, second, prefix_a=prefix_a, prefix_b=prefix_b)

    # -- templates -----------------------------------------------------------------------------

    def create_template(
        self,
        workflow: Mapping[str, Any] | str,
        parameters: Mapping[str, Any],
        *,
        name: str = "template",
        description: str = "",
        register: bool = True,
    ) -> Template:
        """A checked template over ``workflow`` (a graph or a registered/saved workflow name), kept under ``name``."""
        graph = self.get_workflow(workflow) if isinstance(workflow, str) else workflow
        template = create_template(graph, parameters, name=name, description=description)
        if register:
            self._templates[name] = template
        return template

    def get_template(self, name: str | Template) -> Template:
        """A template created here, or ``<name>.template.yaml`` from ``templates_dir``."""
        if isinstance(name, Template):
            return name
        if name not in self._templates:
            self._templates[name] = find_template(name, self.templates_dir, client=self.client, object_info=self.object_info)
        return self._templates[name]

    def save_template(self, template: Template | str, path: str | Path | None = None, **options: Any) -> Path:
        return save_template(self.get_template(template), path if path is not None else self.templates_dir, **options)

    def list_templates(self) -> list[str]:
        return sorted({*self._templates, *list_templates(self.templates_dir)})

    def instantiate_template(
        self, template: Template | str, values: Mapping[str, Any] | None = None, *, random_seeds: bool = False,
        rng: random.Random | None = None,
    ) -> dict[str, Any]:
        """A new API graph from a template (object or name) and parameter values (checked)."""
        return instantiate(self.get_template(template), values, random_seeds=random_seeds, rng=rng)
