"""Workflow loading, editing and validation; the verdicts agree with the recorded real servers."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comfykit import WorkflowManager
from comfykit.errors import ConversionError, WorkflowError, WorkflowLoadError
from comfykit.workflow import apply_updates, load_workflow, parse_update, validate_workflow

ROOT = Path(__file__).resolve().parent.parent.parent
RECORDINGS = ROOT / "tests" / "fixtures" / "recordings"


def _catalogue(version: str) -> dict[str, Any]:
    data = (ROOT / "comfykit" / "testing" / "data" / f"object_info-{version}.json.gz").read_bytes()
    return dict(json.loads(gzip.decompress(data)))


CATALOGUES = {v: _catalogue(v) for v in ("0.3.64", "0.33.0")}
INVERT = json.loads((RECORDINGS / "0.33.0" / "workflows" / "invert_save.json").read_text())


def _prompt_cases() -> list[Any]:
    cases = []
    for version in ("0.3.64", "0.33.0"):
        for path in sorted((RECORDINGS / version / "http").glob("post_prompt_*.json")):
            recording = json.loads(path.read_text())
            body = (recording["request"].get("json") or {})
            prompt = body.get("prompt")
            if not isinstance(prompt, dict) or not prompt or recording["status"] not in (200, 400):
                continue
            if "prompt_id" in body or "partial_execution_targets" in body or recording["request"].get("headers"):
                continue  # rejected for the request, not the graph
            if any(n.get("class_type") == "LoadImage" for n in prompt.values() if isinstance(n, dict)):
                continue  # depends on the server's input folder
            answer = recording["body"]["json"]
            invalid = recording["status"] == 400 or bool(answer.get("node_errors"))
            cases.append(pytest.param(version, prompt, invalid, id=f"{version}-{path.stem}"))
    return cases


@pytest.mark.parametrize(("version", "prompt", "invalid"), _prompt_cases())
def test_verdict_agrees_with_the_real_server(version: str, prompt: dict[str, Any], invalid: bool) -> None:
    ok, problems = validate_workflow(prompt, object_info=CATALOGUES[version])
    assert ok is not invalid, [str(p) for p in problems]


def test_every_problem_kind_has_a_message_and_names_the_node() -> None:
    info = CATALOGUES["0.33.0"]
    broken = copy.deepcopy(INVERT)
    broken["1"]["inputs"]["width"] = 0
    broken["1"]["inputs"]["height"] = "tall"
    del broken["1"]["inputs"]["batch_size"]
    broken["2"]["inputs"]["image"] = ["1", 3]
    broken["4"] = {"class_type": "ImageScalee", "inputs": {}}
    broken["5"] = {"class_type": "ImageScale", "inputs": {"image": ["9", 0], "upscale_method": "bicubik",
                                                          "width": 8, "height": 8, "crop": "disabled"}}
    broken["6"] = {"class_type": "ImageInvert", "inputs": {"image": ["7", 0]}}
    broken["7"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}
    _, problems = validate_workflow(broken, object_info=info)
    by_code = {p.code: p for p in problems}
    assert by_code["value_smaller_than_min"].node_id == "1" and by_code["value_smaller_than_min"].input_name == "width"
    assert by_code["invalid_input_type"].input_name == "height"
    assert by_code["required_input_missing"].input_name == "batch_size"
    assert by_code["output_index_out_of_range"].node_id == "2"
    assert "ImageScale" in (by_code["missing_node_type"].hint or "")
    assert by_code["link_to_missing_node"].node_id == "5"
    assert "bicubic" in (by_code["value_not_in_list"].hint or "")
    assert by_code["return_type_mismatch"].node_id == "6"
    for problem in problems:
        assert problem.message and str(problem).startswith("error")
    cycle = {"1": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
             "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}}}
    assert {p.code for p in validate_workflow(cycle)[1]} == {"dependency_cycle", "schema_not_checked"}
    assert [p.code for p in validate_workflow({"1": {"class_type": "EmptyImage", "inputs": {}}},
                                              object_info=info)[1]].count("required_input_missing") == 4


def test_structural_checks_work_offline() -> None:
    ok, problems = validate_workflow({"1": {"inputs": {}}, "2": "x"})
    assert not ok
    assert {p.code for p in problems} == {"missing_class_type", "invalid_node", "schema_not_checked"}
    assert validate_workflow(INVERT)[0]


def test_load_api_wrapped_yaml_and_png(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps(INVERT))
    (tmp_path / "b.json").write_text(json.dumps({"prompt": INVERT, "client_id": "x"}))
    (tmp_path / "c.yaml").write_text(__import__("yaml").safe_dump(INVERT))
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps(INVERT))
    Image.new("RGB", (4, 4)).save(tmp_path / "d.png", pnginfo=info)
    for name in ("a.json", "b.json", "c.yaml", "d.png"):
        assert load_workflow(tmp_path / name) == INVERT
    original = copy.deepcopy(INVERT)
    loaded = load_workflow(INVERT)
    loaded["1"]["inputs"]["width"] = 1
    assert original == INVERT  # deep copies, never the caller's data


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"1": {"class_type": ')
    with pytest.raises(WorkflowLoadError, match=r"bad\.json.*line 1"):
        load_workflow(tmp_path / "bad.json")
    with pytest.raises(WorkflowLoadError, match="no such file"):
        load_workflow(tmp_path / "missing.json")
    (tmp_path / "ui.json").write_text(json.dumps({"nodes": [], "links": [], "version": 0.4}))
    with pytest.raises(ConversionError, match="Export \\(API\\)"):
        load_workflow(tmp_path / "ui.json")
    (tmp_path / "other.json").write_text("[1, 2]")
    with pytest.raises(WorkflowLoadError, match="not a ComfyUI workflow"):
        load_workflow(tmp_path / "other.json")
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "plain.png")
    with pytest.raises(WorkflowLoadError, match="carries no ComfyUI workflow"):
        load_workflow(tmp_path / "plain.png")


def test_updates_by_id_title_and_class() -> None:
    workflow = copy.deepcopy(INVERT)
    workflow["3"]["_meta"] = {"title": "Final Save"}
    assert parse_update("1.width=128").value == 128
    assert parse_update('"Final Save".filename_prefix=out/x').value == "out/x"
    assert parse_update("1.color=[1, 2]").value == [1, 2]
    updated = apply_updates(workflow, ["1.width=128", '"Final Save".filename_prefix=out/x', "ImageInvert.image=[\"1\", 0]"])
    assert updated["1"]["inputs"]["width"] == 128
    assert updated["3"]["inputs"]["filename_prefix"] == "out/x"
    assert workflow["1"]["inputs"]["width"] == 64
    for bad in ("nothing", "1=3", ".x=1", '"open.x=1'):
        with pytest.raises(WorkflowError):
            parse_update(bad)
    with pytest.raises(WorkflowError, match="no node"):
        apply_updates(workflow, ["99.width=1"])


def test_workflow_manager_original_methods(tmp_path: Path) -> None:
    manager = WorkflowManager(tmp_path, object_info=CATALOGUES["0.3.64"])
    path = manager.save_workflow(INVERT, tmp_path / "invert.json")
    assert manager.load_workflow("invert.json") == INVERT
    assert manager.get_workflow("invert") == INVERT
    manager.register_workflow("mine", INVERT)
    assert manager.get_workflow("mine") == INVERT
    assert manager.validate_workflow(INVERT) == (True, [])
    assert manager.find_nodes_by_type(INVERT, "ImageInvert") == ["2"]
    graph = INVERT.copy()  # shallow, as the original tool's README does it
    changed = manager.update_node_input(graph, "EmptyImage", "width", 32)
    assert changed is graph and graph["1"]["inputs"]["width"] == 32
    assert INVERT["1"]["inputs"]["width"] == 64  # the graph the copy came from is untouched
    info = manager.get_workflow_info(INVERT)
    assert info.nodes == 3 and info.outputs == ["3"] and ("1", 0, "2", "image") in info.edges
    assert path.read_text().startswith("{")
    manager.save_workflow(INVERT, tmp_path / "invert.yaml")
    assert manager.load_workflow(tmp_path / "invert.yaml") == INVERT


node_ids = st.text(alphabet="0123456789", min_size=1, max_size=2)
values = st.one_of(st.integers(-5, 5), st.text(max_size=5), st.lists(st.one_of(node_ids, st.integers(-1, 3)), max_size=3),
                   st.none())
nodes = st.fixed_dictionaries({"class_type": st.sampled_from(["EmptyImage", "ImageInvert", "SaveImage", "Nope"]),
                               "inputs": st.dictionaries(st.sampled_from(["image", "images", "width", "x"]), values)})


@settings(max_examples=200, deadline=None)
@given(graph=st.dictionaries(node_ids, st.one_of(nodes, st.integers(), st.none()), max_size=6))
def test_random_graphs_never_make_the_validator_raise(graph: dict[str, Any]) -> None:
    ok, problems = validate_workflow(graph, object_info=CATALOGUES["0.33.0"])
    assert ok or problems


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=40))
def test_parse_update_only_raises_workflow_errors(text: str) -> None:
    try:
        update = parse_update(text)
    except WorkflowError:
        return
    assert update.node and update.input
