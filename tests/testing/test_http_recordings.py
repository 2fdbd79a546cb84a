"""The simulator answers recorded HTTP requests with the recorded status and body shape, for both versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from comfykit.testing import ComfyUISimulator

RECORDINGS = Path(__file__).resolve().parent.parent / "fixtures" / "recordings"
VERSIONS = ["0.3.64", "0.33.0"]


def _recordings(version: str, prefix: str) -> list[str]:
    return sorted(p.stem for p in (RECORDINGS / version / "http").glob(f"{prefix}*.json"))


def _load(version: str, name: str) -> dict[str, Any]:
    return dict(json.loads((RECORDINGS / version / "http" / f"{name}.json").read_text()))


def _shape(value: Any) -> Any:
    """Keys and value types, recursively; ids, numbers and texts themselves are ignored."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return ["list"]
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if value is None:
        return "null"
    return type(value).__name__


@pytest.fixture(scope="module", params=VERSIONS)
def sim(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    with ComfyUISimulator(port=0, comfyui_version=request.param, root=tmp_path_factory.mktemp("sim")) as simulator:
        yield simulator


def _cases(prefix: str) -> list[Any]:
    return [pytest.param(v, n, id=f"{v}-{n}") for v in VERSIONS for n in _recordings(v, prefix)]


@pytest.mark.parametrize(("version", "name"), _cases("post_prompt_"))
def test_post_prompt_answers_like_the_recording(version: str, name: str, tmp_path: Path) -> None:
    recording = _load(version, name)
    request = recording["request"]
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as simulator:
        if "raw_body" in request:
            response = httpx.post(simulator.url + request["path"], content=request["raw_body"].encode(),
                                  headers=request.get("headers", {}))
        else:
            response = httpx.post(simulator.url + request["path"], json=request["json"], headers=request.get("headers", {}))
    assert response.status_code == recording["status"], response.text
    expected = recording["body"].get("json")
    if expected is None:
        if "text" in recording["body"]:
            assert response.text == recording["body"]["text"]
        return
    actual = response.json()
    assert set(actual) == set(expected)
    if "error" in expected:
        assert actual["error"]["type"] == expected["error"]["type"]
        assert actual["error"]["message"] == expected["error"]["message"]
    assert set(actual["node_errors"]) == set(expected["node_errors"])
    for node_id, entry in expected["node_errors"].items():
        got = actual["node_errors"][node_id]
        assert got["class_type"] == entry["class_type"]
        assert sorted(got["dependent_outputs"]) == sorted(entry["dependent_outputs"])
        assert [e["type"] for e in got["errors"]] == [e["type"] for e in entry["errors"]]
        assert [e["details"] for e in got["errors"]] == [e["details"] for e in entry["errors"]]


STATIC_GETS = [
    "get_system_stats",
    "get_features",
    "get_embeddings",
    "get_prompt_idle",
    "get_queue_idle",
    "get_history_empty",
    "get_history_unknown_id",
    "get_object_info_unknown",
    "get_models_unknown_folder",
    "get_view_no_filename",
    "get_view_missing_file",
    "get_view_bad_type",
    "get_view_traversal_filename",
    "get_view_absolute_filename",
    "get_view_traversal_subfolder",
    "get_history_max_items_invalid",
]


@pytest.mark.parametrize("name", STATIC_GETS)
def test_read_only_endpoints_answer_like_the_recording(sim: ComfyUISimulator, name: str) -> None:
    recording = _load(sim.comfyui_version, name)
    response = httpx.get(sim.url + recording["request"]["path"], headers=recording["request"].get("headers", {}))
    assert response.status_code == recording["status"]
    expected = recording["body"].get("json") if isinstance(recording.get("body"), dict) else None
    if expected is not None:
        assert _shape(response.json()) == _shape(expected)
        assert response.headers["content-type"] == "application/json; charset=utf-8"


def test_object_info_serves_the_versions_catalogue(sim: ComfyUISimulator) -> None:
    catalogue = httpx.get(sim.url + "/object_info").json()
    names = json.loads((RECORDINGS / sim.comfyui_version / "http" / "object_info_class_names.json").read_text())
    assert set(names) <= set(catalogue)
    one = httpx.get(sim.url + "/api/object_info/KSampler").json()
    assert set(one) == {"KSampler"} and "input" in one["KSampler"]


def test_jobs_api_exists_only_on_the_new_version(sim: ComfyUISimulator) -> None:
    response = httpx.get(sim.url + "/api/jobs?limit=2")
    if sim.comfyui_version == "0.3.64":
        assert response.status_code == 404
        return
    assert response.status_code == 200
    assert set(response.json()) == {"jobs", "pagination"}
    assert httpx.get(sim.url + "/jobs").status_code == 404
    bad = httpx.get(sim.url + "/api/jobs?status=nope")
    assert bad.status_code == 400 and "error" in bad.json()
    missing = httpx.get(sim.url + "/api/jobs/not-a-job")
    assert missing.status_code == 404 and missing.json() == {"error": "Job not found"}
