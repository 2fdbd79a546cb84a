"""Prompt validation as ComfyUI's ``POST /prompt`` does it, with the recorded error shapes of both versions.

``check_prompt`` answers with the HTTP status and body the real server would send for a
graph: 400 with ``error`` + ``node_errors``, 200 (maybe with ``node_errors`` for outputs
that were dropped), or 500 where the real server crashes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from comfykit.testing.files import PathEscape, SimFiles

__all__ = ["UUID_RE", "PromptCheck", "check_prompt", "input_spec", "output_types"]

#: a prompt id or job id as ComfyUI 0.33 accepts it: a canonical lowercase hyphenated UUID
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

#: ComfyUI's traceback lines are kept in the recordings with the source elided; we answer alike.
_TRACEBACK = [
    '  File "COMFYUI/execution.py", line 808, in validate_inputs\n    <source line elided>\n',
    '  File "COMFYUI/execution.py", line 788, in validate_inputs\n    <source line elided>\n',
]


@attrs.frozen
class PromptCheck:
    status: int
    body: dict[str, Any] | None
    node_errors: dict[str, Any]
    outputs_to_execute: list[str]


def _error(kind: str, message: str, details: str = "", extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": dict(extra or {})}


def _reject(error: dict[str, Any], node_errors: dict[str, Any] | None = None) -> PromptCheck:
    return PromptCheck(400, {"error": error, "node_errors": node_errors or {}}, node_errors or {}, [])


_CRASH = PromptCheck(500, None, {}, [])


def input_spec(entry: Mapping[str, Any], name: str) -> list[Any] | None:
    for section in ("required", "optional"):
        spec = entry.get("input", {}).get(section, {}).get(name)
        if spec is not None:
            return list(spec)
    return None


def output_types(entry: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(t) for t in entry.get("output", []))


def _combo_options(spec: list[Any]) -> list[Any] | None:
    if spec and isinstance(spec[0], list):
        return list(spec[0])
    if spec and spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], Mapping):
        return list(spec[1].get("options", []))
    return None


class _Validator:
    def __init__(self, prompt: Mapping[str, Any], object_info: Mapping[str, Any], files: SimFiles) -> None:
        self.prompt = prompt
        self.object_info = object_info
        self.files = files
        self.results: dict[str, tuple[bool, list[dict[str, Any]]]] = {}

    def node(self, node_id: str) -> tuple[bool, list[dict[str, Any]]]:
        """Validate ``node_id`` and everything upstream; (valid, errors of this node)."""
        if node_id in self.results:
            return self.results[node_id]
        node = self.prompt[node_id]  # KeyError for links to missing nodes: caught by the caller, as ComfyUI does
        entry = self.object_info[node["class_type"]]
        inputs = node.get("inputs", {})
        errors: list[dict[str, Any]] = []
        valid = True
        for name in entry.get("input", {}).get("required", {}):
            if name not in inputs:
                errors.append(_error("required_input_missing", "Required input is missing", name, {"input_name": name}))
                valid = False
        for name, value in inputs.items():
            spec = input_spec(entry, name)
            if spec is None:
                continue
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                ok, link_errors = self._link(node_id, name, spec, value)
                errors += link_errors
                valid = valid and ok
                continue
            problem = self._widget(node["class_type"], name, spec, value)
            if problem is not None:
                errors.append(problem)
                valid = False
        self.results[node_id] = (valid, errors)
        return valid, errors

    def _link(self, node_id: str, name: str, spec: list[Any], link: list[Any]) -> tuple[bool, list[dict[str, Any]]]:
        source_id, index = link
        # A missing node or output index raises out of this node, as in ComfyUI: the
        # node that linked here records it (see the except clause below).
        source = self.prompt[source_id]
        received = output_types(self.object_info[source["class_type"]])[index]
        input_type = spec[0] if isinstance(spec[0], str) else "COMBO"
        if not _types_match(received, input_type):
            details = f"{name}, received_type({received}) mismatch input_type({input_type})"
            extra = {"input_name": name, "input_config": spec, "received_type": received, "linked_node": link}
            return False, [_error("return_type_mismatch", "Return type mismatch between linked nodes", details, extra)]
        try:
            ok, _ = self.node(source_id)
        except (KeyError, IndexError, TypeError) as exc:
            text = repr(exc.args[0]) if isinstance(exc, KeyError) else str(exc)
            extra = {
                "input_name": name,
                "input_config": spec,
                "exception_message": text,
                "exception_type": type(exc).__name__,
                "traceback": list(_TRACEBACK),
                "linked_node": link,
            }
            error = _error("exception_during_inner_validation", "Exception when validating inner node", text, extra)
            self.inner_failures.setdefault(str(source_id), []).append(error)
            self.results[str(source_id)] = (False, [])
            return False, []
        return ok, []

    inner_failures: dict[str, list[dict[str, Any]]]

    def _widget(self, class_type: str, name: str, spec: list[Any], value: Any) -> dict[str, Any] | None:
        kind = spec[0] if isinstance(spec[0], str) else None
        options = spec[1] if len(spec) > 1 and isinstance(spec[1], Mapping) else {}
        if class_type == "LoadImage" and name == "image":
            try:
                exists = self.files.input_path(str(value)).is_file()
            except PathEscape:
                exists = False
            if not exists:
                details = f"image - Invalid image file: {value}"
                return _error("custom_validation_failed", "Custom validation failed for node", details, {"input_name": name})
            return None
        if kind in ("INT", "FLOAT"):
            convert = int if kind == "INT" else float
            try:
                number = convert(value) if not isinstance(value, bool) else convert(int(value))
            except (TypeError, ValueError) as exc:
                details = f"{name}, {value}, {exc}"
                extra = {"input_name": name, "input_config": spec, "received_value": value, "exception_message": str(exc)}
                return _error("invalid_input_type", f"Failed to convert an input value to a {kind} value", details, extra)
            extra = {"input_name": name, "input_config": spec, "received_value": number}
            if "min" in options and number < options["min"]:
                message = f"Value {number} smaller than min of {options['min']}"
                return _error("value_smaller_than_min", message, name, extra)
            if "max" in options and number > options["max"]:
                message = f"Value {number} bigger than max of {options['max']}"
                return _error("value_bigger_than_max", message, name, extra)
            return None
        combo = _combo_options(spec)
        if combo is not None and value not in combo:
            details = f"{name}: '{value}' not in {combo}"
            extra = {"input_name": name, "input_config": spec, "received_value": value}
            return _error("value_not_in_list", "Value not in list", details, extra)
        return None


def _types_match(received: str, expected: str) -> bool:
    if "*" in (received, expected) or expected == "COMBO":
        return True
    return bool(set(received.split(",")) & set(expected.split(",")))


def _find_cycle(prompt: Mapping[str, Any], start: str) -> list[str] | None:
    path: list[str] = []
    on_path: set[str] = set()
    done: set[str] = set()

    def visit(node_id: str) -> list[str] | None:
        if node_id in on_path:
            return [*path[path.index(node_id):], node_id]
        if node_id in done or node_id not in prompt:
            return None
        on_path.add(node_id)
        path.append(node_id)
        for value in prompt[node_id].get("inputs", {}).values():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                found = visit(value[0])
                if found:
                    return found
        path.pop()
        on_path.discard(node_id)
        done.add(node_id)
        return None

    return visit(start)


def check_prompt(
    prompt: Any,
    object_info: Mapping[str, Any],
    *,
    version: str,
    partial_targets: list[Any] | None,
    files: SimFiles,
) -> PromptCheck:
    """Validate an API graph like the given ComfyUI version; see the module docstring."""
    new = version != "0.3.64"
    if not isinstance(prompt, Mapping):
        return _CRASH
    for node_id, node in prompt.items():
        if not isinstance(node, Mapping):
            if new:
                return _CRASH
            details = f"Node ID '#{node_id}'"
            return _reject(_error("invalid_prompt", "Cannot execute because a node is missing the class_type property.", details))
        class_type = node.get("class_type")
        details = f"Node ID '#{node_id}'"
        if class_type is None:
            if new:
                message = f"Node 'ID #{node_id}' has no class_type. The workflow may be corrupted or a custom node is missing."
                extra = {"node_id": str(node_id), "class_type": None, "node_title": None}
                return _reject(_error("missing_node_type", message, details, extra))
            return _reject(_error("invalid_prompt", "Cannot execute because a node is missing the class_type property.", details))
        if class_type not in object_info:
            if new:
                title = (node.get("_meta") or {}).get("title") or class_type
                message = f"Node '{class_type}' not found. The custom node may not be installed."
                extra = {"node_id": str(node_id), "class_type": class_type, "node_title": title}
                return _reject(_error("missing_node_type", message, details, extra))
            return _reject(_error("invalid_prompt", f"Cannot execute because node {class_type} does not exist.", details))

    outputs = [nid for nid, node in prompt.items() if object_info[node["class_type"]].get("output_node")]
    if partial_targets is not None:
        targets = {str(t) for t in partial_targets}
        outputs = [nid for nid in outputs if nid in targets]
    if not outputs:
        return _reject(_error("prompt_no_outputs", "Prompt has no outputs"))

    if new:
        for output in outputs:
            cycle = _find_cycle(prompt, output)
            if cycle:
                text = " -> ".join(f"{nid} ({prompt[nid]['class_type']})" for nid in cycle)
                members = list(dict.fromkeys(cycle))
                cycle_errors: dict[str, Any] = {
                    nid: {
                        "errors": [
                            _error("dependency_cycle", "Dependency cycle detected", text,
                                   {"node_id": nid, "cycle_nodes": members})
                        ],
                        "dependent_outputs": [output],
                        "class_type": prompt[nid]["class_type"],
                    }
                    for nid in members
                }
                error = _error("prompt_outputs_failed_validation", "Prompt outputs failed validation",
                               f"Dependency cycle detected: {text}")
                return _reject(error, cycle_errors)

    validator = _Validator(prompt, object_info, files)
    validator.inner_failures = {}
    collected: dict[str, Any] = {}
    good: list[str] = []
    for output in outputs:
        try:
            ok, _ = validator.node(output)
        except (KeyError, IndexError, TypeError) as exc:
            ok = False
            failure_info: dict[str, Any] = {"exception_type": type(exc).__name__, "traceback": list(_TRACEBACK)}
            validator.inner_failures.setdefault(output, []).append(
                _error("exception_during_validation", "Exception when validating node", str(exc), failure_info)
            )
        if ok:
            good.append(output)
            continue
        failing = {nid: errs for nid, (valid, errs) in validator.results.items() if errs}
        for nid, errs in validator.inner_failures.items():
            failing.setdefault(nid, [])
            failing[nid] = failing[nid] + [e for e in errs if e not in failing[nid]]
        for nid, errs in failing.items():
            if not _upstream_of(prompt, output, nid):
                continue
            entry = collected.setdefault(
                nid, {"errors": errs, "dependent_outputs": [], "class_type": prompt[nid]["class_type"]}
            )
            if output not in entry["dependent_outputs"]:
                entry["dependent_outputs"].append(output)
    if not good:
        return _reject(_error("prompt_outputs_failed_validation", "Prompt outputs failed validation"), collected)
    return PromptCheck(200, None, collected, good)


def _upstream_of(prompt: Mapping[str, Any], output: str, node_id: str) -> bool:
    seen: set[str] = set()
    stack = [output]
    while stack:
        current = stack.pop()
        if current == node_id:
            return True
        if current in seen or current not in prompt:
            continue
        seen.add(current)
        for value in prompt[current].get("inputs", {}).values():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                stack.append(value[0])
    return False
