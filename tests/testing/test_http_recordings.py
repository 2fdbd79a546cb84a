"""The simulator answers recorded HTTP requests with the recorded status and body shape, for both versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from comfykit.testing import ComfyUISimulator
from testing.recordings import RECORDINGS, load_http, shape

VERSIONS = ["0.3.64", "0.33.0"]


def _recordings(version: str, prefix: str) -> list[str]:
    return sorted(p.stem for p in (RECORDINGS / version / "http").glob(f"{prefix}*.json"))



@pytest.fixture(scope="module", params=VERSIONS)
def sim(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    with ComfyUISimulator(port=0, comfyui_version=request.param, root=tmp_path_factory.mktemp("sim")) as simulator:
        yield simulator


def _cases(prefix: str) -> list[Any]:
    return [pytest.param(v, n, id=f"{v}-{n}") for v in VERSIONS for n in _recordings(v, prefix)]


@pytest.mark.parametrize(("version", "name"), _cases("post_prompt_"))
def test_post_prompt_answers_like_the_recording(version: str, name: str, tmp_path: Path) -> None:
    recording = load_http(version, name)
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
    recording = load_http(sim.comfyui_version, name)
    response = httpx.get(sim.url + recording["request"]["path"], headers=recording["request"].get("headers", {}))
    assert response.status_code == recording["status"]
    expected = recording["body"].get("json") if isinstance(recording.get("body"), dict) else None
    if expected is not None:
        assert shape(response.json()) == shape(expected)
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
        expected = load_http(version, "post_userdata_file")
        assert saved.status_code == 200 and shape(saved.json()) == shape(expected["body"]["json"])
        read = httpx.get(url)
        assert read.status_code == load_http(version, "get_userdata_file")["status"]
        assert read.json() == {"comfykit": True}
        assert httpx.get(simulator.url + "/userdata?dir=workflows").json() == ["comfykit_test.json"]
        assert httpx.delete(url).status_code == load_http(version, "delete_userdata_file")["status"] == 204
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
    recording = load_http(sim.comfyui_version, name)
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
        assert shape(response.json()) == shape(body["json"]) or name.startswith(("get_object_info", "get_api_object"))
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
    recording = load_http("0.33.0", name)
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
        assert shape(actual) == shape(expected)
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
    recording = load_http(version, name)
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


def _replay(sim: ComfyUISimulator, recording: dict[str, Any]) -> httpx.Response:
    """Send the recorded request again; an ``Origin`` naming the recorded server is pointed at this one."""
    request = recording["request"]
    headers = dict(request.get("headers", {}))
    if "Origin" in headers:
        headers["Origin"] = sim.url
    content = None
    if "json" in request:
        content = json.dumps(request["json"]).encode()
        headers.setdefault("Content-Type", "application/json")
    return httpx.request(request["method"], sim.url + request["path"], content=content, headers=headers)


def _assert_like(response: httpx.Response, recording: dict[str, Any], *, exact_keys: bool = True) -> None:
    """Same status, and a body of the same kind: JSON of the same shape, the same text, or empty."""
    assert response.status_code == recording["status"], response.text
    body = recording.get("body") or {}
    if recording["request"]["method"] == "HEAD" or body.get("binary_length") == 0:
        assert response.content == b""
    elif "json" in body:
        expected = body["json"]
        actual = response.json()
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        assert type(actual) is type(expected)
        if exact_keys:
            assert shape(actual) == shape(expected)
    elif "text" in body:
        assert response.text == body["text"]
    elif "text_truncated" in body:
        assert response.headers["content-type"].startswith(recording["headers"]["Content-Type"])


#: requests that need no state; the body shape must match key for key
PLAIN = [
    "get_api_history_empty_id",
    "get_extensions",
    "get_internal_logs",
    "get_internal_logs_raw",
    "get_models_checkpoints",
    "get_root",
    "get_api_root",
    "get_matching_origin",
    "options_prompt",
    "get_v2_userdata",
]
#: the same, for bodies whose keys are data of the recording machine (templates, languages, files)
PLAIN_DATA_KEYS = ["get_i18n", "get_workflow_templates", "get_experiment_models", "get_internal_files_output"]
#: 0.33.0 only (global subgraphs and node replacements are served empty: their keys are data)
PLAIN_NEW = [
    "get_global_subgraphs",
    "get_node_replacements",
    "get_sec_fetch_site_cross_site",
    "get_sec_fetch_site_same_origin",
    "get_assets_disabled",
    "get_assets_one_disabled",
    "get_assets_seed_status_disabled",
    "get_tags_disabled",
    "head_assets_hash_disabled",
    "post_assets_seed_disabled",
]


@pytest.mark.parametrize("name", PLAIN + PLAIN_DATA_KEYS)
def test_plain_requests_answer_like_the_recording(sim: ComfyUISimulator, name: str) -> None:
    recording = load_http(sim.comfyui_version, name)
    _assert_like(_replay(sim, recording), recording, exact_keys=name not in PLAIN_DATA_KEYS)


@pytest.mark.parametrize("name", PLAIN_NEW)
def test_new_version_requests_answer_like_the_recording(name: str, tmp_path: Path) -> None:
    recording = load_http("0.33.0", name)
    with ComfyUISimulator(port=0, comfyui_version="0.33.0", root=tmp_path) as simulator:
        _assert_like(_replay(simulator, recording), recording, exact_keys=not name.startswith(("get_global", "get_node_repl")))


def test_routes_answer_with_and_without_the_api_prefix_as_recorded(sim: ComfyUISimulator) -> None:
    matrix = load_http(sim.comfyui_version, "api_prefix_matrix")["matrix"]
    (sim.files.root / "user" / "workflows").mkdir(parents=True, exist_ok=True)
    seen = {path: {"plain": httpx.get(sim.url + path).status_code, "/api": httpx.get(sim.url + "/api" + path).status_code}
            for path in matrix}
    assert seen == matrix


@pytest.mark.parametrize("version", VERSIONS)
def test_queue_runs_by_number_then_prompt_id_as_recorded(version: str, tmp_path: Path) -> None:
    recording = load_http(version, "queue_execution_order")
    slow = json.loads((RECORDINGS / version / "workflows" / "slow.json").read_text())
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as simulator:
        for _ in range(recording["numbers_returned"]["plain_1"] - 1):  # rejected posts advance the counter too
            assert httpx.post(simulator.url + "/prompt", json={"prompt": {}}).status_code == 400
        with simulator.pause() as slow_running:  # everything else is queued behind the running slow job
            first = httpx.post(simulator.url + "/prompt", json={"prompt": slow}).json()["prompt_id"]
            slow_running.wait()
            names = {first: "slow_running"}
            numbers = {}
            for name in recording["posted_order"]:
                body: dict[str, Any] = {"prompt": _text_prompt(name)}
                if name == "front_true":
                    body["front"] = True
                elif name.startswith("number_"):
                    body["number"] = float(name.removeprefix("number_"))
                answer = httpx.post(simulator.url + "/prompt", json=body).json()
                names[answer["prompt_id"]] = name
                numbers[name] = answer["number"]
        history = _wait_for_history(simulator, len(names))
    assert [names[prompt_id] for prompt_id in history] == recording["completion_order"]
    assert numbers == recording["numbers_returned"]
    assert {n: type(v) for n, v in numbers.items()} == {n: type(v) for n, v in recording["numbers_returned"].items()}


def _text_prompt(tag: str) -> dict[str, Any]:
    """A quick, uncached job: a string concatenation shown as text."""
    return {
        "1": {"class_type": "StringConcatenate", "inputs": {"string_a": "comfy", "string_b": tag, "delimiter": "_"}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }


def _wait_for_history(sim: ComfyUISimulator, count: int) -> dict[str, Any]:
    """Poll until ``count`` jobs are in history (the executor thread works in the background)."""
    import time

    for _ in range(2000):
        history = dict(httpx.get(sim.url + "/history").json())
        if len(history) >= count and not httpx.get(sim.url + "/prompt").json()["exec_info"]["queue_remaining"]:
            return history
        time.sleep(0.01)
    raise AssertionError(f"history never reached {count} entries")


def _png(mode: str = "RGB", color: Any = (9, 9, 9)) -> bytes:
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    Image.new(mode, (8, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


def _multipart(filename: str, content: bytes) -> bytes:
    """A multipart body whose ``image`` part carries ``filename`` byte for byte (as curl -F sends it)."""
    head = f'--comfykitBOUNDARY\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
    return head.encode() + b"Content-Type: image/png\r\n\r\n" + content + b"\r\n--comfykitBOUNDARY--\r\n"


#: recording -> the filename as it reached the server (aiohttp's client percent-encodes "/" in filenames)
RAW_UPLOADS = {
    "post_upload_image_empty_filename": "",
    "post_upload_image_raw_traversal_filename": "../escape.png",
    "post_upload_image_traversal_filename": "..%2Fescape.png",
}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", sorted(RAW_UPLOADS))
def test_raw_multipart_uploads_answer_like_the_recording(version: str, name: str, tmp_path: Path) -> None:
    recording = load_http(version, name)
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as simulator:
        response = httpx.post(simulator.url + "/upload/image", content=_multipart(RAW_UPLOADS[name], _png()),
                              headers={"Content-Type": "multipart/form-data; boundary=comfykitBOUNDARY"})
        written = sorted(p.name for p in simulator.files.root.rglob("*") if p.is_file())
    _assert_like(response, recording)
    if recording["status"] == 200:
        assert response.json() == recording["body"]["json"]
        assert written == [recording["body"]["json"]["name"]]
    else:
        assert written == []


@pytest.mark.parametrize("version", VERSIONS)
def test_upload_over_the_size_limit_is_refused_as_recorded(version: str, tmp_path: Path) -> None:
    recording = load_http(version, "post_upload_image_too_large")
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as simulator:
        limit = httpx.get(simulator.url + "/features").json()["max_upload_size"]
        body = _multipart("big.png", b"\0" * (105_000_000 - 200))
        response = httpx.post(simulator.url + "/upload/image", content=body, timeout=60,
                              headers={"Content-Type": "multipart/form-data; boundary=comfykitBOUNDARY"})
    assert response.status_code == recording["status"] == 413
    assert response.text.startswith(f"Maximum request body size {limit} exceeded")
    assert response.text == "Maximum request body size 104857600 exceeded."


@pytest.mark.parametrize("version", VERSIONS)
def test_mask_upload_answers_like_the_recording(version: str, tmp_path: Path) -> None:
    recording = load_http(version, "post_upload_mask")
    recorded_fields = recording["request"]["multipart"].items()
    fields = {k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in recorded_fields if k != "image"}
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as simulator:
        (simulator.files.input_dir / "comfykit_upload.png").write_bytes(_png())
        files = {"image": ("comfykit_mask.png", _png("RGBA", (0, 0, 0, 77)), "image/png")}
        response = httpx.post(simulator.url + "/upload/mask", files=files, data=fields)
        saved = simulator.files.input_dir / "clipspace" / "comfykit_mask.png"
        from PIL import Image

        with Image.open(saved) as image:
            assert image.mode == "RGBA" and image.getpixel((0, 0)) == (9, 9, 9, 77)
    _assert_like(response, recording)
    assert response.json() == recording["body"]["json"]
