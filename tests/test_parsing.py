"""Bounded decoding: alias bombs, container floods and hostile Retry-After values are refused cheaply."""

from __future__ import annotations

import json
import math

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from comfykit.parsing import (
    JSONBudgetExceeded,
    YAMLBudgetExceeded,
    load_json,
    load_yaml,
    parse_retry_after,
)

plain_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


def _laughs(levels: int) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


@given(plain_values)
def test_yaml_without_aliases_loads_as_safe_load_does(value: object) -> None:
    text = yaml.safe_dump(value)
    assert load_yaml(text) == yaml.safe_load(text)


@given(plain_values)
def test_json_within_budget_loads_as_json_loads_does(value: object) -> None:
    text = json.dumps(value)
    assert load_json(text) == json.loads(text)
    assert load_json(text.encode()) == json.loads(text)


def test_a_few_anchors_for_repeated_values_are_fine() -> None:
    text = "base: &base {steps: 20, cfg: 7}\nfirst: *base\nsecond: {<<: *base, cfg: 5}\n"
    assert load_yaml(text) == {"base": {"steps": 20, "cfg": 7}, "first": {"steps": 20, "cfg": 7},
                               "second": {"steps": 20, "cfg": 5}}


def test_billion_laughs_is_refused_before_anything_is_built() -> None:
    with pytest.raises(YAMLBudgetExceeded, match="expand to"):
        load_yaml(_laughs(9))
    # yaml.YAMLError callers (config, workflow loaders) catch it without a new except clause.
    assert issubclass(YAMLBudgetExceeded, yaml.YAMLError)


def test_the_alias_budget_is_a_parameter() -> None:
    text = _laughs(3)  # 10 + 100 + 1000 leaves through aliases
    assert len(load_yaml(text)["a2"]) == 10
    with pytest.raises(YAMLBudgetExceeded):
        load_yaml(text, max_alias_nodes=50)


def test_a_self_referring_alias_is_refused() -> None:
    with pytest.raises(YAMLBudgetExceeded, match="contains it"):
        load_yaml("a: &a [1, *a]\n")


def test_an_empty_yaml_document_is_none() -> None:
    assert load_yaml("") is None
    assert load_yaml("# only a comment\n") is None


def test_a_flood_of_small_containers_is_refused_before_parsing() -> None:
    flood = "[" + ",".join(["{}"] * 2_000) + "]"
    assert len(load_json(flood)) == 2_000
    with pytest.raises(JSONBudgetExceeded, match="more than the 1,000 allowed"):
        load_json(flood, max_containers=1_000)
    assert issubclass(JSONBudgetExceeded, ValueError)


def test_deep_nesting_is_a_value_error_not_a_recursion_error() -> None:
    with pytest.raises(JSONBudgetExceeded, match="nested too deeply"):
        load_json("[" * 100_000 + "]" * 100_000, max_containers=10**6)


@pytest.mark.parametrize("header", ["inf", "-inf", "nan", "1e999", "-3", "soon", "", "Mon, 99 Foo 2020 99:99:99 GMT"])
def test_unusable_retry_after_values_are_none(header: str) -> None:
    assert parse_retry_after(header) is None


def test_retry_after_seconds_and_http_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after(None) is None
    # An HTTP date 30 s after "now"; one in the past means "now".
    now = 1_700_000_000.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:50 GMT", now=now) == pytest.approx(30.0)
    assert parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now=now) == 0.0


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_retry_after_is_finite_and_not_negative_whatever_the_number(value: float) -> None:
    parsed = parse_retry_after(repr(value))
    assert parsed is None or (math.isfinite(parsed) and parsed >= 0)
