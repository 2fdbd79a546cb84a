"""Editing API graphs: ``NODE.INPUT=VALUE`` updates (nodes addressed by id, title or unique class), and merging.

``apply_updates`` and ``merge_workflows`` return new graphs; ``set_node_input`` is the one
in-place edit (the original tool's ``update_node_input``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

import attrs

from comfykit.errors import WorkflowError

__all__ = [
    "Update",
    "apply_updates",
    "find_node",
    "is_link",
    "merge_workflows",
    "node_address",
    "parse_update",
    "resolve_input",
    "set_node_input",
]


@attrs.frozen
class Update:
    node: str
    input: str
    value: Any


def parse_update(text: str) -> Update:
    """Parse ``3.seed=42`` or ``"Positive Prompt".text=a cat``; the value is JSON where it parses, else text."""
    # A quoted title may itself contain '=', so look for the separator after the closing quote.
    skip = text.find('"', text.find('"') + 1) + 1 if text.lstrip().startswith('"') else 0
    head, sep, raw = text[skip:].partition("=")
    target = text[:skip] + head
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
    except RecursionError:
        raise WorkflowError(f"update {text[:60]!r}...: the value is nested too deeply", hint="Write NODE.INPUT=VALUE") from None
    return Update(node=node, input=name, value=value)


def find_node(workflow: Mapping[str, Any], node: str) -> str:
    """The id of the node addressed by id, ``_meta.title``, or a class name used exactly once."""
    if node in workflow:
        return node
    titled = [nid for nid, n in workflow.items() if _title(n) == node]
    if len(titled) == 1:
        return titled[0]
    typed = [nid for nid, n in workflow.items() if isinstance(n, Mapping) and n.get("class_type") == node]
    if len(typed) == 1 and not titled:
        return typed[0]
    if len(titled) > 1 or len(typed) > 1:
        found = ", ".join(sorted(titled or typed))
        raise WorkflowError(f"{node!r} matches several nodes ({found})", hint="Address the node by its id instead.")
    raise WorkflowError(
        f"no node {node!r} (by id, title or class)", hint="See the node ids and titles with get_workflow_info()."
    )


def _title(node: Any) -> Any:
    meta = node.get("_meta") if isinstance(node, Mapping) else None
    return meta.get("title") if isinstance(meta, Mapping) else None


def _inputs_of(workflow: Mapping[str, Any], node_id: str) -> dict[str, Any]:
    """A copy of the node's inputs; a node or ``inputs`` of the wrong shape is a WorkflowError naming it."""
    node = workflow[node_id]
    if not isinstance(node, Mapping):
        raise WorkflowError(f"node {node_id} is a {type(node).__name__}, not an object", node_id=node_id,
                            hint="Each node is {\"class_type\": ..., \"inputs\": {...}}.")
    inputs = node.get("inputs", {})
    if not isinstance(inputs, Mapping):
        raise WorkflowError(f"node {node_id} ({node.get('class_type')}) has inputs of type {type(inputs).__name__}, "
                            "not an object", node_id=node_id, hint="Write its inputs as {\"name\": value, ...}.")
    return dict(inputs)


def resolve_input(workflow: Mapping[str, Any], target: str) -> tuple[str, str]:
    """``NODE.INPUT`` (node by id, title or unique class) to ``(node_id, input)``; the node must have that input.

    Raises :class:`WorkflowError` naming the node's inputs when it has no such one.
    """
    update = parse_update(f"{target}=")
    node_id = find_node(workflow, update.node)
    inputs = workflow[node_id].get("inputs") or {}
    if update.input not in inputs:
        names = ", ".join(sorted(map(str, inputs))) or "none"
        raise WorkflowError(f"node {node_id} ({workflow[node_id].get('class_type')}) has no input {update.input!r}",
                            node_id=node_id, hint=f"Its inputs are: {names}.")
    return node_id, update.input


def apply_updates(workflow: Mapping[str, Any], updates: Iterable[Update | str]) -> dict[str, Any]:
    """A new workflow with every update applied; the input workflow is left untouched."""
    result = copy.deepcopy(dict(workflow))
    for update in updates:
        parsed = parse_update(update) if isinstance(update, str) else update
        node_id = find_node(result, parsed.node)
        inputs = _inputs_of(result, node_id)
        result[node_id] = {**result[node_id], "inputs": {**inputs, parsed.input: parsed.value}}
    return result


def set_node_input(workflow: MutableMapping[str, Any], node: str, input_name: str, value: Any) -> MutableMapping[str, Any]:
    """Set one input of ``workflow`` in place and return ``workflow``; ``node`` is an id, a title or a unique class.

    The node's entry is replaced by an updated copy instead of being changed, so a shallow
    copy of the workflow taken before (``workflow.copy()``) keeps the old value, and a
    shallow copy changed this way leaves the graph it was copied from as it was.
    """
    node_id = find_node(workflow, str(node))
    inputs = _inputs_of(workflow, node_id)
    workflow[node_id] = {**workflow[node_id], "inputs": {**inputs, input_name: value}}
    return workflow


def node_address(workflow: Mapping[str, Any], node_id: str) -> str:
    """The most readable name :func:`find_node` resolves back to ``node_id``: its title, its unique class, or its id."""
    node = workflow[node_id]
    title = (node.get("_meta") or {}).get("title") if isinstance(node.get("_meta"), Mapping) else None
    candidates = [title] if isinstance(title, str) and title and '"' not in title else []
    candidates.append(str(node.get("class_type") or ""))
    for candidate in candidates:
        if not candidate:
            continue
        try:
            if find_node(workflow, candidate) == node_id:
                plain = candidate.replace("_", "").replace("-", "").isalnum()
                return candidate if plain else f'"{candidate}"'
        except WorkflowError:
            continue  # ambiguous: try the next way of naming it
    return node_id


def is_link(value: Any) -> bool:
    """Whether an input value is a link ``[source_node_id, output_index]`` rather than a literal."""
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def _renamed(workflow: Mapping[str, Any], prefix: str | None) -> dict[str, Any]:
    if not prefix:
        return copy.deepcopy(dict(workflow))
    result: dict[str, Any] = {}
    for node_id, node in workflow.items():
        copied = copy.deepcopy(node)
        inputs = copied.get("inputs") if isinstance(copied, dict) else None
        if isinstance(inputs, dict):
            for name, value in inputs.items():
                if is_link(value):
                    # Links stay in their own graph's namespace, so even dangling ones keep meaning the same node.
                    inputs[name] = [f"{prefix}{value[0]}", value[1]]
        result[f"{prefix}{node_id}"] = copied
    return result


def merge_workflows(
    first: Mapping[str, Any], second: Mapping[str, Any], node_id_prefix: str | None = None, *,
    prefix_a: str | None = None, prefix_b: str | None = "b_",
) -> dict[str, Any]:
    """One graph holding both workflows; node ids are prefixed (and every link rewritten to match).

    By default only the second graph's ids get ``b_``; ``node_id_prefix`` (the original
    tool's third argument) is that prefix under its old name and wins over ``prefix_b``.
    Ids that still collide raise :class:`WorkflowError`.  Neither input is modified.
    """
    if node_id_prefix is not None:
        prefix_b = node_id_prefix
    a = _renamed(first, prefix_a)
    b = _renamed(second, prefix_b)
    clashes = sorted(set(a) & set(b))
    if clashes:
        shown = ", ".join(clashes[:10]) + (f" and {len(clashes) - 10} more" if len(clashes) > 10 else "")
        raise WorkflowError(
            f"cannot merge: both workflows have node id(s) {shown}",
            hint="Pass prefix_b= (and/or prefix_a=) so the ids differ, e.g. prefix_b='b_'.",
        )
    return {**a, **b}
