"""Workflow templates: named, typed parameters mapped onto node inputs, saved as YAML beside the workflow.

A template file ``txt2img.template.yaml`` looks like::

    name: txt2img
    description: Text to image with SD 1.5
    workflow: txt2img.json          # relative to this file, or the API graph inline
    parameters:
      prompt:
        targets: ['"Positive Prompt".text']
        type: str
        description: What to draw
      seed:
        targets: [KSampler.seed]
        type: int
        default: 0
        min: 0

A target is ``NODE.INPUT`` (or, as the original tool wrote it, ``node_id`` and
``input_name`` fields) with the node addressed as in :func:`comfykit.workflow.edit.find_node`
(id, ``_meta.title`` or a class used once).  A parameter without ``default`` is required.
:func:`instantiate` checks the values (unknown, missing, mistyped, out of range, not a
choice) and returns a new API graph; values given as text (from the command line) are
converted to the parameter's type.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import random
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from comfykit.errors import TemplateError, WorkflowError
from comfykit.parsing import load_yaml, plain_data_problem
from comfykit.paths import atomic_write
from comfykit.workflow.api import load_workflow
from comfykit.workflow.edit import resolve_input
from comfykit.workflow.loader import dump_yaml

__all__ = [
    "MISSING",
    "PARAMETER_TYPES",
    "TEMPLATE_SUFFIX",
    "Parameter",
    "Template",
    "create_template",
    "find_template",
    "instantiate",
    "list_templates",
    "load_template",
    "randomize_seeds",
    "save_template",
]

PARAMETER_TYPES = ("int", "float", "str", "bool", "choice")
TEMPLATE_SUFFIX = ".template.yaml"
SEED_INPUTS = ("seed", "noise_seed")
# Seeds stay below 2**53 so the ComfyUI editor (JavaScript numbers) shows them exactly.
SEED_LIMIT = 2**53 - 1


class _Missing:
    """The default of a required parameter (``None`` is a legitimate default)."""

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


def _targets(value: str | Iterable[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _choices(value: Iterable[Any] | None) -> tuple[Any, ...] | None:
    return None if value is None else tuple(value)


@attrs.frozen
class Parameter:
    """A named value a template user sets; it is written to every target ``NODE.INPUT``."""

    targets: tuple[str, ...] = attrs.field(converter=_targets)
    type: str = "str"
    default: Any = MISSING
    description: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = attrs.field(default=None, converter=_choices)

    @property
    def required(self) -> bool:
        return self.default is MISSING

    def to_dict(self) -> dict[str, Any]:
        """The YAML form: only the fields that differ from the defaults."""
        data: dict[str, Any] = {"targets": list(self.targets), "type": self.type}
        if not self.required:
            data["default"] = self.default
        for key in ("description", "min", "max"):
            if getattr(self, key) not in (None, ""):
                data[key] = getattr(self, key)
        if self.choices is not None:
            data["choices"] = list(self.choices)
        return data


@attrs.frozen
class Template:
    """A workflow (API graph) with named parameters; ``source`` is the file it came from, if any."""

    name: str
    workflow: dict[str, Any]
    parameters: dict[str, Parameter] = attrs.field(factory=dict)
    description: str = ""
    source: str | None = None
    workflow_file: str | None = None

    def describe(self) -> list[str]:
        """One line per parameter: name, type, default or 'required', description."""
        lines = []
        for name, param in self.parameters.items():
            kind = f"choice of {', '.join(map(str, param.choices or ()))}" if param.type == "choice" else param.type
            default = "required" if param.required else f"default {param.default!r}"
            text = f"{name} ({kind}, {default})"
            if param.description:
                text += f": {param.description}"
            lines.append(text)
        return lines


def _error(template_name: str, source: str | None, message: str, hint: str | None = None) -> TemplateError:
    return TemplateError(f"template {template_name!r}: {message}", path=source, hint=hint)


def _infer_type(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return None


def _as_parameter(workflow: Mapping[str, Any], name: str, spec: Parameter | Mapping[str, Any] | str | Iterable[str],
                  where: tuple[str, str | None]) -> Parameter:
    """Build a parameter from its record, YAML mapping, or bare target(s); bare targets take the workflow's value as default."""
    if isinstance(spec, Parameter):
        return spec
    if isinstance(spec, Mapping) and spec and set(spec) <= {"node_id", "input_name"}:
        # The original tool's whole parameter: a bare target, so the workflow's value is its default.
        spec = _original_target(dict(spec), name, where)
    if isinstance(spec, Mapping):
        data = dict(spec)
        if "target" in data:
            data["targets"] = data.pop("target")
        if "node_id" in data or "input_name" in data:
            data["targets"] = [_original_target(data, name, where)]
        unknown = set(data) - {f.name for f in attrs.fields(Parameter)}
        if unknown:
            fields = [f.name for f in attrs.fields(Parameter)]
            raise _error(*where, f"parameter {name!r} has unknown field(s) {', '.join(sorted(unknown))}",
                         hint=f"Parameter fields are: {', '.join(fields)} (and 'target' for one target).")
        if "targets" not in data:
            raise _error(*where, f"parameter {name!r} has no targets", hint="Add targets: [NODE.INPUT, ...].")
        explicit_type = "type" in data
        try:
            param = Parameter(**data)
        except (TypeError, ValueError) as exc:
            raise _error(*where, f"parameter {name!r} is malformed: {exc}") from None
        _check_fields(name, param, where)
        if explicit_type:
            return param
        current = _current_value(workflow, param.targets, name, where)
        return attrs.evolve(param, type=_inferred(current, name, where))
    if not isinstance(spec, (str, list, tuple)) or not all(isinstance(t, str) for t in _targets(spec)):
        raise _error(*where, f"parameter {name!r} must be a mapping, a target or a list of targets, not {spec!r}",
                     hint="Write targets: [NODE.INPUT, ...] and optionally type, default, min, max, choices.")
    targets = _targets(spec)
    current = _current_value(workflow, targets, name, where)
    return Parameter(targets=targets, type=_inferred(current, name, where), default=current)


def _original_target(data: dict[str, Any], name: str, where: tuple[str, str | None]) -> str:
    """The ``NODE.INPUT`` target of the original tool's ``{"node_id": "6", "input_name": "text"}`` (both keys popped)."""
    node_id, input_name = data.pop("node_id", None), data.pop("input_name", None)
    if "targets" in data or node_id is None or input_name is None:
        raise _error(*where, f"parameter {name!r} needs both node_id and input_name, and no other target",
                     hint='Write {"node_id": "6", "input_name": "text"} or targets: [6.text].')
    node = str(node_id)
    # A quoted id survives the '.' and '=' that NODE.INPUT parsing splits on (merged graphs have such ids).
    return f'"{node}".{input_name}' if any(c in node for c in '.="') and '"' not in node else f"{node}.{input_name}"


def _current_value(workflow: Mapping[str, Any], targets: tuple[str, ...], name: str, where: tuple[str, str | None]) -> Any:
    if not targets:
        raise _error(*where, f"parameter {name!r} has no targets", hint="Add targets: [NODE.INPUT, ...].")
    try:
        node_id, input_name = resolve_input(workflow, targets[0])
    except WorkflowError as exc:
        raise _error(*where, f"parameter {name!r}: target {targets[0]!r}: {exc.message}", hint=exc.hint) from None
    return workflow[node_id]["inputs"][input_name]


def _inferred(value: Any, name: str, where: tuple[str, str | None]) -> str:
    kind = _infer_type(value)
    if kind is None:
        raise _error(*where, f"parameter {name!r} targets a linked input ({value!r}), not a value",
                     hint="Templates set widget values; target an input holding a number or a text.")
    return kind


def _check_fields(name: str, param: Parameter, where: tuple[str, str | None]) -> None:
    """Each field has the kind of value it needs (a YAML file can put anything anywhere)."""
    problem = None
    if not all(isinstance(target, str) for target in param.targets):
        problem = "targets must be texts like NODE.INPUT"
    elif not isinstance(param.type, str):
        problem = f"type must be one of {', '.join(PARAMETER_TYPES)}"
    elif not isinstance(param.description, str):
        problem = "description must be a text"
    elif any(bound is not None and (isinstance(bound, bool) or not isinstance(bound, (int, float)) or bound != bound)
             for bound in (param.min, param.max)):
        problem = "min and max must be numbers"
    if problem is not None:
        raise _error(*where, f"parameter {name!r}: {problem}", hint="See the template example in the docs.")


def _check_parameter(workflow: Mapping[str, Any], name: str, param: Parameter, where: tuple[str, str | None]) -> None:
    _check_fields(name, param, where)
    if not name or "=" in name or name != name.strip():
        raise _error(*where, f"parameter name {name!r} is not usable", hint="Use a plain name such as seed or prompt.")
    if param.type not in PARAMETER_TYPES:
        close = difflib.get_close_matches(param.type, PARAMETER_TYPES, n=1)
        hint = f"Did you mean {close[0]}? " if close else ""
        raise _error(*where, f"parameter {name!r} has unknown type {param.type!r}",
                     hint=hint + f"Types are: {', '.join(PARAMETER_TYPES)}.")
    if param.type == "choice" and not param.choices:
        raise _error(*where, f"parameter {name!r} is a choice without choices", hint="Add choices: [a, b, ...].")
    if param.min is not None and param.max is not None and param.min > param.max:
        raise _error(*where, f"parameter {name!r} has min {param.min} above max {param.max}", hint="Swap them.")
    if not param.targets:
        raise _error(*where, f"parameter {name!r} has no targets", hint="Add targets: [NODE.INPUT, ...].")
    for target in param.targets:
        try:
            resolve_input(workflow, target)
        except WorkflowError as exc:
            raise _error(*where, f"parameter {name!r}: target {target!r}: {exc.message}", hint=exc.hint) from None
    if not param.required:
        _coerce(param, name, param.default, where, what="default")


def create_template(
    workflow: Mapping[str, Any],
    parameters: Mapping[str, Parameter | Mapping[str, Any] | str | Iterable[str]],
    *,
    name: str = "template",
    description: str = "",
    source: str | None = None,
    workflow_file: str | None = None,
) -> Template:
    """A checked template: every target must exist in ``workflow`` and every default must fit its parameter.

    A parameter is a :class:`Parameter`, its YAML mapping, or just its target(s), in which
    case the type and the default come from the workflow's current value.
    """
    where = (name, source)
    graph = copy.deepcopy(dict(workflow))
    params = {str(key): _as_parameter(graph, str(key), spec, where) for key, spec in parameters.items()}
    for key, param in params.items():
        _check_parameter(graph, key, param, where)
    return Template(name=name, workflow=graph, parameters=params, description=description, source=source,
                    workflow_file=workflow_file)


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _coerce(param: Parameter, name: str, value: Any, where: tuple[str, str | None], what: str = "value") -> Any:
    """The value converted to the parameter's type, or a :class:`TemplateError` saying what is wrong."""

    def wrong(message: str, hint: str) -> TemplateError:
        return _error(*where, f"parameter {name!r}: {what} {value!r} {message}", hint=hint)

    kind = param.type
    result: Any
    if kind == "choice":
        choices = param.choices or ()
        if (value in choices and not isinstance(value, bool)) or any(value is c for c in choices):
            return value
        by_text = [c for c in choices if str(c) == str(value)] if isinstance(value, (str, int, float)) else []
        if len(by_text) == 1:
            return by_text[0]
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=3)
        listed = ", ".join(map(str, choices))
        raise wrong("is not one of the choices", f"Close matches: {', '.join(close)}." if close else f"Choose from: {listed}.")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise wrong("is not true or false", "Give true or false.")
    if kind == "str":
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return json.dumps(value)  # the command line parsed it as JSON, but the user meant text
        raise wrong("is not a text", "Give a text value (quote it on the command line).")
    if kind == "int":
        if isinstance(value, bool):
            raise wrong("is not an integer", "Give a whole number such as 42.")
        if isinstance(value, int):
            result = value
        elif isinstance(value, float) and value.is_integer():
            result = int(value)
        elif isinstance(value, str):
            try:
                result = int(value.strip())
            except ValueError:
                raise wrong("is not an integer", "Give a whole number such as 42.") from None
        else:
            raise wrong("is not an integer", "Give a whole number such as 42.")
    else:  # float
        if isinstance(value, bool):
            raise wrong("is not a number", "Give a number such as 7.5.")
        if isinstance(value, (int, float)):
            result = float(value)
        elif isinstance(value, str):
            try:
                result = float(value.strip())
            except ValueError:
                raise wrong("is not a number", "Give a number such as 7.5.") from None
        else:
            raise wrong("is not a number", "Give a number such as 7.5.")
        if not math.isfinite(result):
            raise wrong("is not a finite number", "Give a number such as 7.5.")
    span = f"from {param.min if param.min is not None else '-∞'} to {param.max if param.max is not None else '∞'}"
    if param.min is not None and result < param.min:
        raise wrong(f"is below the minimum {param.min}", f"Use a value {span}.")
    if param.max is not None and result > param.max:
        raise wrong(f"is above the maximum {param.max}", f"Use a value {span}.")
    return result


def _is_seed_parameter(name: str, param: Parameter, workflow: Mapping[str, Any]) -> bool:
    if name in SEED_INPUTS:
        return True
    return param.type == "int" and all(resolve_input(workflow, t)[1] in SEED_INPUTS for t in param.targets)


def _random_seed(rng: random.Random, low: float | None = None, high: float | None = None) -> int:
    lo = max(0, math.ceil(low)) if low is not None else 0
    hi = min(SEED_LIMIT, math.floor(high)) if high is not None else SEED_LIMIT
    return rng.randint(lo, max(lo, hi))


def randomize_seeds(
    workflow: Mapping[str, Any], *, keep: Iterable[str | tuple[str, str]] = (), rng: random.Random | None = None
) -> dict[str, Any]:
    """A copy with every literal ``seed``/``noise_seed`` input given a fresh random value, except those in ``keep``.

    ``keep`` holds ``(node_id, input)`` pairs or ``NODE.INPUT`` names (names that do not
    address a node input are ignored: they may be template parameter names).
    """
    generator = rng or random.SystemRandom()
    kept: set[tuple[str, str]] = set()
    for item in keep:
        if isinstance(item, tuple):
            kept.add(item)
            continue
        try:
            kept.add(resolve_input(workflow, item))
        except WorkflowError:
            continue  # not a NODE.INPUT name, so it pins no seed
    result = copy.deepcopy(dict(workflow))
    for node_id, node in result.items():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict):
            continue
        for input_name in SEED_INPUTS:
            value = inputs.get(input_name)
            if isinstance(value, int) and not isinstance(value, bool) and (node_id, input_name) not in kept:
                inputs[input_name] = _random_seed(generator)
    return result


def instantiate(
    template: Template,
    values: Mapping[str, Any] | None = None,
    *,
    random_seeds: bool = False,
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """A new API graph with the template's parameters set from ``values`` (checked) and the defaults.

    With ``random_seeds``, every seed parameter and every ``seed``/``noise_seed`` input not
    given a value explicitly gets a fresh random number (``rng`` makes that reproducible).
    """
    where = (template.name, template.source)
    given = dict(values or {})
    unknown = [key for key in given if key not in template.parameters]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), list(template.parameters), n=3)
        known = ", ".join(template.parameters) or "none"
        hint = f"Did you mean {', '.join(close)}?" if close else f"Its parameters are: {known}."
        raise _error(*where, f"unknown parameter {key!r}", hint=hint)
    generator = rng or random.SystemRandom()
    graph = copy.deepcopy(template.workflow)
    if random_seeds:
        pinned = {resolve_input(graph, t) for key in given for t in template.parameters[key].targets}
        graph = randomize_seeds(graph, keep=pinned, rng=generator)
    missing: list[str] = []
    for key, param in template.parameters.items():
        if key in given:
            value = _coerce(param, key, given[key], where)
        elif random_seeds and _is_seed_parameter(key, param, graph):
            value = _random_seed(generator, param.min, param.max)
        elif not param.required:
            value = copy.deepcopy(param.default)
        else:
            missing.append(key)
            continue
        for target in param.targets:
            node_id, input_name = resolve_input(graph, target)
            graph[node_id]["inputs"][input_name] = copy.deepcopy(value)
    if missing:
        described = "; ".join(f"{key}: {template.parameters[key].description}" for key in missing
                              if template.parameters[key].description)
        raise _error(*where, f"missing required parameter{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}",
                     hint=f"Give {' '.join(f'{k}=...' for k in missing)}" + (f" ({described})." if described else "."))
    return graph


# --------------------------------------------------------------------------- files


def _template_path(template: Template, path: str | Path) -> Path:
    target = Path(path)
    if target.is_dir() or (not target.suffix and not target.exists()):
        return target / f"{template.name}{TEMPLATE_SUFFIX}"
    return target


def save_template(template: Template, path: str | Path, *, workflow_file: str | Path | None = None) -> Path:
    """Write ``<name>.template.yaml`` (``path`` is that file or its folder); returns the file written.

    With ``workflow_file`` (or ``template.workflow_file``) the YAML refers to the workflow by
    a path relative to the template file, and the API graph is written there when that file
    does not exist yet; otherwise the graph is stored inline.
    """
    target = _template_path(template, path)
    target.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {"name": template.name}
    if template.description:
        data["description"] = template.description
    reference = workflow_file if workflow_file is not None else template.workflow_file
    if reference is not None:
        workflow_path = Path(reference)
        if not workflow_path.is_absolute():
            workflow_path = target.parent / workflow_path
        if not workflow_path.exists():
            atomic_write(workflow_path, (json.dumps(template.workflow, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
        try:
            data["workflow"] = workflow_path.resolve().relative_to(target.parent.resolve()).as_posix()
        except ValueError:
            data["workflow"] = str(workflow_path.resolve())
    else:
        data["workflow"] = template.workflow
    data["parameters"] = {key: param.to_dict() for key, param in template.parameters.items()}
    atomic_write(target, dump_yaml(data).encode("utf-8"))
    return target


def load_template(
    path: str | Path, *, client: Any = None, object_info: Mapping[str, Any] | None = None
) -> Template:
    """Read and check a template file; a referenced UI-format workflow is converted with ``client``/``object_info``."""
    file = Path(path)
    source = str(file)
    default_name = file.name.removesuffix(TEMPLATE_SUFFIX).removesuffix(".template.yml").removesuffix(file.suffix)
    try:
        data = load_yaml(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TemplateError(f"cannot read the template: {exc.strerror or exc}", path=source,
                            hint="Check the path, or list templates with list_templates().") from None
    except yaml.YAMLError as exc:
        raise TemplateError(f"invalid YAML: {exc}", path=source) from None
    except RecursionError:
        raise TemplateError("the YAML is nested too deeply to read", path=source) from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise TemplateError(f"invalid YAML: {exc}", path=source) from None
    problem = plain_data_problem(data)
    if problem is not None:
        raise TemplateError(f"the template holds {problem}", path=source,
                            hint="A template is plain data: numbers, text, lists and mappings.")
    if not isinstance(data, Mapping):
        raise TemplateError("a template file must hold a mapping with workflow: and parameters:", path=source,
                            hint="See the example in comfykit.workflow.templates.")
    name = str(data.get("name") or default_name)
    unknown = set(data) - {"name", "description", "workflow", "parameters"}
    if unknown:
        raise _error(name, source, f"unknown key(s) {', '.join(sorted(map(str, unknown)))}",
                     hint="Template keys are: name, description, workflow, parameters.")
    reference = data.get("workflow")
    workflow_file: str | None = None
    try:
        if isinstance(reference, str):
            workflow_file = reference
            workflow = load_workflow(file.parent / reference, client=client, object_info=object_info)
        elif isinstance(reference, Mapping):
            workflow = load_workflow(reference, client=client, object_info=object_info)
        else:
            raise _error(name, source, "has no workflow",
                         hint="Add workflow: FILE.json (relative to the template) or the graph inline.")
    except TemplateError:
        raise
    except WorkflowError as exc:
        raise _error(name, source, f"its workflow cannot be loaded: {exc.message}", hint=exc.hint) from None
    parameters = data.get("parameters") or {}
    if not isinstance(parameters, Mapping):
        raise _error(name, source, "parameters must be a mapping of name to parameter", hint="See the example in the docs.")
    return create_template(workflow, parameters, name=name, description=str(data.get("description") or ""),
                           source=source, workflow_file=workflow_file)


def _templates_dir(config_or_dir: Any) -> Path:
    if isinstance(config_or_dir, (str, Path)):
        return Path(config_or_dir)
    if isinstance(config_or_dir, Mapping):
        value = config_or_dir.get("workflow.templates_dir")
        if value is None and isinstance(config_or_dir.get("workflow"), Mapping):
            value = config_or_dir["workflow"].get("templates_dir")
        return Path(value or "templates")
    raise TypeError(f"expected a config mapping or a folder, got {type(config_or_dir).__name__}")


def list_templates(directory: str | Path) -> list[str]:
    """The names of the templates (``<name>.template.yaml``) in a folder, sorted."""
    folder = Path(directory)
    if not folder.is_dir():
        return []
    names = {p.name.removesuffix(TEMPLATE_SUFFIX) for p in folder.glob(f"*{TEMPLATE_SUFFIX}")}
    names |= {p.name.removesuffix(".template.yml") for p in folder.glob("*.template.yml")}
    return sorted(names)


def find_template(
    name: str | Path, config_or_dir: Any = "templates", *, client: Any = None, object_info: Mapping[str, Any] | None = None
) -> Template:
    """Load a template by path, or by name from the config's ``workflow.templates_dir`` (or the folder given)."""
    direct = Path(name)
    if direct.suffix in (".yaml", ".yml") and direct.is_file():
        return load_template(direct, client=client, object_info=object_info)
    folder = _templates_dir(config_or_dir)
    for suffix in (TEMPLATE_SUFFIX, ".template.yml"):
        candidate = folder / f"{name}{suffix}"
        if candidate.is_file():
            return load_template(candidate, client=client, object_info=object_info)
    available = list_templates(folder)
    close = difflib.get_close_matches(str(name), available, n=3)
    if close:
        hint = f"Did you mean {', '.join(close)}?"
    elif available:
        hint = f"Templates in {folder}: {', '.join(available)}."
    else:
        hint = f"There are no templates in {folder}; set workflow.templates_dir or give a path."
    raise TemplateError(f"no template named {str(name)!r} in {folder}", hint=hint)
