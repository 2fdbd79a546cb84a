"""``WorkflowManager`` and the module-level loading and validation functions.

Keeps the original tool's method names (load_workflow, save_workflow,
validate_workflow, register_workflow, get_workflow, update_node_input,
find_nodes_by_type, get_workflow_info) on top of the workflow hooks.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from comfykit.errors import ConversionError, WorkflowError, WorkflowLoadError
from comfykit.plugins import PluginManager, get_plugin_manager
from comfykit.workflow.edit import Update, apply_updates, find_node
from comfykit.workflow.loader import is_ui_workflow
from comfykit.workflow.problems import Problem

__all__ = ["WorkflowInfo", "WorkflowManager", "load_workflow", "validate_workflow"]


def _manager(plugin_manager: PluginManager | None, client: Any) -> PluginManager:
    if plugin_manager is not None:
        return plugin_manager
    if client is not None and getattr(client, "plugin_manager", None) is not None:
        return client.plugin_manager
    return get_plugin_manager(autoload=False)


def _object_info(client: Any, object_info: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if object_info is not None:
        return object_info
    if client is not None:
        return client.get_object_info()
    return None


def load_workflow(
    source: str | Path | Mapping[str, Any],
    *,
    client: Any = None,
    object_info: Mapping[str, Any] | None = None,
    plugin_manager: PluginManager | None = None,
) -> dict[str, Any]:
    """Load a workflow file (or data) as a new API-format graph ``{node_id: {class_type, inputs}}``."""
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
    info = _object_info(client, object_info) if is_ui_workflow(data) else object_info
    graph = manager.convert_workflow(data, where, info)
    if graph is not None:
        return graph
    if is_ui_workflow(data):
        raise ConversionError(
            "this is an editor (UI-format) workflow and no installed converter accepted it",
            path=where,
            hint="Pass client= or object_info= so it can be converted, or in ComfyUI use Workflow > Export (API).",
        )
    raise WorkflowLoadError(
        "not a ComfyUI workflow: expected {node_id: {class_type, inputs}} or an editor workflow",
        path=where,
        hint="Export the workflow with 'Export (API)'.",
    )


def validate_workflow(
    workflow: Mapping[str, Any],
    *,
    client: Any = None,
    object_info: Mapping[str, Any] | None = None,
    plugin_manager: PluginManager | None = None,
) -> tuple[bool, list[Problem]]:
    """Run every validator; ``(is_valid, problems)`` where only errors (not warnings) make it invalid."""
    problems = _manager(plugin_manager, client).validate_workflow(workflow, _object_info(client, object_info))
    return not any(p.is_error for p in problems), problems


@attrs.frozen
class WorkflowInfo:
    """What a workflow contains: nodes, classes, output nodes, links, and inputs worth exposing."""

    nodes: int
    types: dict[str, int]
    outputs: list[str]
    edges: list[tuple[str, int, str, str]]
    parameters: list[str]


class WorkflowManager:
    """Load, check, edit and keep named workflows."""

    def __init__(
        self,
        workflows_dir: str | Path = "workflows",
        *,
        client: Any = None,
        object_info: Mapping[str, Any] | None = None,
        plugin_manager: PluginManager | None = None,
    ) -> None:
        self.workflows_dir = Path(workflows_dir)
        self.client = client
        self.object_info = object_info
        self.plugin_manager = _manager(plugin_manager, client)
        self._registry: dict[str, dict[str, Any]] = {}

    def load_workflow(
        self, path: str | Path, *, client: Any = None, object_info: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        candidate = Path(path)
        if not candidate.exists() and (self.workflows_dir / candidate).exists():
            candidate = self.workflows_dir / candidate
        return load_workflow(candidate, client=client or self.client, object_info=object_info or self.object_info,
                             plugin_manager=self.plugin_manager)

    def save_workflow(self, workflow: Mapping[str, Any], path: str | Path) -> Path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.suffix.lower() in (".yaml", ".yml"):
            text = yaml.safe_dump(dict(workflow), sort_keys=False, allow_unicode=True)
        else:
            text = json.dumps(workflow, indent=2, ensure_ascii=False) + "\n"
        temporary = target.with_name(f".{target.name}.tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(target)
        return target

    def check(
        self, workflow: Mapping[str, Any], *, client: Any = None, object_info: Mapping[str, Any] | None = None
    ) -> list[Problem]:
        return validate_workflow(workflow, client=client or self.client, object_info=object_info or self.object_info,
                                 plugin_manager=self.plugin_manager)[1]

    def validate_workflow(
        self, workflow: Mapping[str, Any], *, client: Any = None, object_info: Mapping[str, Any] | None = None
    ) -> tuple[bool, list[str]]:
        """The original shape: ``(is_valid, messages)``; see :meth:`check` for problem records."""
        problems = self.check(workflow, client=client, object_info=object_info)
        return not any(p.is_error for p in problems), [str(p) for p in problems]

    def register_workflow(self, name: str, workflow: Mapping[str, Any]) -> None:
        self._registry[name] = copy.deepcopy(dict(workflow))

    def get_workflow(self, name: str) -> dict[str, Any]:
        if name in self._registry:
            return copy.deepcopy(self._registry[name])
        for suffix in (".json", ".yaml", ".yml"):
            path = self.workflows_dir / f"{name}{suffix}"
            if path.exists():
                return self.load_workflow(path)
        raise WorkflowError(f"no workflow named {name!r}", hint=f"Register it or put {name}.json in {self.workflows_dir}.")

    def update_node_input(self, workflow: Mapping[str, Any], node: str, input_name: str, value: Any) -> dict[str, Any]:
        """A new workflow with ``node``'s input set; ``node`` is an id, a title or a unique class name."""
        return apply_updates(workflow, [Update(node=str(node), input=input_name, value=value)])

    def find_nodes_by_type(self, workflow: Mapping[str, Any], class_type: str) -> list[str]:
        return [nid for nid, node in workflow.items() if node.get("class_type") == class_type]

    def find_nodes_by_title(self, workflow: Mapping[str, Any], title: str) -> list[str]:
        return [nid for nid, node in workflow.items() if (node.get("_meta") or {}).get("title") == title]

    def find_node(self, workflow: Mapping[str, Any], node: str) -> str:
        return find_node(workflow, node)

    def get_workflow_info(self, workflow: Mapping[str, Any]) -> WorkflowInfo:
        types: dict[str, int] = {}
        edges: list[tuple[str, int, str, str]] = []
        parameters: list[str] = []
        outputs: list[str] = []
        info = self.object_info or {}
        for node_id, node in workflow.items():
            class_type = str(node.get("class_type"))
            types[class_type] = types.get(class_type, 0) + 1
            if (info.get(class_type) or {}).get("output_node") or class_type.startswith(("Save", "Preview")):
                outputs.append(node_id)
            for name, value in (node.get("inputs") or {}).items():
                if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                    edges.append((value[0], int(value[1]), node_id, name))
                else:
                    parameters.append(f"{node_id}.{name}")
        return WorkflowInfo(nodes=len(workflow), types=types, outputs=outputs, edges=edges, parameters=parameters)
