"""Parameter sweeps: ``seed=1..100``, ``cfg=5,7,9.5`` expanded into the cartesian product of prompts.

A sweep axis names either a template parameter (``seed``) or a node input
(``KSampler.seed``, ``3.cfg``, ``"Positive Prompt".text``); its values are an
inclusive range ``A..B`` or ``A..B..STEP`` (integers, or floats with a step), or
a comma-separated list whose items are read as JSON where they parse and as
text otherwise.  Used by the CLI's batch command and by the queue.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import attrs

from comfykit.errors import TemplateError, WorkflowError
from comfykit.workflow.edit import Update, apply_updates, parse_update
from comfykit.workflow.templates import Template, instantiate, randomize_seeds

if TYPE_CHECKING:
    import random

__all__ = ["MAX_SWEEP_POINTS", "SweepAxis", "apply_sweep_point", "expand_sweep", "parse_sweep"]

# A guard against typos such as seed=1..1000000000 filling memory with prompts.
MAX_SWEEP_POINTS = 100_000

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_RANGE = re.compile(rf"^\s*({_NUMBER})\s*\.\.\s*({_NUMBER})\s*(?:\.\.\s*({_NUMBER})\s*)?$")

_HINT = 'Write NAME=A..B, NAME=A..B..STEP or NAME=v1,v2,... e.g. seed=1..10, cfg=5,7.5, sampler=euler,"dpm 2"'


def _as_tuple(values: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(values)


@attrs.frozen
class SweepAxis:
    """One swept name and the values it takes, in order."""

    name: str
    values: tuple[Any, ...] = attrs.field(converter=_as_tuple)


def _split_name(text: str) -> tuple[str, str]:
    """``NAME=VALUES`` split at the first ``=`` outside a quoted node title."""
    start = 0
    if text.lstrip().startswith('"'):
        opening = text.index('"')
        closing = text.find('"', opening + 1)
        if closing < 0:
            raise WorkflowError(f"sweep {_short(text)!r}: unclosed quote in the node title", hint=_HINT)
        start = closing + 1
    name, sep, values = text[start:].partition("=")
    if not sep:
        raise WorkflowError(f"sweep {_short(text)!r} has no '='", hint=_HINT)
    name = (text[:start] + name).strip()
    if not name:
        raise WorkflowError(f"sweep {_short(text)!r} names nothing before '='", hint=_HINT)
    return name, values


def _split_items(text: str, spec: str) -> list[str]:
    """Split at commas that are not inside double quotes, brackets or braces."""
    items: list[str] = []
    current: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    for char in text:
        if quoted:
            current.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
            continue
        if char == '"':
            quoted = True
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth <= 0:
            items.append("".join(current))
            current = []
            continue
        current.append(char)
    if quoted:
        raise WorkflowError(f"sweep {_short(spec)!r}: unclosed quote", hint=_HINT)
    items.append("".join(current))
    return items


def _item_value(item: str, spec: str) -> Any:
    stripped = item.strip()
    if not stripped:
        raise WorkflowError(f"sweep {_short(spec)!r} has an empty value", hint=_HINT + ' (quote an empty text as "")')
    try:
        return json.loads(stripped)
    except ValueError:
        return stripped
    except RecursionError:
        raise WorkflowError(f"sweep {spec[:60]!r}: a value is nested too deeply", hint=_HINT) from None


def _short(spec: str) -> str:
    """``spec`` as an error may quote it: a 5,000-digit bound is shown by its start."""
    return spec if len(spec) <= 80 else spec[:77] + "..."


def _range(start_text: str, end_text: str, step_text: str | None, spec: str) -> list[Any]:
    texts = [start_text, end_text] + ([step_text] if step_text else [])
    integral = all(re.fullmatch(r"[-+]?\d+", t) for t in texts)
    try:
        start, end = Decimal(start_text), Decimal(end_text)
        step = Decimal(step_text) if step_text else None
    except InvalidOperation:
        raise WorkflowError(f"sweep {_short(spec)!r}: the range bounds are not numbers", hint=_HINT) from None
    if step is None:
        if not integral:
            raise WorkflowError(f"sweep {_short(spec)!r}: a range of decimals needs a step",
                                hint="Write e.g. denoise=0.5..1.0..0.25")
        step = Decimal(1) if end >= start else Decimal(-1)
    if step == 0:
        raise WorkflowError(f"sweep {_short(spec)!r}: the step is zero", hint=_HINT)
    if (end - start) * step < 0:
        raise WorkflowError(f"sweep {_short(spec)!r}: the step never reaches the end from the start",
                            hint="Use a negative step to count down, e.g. seed=10..1..-1")
    try:
        span = (end - start) / step
    except ArithmeticError:  # decimal overflow on absurd exponents
        raise WorkflowError(f"sweep {_short(spec)!r}: the range is too large", hint=_HINT) from None
    # Compared as a Decimal: int() of a 1e99999-wide span would be a 100,000-digit number.
    if span + 1 > MAX_SWEEP_POINTS:
        shown = f"{int(span) + 1} values" if span < 10**12 else "more than a trillion values"
        raise WorkflowError(f"sweep {_short(spec)!r} has {shown}, more than {MAX_SWEEP_POINTS}",
                            hint="Use a larger step or a shorter range.")
    count = int(span) + 1
    # Decimal arithmetic, so 0.1..0.3..0.1 gives exactly 0.1, 0.2, 0.3 rather than 0.30000000000000004.
    values = [start + step * i for i in range(count)]
    if integral:
        return [int(v) for v in values]
    return [float(v) for v in values]


def parse_sweep(text: str) -> SweepAxis:
    """Parse ``seed=1..100``, ``seed=1..100..10``, ``denoise=0.5..1.0..0.25``, ``cfg=5,7,9.5`` or ``sampler=euler,"dpm 2"``."""
    name, raw = _split_name(text)
    found = _RANGE.match(raw)
    if found:
        return SweepAxis(name, _range(found.group(1), found.group(2), found.group(3), text))
    if ".." in raw and not raw.strip().startswith(('"', "[", "{")) and "," not in raw:
        raise WorkflowError(f"sweep {_short(text)!r} is not a range of numbers", hint=_HINT)
    return SweepAxis(name, [_item_value(item, text) for item in _split_items(raw, text)])


def expand_sweep(axes: Sequence[SweepAxis | str]) -> list[dict[str, Any]]:
    """Every combination of the axes' values, the last axis varying fastest; no axes gives ``[{}]``."""
    parsed = [parse_sweep(axis) if isinstance(axis, str) else axis for axis in axes]
    names = [axis.name for axis in parsed]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise WorkflowError(f"sweep names {', '.join(map(repr, repeated))} more than once",
                            hint="Give each name one sweep; list all its values there, e.g. seed=1,2,5.")
    total = 1
    for axis in parsed:
        total *= len(axis.values)
    if total > MAX_SWEEP_POINTS:
        raise WorkflowError(f"the sweep makes {total} prompts, more than {MAX_SWEEP_POINTS}", hint="Sweep fewer values.")
    return [dict(zip(names, combination, strict=True)) for combination in itertools.product(*(a.values for a in parsed))]


def _node_update(name: str, value: Any) -> Update:
    try:
        target = parse_update(f"{name}=")
    except WorkflowError:
        raise WorkflowError(
            f"sweep name {name!r} is neither a template parameter nor a NODE.INPUT target",
            hint='Use a template parameter name, or address a node input as 3.seed, KSampler.seed or "Title".text.',
        ) from None
    return Update(node=target.node, input=target.input, value=value)


def apply_sweep_point(
    target: Template | Mapping[str, Any],
    point: Mapping[str, Any],
    *,
    values: Mapping[str, Any] | None = None,
    random_seeds: bool = False,
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """A new API graph for one sweep point.

    With a template, names that are its parameters are instantiated (together with
    ``values``, the fixed ones) and the other names are applied as ``NODE.INPUT``
    updates afterwards; with a plain workflow every name must be a ``NODE.INPUT``.
    """
    if isinstance(target, Template):
        params = {k: v for k, v in point.items() if k in target.parameters}
        merged = {**(values or {}), **params}
        graph = instantiate(target, merged, random_seeds=random_seeds, rng=rng)
        updates = [_node_update(k, v) for k, v in point.items() if k not in target.parameters]
        try:
            return apply_updates(graph, updates)
        except WorkflowError as exc:
            raise TemplateError(f"template {target.name!r}: {exc.message}", path=target.source, hint=exc.hint) from None
    if values:
        raise WorkflowError("values= only applies to templates", hint="Put node inputs in the sweep point instead.")
    graph = apply_updates(target, [_node_update(k, v) for k, v in point.items()])
    if random_seeds:
        graph = randomize_seeds(graph, keep={k for k in point}, rng=rng)
    return graph
