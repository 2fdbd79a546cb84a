"""Every validation problem kind: the exact message, where it points, its severity and its hint."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from comfykit.testing.catalog import load_object_info
from comfykit.workflow import Problem, Severity, check_workflow, validate_workflow

ROOT = Path(__file__).resolve().parent.parent.parent
INVERT = json.loads((ROOT / "tests" / "fixtures" / "recordings" / "0.33.0" / "workflows" / "invert_save.json").read_text())
INFO = load_object_info("0.33.0")


def _changed(**nodes: Any) -> dict[str, Any]:
    graph = copy.deepcopy(INVERT)
    for node_id, node in nodes.items():
        if node is None:
            del graph[node_id.lstrip("n")]
        else:
            graph[node_id.lstrip("n")] = node
    return graph


def _with_input(node_id: str, name: str, value: Any) -> dict[str, Any]:
    graph = copy.deepcopy(INVERT)
    graph[node_id]["inputs"][name] = value
    return graph


COMPOSITE = {"class_type": "ImageCompositeMasked",
             "inputs": {"destination": ["1", 0], "source": ["2", 0], "x": 0, "y": 0, "resize_source": "false"}}

# (code, workflow, node_id, input, severity, message, hint fragment)
CASES: list[tuple[str, Any, str | None, str | None, Severity, str, str]] = [
    ("empty_workflow", {}, None, None, Severity.ERROR, "the workflow has no nodes", "Export (API)"),
    ("invalid_node", _changed(n4=7), "4", None, Severity.ERROR, "node is a int, not an object", ""),
    ("missing_class_type", _changed(n4={"inputs": {}}), "4", None, Severity.ERROR, "node has no class_type",
     "export it again"),
    ("invalid_inputs", _changed(n4={"class_type": "PreviewImage", "inputs": [1]}), "4", None, Severity.ERROR,
     "inputs is not an object", ""),
    ("link_to_missing_node", _with_input("2", "image", ["9", 0]), "2", "image", Severity.ERROR,
     "links to node '9', which is not in the workflow", "existing node"),
    ("dependency_cycle", _with_input("1", "image", ["2", 0]) | {"2": {"class_type": "ImageInvert", "inputs": {
        "image": ["1", 0]}}, "1": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}}},
     "1", None, Severity.ERROR, "dependency cycle: 1 -> 2 -> 1", "Remove one of the links"),
    ("missing_node_type", _changed(n4={"class_type": "ImageInvertt", "inputs": {}}), "4", None, Severity.ERROR,
     "the server has no node class 'ImageInvertt'", "Did you mean ImageInvert"),
    ("required_input_missing", _changed(n4={"class_type": "PreviewImage", "inputs": {}}), "4", "images",
     Severity.ERROR, "required input is missing", "--update"),
    ("prompt_no_outputs", _changed(n3=None), None, None, Severity.ERROR,
     "the workflow has no output node (SaveImage, PreviewImage...)", "Add an output node"),
    ("output_index_out_of_range", _with_input("2", "image", ["1", 1]), "2", "image", Severity.ERROR,
     "links to output 1 of node 1, which has 1 outputs", "existing output"),
    ("return_type_mismatch", _changed(n4={"class_type": "EmptyLatentImage", "inputs": {
        "width": 64, "height": 64, "batch_size": 1}}, n2={"class_type": "ImageInvert", "inputs": {"image": ["4", 0]}}),
     "2", "image", Severity.ERROR, "expects IMAGE but node 4 output 0 is LATENT", "type IMAGE"),
    ("invalid_input_type", _with_input("1", "height", "tall"), "1", "height", Severity.ERROR,
     "'tall' is not a valid INT", "number"),
    ("value_smaller_than_min", _with_input("1", "width", 0), "1", "width", Severity.ERROR,
     "0 is below the minimum 1", "from 1 to 16384"),
    ("value_bigger_than_max", _with_input("1", "color", 2**24), "1", "color", Severity.ERROR,
     "16777216 is above the maximum 16777215", "from 0 to 16777215"),
    ("value_not_in_list", _changed(n4={"class_type": "ImageScale", "inputs": {
        "image": ["1", 0], "upscale_method": "bicubik", "width": 8, "height": 8, "crop": "disabled"}}),
     "4", "upscale_method", Severity.ERROR, "'bicubik' is not one of the server's values", "Close matches: bicubic"),
    ("value_coerced", _changed(n4=COMPOSITE), "4", "resize_source", Severity.WARNING,
     "'false' is not true or false; the server reads it as True", "true or false"),
    ("value_coerced", _with_input("1", "batch_size", True), "1", "batch_size", Severity.WARNING,
     "True is a boolean; the server reads it as 1", "number"),
    ("unknown_input", _with_input("1", "widht", 8), "1", "widht", Severity.WARNING,
     "has no input 'widht' (the server would ignore it)", "Did you mean 'width'?"),
]


@pytest.mark.parametrize(("code", "workflow", "node_id", "input_name", "severity", "message", "hint"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_problem_kind_message(code: str, workflow: Any, node_id: str | None, input_name: str | None,
                              severity: Severity, message: str, hint: str) -> None:
    ok, problems = validate_workflow(workflow, object_info=INFO)
    found = [p for p in problems if p.code == code]
    assert found, [str(p) for p in problems]
    problem = found[0]
    assert (problem.node_id, problem.input_name, problem.severity, problem.message) == (node_id, input_name, severity, message)
    assert hint in (problem.hint or "")
    assert ok is (severity is Severity.WARNING and all(not p.is_error for p in problems))
    text = str(problem)
    assert text.startswith(f"{severity}: ") and message in text
    if node_id is not None:
        assert f"node {node_id}" in text


def test_every_problem_code_in_the_validator_has_a_case() -> None:
    source = (ROOT / "comfykit" / "workflow" / "validate.py").read_text()
    codes = set(re.findall(r'Problem\(\s*"(\w+)"', source))
    assert codes == {case[0] for case in CASES}


def test_a_problem_prints_where_what_and_how_to_fix() -> None:
    problem = Problem("value_not_in_list", "'x' is not one of the server's values", node_id="4", class_type="ImageScale",
                      input_name="crop", hint="Close matches: center.")
    assert str(problem) == ("error: node 4 (ImageScale), input 'crop': 'x' is not one of the server's values "
                            "(hint: Close matches: center.)")
    assert str(Problem("prompt_no_outputs", "no outputs", severity=Severity.WARNING)) == "warning: no outputs"


def test_long_cycles_are_reported_once_per_node_with_a_short_path() -> None:
    chain = {str(i): {"class_type": "ImageInvert", "inputs": {"image": [str(i - 1 if i > 1 else 3000), 0]}}
             for i in range(3000, 0, -1)}
    *problems, notice = check_workflow(chain)
    assert notice.code == "schema_not_checked" and not notice.is_error
    assert len(problems) == 3000 and {p.code for p in problems} == {"dependency_cycle"}
    assert max(len(p.message) for p in problems) < 200 and "more)" in problems[0].message
