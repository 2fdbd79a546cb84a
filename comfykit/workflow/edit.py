"""Editing API graphs: ``NODE.INPUT=VALUE`` updates, with nodes addressed by id, title or unique class."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from comfykit.errors import WorkflowError

__all__ = ["Update", "apply_updates", "find_node", "parse_update"]


@attrs.frozen
class Update:
    node: str
    input: str
    value: Any


def parse_update(text: str) -> Update:
    """Parse ``3.seed=42`` or ``"Positive Prompt".text=a cat``; the value is JSON where it parses, else text."""
    target, sep, raw = text.partition("=")
    if not sep:
        raise WorkflowError(f"update {text!r} has no '='", hint='Write NODE.INPUT=VALUE, e.g. 3.seed=42 or "Title".text=cat')
    target = target.strip()
    if target.startswith('"'):
        end = target.find('"', 1)
        if end < 0 or target[end + 1:end + 2] != ".":
            raise WorkflowError(f"update {text!r}: unclosed quote in the node title", hint='Write "Title".input=value')
        node, name = target[1:end], target[end + 2:]
    else:
        node, dot, name = target.rpartition(".")
        if not dot:
            raise WorkflowError(f"update {text!r} names no input", hint="Write NODE.INPUT=VALUE, e.g. 3.seed=42")
    if not node or not name:
        raise WorkflowError(f"update {text!r} needs both a node and an input", hint="Write NODE.INPUT=VALUE")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return Update(node=node, input=name, value=value)


def find_node(workflow: Mapping[str, Any], node: str) -> str:
    """The id of the node addressed by id, ``_meta.title``, or a class name used exactly once."""
    if node in workflow:
        return node
    titled = [nid for nid, n in workflow.items() if ((n.get("_meta") or {}).get("title")) == node]
    if len(titled) == 1:
        return titled[0]
    typed = [nid for nid, n in workflow.items() if n.get("class_type") == node]
    if len(typed) == 1 and not titled:
        return typed[0]
    if len(titled) > 1 or len(typed) > 1:
        found = ", ".join(sorted(titled or typed))
        raise WorkflowError(f"{node!r} matches several nodes ({found})", hint="Address the node by its id instead.")
    raise WorkflowError(
        f"no node {node!r} (by id, title or class)", hint="See the node ids and titles with get_workflow_info()."
    )


def apply_updates(workflow: Mapping[str, Any], updates: Iterable[Update | str]) -> dict[str, Any]:
    """A new workflow with every update applied; the input workflow is left untouched."""
    result = copy.deepcopy(dict(workflow))
    for update in updates:
        parsed = parse_update(update) if isinstance(update, str) else update
        node_id = find_node(result, parsed.node)
        result[node_id].setdefault("inputs", {})[parsed.input] = parsed.value
    return result
