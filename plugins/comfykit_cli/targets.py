"""How ``send``, ``batch`` and ``templates show`` turn their arguments into a workflow to run.

A workflow argument names a template when it ends in ``.template.yaml`` (or
``.template.yml``), or when it is no existing file and a template of that name is
in ``workflow.templates_dir``.  ``--set NAME=VALUE`` with a dot in ``NAME`` edits a
node input (``"Positive Prompt".text=cat``); a bare ``NAME`` is a template
parameter, and is refused with a hint when the workflow is not a template.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from comfykit_cli.options import parse_assignment
from comfykit_cli.state import get_state

if TYPE_CHECKING:
    from comfykit.workflow.edit import Update
    from comfykit.workflow.templates import Template

__all__ = [
    "TEMPLATE_SUFFIXES",
    "apply_sweep_values",
    "build_graph",
    "check_update_targets",
    "is_template_path",
    "load_target",
    "refuse_params",
    "split_sets",
    "templates_dir",
]

log = logging.getLogger("comfykit.cli")

TEMPLATE_SUFFIXES = (".template.yaml", ".template.yml")


def is_template_path(path: str | Path) -> bool:
    return str(path).endswith(TEMPLATE_SUFFIXES)


def templates_dir() -> Path:
    return Path(str(get_state().config().get("workflow.templates_dir") or "templates"))


def load_target(source: str | Path, client: Any) -> Template | dict[str, Any]:
    """A template (by ``*.template.yaml`` path, or by name when no such file exists) or an API graph."""
    from comfykit.workflow import load_workflow
    from comfykit.workflow.templates import find_template, load_template

    path = Path(source)
    if is_template_path(path):
        return load_template(path, client=client)
    if path.exists() or path.suffix.lower() in (".json", ".yaml", ".yml", ".png"):
        # A missing file with a workflow's suffix was meant as a file: say "no such file", not "no template".
        return load_workflow(path, client=client)
    return find_template(str(source), templates_dir(), client=client)


def split_sets(values: Sequence[str]) -> tuple[list[Update], dict[str, str]]:
    """``--set`` values as node updates (``NODE.INPUT=VALUE``) and template parameter values (``NAME=VALUE``)."""
    from comfykit.errors import WorkflowError
    from comfykit.workflow import parse_update

    updates: list[Update] = []
    params: dict[str, str] = {}
    for text in values:
        name, value = parse_assignment(text, "--set")
        if "." in name:
            try:
                updates.append(parse_update(text))
            except WorkflowError as exc:
                raise click.BadParameter(f"{exc.message} ({exc.hint})" if exc.hint else exc.message,
                                         param_hint="--set") from None
        else:
            params[name] = value
    return updates, params


def refuse_params(params: Mapping[str, Any], source: str | Path, option: str = "--set") -> None:
    """A usage error for template parameter names given with a workflow that is not a template."""
    if params:
        names = ", ".join(sorted(params))
        raise click.BadParameter(
            f"{names}: {source} is not a template, so it has no parameters. Name the node and the input, "
            f"e.g. \"Positive Prompt.text=cat\" or 3.seed=42, or make a template with `comfykit templates create`.",
            param_hint=option,
        )


def build_graph(
    target: Template | Mapping[str, Any],
    *,
    params: Mapping[str, Any],
    updates: Sequence[Any],
    point: Mapping[str, Any] | None = None,
    random_seeds: bool = False,
    rng: random.Random | None = None,
    source: str | Path = "the workflow",
    object_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One API graph: template values (or a plain workflow), fresh seeds, then ``updates``, then the sweep ``point``.

    Seeds are drawn before the updates and the sweep values are written, so a seed
    named explicitly always wins over a random one.  Sweep names that are template
    parameters instantiate the template; the others are node inputs (``NODE.INPUT``
    or a bare input name set on every node that has it).  With ``object_info`` an update of an
    input the node's class does not declare (a typo the server would ignore) is an error;
    without it, a warning when the node has no such input yet.
    """
    from comfykit.workflow import apply_updates
    from comfykit.workflow.sweep import apply_sweep_point
    from comfykit.workflow.templates import Template, randomize_seeds

    point = dict(point or {})
    if isinstance(target, Template):
        template_point = {k: v for k, v in point.items() if k in target.parameters}
        rest = {k: v for k, v in point.items() if k not in target.parameters}
        graph = apply_sweep_point(target, template_point, values=params, random_seeds=random_seeds, rng=rng)
    else:
        refuse_params(params, source)
        rest = point
        graph = randomize_seeds(target, rng=rng) if random_seeds else dict(target)
    check_update_targets(graph, updates, object_info)
    graph = apply_updates(graph, list(updates))
    return apply_sweep_values(graph, rest) if rest else graph


def check_update_targets(graph: Mapping[str, Any], updates: Sequence[Any], object_info: Mapping[str, Any] | None) -> None:
    """Refuse updates of inputs the node's class does not declare (catalogue known); warn when it is not known."""
    from comfykit.errors import WorkflowError
    from comfykit.workflow.edit import Update, find_node, parse_update
    from comfykit.workflow.validate import undeclared_input

    for update in updates:
        parsed = update if isinstance(update, Update) else parse_update(str(update))
        node_id = find_node(graph, parsed.node)
        node = graph[node_id]
        class_type = node.get("class_type") if isinstance(node, Mapping) else None
        entry = object_info.get(str(class_type)) if object_info is not None else None
        if isinstance(entry, Mapping):
            hint = undeclared_input(entry, parsed.input)
            if hint is not None:
                raise WorkflowError(f"--update {parsed.node}.{parsed.input}: node {node_id} ({class_type}) has no input "
                                    f"{parsed.input!r}", node_id=node_id, hint=hint)
        elif object_info is None and parsed.input not in (node.get("inputs") or {}):
            log.warning("--update %s.%s: node %s (%s) has no input %r yet (not checked: no node catalogue)",
                        parsed.node, parsed.input, node_id, class_type, parsed.input)


def apply_sweep_values(workflow: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``workflow`` with each sweep value set.

    ``NODE.INPUT`` (node by id, title or unique class) sets one input; a bare
    input name (``seed``) sets that input on every node that has it.
    """
    from comfykit.errors import WorkflowError
    from comfykit.workflow import apply_updates
    from comfykit.workflow.edit import Update

    updates: list[Update] = []
    for name, value in values.items():
        node, dot, input_name = name.rpartition(".")
        if dot and node:
            updates.append(Update(node=node.strip('"'), input=input_name, value=value))
            continue
        targets = [nid for nid, data in workflow.items() if name in (data.get("inputs") or {})]
        if not targets:
            raise WorkflowError(f"--sweep {name}: no node of this workflow has an input called {name!r}",
                                hint="Name the node too, e.g. --sweep 3.seed=1..10 or --sweep \"KSampler.cfg=5,7\".")
        updates.extend(Update(node=nid, input=name, value=value) for nid in targets)
    return apply_updates(workflow, updates)
