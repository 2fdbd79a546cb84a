"""The ``--sweep`` parser and its expansion into job parameters."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from comfykit.errors import WorkflowError
from comfykit_cli.batch import apply_sweep_values
from comfykit_cli.sweep import expand_sweep, parse_sweep


@given(start=st.integers(-1000, 1000), length=st.integers(0, 200))
def test_integer_ranges_include_both_ends(start: int, length: int) -> None:
    stop = start + length
    assert parse_sweep(f"seed={start}..{stop}") == ("seed", list(range(start, stop + 1)))
    assert parse_sweep(f"seed={stop}..{start}") == ("seed", list(range(stop, start - 1, -1)))


@given(values=st.lists(st.integers(-10**6, 10**6) | st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=20))
def test_comma_lists_keep_numbers_as_numbers(values: list[float]) -> None:
    name, parsed = parse_sweep("3.cfg=" + ",".join(repr(v) for v in values))
    assert name == "3.cfg"
    assert parsed == values


def test_stepped_ranges_texts_and_json_lists() -> None:
    assert parse_sweep("cfg=0.5..2:0.5") == ("cfg", [0.5, 1.0, 1.5, 2.0])
    assert parse_sweep("steps=10..30:10") == ("steps", [10, 20, 30])
    assert parse_sweep('Positive Prompt.text=a cat,a dog') == ("Positive Prompt.text", ["a cat", "a dog"])
    assert parse_sweep('text=["a, b", "c"]') == ("text", ["a, b", "c"])
    assert parse_sweep("sampler=euler") == ("sampler", ["euler"])


@pytest.mark.parametrize("text", [
    "noequals", "=1,2", "x=", "x=1..5:0", "x=5..1:1", "x=[]", "x=[1,", "x=1..1000000000", "x=1..y", "x=1..2:z",
])
def test_bad_sweeps_are_refused_with_a_hint(text: str) -> None:
    with pytest.raises(WorkflowError) as caught:
        parse_sweep(text)
    assert caught.value.hint


@given(sizes=st.lists(st.integers(1, 5), max_size=4))
def test_expansion_is_every_combination_once_first_sweep_slowest(sizes: list[int]) -> None:
    sweeps = [(f"p{i}", list(range(size))) for i, size in enumerate(sizes)]
    combos = expand_sweep(sweeps)
    assert len(combos) == math.prod(sizes)
    assert len({tuple(sorted(c.items())) for c in combos}) == len(combos)
    if sizes:
        assert [c["p0"] for c in combos] == sorted(c["p0"] for c in combos)


def test_a_name_given_twice_is_refused() -> None:
    with pytest.raises(WorkflowError):
        expand_sweep([("seed", [1]), ("seed", [2])])


def test_sweep_values_reach_nodes_by_id_title_class_or_bare_input() -> None:
    workflow: dict[str, Any] = {
        "1": {"class_type": "KSampler", "inputs": {"seed": 0, "cfg": 7}},
        "2": {"class_type": "KSampler", "inputs": {"seed": 0, "cfg": 7}, "_meta": {"title": "Second"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": ""}},
    }
    result = apply_sweep_values(workflow, {"seed": 5, "Second.cfg": 3, "CLIPTextEncode.text": "cat", "1.cfg": 9})
    assert result["1"]["inputs"] == {"seed": 5, "cfg": 9}
    assert result["2"]["inputs"] == {"seed": 5, "cfg": 3}
    assert result["3"]["inputs"] == {"text": "cat"}
    assert workflow["1"]["inputs"]["seed"] == 0
    with pytest.raises(WorkflowError, match="no node"):
        apply_sweep_values(workflow, {"denoise": 1})
