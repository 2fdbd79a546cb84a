"""``--sweep NAME=VALUES`` for ``comfykit batch``: parse value lists and ranges, expand them to combinations.

A stand-in until ``comfykit.workflow`` offers the same (``parse_sweep`` /
``expand_sweep``); the batch command only needs these two functions.

Values: ``1..100`` (integers, both ends included), ``0.5..2:0.5`` (with a
step), ``5,7,9`` (a list; each item is JSON where it parses, else text),
``["a, b", "c"]`` (a JSON list, for texts holding commas), or one value.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from comfykit.errors import WorkflowError

__all__ = ["MAX_SWEEP_JOBS", "expand_sweep", "parse_sweep"]

#: More combinations than this is almost certainly a typo (1..1000000); refused with a hint.
MAX_SWEEP_JOBS = 1_000_000

_RANGE = re.compile(r"^\s*(-?[\d.]+)\s*\.\.\s*(-?[\d.]+)\s*(?::\s*(-?[\d.]+)\s*)?$")
#: Starts like a range (a number then ``..``) but did not parse as one: a typo, not a text value.
_RANGE_LIKE = re.compile(r"^\s*-?\d[\d.]*\s*\.\.")


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _number(text: str, spec: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise WorkflowError(f"--sweep {spec!r}: {text!r} is not a number", hint="Write a range as 1..10 or 0.5..2:0.5.")


def _range(spec: str, start_text: str, stop_text: str, step_text: str | None) -> list[Any]:
    start, stop = _number(start_text, spec), _number(stop_text, spec)
    step = _number(step_text, spec) if step_text is not None else Decimal(1 if start <= stop else -1)
    if step == 0 or (stop - start) * step < 0:
        raise WorkflowError(f"--sweep {spec!r}: the step {step} never reaches {stop} from {start}",
                            hint="Give a step with the sign of stop - start, e.g. 10..1:-1.")
    count = int((stop - start) / step) + 1
    if count > MAX_SWEEP_JOBS:
        raise WorkflowError(f"--sweep {spec!r} gives {count} values", hint=f"At most {MAX_SWEEP_JOBS} are allowed.")
    integral = all("." not in t for t in (start_text, stop_text, step_text or "1"))
    values = [start + step * i for i in range(count)]
    return [int(v) for v in values] if integral else [float(v) for v in values]


def parse_sweep(text: str) -> tuple[str, list[Any]]:
    """``"seed=1..3"`` -> ``("seed", [1, 2, 3])``; ``"cfg=5,7"`` -> ``("cfg", [5, 7])``."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise WorkflowError(f"--sweep {text!r} is not NAME=VALUES",
                            hint="Write e.g. --sweep seed=1..100 or --sweep 3.cfg=5,7,9.")
    raw = raw.strip()
    if not raw:
        raise WorkflowError(f"--sweep {text!r} gives no values", hint="Write e.g. --sweep cfg=5,7,9.")
    if raw.startswith("["):
        try:
            values = json.loads(raw)
        except ValueError as exc:
            raise WorkflowError(f"--sweep {text!r}: bad JSON list: {exc}", hint='Write e.g. ["a, b", "c"].') from None
        if not isinstance(values, list) or not values:
            raise WorkflowError(f"--sweep {text!r}: the JSON list is empty", hint="Give at least one value.")
        return name, values
    match = _RANGE.match(raw)
    if match:
        return name, _range(text, *match.groups())
    if _RANGE_LIKE.match(raw) and "," not in raw:
        raise WorkflowError(f"--sweep {text!r}: {raw!r} is not a range of numbers",
                            hint="Write a range as 1..10 or 0.5..2:0.5, or a list as a,b,c.")
    return name, [_value(part.strip()) for part in raw.split(",")]


def expand_sweep(sweeps: Sequence[tuple[str, Sequence[Any]]]) -> list[dict[str, Any]]:
    """Every combination of the sweeps' values, the first sweep varying slowest; ``[{}]`` for no sweeps."""
    names = [name for name, _ in sweeps]
    if len(set(names)) != len(names):
        raise WorkflowError(f"--sweep names a parameter twice: {names}", hint="Give each NAME once, with all its values.")
    total = 1
    for _, values in sweeps:
        total *= len(values)
    if total > MAX_SWEEP_JOBS:
        raise WorkflowError(f"the sweeps give {total} combinations", hint=f"At most {MAX_SWEEP_JOBS} are allowed.")
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(values for _, values in sweeps))]
