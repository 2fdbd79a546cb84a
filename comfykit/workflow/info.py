"""``get_workflow_info``: what an API graph contains (nodes per class, outputs, links, the inputs worth changing).

The :class:`WorkflowInfo` record reads both ways: as attributes (``info.nodes``) and,
for scripts written for the original tool, as a read-only mapping with that tool's
keys (``info["total_nodes"]``, ``info["node_types"]``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from comfykit.workflow.edit import is_link, node_address

__all__ = ["EXPOSED_INPUTS", "WorkflowInfo", "get_workflow_info"]

# Inputs a user usually wants to change between runs; ``text`` only on text encoders.
EXPOSED_INPUTS = ("seed", "noise_seed", "steps", "cfg", "text", "width", "height", "ckpt_name", "sampler_name",
                  "scheduler", "denoise", "filename_prefix")

#: the original tool's key for each attribute that has one; the other attributes keep their own name as key
ORIGINAL_KEYS = {"total_nodes": "nodes", "node_types": "types", "output_nodes": "outputs", "connections": "edges"}


@attrs.frozen
class WorkflowInfo(Mapping[str, Any]):
    """What a workflow contains.

    ``nodes`` counts the nodes, ``classes`` maps each id to its class and ``titles`` each
    titled id to its title, ``types`` counts nodes per class, ``outputs`` lists output node
    ids, ``edges`` holds ``(source_id, output_index, target_id, input_name)`` links, and
    ``parameters`` maps the inputs worth exposing (seed, steps, cfg, prompt texts, sizes,
    checkpoint, sampler, scheduler, denoise, filename prefix), as ``NODE.INPUT`` names
    usable with ``--update``, to their current values.

    As a mapping its keys are ``total_nodes``, ``node_types``, ``output_nodes`` and
    ``connections`` (the original tool's names for ``nodes``, ``types``, ``outputs`` and
    ``edges``), then ``parameters``, ``classes`` and ``titles``; the attribute names
    are accepted as keys too.
    """

    nodes: int
    types: dict[str, int]
    outputs: list[str]
    edges: list[tuple[str, int, str, str]]
    parameters: dict[str, Any]
    classes: dict[str, str] = attrs.field(factory=dict)
    titles: dict[str, str] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The attributes as plain JSON-ready data (edges as lists)."""
        data = attrs.asdict(self)
        data["edges"] = [list(edge) for edge in self.edges]
        return data

    def __getitem__(self, key: str) -> Any:
        name = ORIGINAL_KEYS.get(key, key)
        if name in _FIELDS:
            return getattr(self, name)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(_KEYS)

    def __len__(self) -> int:
        return len(_KEYS)


_FIELDS = tuple(field.name for field in attrs.fields(WorkflowInfo))
_KEYS = (*ORIGINAL_KEYS, *(name for name in _FIELDS if name not in ORIGINAL_KEYS.values()))


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
            if is_link(value):
                edges.append((value[0], value[1], node_id, str(name)))
            elif name in EXPOSED_INPUTS and (name != "text" or "TextEncode" in class_type):
                address = address or node_address(workflow, node_id)
                parameters[f"{address}.{name}"] = copy.deepcopy(value)
    return WorkflowInfo(nodes=len(workflow), types=types, outputs=outputs, edges=edges, parameters=parameters,
                        classes=classes, titles=titles)
