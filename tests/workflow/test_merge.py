"""Merging graphs, workflow info, load/save and ``--update`` round trips, and the validate API shapes."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comfykit import WorkflowManager
from comfykit.errors import WorkflowError
from comfykit.testing.catalog import load_object_info
from comfykit.workflow import (
    Problem,
    apply_updates,
    check_workflow,
    get_workflow_info,
    load_workflow,
    merge_workflows,
    parse_update,
    validate_workflow,
)

ROOT = Path(__file__).resolve().parent.parent.parent
WORKFLOWS = ROOT / "tests" / "fixtures" / "recordings" / "0.33.0" / "workflows"
INVERT = json.loads((WORKFLOWS / "invert_save.json").read_text())
KSAMPLER = json.loads((WORKFLOWS / "tiny_ksampler.json").read_text())
INFO = load_object_info("0.33.0")


def _links(graph: dict[str, Any]) -> list[tuple[str, str]]:
    return [(node_id, value[0]) for node_id, node in graph.items() for value in node["inputs"].values()
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)]


def test_merge_prefixes_the_second_graph_and_rewrites_its_links() -> None:
    before = copy.deepcopy(INVERT)
    merged = merge_workflows(INVERT, INVERT)
    assert sorted(merged) == ["1", "2", "3", "b_1", "b_2", "b_3"]
    assert merged["b_2"]["inputs"]["image"] == ["b_1", 0] and merged["2"]["inputs"]["image"] == ["1", 0]
    assert before == INVERT
    assert validate_workflow(merged, object_info=INFO)[0]
    both = merge_workflows(INVERT, KSAMPLER, prefix_a="a:", prefix_b="k:")
    assert both["k:6"]["inputs"]["model"] == ["k:1", 0] and both["a:3"]["inputs"]["images"] == ["a:2", 0]
    assert merge_workflows(INVERT, {"9": {"class_type": "PreviewImage", "inputs": {"images": ["9", 0]}}}, prefix_b=None)["9"]
    assert WorkflowManager().merge_workflows(INVERT, INVERT, prefix_b="x") == merge_workflows(INVERT, INVERT, prefix_b="x")


def test_merge_refuses_colliding_ids() -> None:
    with pytest.raises(WorkflowError, match="both workflows have node id") as caught:
        merge_workflows(INVERT, INVERT, prefix_b=None)
    assert "prefix_b" in (caught.value.hint or "")
    with pytest.raises(WorkflowError, match="b_1"):
        merge_workflows({"b_1": INVERT["1"]}, {"1": INVERT["1"]})


@st.composite
def dags(draw: st.DrawFn) -> dict[str, Any]:
    """Random valid graphs: every link points at a node listed earlier."""
    ids = draw(st.lists(st.text(alphabet="0123456789ab_:", min_size=1, max_size=4), min_size=1, max_size=8, unique=True))
    graph: dict[str, Any] = {}
    for position, node_id in enumerate(ids):
        inputs: dict[str, Any] = {"value": draw(st.integers(0, 9))}
        for slot in range(draw(st.integers(0, 3)) if position else 0):
            inputs[f"in{slot}"] = [ids[draw(st.integers(0, position - 1))], draw(st.integers(0, 2))]
        graph[node_id] = {"class_type": draw(st.sampled_from(["ImageInvert", "Thing"])), "inputs": inputs}
    return graph


@settings(max_examples=200, deadline=None)
@given(a=dags(), b=dags(), prefix_a=st.sampled_from([None, "a_", "1"]), prefix_b=st.sampled_from([None, "b_", "x:"]))
def test_merged_graphs_keep_every_link_valid(a: dict[str, Any], b: dict[str, Any], prefix_a: str | None,
                                             prefix_b: str | None) -> None:
    try:
        merged = merge_workflows(a, b, prefix_a=prefix_a, prefix_b=prefix_b)
    except WorkflowError:
        renamed_a = {f"{prefix_a or ''}{k}" for k in a}
        renamed_b = {f"{prefix_b or ''}{k}" for k in b}
        assert renamed_a & renamed_b
        return
    assert len(merged) == len(a) + len(b)
    assert all(target in merged for _, target in _links(merged))
    assert len(_links(merged)) == len(_links(a)) + len(_links(b))
    codes = {p.code for p in check_workflow(merged)}
    assert not codes & {"link_to_missing_node", "dependency_cycle"}


def test_workflow_info_lists_outputs_edges_and_exposable_parameters() -> None:
    graph = copy.deepcopy(KSAMPLER)
    graph["3"]["_meta"] = {"title": "Positive Prompt"}
    info = get_workflow_info(graph, object_info=INFO)
    assert info.nodes == 7 and info.types["KSampler"] == 1 and info.outputs == ["7"]
    assert ("6", 0, "7", "samples") in info.edges and info.classes["6"] == "KSampler"
    assert info.titles == {"3": "Positive Prompt"}
    assert info.parameters['"Positive Prompt".text'] == "a tiny test"
    assert info.parameters["KSampler.seed"] == 1 and info.parameters["KSampler.cfg"] == 2.0
    assert info.parameters["EmptySD3LatentImage.width"] == 256
    assert info.parameters["SaveLatent.filename_prefix"] == "comfykit_tiny"
    assert not any(name.endswith((".model", ".clip", ".unet_name")) for name in info.parameters)
    # Every name is usable with --update and addresses the node it came from.
    for name, value in info.parameters.items():
        assert apply_updates(graph, [f"{name}={json.dumps(value)}"]) == graph
    assert json.loads(json.dumps(info.to_dict()))["edges"][0] == ["2", 0, "3", "clip"]


def test_workflow_info_names_ambiguous_nodes_by_id_and_guesses_outputs_offline() -> None:
    merged = merge_workflows(INVERT, INVERT)
    info = get_workflow_info(merged)
    assert info.outputs == ["3", "b_3"]
    assert info.parameters["3.filename_prefix"] == "comfykit/invert"
    assert info.parameters["1.width"] == 64 and info.parameters["b_1.width"] == 64
    assert WorkflowManager().get_workflow_info(merged).parameters == info.parameters
    custom = {"1": {"class_type": "MyWriter", "inputs": {}}}
    assert get_workflow_info(custom, object_info={"MyWriter": {"output_node": True}}).outputs == ["1"]


def test_validate_returns_readable_strings_or_problem_records() -> None:
    broken = copy.deepcopy(INVERT)
    broken["1"]["inputs"]["width"] = 0
    ok, problems = validate_workflow(broken, object_info=INFO)
    assert not ok and isinstance(problems[0], Problem)
    ok, lines = validate_workflow(broken, object_info=INFO, detailed=False)
    assert not ok and lines == ["error: node 1 (EmptyImage), input 'width': 0 is below the minimum 1 "
                                "(hint: Use a value from 1 to 16384.)"]
    manager = WorkflowManager(object_info=INFO)
    assert manager.validate_workflow(broken) == (False, lines)
    assert manager.validate_workflow(broken, detailed=True) == (False, problems)
    assert manager.validate_workflow(INVERT) == (True, [])
    assert check_workflow(broken, object_info=INFO) == problems


def test_validate_with_a_client_uses_its_object_info() -> None:
    from comfykit import ComfyUIClient
    from comfykit.testing import ComfyUISimulator

    with ComfyUISimulator(port=0) as sim, ComfyUIClient(url=sim.url, plugin_options=["no:monitor"]) as client:
        assert validate_workflow(INVERT, client=client)[0]
        broken = copy.deepcopy(INVERT)
        broken["2"]["class_type"] = "ImageInvertt"
        ok, lines = WorkflowManager(client=client).validate_workflow(broken)
        assert not ok and "the server has no node class 'ImageInvertt'" in lines[0]


# --------------------------------------------------------------------------- round trips

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**53, 2**53),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
input_values = st.one_of(json_scalars, st.lists(json_scalars, max_size=3),
                         st.tuples(st.sampled_from(["1", "2"]), st.integers(0, 3)).map(list))
graphs = st.dictionaries(
    st.text(alphabet="0123456789:", min_size=1, max_size=4),
    st.fixed_dictionaries(
        {"class_type": st.text(min_size=1, max_size=12),
         "inputs": st.dictionaries(st.text(max_size=8), input_values, max_size=4)},
        optional={"_meta": st.fixed_dictionaries({"title": st.text(max_size=12)})},
    ),
    min_size=1, max_size=5,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(graph=graphs, suffix=st.sampled_from([".json", ".yaml"]))
def test_save_and_load_round_trip(tmp_path: Path, graph: dict[str, Any], suffix: str) -> None:
    manager = WorkflowManager(tmp_path)
    path = manager.save_workflow(graph, tmp_path / f"w{suffix}")
    assert manager.load_workflow(path) == graph
    assert load_workflow(path) == graph


def _spell_value(value: Any) -> str:
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
    return json.dumps(value)


@settings(max_examples=300, deadline=None)
@given(node=st.one_of(st.text(alphabet="0123456789", min_size=1, max_size=3).map(lambda n: ("id", n)),
                      st.text(min_size=1, max_size=15).filter(lambda t: '"' not in t).map(lambda t: ("title", t))),
       name=st.text(min_size=1, max_size=10).filter(lambda t: t == t.strip() and not any(c in t for c in '.="')),
       value=st.one_of(json_scalars, st.lists(json_scalars, max_size=3)))
def test_update_strings_round_trip(node: tuple[str, str], name: str, value: Any) -> None:
    kind, label = node
    target = label if kind == "id" else f'"{label}"'
    update = parse_update(f"{target}.{name}={_spell_value(value)}")
    assert (update.node, update.input) == (label, name)
    if isinstance(value, float):
        assert math.isclose(update.value, value) or update.value == value
    else:
        assert update.value == value


def test_validate_before_send_follows_the_config(tmp_path: Path) -> None:
    from comfykit import ComfyUIClient
    from comfykit.errors import WorkflowLoadError, WorkflowValidationError
    from comfykit.testing import ComfyUISimulator
    from comfykit.workflow import read_object_info, validate_before_send

    broken = copy.deepcopy(INVERT)
    broken["1"]["inputs"]["width"] = 0
    broken["2"]["inputs"]["image"] = ["9", 0]
    with ComfyUISimulator(port=0) as sim, ComfyUIClient(url=sim.url, plugin_options=["no:monitor"]) as client:
        assert validate_before_send(INVERT, client=client) == []
        with pytest.raises(WorkflowValidationError, match="has 2 errors; it was not sent") as caught:
            validate_before_send(broken, client=client, path="w.json")
        assert {p.code for p in caught.value.problems} == {"value_smaller_than_min", "link_to_missing_node"}
        assert str(caught.value).startswith("w.json: ") and "input 'width'" in str(caught.value)
        assert validate_before_send(broken, client=client, config={"workflow": {"validate_before_send": False}}) == []
    # Offline: the saved /object_info named in the config.
    saved = tmp_path / "object_info.json"
    saved.write_text(json.dumps(INFO))
    settings = {"workflow.validate_before_send": True, "workflow.object_info": str(saved)}
    assert read_object_info(saved)["ImageInvert"] == INFO["ImageInvert"]
    with pytest.raises(WorkflowValidationError):
        validate_before_send(broken, config=settings)
    warned = _with_bool_batch()
    assert [p.code for p in validate_before_send(warned, config=settings)] == ["value_coerced"]
    with pytest.raises(WorkflowLoadError, match="cannot read the saved /object_info"):
        validate_before_send(INVERT, config={"workflow.object_info": str(tmp_path / "absent.json")})


def _with_bool_batch() -> dict[str, Any]:
    graph = copy.deepcopy(INVERT)
    graph["1"]["inputs"]["batch_size"] = True
    return graph


def test_a_saved_object_info_is_read_once_per_version_of_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from comfykit.errors import WorkflowValidationError
    from comfykit.workflow import api, validate_before_send

    reads: list[Path] = []
    real = api.read_object_info
    monkeypatch.setattr(api, "read_object_info", lambda path: reads.append(Path(path)) or real(path))
    saved = tmp_path / "object_info.json"
    saved.write_text(json.dumps(INFO))
    settings = {"workflow.validate_before_send": True, "workflow.object_info": str(saved)}
    for _ in range(5):
        assert validate_before_send(INVERT, config=settings) == []
    assert reads == [saved]
    # A changed file is read again: without ImageInvert the same graph is now invalid.
    saved.write_text(json.dumps({k: v for k, v in INFO.items() if k != "ImageInvert"}))
    os.utime(saved, ns=(saved.stat().st_atime_ns, saved.stat().st_mtime_ns + 1_000_000))
    with pytest.raises(WorkflowValidationError):
        validate_before_send(INVERT, config=settings)
    assert reads == [saved, saved]
