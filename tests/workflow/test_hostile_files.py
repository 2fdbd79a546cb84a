"""Workflow and template files built to exhaust memory or crash the parser get a clear error naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfykit.errors import TemplateError, WorkflowLoadError
from comfykit.workflow import load_template, load_workflow


def _bomb(levels: int = 12) -> str:
    lines = ['x0: &x0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"x{n}: &x{n} [" + ", ".join([f"*x{n - 1}"] * 10) + "]" for n in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_in_a_workflows_meta_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(_bomb() + '"1":\n  class_type: EmptyImage\n  inputs: {width: 8, height: 8}\n  _meta: {laughs: *x11}\n')
    with pytest.raises(WorkflowLoadError, match="aliases expand") as caught:
        load_workflow(path)
    assert str(path) in str(caught.value)


def test_a_five_thousand_digit_integer_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text('"1":\n  class_type: KSampler\n  inputs:\n    seed: ' + "9" * 5000 + "\n")
    with pytest.raises(WorkflowLoadError, match="invalid YAML") as caught:
        load_workflow(path)
    assert str(path) in str(caught.value)
    json_path = tmp_path / "flow.json"
    json_path.write_text('{"1": {"class_type": "KSampler", "inputs": {"seed": ' + "9" * 5000 + "}}}")
    with pytest.raises(WorkflowLoadError, match="invalid JSON"):
        load_workflow(json_path)


def test_a_template_with_an_alias_bomb_or_a_huge_integer_is_a_template_error(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.template.yaml"
    bomb.write_text(_bomb() + "name: bomb\nparameters: *x11\n")
    with pytest.raises(TemplateError, match="aliases expand"):
        load_template(bomb)
    digits = tmp_path / "digits.template.yaml"
    digits.write_text("name: digits\nversion: " + "7" * 5000 + "\n")
    with pytest.raises(TemplateError, match="invalid YAML"):
        load_template(digits)


@pytest.mark.parametrize(
    ("graph", "message"),
    [
        ({"1": {"class_type": "EmptyImage", "inputs": [1, 2]}}, "has inputs of type list"),
        ({"1": "not a node"}, "node 1 is a str, not an object"),
    ],
)
def test_updates_on_nodes_of_the_wrong_shape_are_workflow_errors(graph: dict, message: str) -> None:
    from comfykit.errors import WorkflowError
    from comfykit.workflow import apply_updates

    with pytest.raises(WorkflowError, match=message):
        apply_updates(graph, ["1.width=5"])


def test_a_title_lookup_survives_a_meta_of_the_wrong_type() -> None:
    from comfykit.workflow import apply_updates

    graph = {"1": {"class_type": "EmptyImage", "inputs": {}, "_meta": "oops"},
             "2": {"class_type": "SaveImage", "inputs": {}, "_meta": {"title": "Out"}}}
    assert apply_updates(graph, ["Out.filename_prefix=x"])["2"]["inputs"] == {"filename_prefix": "x"}


def test_a_misspelt_input_is_flagged_with_a_catalogue() -> None:
    from comfykit.testing.catalog import load_object_info
    from comfykit.workflow import apply_updates, validate_workflow

    info = load_object_info("0.33.0")
    graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
             "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}
    # A warning in a workflow (editors export inputs their extensions add, which servers ignore);
    # the CLI's --update turns it into an error (tests/cli/test_cli_hostile_text.py).
    valid, problems = validate_workflow(apply_updates(graph, ["1.widht=5"]), object_info=info)
    assert valid
    [unknown] = [p for p in problems if p.code == "unknown_input"]
    assert unknown.node_id == "1" and unknown.input_name == "widht" and not unknown.is_error
    assert "'width'" in (unknown.hint or "")
    assert validate_workflow(graph, object_info=info) == (True, [])
