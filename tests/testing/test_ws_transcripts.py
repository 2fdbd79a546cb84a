"""The simulator sends the same WebSocket events, in the same order, as the recorded real servers."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import websocket

from comfykit.testing import ComfyUISimulator

RECORDINGS = Path(__file__).resolve().parent.parent / "fixtures" / "recordings"
VERSIONS = ["0.3.64", "0.33.0"]

#: transcripts without an embedded prompt, and the recorded workflow they ran
WORKFLOW_OF = {
    "execution_error_canny": "exec_error_canny",
    "execution_error_latent_concat": "exec_error_latent_concat",
    "binary_images_legacy": "websocket_image",
    "binary_images_with_metadata": "websocket_image",
}
SINGLE_JOB = sorted(
    [
        "success_uncached",
        "success_fully_cached",
        "success_partially_cached",
        "success_two_outputs",
        "success_batch_4_images",
        "success_preview_temp",
        "success_load_image",
        *WORKFLOW_OF,
    ]
)


def _transcript(version: str, name: str) -> dict[str, Any]:
    return dict(json.loads((RECORDINGS / version / "ws" / f"{name}.json").read_text()))


def _recorded_types(transcript: dict[str, Any]) -> list[str]:
    """Event types after the POST, up to the job's final ``executing {node: null}``; binary frames by type."""
    [socket] = transcript["sockets"].values()
    types: list[str] = []
    posted = False
    for frame in socket["frames"]:
        if frame["kind"] == "client_action":
            posted = True
            continue
        if not posted:
            continue
        if frame["kind"] == "text":
            message = frame["msg"]
            types.append(message["type"])
            if message["type"] == "executing" and message["data"].get("node") is None:
                break
        elif frame["kind"] == "binary":
            types.append(f"binary:{frame['header']['event_type'] if 'header' in frame else frame.get('event_type')}")
    return types


def _binary_type(payload: bytes) -> str:
    return f"binary:{int.from_bytes(payload[:4], 'big')}"


def _run(sim: ComfyUISimulator, prompt: dict[str, Any], *, metadata: bool) -> list[str]:
    client_id = str(uuid.uuid4())
    ws = websocket.create_connection(sim.url.replace("http://", "ws://") + f"/ws?clientId={client_id}", timeout=20)
    try:
        ws.recv()  # the status frame with sid, sent on connect
        if metadata:
            ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
            assert json.loads(ws.recv())["type"] == "feature_flags"
        response = httpx.post(sim.url + "/prompt", json={"prompt": prompt, "client_id": client_id}, timeout=20)
        assert response.status_code == 200, response.text
        prompt_id = response.json()["prompt_id"]
        types: list[str] = []
        while True:
            payload = ws.recv()
            if isinstance(payload, bytes):
                types.append(_binary_type(payload))
                continue
            message = json.loads(payload)
            types.append(message["type"])
            data = message["data"]
            if message["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                return types
    finally:
        ws.close()


def _prepare(sim: ComfyUISimulator, name: str, prompt: dict[str, Any]) -> None:
    """Recreate what the recorded server had done before the transcript started."""
    if name == "success_fully_cached":
        _run(sim, prompt, metadata=False)
    elif name == "success_partially_cached":
        variant = copy.deepcopy(prompt)
        for node in variant.values():
            if node["class_type"] == "SaveImage":
                node["inputs"]["filename_prefix"] = "comfykit/earlier"
        _run(sim, variant, metadata=False)
    elif name == "success_load_image":
        from io import BytesIO

        from PIL import Image

        buffer = BytesIO()
        Image.new("RGB", (32, 32), (10, 200, 30)).save(buffer, format="PNG")
        files = {"image": ("comfykit_upload.png", buffer.getvalue(), "image/png")}
        assert httpx.post(sim.url + "/upload/image", files=files).status_code == 200


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", SINGLE_JOB)
def test_single_job_event_order_matches_the_recording(version: str, name: str, tmp_path: Path) -> None:
    transcript = _transcript(version, name)
    if name in WORKFLOW_OF:
        prompt = json.loads((RECORDINGS / version / "workflows" / f"{WORKFLOW_OF[name]}.json").read_text())
    else:
        prompt = transcript["prompt"]
    expected = _recorded_types(transcript)
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as sim:
        _prepare(sim, name, prompt)
        actual = _run(sim, prompt, metadata=name.endswith("with_metadata"))
    assert actual == expected


@pytest.mark.parametrize("version", VERSIONS)
def test_validation_error_sends_no_job_events(version: str, tmp_path: Path) -> None:
    prompt = json.loads((RECORDINGS / version / "workflows" / "no_output_node.json").read_text())
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as sim:
        ws = websocket.create_connection(sim.url.replace("http://", "ws://") + "/ws?clientId=x", timeout=5)
        ws.recv()
        response = httpx.post(sim.url + "/prompt", json={"prompt": prompt, "client_id": "x"})
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "prompt_no_outputs"
        ws.settimeout(0.3)
        with pytest.raises(websocket.WebSocketTimeoutException):
            ws.recv()
        ws.close()


def _socket_types(transcript: dict[str, Any], socket_name: str) -> list[str]:
    types = []
    for frame in transcript["sockets"][socket_name]["frames"]:
        if frame["kind"] == "text":
            types.append(frame["msg"]["type"])
        elif frame["kind"] == "binary":
            types.append(f"binary:{frame['event_type']}")
    return types[1:]  # without the connect status


def _collect(ws: websocket.WebSocket, until: Any, limit: float = 20) -> list[str]:
    ws.settimeout(limit)
    types: list[str] = []
    while True:
        payload = ws.recv()
        if isinstance(payload, bytes):
            types.append(_binary_type(payload))
            continue
        message = json.loads(payload)
        types.append(message["type"])
        if until(message):
            return types


@pytest.mark.parametrize("version", VERSIONS)
def test_interrupt_lands_at_the_next_node_as_recorded(version: str, tmp_path: Path) -> None:
    transcript = _transcript(version, "interrupted")
    prompt = json.loads((RECORDINGS / version / "workflows" / "interruptible_chain.json").read_text())
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as sim:
        sim.knobs.node_seconds = 0.15
        ws = websocket.create_connection(sim.url.replace("http://", "ws://") + "/ws?clientId=me", timeout=20)
        ws.recv()
        prompt_id = httpx.post(sim.url + "/prompt", json={"prompt": prompt, "client_id": "me"}).json()["prompt_id"]

        def third_node_started(message: dict[str, Any]) -> bool:
            return message["type"] == "executing" and message["data"].get("node") == "3"

        types = _collect(ws, third_node_started)
        httpx.post(sim.url + "/interrupt", json={"prompt_id": prompt_id})
        types += _collect(ws, lambda m: m["type"] == "executing" and m["data"].get("node") is None)
        ws.close()
    assert types == _socket_types(transcript, "A")


@pytest.mark.parametrize("version", VERSIONS)
def test_owner_gets_job_events_observer_only_status(version: str, tmp_path: Path) -> None:
    transcript = _transcript(version, "two_sockets_owner_and_observer")
    prompt = json.loads((RECORDINGS / version / "workflows" / "websocket_image.json").read_text())
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as sim:
        owner = websocket.create_connection(sim.url.replace("http://", "ws://") + "/ws?clientId=owner", timeout=20)
        observer = websocket.create_connection(sim.url.replace("http://", "ws://") + "/ws?clientId=observer", timeout=20)
        owner.recv()
        observer.recv()
        httpx.post(sim.url + "/prompt", json={"prompt": prompt, "client_id": "owner"})
        owner_types = _collect(owner, lambda m: m["type"] == "executing" and m["data"].get("node") is None)
        observer_types = _collect(observer, lambda m: m["type"] == "status"
                                  and m["data"]["status"]["exec_info"]["queue_remaining"] == 0)
        owner.close()
        observer.close()
    owner_name, observer_name = list(transcript["sockets"])
    assert owner_types == _socket_types(transcript, owner_name)
    assert observer_types == _socket_types(transcript, observer_name)


@pytest.mark.parametrize("version", VERSIONS)
def test_job_without_client_id_broadcasts_only_progress(version: str, tmp_path: Path) -> None:
    transcript = _transcript(version, "job_without_client_id")
    prompt = json.loads((RECORDINGS / version / "workflows" / "websocket_image.json").read_text())
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as sim:
        ws = websocket.create_connection(sim.url.replace("http://", "ws://") + "/ws?clientId=bystander", timeout=20)
        ws.recv()
        httpx.post(sim.url + "/prompt", json={"prompt": prompt})
        seen_start = False

        def done(message: dict[str, Any]) -> bool:
            nonlocal seen_start
            if message["type"] == "progress_state":
                seen_start = True
            return seen_start and message["type"] == "status" and message["data"]["status"]["exec_info"]["queue_remaining"] == 0

        types = _collect(ws, done)
        ws.close()
    assert types == _socket_types(transcript, "A")


@pytest.mark.parametrize("version", VERSIONS)
def test_connect_without_client_id_gets_an_invented_sid(version: str, tmp_path: Path) -> None:
    import re

    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as sim:
        base = sim.url.replace("http://", "ws://")
        for path in ("/ws", "/ws?clientId="):
            ws = websocket.create_connection(base + path, timeout=5)
            sid = json.loads(ws.recv())["data"]["sid"]
            assert re.fullmatch(r"[0-9a-f]{32}", sid)
            ws.close()
        ws = websocket.create_connection(base + "/api/ws?clientId=comfykit-api-ws", timeout=5)
        assert json.loads(ws.recv())["data"]["sid"] == "comfykit-api-ws"
        ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        flags = json.loads(ws.recv())
        assert flags["type"] == "feature_flags" and flags["data"]["supports_preview_metadata"] is True
        ws.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_a_new_socket_with_the_same_client_id_takes_over(version: str, tmp_path: Path) -> None:
    prompt = json.loads((RECORDINGS / version / "workflows" / "interruptible_chain.json").read_text())
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as sim:
        sim.knobs.node_seconds = 0.1
        base = sim.url.replace("http://", "ws://") + "/ws?clientId=same"
        first = websocket.create_connection(base, timeout=10)
        first.recv()
        prompt_id = httpx.post(sim.url + "/prompt", json={"prompt": prompt, "client_id": "same"}).json()["prompt_id"]
        _collect(first, lambda m: m["type"] == "executing" and m["data"].get("node") == "2")
        second = websocket.create_connection(base, timeout=10)
        assert json.loads(second.recv())["type"] == "status"
        resumed = json.loads(second.recv())
        assert resumed["type"] == "executing" and set(resumed["data"]) == {"node"}
        types = _collect(second, lambda m: m["type"] == "executing" and m["data"].get("node") is None)
        assert "execution_success" in types
        first.settimeout(0.2)
        silent = []
        try:
            while True:
                frame = first.recv()
                message = json.loads(frame) if isinstance(frame, str) else {"type": "binary"}
                silent.append(message["type"])
        except websocket.WebSocketTimeoutException:
            pass
        assert set(silent) <= {"status"}  # the old socket stays open but hears only the broadcasts
        first.close()
        second.close()
        assert httpx.get(f"{sim.url}/history/{prompt_id}").json()[prompt_id]["status"]["completed"]


@pytest.mark.parametrize("version", VERSIONS)
def test_deleted_and_cleared_prompts_leave_no_trace(version: str, tmp_path: Path) -> None:
    slow = json.loads((RECORDINGS / version / "workflows" / "slow.json").read_text())
    quick = json.loads((RECORDINGS / version / "workflows" / "invert_save.json").read_text())
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as sim:
        sim.knobs.node_seconds = 0.1
        ws = websocket.create_connection(sim.url.replace("http://", "ws://") + "/ws?clientId=q", timeout=10)
        ws.recv()
        ids = [httpx.post(sim.url + "/prompt", json={"prompt": p, "client_id": "q"}).json()["prompt_id"]
               for p in (slow, quick, quick)]
        httpx.post(sim.url + "/queue", json={"delete": [ids[1]]})
        httpx.post(sim.url + "/queue", json={"clear": True})
        seen: list[dict[str, Any]] = []
        _collect(ws, lambda m: seen.append(m) or (m["type"] == "executing" and m["data"].get("node") is None))
        ws.close()
        assert {m["data"].get("prompt_id") for m in seen if m["type"] != "status"} == {ids[0]}
        history = httpx.get(sim.url + "/history").json()
    assert list(history) == [ids[0]]


SAMPLER = ["sampler_nopreview_legacy", "sampler_nopreview_metadata", "sampler_latent2rgb_legacy", "sampler_latent2rgb_metadata"]


def _sampler_prompt(version: str, transcript: dict[str, Any]) -> dict[str, Any]:
    """The recorded sampler workflow with the recorded changes ("tiny_ksampler (steps=60, 512x512)")."""
    import random
    import re

    prompt = dict(json.loads((RECORDINGS / version / "workflows" / "tiny_ksampler.json").read_text()))
    description = transcript["workflow"]
    for node in prompt.values():
        inputs = node["inputs"]
        if "steps" in inputs and (steps := re.search(r"steps=(\d+)", description)):
            inputs["steps"] = int(steps.group(1))
        if "random seed" in description and "seed" in inputs:
            inputs["seed"] = random.randint(2, 2**31)
        if "width" in inputs and (size := re.search(r"(\d+)x(\d+)", description)):
            inputs["width"], inputs["height"] = int(size.group(1)), int(size.group(2))
    return prompt


def _prerun(sim: ComfyUISimulator, transcript: dict[str, Any], prompt: dict[str, Any]) -> None:
    """Run a variant first so that exactly the nodes the recording found cached are cached here."""
    [socket] = transcript["sockets"].values()
    cached = next((set(f["msg"]["data"]["nodes"]) for f in socket["frames"]
                   if f["kind"] == "text" and f["msg"]["type"] == "execution_cached"), set())
    if not cached:
        return
    variant = copy.deepcopy(prompt)
    for node_id, node in variant.items():
        if node_id in cached:
            continue
        inputs = node["inputs"]
        for key in ("seed", "width", "filename_prefix"):
            if key in inputs:
                inputs[key] = inputs[key] + (8 if key != "filename_prefix" else "_earlier")
                break
    _run(sim, variant, metadata=False)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", SAMPLER)
def test_sampler_progress_and_previews_match_the_recording(version: str, name: str, tmp_path: Path) -> None:
    transcript = _transcript(version, name)
    prompt = _sampler_prompt(version, transcript)
    expected = _recorded_types(transcript)
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as sim:
        sim.knobs.preview_method = "latent2rgb" if "latent2rgb" in name else "none"
        _prerun(sim, transcript, prompt)
        actual = _run(sim, prompt, metadata=name.endswith("metadata"))
    assert actual == expected


def _collapsed(types: list[str]) -> list[str]:
    """Runs of per-step frames (progress, progress_state, previews) as one item: their count is timing."""
    out: list[str] = []
    for kind in types:
        step = "steps" if kind in ("progress", "progress_state") or kind.startswith("binary:") else kind
        if not (out and step == "steps" and out[-1] == "steps"):
            out.append(step)
    return out


def _until_action(transcript: dict[str, Any], label: str) -> tuple[list[str], list[str]]:
    """Frame types before and after the client action whose label starts with ``label`` (without the connect status)."""
    [socket] = transcript["sockets"].values()
    before: list[str] = []
    after: list[str] = []
    target = before
    for frame in socket["frames"][1:]:
        if frame["kind"] == "client_action":
            if str(frame.get("action", "")).startswith(label):
                target = after
            continue
        if frame["kind"] == "text":
            target.append(frame["msg"]["type"])
        elif frame["kind"] == "binary":
            target.append(f"binary:{frame['event_type']}")
    return before[1:], after  # before: without the connect status


_OPEN = pytest.mark.xfail(reason="open: the frames around a mid-sampler interrupt differ from this recording", strict=False)


@pytest.mark.parametrize(("version", "name"), [
    pytest.param("0.33.0", "sampler_nopreview_interrupted"),
    pytest.param("0.3.64", "sampler_nopreview_interrupted", marks=_OPEN),
    pytest.param("0.3.64", "sampler_latent2rgb_interrupted", marks=_OPEN),
    pytest.param("0.33.0", "sampler_latent2rgb_interrupted", marks=_OPEN),
])
def test_an_interrupt_stops_the_sampler_mid_steps_as_recorded(version: str, name: str, tmp_path: Path) -> None:
    transcript = _transcript(version, name)
    prompt = _sampler_prompt(version, transcript)
    recorded_before, recorded_after = _until_action(transcript, "POST /interrupt")
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as sim:
        sim.knobs.preview_method = "latent2rgb" if "latent2rgb" in name else "none"
        sim.knobs.step_seconds = 0.05
        _prerun(sim, transcript, prompt)
        ws = websocket.create_connection(sim.url.replace("http://", "ws://") + "/ws?clientId=sampler", timeout=20)
        ws.recv()
        prompt_id = httpx.post(sim.url + "/prompt", json={"prompt": prompt, "client_id": "sampler"}).json()["prompt_id"]
        progressed = 0

        def fifth_step(message: dict[str, Any]) -> bool:
            nonlocal progressed
            progressed += message["type"] == "progress"
            return progressed == 3  # the recorded interrupt landed a few steps in

        before = _collect(ws, fifth_step)
        httpx.post(sim.url + "/interrupt", json={"prompt_id": prompt_id})
        after = _collect(ws, lambda m: m["type"] == "executing" and m["data"].get("node") is None)
        ws.close()
    assert _collapsed(before) == _collapsed(recorded_before)
    assert _collapsed(after) == _collapsed(recorded_after)


@pytest.mark.parametrize("version", VERSIONS)
def test_clientless_job_interrupt_is_broadcast_as_recorded(version: str, tmp_path: Path) -> None:
    transcript = _transcript(version, "job_without_client_id_interrupted")
    recorded_before, recorded_after = _until_action(transcript, "POST /interrupt")
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as sim:
        sim.knobs.node_seconds = 0.15
        ws = websocket.create_connection(sim.url.replace("http://", "ws://") + "/ws?clientId=bystander", timeout=20)
        ws.recv()
        prompt = json.loads((RECORDINGS / version / "workflows" / f"{transcript['workflow']}.json").read_text())
        httpx.post(sim.url + "/prompt", json={"prompt": prompt})
        before = _collect(ws, lambda m: m["type"] == "progress_state")
        before += _collect(ws, lambda m: m["type"] == "progress_state")
        httpx.post(sim.url + "/interrupt")
        after = _collect(ws, lambda m: m["type"] == "status" and m["data"]["status"]["exec_info"]["queue_remaining"] == 0)
        ws.close()
    assert _collapsed(before) == _collapsed(recorded_before)
    assert _collapsed(after) == _collapsed(recorded_after)


@pytest.mark.parametrize("version", VERSIONS)
def test_two_jobs_back_to_back_run_in_order_as_recorded(version: str, tmp_path: Path) -> None:
    transcript = _transcript(version, "two_jobs_back_to_back")
    [socket] = transcript["sockets"].values()
    recorded = [f["msg"]["type"] for f in socket["frames"] if f["kind"] == "text" and f["msg"]["type"] != "status"]
    first, second = (json.loads((RECORDINGS / version / "workflows" / f"{name.strip()}.json").read_text())
                     for name in transcript["workflow"].split("+"))
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as sim:
        sim.knobs.node_seconds = 0.02
        ws = websocket.create_connection(sim.url.replace("http://", "ws://") + "/ws?clientId=pair", timeout=20)
        ws.recv()
        ids = [httpx.post(sim.url + "/prompt", json={"prompt": p, "client_id": "pair"}).json()["prompt_id"]
               for p in (first, second)]
        types = _collect(ws, lambda m: m["type"] == "executing" and m["data"] == {"node": None, "prompt_id": ids[1]})
        ws.close()
    assert [t for t in types if t != "status"] == recorded
