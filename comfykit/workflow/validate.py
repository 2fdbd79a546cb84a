"""Core validation of API-format workflows: structure (offline) and node schemas (against ``/object_info``).

Problem codes reuse ComfyUI's error type names where one exists
(``required_input_missing``, ``value_not_in_list``, ``return_type_mismatch``...), so
a problem reported here matches what ``POST /prompt`` would answer.  Validators never
raise on odd input: every oddity is a problem.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from comfykit.workflow.edit import is_link
from comfykit.workflow.problems import Problem, Severity

__all__ = ["check_schema", "check_structure"]


def check_structure(workflow: Any) -> list[Problem]:
    """Ids, class_type, inputs, links to missing nodes or negative outputs, cycles (no catalogue needed)."""
    if not isinstance(workflow, Mapping) or not workflow:
        return [Problem("empty_workflow", "the workflow has no nodes", hint="Export it with 'Export (API)'.")]
    problems: list[Problem] = []
    for node_id, node in workflow.items():
        if not isinstance(node, Mapping):
            problems.append(Problem("invalid_node", f"node is a {type(node).__name__}, not an object", node_id=str(node_id)))
            continue
        class_type = node.get("class_type")
        if not isinstance(class_type, str) or not class_type:
            problems.append(Problem("missing_class_type", "node has no class_type", node_id=str(node_id),
                                    hint="The workflow may be corrupted; export it again."))
            continue
        inputs = node.get("inputs", {})
        if not isinstance(inputs, Mapping):
            problems.append(Problem("invalid_inputs", "inputs is not an object", node_id=str(node_id), class_type=class_type))
            continue
        for name, value in inputs.items():
            if is_link(value) and value[0] not in workflow:
                problems.append(Problem(
                    "link_to_missing_node", f"links to node {value[0]!r}, which is not in the workflow",
                    node_id=str(node_id), class_type=class_type, input_name=str(name),
                    hint="Connect the input to an existing node.",
                ))
            elif is_link(value) and value[1] < 0:
                problems.append(Problem(
                    "output_index_out_of_range", f"links to output {value[1]} of node {value[0]}; outputs count from 0",
                    node_id=str(node_id), class_type=class_type, input_name=str(name),
                    hint="Pick an existing output slot.",
                ))
    cycle = _find_cycle(workflow)
    if cycle:
        # A long cycle is shortened so that one message per node does not grow with the square of its length.
        shown = cycle if len(cycle) <= 12 else [*cycle[:6], f"... ({len(cycle) - 11} more)", *cycle[-5:]]
        path = " -> ".join(shown)
        for node_id in dict.fromkeys(cycle):
            node = workflow[node_id]
            problems.append(Problem("dependency_cycle", f"dependency cycle: {path}", node_id=node_id,
                                    class_type=node.get("class_type"), hint="Remove one of the links in the cycle."))
    return problems


def _links(workflow: Mapping[str, Any], node_id: str) -> list[str]:
    node = workflow.get(node_id)
    inputs = node.get("inputs", {}) if isinstance(node, Mapping) else {}
    if not isinstance(inputs, Mapping):
        return []
    return [value[0] for value in inputs.values() if is_link(value) and isinstance(workflow.get(value[0]), Mapping)]


def _find_cycle(workflow: Mapping[str, Any]) -> list[str] | None:
    """One dependency cycle as a path of ids, or ``None``.

    Depth-first search with an explicit stack: a long chain (thousands of nodes listed
    output first) would overflow Python's recursion limit.
    """
    done: set[str] = set()
    for root in workflow:
        root = str(root)
        if root in done or not isinstance(workflow.get(root), Mapping):
            continue
        path: list[str] = [root]
        on_path: set[str] = {root}
        pending: list[list[str]] = [_links(workflow, root)[::-1]]
        while pending:
            if not pending[-1]:
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                pending.pop()
                continue
            child = pending[-1].pop()
            if child in on_path:
                return [*path[path.index(child):], child]
            if child in done:
                continue
            path.append(child)
            on_path.add(child)
            pending.append(_links(workflow, child)[::-1])
    return None


def _spec(entry: Mapping[str, Any], name: str) -> list[Any] | None:
    for section in ("required", "optional"):
        spec = (entry.get("input") or {}).get(section, {}).get(name)
        if isinstance(spec, list) and spec:
            return spec
    return None


def undeclared_input(entry: Mapping[str, Any], name: str) -> str | None:
    """``None`` when the node class (its ``/object_info`` entry) declares input ``name``, else a hint naming close ones.

    Hidden inputs and the children of dynamic inputs (``model.steps`` below a declared
    ``model``) are declared in other ways and pass.
    """
    declared = entry.get("input") or {}
    sections = [declared.get(key) for key in ("required", "optional", "hidden")]
    known = [str(n) for section in sections if isinstance(section, Mapping) for n in section]
    if name in known or name.split(".", 1)[0] in known:
        return None
    close = difflib.get_close_matches(name, known, n=3)
    return f"Did you mean {', '.join(repr(c) for c in close)}?" if close else f"Its inputs are: {', '.join(known) or 'none'}."


def _unknown_input(entry: Mapping[str, Any], name: str, where: dict[str, Any]) -> Problem | None:
    """An input the node class does not declare: a typo the server would silently ignore."""
    hint = undeclared_input(entry, name)
    if hint is None:
        return None
    # A warning: editors export inputs their extensions add (a 3D preview's camera image, an audio
    # widget), which the server ignores; a value set by hand (--update) is checked as an error.
    return Problem("unknown_input", f"has no input {name!r} (the server would ignore it)", input_name=name, hint=hint,
                   severity=Severity.WARNING, **where)


def _options(spec: list[Any]) -> list[Any] | None:
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], Mapping):
        return list(spec[1].get("options") or [])
    return None


def check_schema(workflow: Any, object_info: Mapping[str, Any]) -> list[Problem]:
    """Classes, required inputs, types, min/max, enums and link types against the server's catalogue."""
    if not isinstance(workflow, Mapping):
        return []
    problems: list[Problem] = []
    has_output = False
    for node_id, node in workflow.items():
        if not isinstance(node, Mapping) or not isinstance(node.get("class_type"), str):
            continue
        class_type = node["class_type"]
        entry = object_info.get(class_type)
        where: dict[str, Any] = {"node_id": str(node_id), "class_type": class_type}
        if not isinstance(entry, Mapping):
            close = difflib.get_close_matches(class_type, list(object_info), n=3)
            hint = f"Did you mean {', '.join(close)}?" if close else "Install the custom node that provides it."
            problems.append(Problem("missing_node_type", f"the server has no node class {class_type!r}", hint=hint, **where))
            continue
        has_output = has_output or bool(entry.get("output_node"))
        raw_inputs = node.get("inputs")
        inputs: Mapping[str, Any] = raw_inputs if isinstance(raw_inputs, Mapping) else {}
        for name in (entry.get("input") or {}).get("required", {}):
            if name not in inputs:
                problems.append(Problem("required_input_missing", "required input is missing", input_name=name,
                                        hint="Set it with --update NODE.INPUT=VALUE.", **where))
        for name, value in inputs.items():
            spec = _spec(entry, name)
            if spec is None:
                unknown = _unknown_input(entry, str(name), where)
                if unknown is not None:
                    problems.append(unknown)
                continue
            problem = _check_value(workflow, object_info, str(name), spec, value, where)
            if problem is not None:
                problems.append(problem)
    if not has_output and not problems:
        problems.append(Problem("prompt_no_outputs", "the workflow has no output node (SaveImage, PreviewImage...)",
                                hint="Add an output node; the server refuses prompts without one."))
    return problems


def _check_value(
    workflow: Mapping[str, Any], object_info: Mapping[str, Any], name: str, spec: list[Any], value: Any,
    where: dict[str, Any],
) -> Problem | None:
    kind = spec[0] if isinstance(spec[0], str) else "COMBO"
    if is_link(value):
        source = workflow.get(value[0])
        if not isinstance(source, Mapping) or value[1] < 0:
            return None  # reported by the structural check
        outputs = (object_info.get(str(source.get("class_type"))) or {}).get("output") or []
        if value[1] >= len(outputs):
            return Problem("output_index_out_of_range",
                           f"links to output {value[1]} of node {value[0]}, which has {len(outputs)} outputs",
                           input_name=name, hint="Pick an existing output slot.", **where)
        received = str(outputs[value[1]])
        if kind != "COMBO" and "*" not in (received, kind) and not set(received.split(",")) & set(kind.split(",")):
            return Problem("return_type_mismatch", f"expects {kind} but node {value[0]} output {value[1]} is {received}",
                           input_name=name, hint=f"Connect an output of type {kind}.", **where)
        return None
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], Mapping) else {}
    if kind in ("INT", "FLOAT"):
        try:
            number = int(value) if kind == "INT" else float(value)
        except (TypeError, ValueError, OverflowError):
            return Problem("invalid_input_type", f"{value!r} is not a valid {kind}", input_name=name,
                           hint="Give a number.", **where)
        if "min" in options and number < options["min"]:
            return Problem("value_smaller_than_min", f"{number} is below the minimum {options['min']}",
                           input_name=name, hint=f"Use a value from {options['min']} to {options.get('max', '∞')}.", **where)
        if "max" in options and number > options["max"]:
            return Problem("value_bigger_than_max", f"{number} is above the maximum {options['max']}",
                           input_name=name, hint=f"Use a value from {options.get('min', '-∞')} to {options['max']}.", **where)
        if isinstance(value, bool):
            # The server converts with int()/float() and accepts it, so this is only a warning.
            return Problem("value_coerced", f"{value!r} is a boolean; the server reads it as {number}", input_name=name,
                           severity=Severity.WARNING, hint="Give a number.", **where)
        return None
    choices = _options(spec)
    if choices is not None and value not in choices and where["class_type"] != "LoadImage":
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=3)
        hint = f"Close matches: {', '.join(close)}." if close else f"The server offers {len(choices)} values."
        return Problem("value_not_in_list", f"{value!r} is not one of the server's values", input_name=name,
                       hint=hint, **where)
    if kind == "BOOLEAN" and not isinstance(value, bool):
        # The server applies bool(), so "false" (a non-empty text) silently becomes True.
        return Problem("value_coerced", f"{value!r} is not true or false; the server reads it as {bool(value)}",
                       input_name=name, severity=Severity.WARNING, hint="Give true or false (JSON booleans).", **where)
    return None
