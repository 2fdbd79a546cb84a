"""Absurd sweep ranges are WorkflowErrors with a short message, whatever the numbers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from comfykit.errors import WorkflowError
from comfykit.workflow.sweep import parse_sweep

numbers = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.sampled_from(["1e99999", "-1e99999", "1e400", "9" * 5000, "0", "0.5", "1e-300", "nan", "inf", "-0"]),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)


@pytest.mark.parametrize("spec", ["seed=1..1e99999..1", "cfg=0.1..1e308..1e-300", "seed=1.." + "9" * 5000])
def test_a_range_wider_than_the_limit_is_refused_briefly(spec: str) -> None:
    with pytest.raises(WorkflowError, match="more than 100000") as caught:
        parse_sweep(spec)
    assert len(str(caught.value)) < 300


@given(numbers, numbers, st.none() | numbers)
def test_any_numeric_range_is_values_or_a_workflow_error(start: str, end: str, step: str | None) -> None:
    spec = f"seed={start}..{end}" + (f"..{step}" if step is not None else "")
    try:
        axis = parse_sweep(spec)
    except WorkflowError as exc:
        assert len(str(exc)) < 400
    else:
        assert 1 <= len(axis.values) <= 100_000
