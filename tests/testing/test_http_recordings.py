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


VIEW_AND_STATELESS = [
    "get_view_ok",
    "get_view_default_type_output",
    "get_view_range",
    "get_view_if_modified_since",
    "get_view_channel_rgb",
    "get_view_channel_a",
    "get_view_preview_webp",
    "get_view_preview_jpeg",
    "get_view_input_upload",
    "get_view_annotated_name",
    "get_view_traversal_subfolder_short",
    "get_api_view_ok",
    "head_view",
    "post_interrupt_global_no_body",
    "post_interrupt_other_prompt_id",
    "post_free",
    "post_free_empty",
    "post_queue_clear",
    "post_queue_delete",
    "post_history_clear",
    "post_history_delete",
    "get_api_internal_logs",
    "get_api_prompt",
    "get_api_system_stats",
    "get_api_object_info_one",
    "get_object_info_one",
    "get_object_info_v3_node",
    "get_models",
    "get_users",
    "get_settings",
    "get_userdata_no_dir",
    "get_userdata_workflows",
    "get_internal_files_invalid",
    "get_internal_folder_paths",
    "get_view_metadata_missing",
    "get_experiment_models_checkpoints",
]


@pytest.mark.parametrize("version", VERSIONS)
def test_userdata_round_trip(version: str, tmp_path: Path) -> None:
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as simulator:
        url = simulator.url + "/userdata/workflows%2Fcomfykit_test.json"
        saved = httpx.post(url + "?overwrite=true&full_info=true", content=b'{"comfykit": true}')
        expected = _load(version, "post_userdata_file")
        assert saved.status_code == 200 and _shape(saved.json()) == _shape(expected["body"]["json"])
        assert httpx.get(url).json() == {"comfykit": True}
        assert httpx.get(simulator.url + "/userdata?dir=workflows").json() == ["comfykit_test.json"]
        assert httpx.delete(url).status_code == 204
        assert httpx.get(url).status_code == 404
        assert httpx.get(simulator.url + "/api/internal/logs").status_code == 404
        assert isinstance(httpx.get(simulator.url + "/internal/logs").json(), str)


def _setup_files(sim: ComfyUISimulator, path: str) -> None:
    """Create the files the recorded request reads (the names differ between the two recordings)."""
    from io import BytesIO
    from urllib.parse import parse_qs, urlsplit

    from PIL import Image

    query = parse_qs(urlsplit(path).query)
    filename = query.get("filename", [""])[0].removesuffix(" [input]")
    if filename.endswith(".png") and "/" not in filename and ".." not in filename:
        folder = sim.files.folder(query.get("type", ["output"])[0]) / query.get("subfolder", [""])[0]
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGBA", (16, 16), (1, 2, 3, 128)).save(folder / filename)
    buffer = BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    (sim.files.input_dir / "comfykit_upload.png").write_bytes(buffer.getvalue())


@pytest.mark.parametrize("name", VIEW_AND_STATELESS)
def test_files_and_control_endpoints_answer_like_the_recording(sim: ComfyUISimulator, name: str) -> None:
    recording = _load(sim.comfyui_version, name)
    request = recording["request"]
    _setup_files(sim, request["path"])
    if name == "get_userdata_workflows" and recording["status"] == 200:
        (sim.files.root / "user" / "workflows").mkdir(parents=True, exist_ok=True)  # it existed on that server
    response = httpx.request(
        request["method"], sim.url + request["path"], json=request.get("json"), headers=request.get("headers", {})
    )
    assert response.status_code == recording["status"]
    body = recording.get("body") or {}
    if "json" in body:
        assert _shape(response.json()) == _shape(body["json"]) or name.startswith(("get_object_info", "get_api_object"))
    elif body.get("binary_length") == 0 or request["method"] == "HEAD":
        assert response.content == b""
    if name in ("get_view_ok", "get_view_range", "head_view"):
        for header in ("Content-Disposition", "Accept-Ranges", "ETag", "Last-Modified"):
            assert header in response.headers


JOBS_ERRORS = [
    "jobs_list_limit_0",
    "jobs_list_limit_invalid",
    "jobs_list_limit_negative",
    "jobs_list_offset_invalid",
    "jobs_list_sort_by_invalid",
    "jobs_list_sort_order_invalid",
    "jobs_list_status_invalid",
    "jobs_list_no_api_prefix",
    "jobs_list_empty",
    "jobs_list_offset_100",
    "jobs_list_offset_negative",
    "jobs_list_status_empty",
    "jobs_list_double_api_prefix",
    "jobs_get_unknown_uuid",
    "jobs_get_unknown_free_text",
    "jobs_cancel_unknown_uuid",
    "jobs_cancel_free_text_id",
    "jobs_cancel_batch_empty",
    "jobs_cancel_batch_invalid_ids",
    "jobs_cancel_batch_missing_key",
    "jobs_cancel_batch_non_json",
    "jobs_cancel_batch_not_list",
    "jobs_cancel_batch_body_not_object",
]


@pytest.mark.parametrize("name", JOBS_ERRORS)
def test_jobs_api_answers_like_the_recording(name: str, tmp_path: Path) -> None:
    recording = _load("0.33.0", name)
    request = recording["request"]
    with ComfyUISimulator(port=0, comfyui_version="0.33.0", root=tmp_path) as simulator:
        if "raw_body" in request:
            response = httpx.request(request["method"], simulator.url + request["path"],
                                     content=request["raw_body"].encode(), headers=request.get("headers", {}))
        else:
            response = httpx.request(request["method"], simulator.url + request["path"], json=request.get("json"))
    assert response.status_code == recording["status"]
    expected = (recording.get("body") or {}).get("json")
    if expected is not None:
        actual = response.json()
        assert _shape(actual) == _shape(expected)
        if "error" in expected and name != "jobs_list_status_invalid":
            assert actual["error"] == expected["error"]


UPLOAD_CASES = [
    # (recording, filename, content, extra form fields)
    ("post_upload_image_new", "comfykit_new.png", b"new", {}),
    ("post_upload_image_same_name_same_bytes", "comfykit_upload.png", b"original", {}),
    ("post_upload_image_same_name_new_bytes", "comfykit_upload.png", b"different", {}),
    ("post_upload_image_overwrite_true", "comfykit_upload.png", b"different", {"overwrite": "true"}),
    ("post_upload_image_subfolder", "sub.png", b"s", {"subfolder": "comfykit/sub", "overwrite": "1"}),
    ("post_upload_image_type_output", "out.png", b"o", {"type": "output", "overwrite": "true"}),
    ("post_upload_image_type_temp", "tmp.png", b"t", {"type": "temp", "overwrite": "true"}),
    ("post_upload_image_traversal_subfolder", "x.png", b"x", {"subfolder": "../.."}),
    ("post_upload_image_bad_type", "x.png", b"x", {"type": "nonsense"}),
    ("post_upload_image_filename_with_directory", "sub/dir/name.png", b"x", {}),
    ("post_upload_image_missing_field", None, b"", {"overwrite": "true"}),
]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("name", "filename", "content", "fields"), UPLOAD_CASES, ids=[c[0] for c in UPLOAD_CASES])
def test_uploads_answer_like_the_recording(
    version: str, name: str, filename: str | None, content: bytes, fields: dict[str, str], tmp_path: Path
) -> None:
    recording = _load(version, name)
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as simulator:
        (simulator.files.input_dir / "comfykit_upload.png").write_bytes(b"original")
        files = {"image": (filename, content, "image/png")} if filename is not None else {"other": ("a", b"", "x/y")}
        response = httpx.post(simulator.url + "/upload/image", files=files, data=fields)
        stored = sorted(p.relative_to(simulator.files.root).as_posix() for p in simulator.files.root.rglob("*") if p.is_file())
    assert response.status_code == recording["status"], response.text
    expected = recording["body"].get("json")
    if expected is not None:
        actual = response.json()
        assert actual["subfolder"] == expected["subfolder"] and actual["type"] == expected["type"]
        if name != "post_upload_image_new":
            assert actual["name"] == expected["name"]
        folder = "/".join(part for part in (actual["type"], actual["subfolder"], actual["name"]) if part)
        assert folder in stored
    else:
        assert stored == ["input/comfykit_upload.png"]  # a refused upload writes nothing
