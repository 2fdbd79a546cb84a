"""Sweeps: parsing ranges and lists, the cartesian product, and applying points to workflows and templates."""

from __future__ import annotations

import copy
import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comfykit.errors import TemplateError, WorkflowError
from comfykit.workflow import (
    SweepAxis,
    apply_sweep_point,
    create_template,
    expand_sweep,
    parse_sweep,
)

ROOT = Path(__file__).resolve().parent.parent.parent
KSAMPLER = json.loads((ROOT / "tests" / "fixtures" / "recordings" / "0.33.0" / "workflows" / "tiny_ksampler.json").read_text())


@pytest.mark.parametrize(
    ("text", "name", "values"),
    [
        ("seed=1..5", "seed", (1, 2, 3, 4, 5)),
        ("seed=1..100..10", "seed", (1, 11, 21, 31, 41, 51, 61, 71, 81, 91)),
        ("seed=5..1", "seed", (5, 4, 3, 2, 1)),
        ("seed=10..1..-4", "seed", (10, 6, 2)),
        ("cfg=5,7,9.5", "cfg", (5, 7, 9.5)),
        ('sampler=euler,"dpm 2"', "sampler", ("euler", "dpm 2")),
        ("denoise=0.5..1.0..0.25", "denoise", (0.5, 0.75, 1.0)),
        ("denoise=0.1..0.3..0.1", "denoise", (0.1, 0.2, 0.3)),
        ("KSampler.steps=4", "KSampler.steps", (4,)),
        ('"Positive, Prompt".text=a cat,a dog', '"Positive, Prompt".text', ("a cat", "a dog")),
        ("size=[512, 512],[768, 768]", "size", ([512, 512], [768, 768])),
        ('flag=true,false,null,"true"', "flag", (True, False, None, "true")),
    ],
)
def test_parse_sweep_examples(text: str, name: str, values: tuple[Any, ...]) -> None:
    assert parse_sweep(text) == SweepAxis(name, values)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("seed", "has no '='"),
        ("=1,2", "names nothing"),
        ("seed=1..", "not a range of numbers"),
        ("denoise=0.5..1.0", "needs a step"),
        ("seed=1..5..0", "step is zero"),
        ("seed=1..5..-1", "never reaches"),
        ("seed=1,,2", "empty value"),
        ('sampler="euler', "unclosed quote"),
        ('"Title.text=1', "unclosed quote"),
        ("seed=0..10000000", "more than"),
    ],
)
def test_bad_sweeps_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(WorkflowError, match=message) as caught:
        parse_sweep(text)
    assert caught.value.hint


def test_expand_sweep_is_the_cartesian_product_last_axis_fastest() -> None:
    points = expand_sweep(["seed=1..2", parse_sweep("cfg=5,7"), 'sampler=euler,"dpm 2"'])
    assert points[:3] == [
        {"seed": 1, "cfg": 5, "sampler": "euler"},
        {"seed": 1, "cfg": 5, "sampler": "dpm 2"},
        {"seed": 1, "cfg": 7, "sampler": "euler"},
    ]
    assert len(points) == 8 and points[-1] == {"seed": 2, "cfg": 7, "sampler": "dpm 2"}
    assert expand_sweep([]) == [{}]
    with pytest.raises(WorkflowError, match="more than once"):
        expand_sweep(["seed=1,2", "seed=3"])
    with pytest.raises(WorkflowError, match="prompts, more than"):
        expand_sweep(["a=1..1000", "b=1..1000"])


def test_apply_sweep_point_to_a_workflow_by_node_input() -> None:
    original = copy.deepcopy(KSAMPLER)
    points = expand_sweep(["KSampler.seed=1..3", "6.cfg=2.5,3"])
    graphs = [apply_sweep_point(KSAMPLER, point) for point in points]
    assert [(g["6"]["inputs"]["seed"], g["6"]["inputs"]["cfg"]) for g in graphs] == [
        (1, 2.5), (1, 3), (2, 2.5), (2, 3), (3, 2.5), (3, 3)]
    assert original == KSAMPLER
    with pytest.raises(WorkflowError, match=r"neither a template parameter nor a NODE\.INPUT"):
        apply_sweep_point(KSAMPLER, {"seed": 1})
    with pytest.raises(WorkflowError, match="no node"):
        apply_sweep_point(KSAMPLER, {"Nope.seed": 1})


def test_apply_sweep_point_to_a_template_mixes_parameters_and_node_inputs() -> None:
    template = create_template(KSAMPLER, {"seed": {"targets": ["KSampler.seed"], "type": "int", "min": 0},
                                          "prompt": {"targets": ["CLIPTextEncode.text"], "type": "str"}}, name="tiny")
    graph = apply_sweep_point(template, {"seed": "7", "KSampler.steps": 3}, values={"prompt": "a cat"})
    assert graph["6"]["inputs"]["seed"] == 7 and graph["6"]["inputs"]["steps"] == 3
    assert graph["3"]["inputs"]["text"] == "a cat"
    with pytest.raises(TemplateError, match="missing required parameter 'prompt'"):
        apply_sweep_point(template, {"seed": 1})
    with pytest.raises(TemplateError, match=r"template 'tiny'.*no node"):
        apply_sweep_point(template, {"Nope.x": 1}, values={"prompt": "x", "seed": 1})
    with pytest.raises(WorkflowError, match="only applies to templates"):
        apply_sweep_point(KSAMPLER, {}, values={"prompt": "x"})


def test_random_seeds_in_a_sweep_keep_the_swept_seed() -> None:
    rng = random.Random(1)
    graph = apply_sweep_point(KSAMPLER, {"KSampler.steps": 3}, random_seeds=True, rng=rng)
    assert graph["6"]["inputs"]["seed"] != KSAMPLER["6"]["inputs"]["seed"]
    pinned = apply_sweep_point(KSAMPLER, {"KSampler.seed": 5}, random_seeds=True, rng=rng)
    assert pinned["6"]["inputs"]["seed"] == 5


@settings(max_examples=200, deadline=None)
@given(start=st.integers(-1000, 1000), length=st.integers(0, 200), step=st.integers(1, 50), down=st.booleans())
def test_integer_ranges_match_python_ranges(start: int, length: int, step: int, down: bool) -> None:
    end = start - length if down else start + length
    signed = -step if down else step
    axis = parse_sweep(f"seed={start}..{end}..{signed}")
    assert list(axis.values) == list(range(start, end + (-1 if down else 1), signed))
    if step == 1 and not down:
        assert parse_sweep(f"seed={start}..{end}").values == axis.values


@settings(max_examples=200, deadline=None)
@given(start=st.integers(-100, 100), steps=st.integers(0, 40), step=st.sampled_from([0.1, 0.25, 0.05, 1.5]))
def test_float_ranges_are_evenly_spaced_and_inclusive(start: int, steps: int, step: float) -> None:
    low = start / 10
    high = round(low + steps * step, 6)
    values = parse_sweep(f"denoise={low}..{high}..{step}").values
    assert len(values) == steps + 1
    assert all(isinstance(v, float) for v in values)
    assert math.isclose(values[0], low) and math.isclose(values[-1], high, abs_tol=1e-9)


scalars = st.one_of(
    st.integers(-10**6, 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.booleans(),
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12),
)


def _spell(value: Any) -> str:
    """How a user would type the value: plain text when it would not read as JSON, else JSON."""
    if isinstance(value, str) and value == value.strip() and not any(c in value for c in ',"[]{}'):
        try:
            json.loads(value)
        except ValueError:
            if ".." not in value:
                return value
    return json.dumps(value)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(scalars, min_size=1, max_size=6))
def test_value_lists_round_trip(values: list[Any]) -> None:
    text = "x=" + ",".join(_spell(v) for v in values)
    assert list(parse_sweep(text).values) == values


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=40))
def test_parse_sweep_only_raises_workflow_errors(text: str) -> None:
    try:
        axis = parse_sweep(text)
    except WorkflowError:
        return
    assert axis.name and axis.values


@settings(max_examples=100, deadline=None)
@given(sizes=st.lists(st.integers(1, 4), max_size=4))
def test_expansion_size_is_the_product_and_points_are_distinct(sizes: list[int]) -> None:
    axes = [SweepAxis(f"a{i}", list(range(n))) for i, n in enumerate(sizes)]
    points = expand_sweep(axes)
    assert len(points) == math.prod(sizes)
    assert len({tuple(sorted(p.items())) for p in points}) == len(points)
    assert all(list(p) == [a.name for a in axes] for p in points)
