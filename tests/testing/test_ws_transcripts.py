"""The simulator sends the same WebSocket frames, in the same order, as the recorded real servers.

Each frame is compared as its type plus the shape of its data (keys and JSON types, see ``_shape``),
binary frames as their preview header (type 1 with its image format, type 4 with its metadata keys).
Values that differ from run to run (ids, timestamps, sizes, file counters) are not compared.
"""

from __future__ import annotations

import copy
import json
import uuid
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pytest
import websocket
from PIL import Image

from comfykit.testing import ComfyUISimulator

RECORDINGS = Path(__file__).resolve().parent.parent / "fixtures" / "recordings"
VERSIONS = ["0.3.64", "0.33.0"]

#: transcripts and the recorded workflow they ran (a transcript that embeds its prompt must match it)
WORKFLOW_OF = {
    "success_load_image": "load_invert_save",
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
        *WORKFLOW_OF,
    ]
)


def _transcript(version: str, name: str) -> dict[str, Any]:
    return dict(json.loads((RECORDINGS / version / "ws" / f"{name}.json").read_text()))


#: one frame as compared: the event type ("binary:N" for binary frames) and the shape of its data or header
Frame = tuple[str, Any]


def _shape(value: Any) -> Any:
    """The recursive shape of a JSON value: dict keys, JSON types of the leaves, list element shapes.

    Values are ignored (ids, timestamps, sizes, filename counters differ from run to run); ``int`` and
    ``float`` stay apart because ComfyUI itself keeps them apart (``progress_state`` has ``0.0`` before a
    node reports progress and the integer step after). A homogeneous list is one element shape, so its
    length does not count; an empty list stays ``[]`` (``execution_cached`` of nothing is not of something).
    """
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        shapes = [_shape(item) for item in value]
        if shapes and all(shape == shapes[0] for shape in shapes):
            return ["list of", shapes[0]]
        return shapes
    if value is None:
        return "null"
    return type(value).__name__  # bool, int, float, str


def _recorded_frame(frame: dict[str, Any]) -> Frame | None:
    """A transcript entry as a compared frame; None for what is not a received frame (actions, connects)."""
    if frame["kind"] == "text":
        return frame["msg"]["type"], _shape(frame["msg"]["data"])
    if frame["kind"] == "binary":
        event = frame["event_type"]
        if event == 4:
            return "binary:4", _shape(frame["metadata"])
        return f"binary:{event}", {"image_format_code": frame["image_format_code"]}
    return None


def _live_frame(payload: str | bytes) -> tuple[Frame, dict[str, Any] | None]:
    """A received frame as a compared frame, plus the parsed message for text frames."""
    if isinstance(payload, bytes):
        event = int.from_bytes(payload[:4], "big")
        if event == 4:
            length = int.from_bytes(payload[4:8], "big")
            return ("binary:4", _shape(json.loads(payload[8:8 + length]))), None
        return (f"binary:{event}", {"image_format_code": int.from_bytes(payload[4:8], "big")}), None
    message = json.loads(payload)
    return (message["type"], _shape(message["data"])), message


def _recorded_frames(transcript: dict[str, Any]) -> list[Frame]:
    """Frames after the POST, up to the job's final ``executing {node: null}``."""
    [socket] = transcript["sockets"].values()
    frames: list[Frame] = []
    posted = False
    for entry in socket["frames"]:
        if entry["kind"] == "client_action":
            posted = True
            continue
        frame = _recorded_frame(entry)
        if not posted or frame is None:
            continue
        frames.append(frame)
        if entry["kind"] == "text" and entry["msg"]["type"] == "executing" and entry["msg"]["data"].get("node") is None:
            break
    return frames


def _connect(sim: ComfyUISimulator, client_id: str, *, metadata: bool = False, timeout: float = 20) -> websocket.WebSocket:
    """A socket past its connect ``status`` (and the ``feature_flags`` answer when ``metadata``)."""
    ws = websocket.create_connection(sim.url.replace("http://", "ws://") + f"/ws?clientId={client_id}", timeout=timeout)
    ws.recv()
    if metadata:
        ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        assert json.loads(ws.recv())["type"] == "feature_flags"
    return ws


def _run(sim: ComfyUISimulator, prompt: dict[str, Any], *, metadata: bool) -> list[Frame]:
    client_id = str(uuid.uuid4())
    ws = _connect(sim, client_id, metadata=metadata)
    try:
        response = httpx.post(sim.url + "/prompt", json={"prompt": prompt, "client_id": client_id}, timeout=20)
        assert response.status_code == 200, response.text
        prompt_id = response.json()["prompt_id"]
        return _collect(ws, lambda m: m["type"] == "executing" and m["data"] == {"node": None, "prompt_id": prompt_id})
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
        assert transcript.get("prompt", prompt) == prompt
    else:
        prompt = transcript["prompt"]
    expected = _recorded_frames(transcript)
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as sim:
        _prepare(sim, name, prompt)
        actual = _run(sim, prompt, metadata=name.endswith("with_metadata"))
    assert actual == expected


#: the frame a queue change broadcasts: sent after a scenario, it proves that nothing else came before it
QUEUE_STATUS: Frame = ("status", {"status": {"exec_info": {"queue_remaining": "int"}}})


def _nothing_else(sim: ComfyUISimulator, ws: websocket.WebSocket) -> None:
    """Assert that ``ws`` holds no unread frame: the next one is the status of a fresh queue change."""
    assert httpx.post(sim.url + "/queue", json={"clear": True}).status_code == 200
    assert _live_frame(ws.recv())[0] == QUEUE_STATUS


@pytest.mark.parametrize("version", VERSIONS)
def test_validation_error_sends_no_job_events(version: str, tmp_path: Path) -> None:
    """Replays ``validation_error_no_events``: EmptyImage width 0 is refused with 400, and the socket hears nothing."""
    transcript = _transcript(version, "validation_error_no_events")
    [action] = [entry for entry in transcript["sockets"]["A"]["frames"] if entry["kind"] == "client_action"]
    prompt = json.loads((RECORDINGS / version / "workflows" / "invert_save.json").read_text())
    prompt["1"]["inputs"]["width"] = 0  # the recorded error: value_smaller_than_min on node 1's width, output 3 depends on it
    no_output = json.loads((RECORDINGS / version / "workflows" / "no_output_node.json").read_text())
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as sim:
        ws = _connect(sim, "x", timeout=5)
        response = httpx.post(sim.url + "/prompt", json={"prompt": prompt, "client_id": "x"})
        assert response.status_code == action["status"]
        assert _shape(response.json()) == _shape(action["response"])
        assert response.json()["error"]["type"] == action["response"]["error"]["type"]
        response = httpx.post(sim.url + "/prompt", json={"prompt": no_output, "client_id": "x"})
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "prompt_no_outputs"
        _nothing_else(sim, ws)
        ws.close()
    assert _socket_frames(transcript, "A") == []


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", ["connect_only", "connect_feature_flags", "connect_without_client_id"])
def test_connect_transcripts_match_the_recording(version: str, name: str, tmp_path: Path) -> None:
    """Each recorded socket, opened on its recorded path and sending what it sent, gets the recorded frames only."""
    import re

    transcript = _transcript(version, name)
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as sim:
        for socket_name, socket in transcript["sockets"].items():
            path = next(entry["url"] for entry in socket["frames"] if entry["kind"] == "connected")
            recorded = [frame for frame in map(_recorded_frame, socket["frames"]) if frame is not None]
            ws = websocket.create_connection(sim.url.replace("http://", "ws://") + path, timeout=10)
            for entry in socket["frames"]:
                if entry["kind"] == "sent":
                    ws.send(json.dumps(entry["msg"]))
            received = [ws.recv() for _ in recorded]
            _nothing_else(sim, ws)
            ws.close()
            assert [_live_frame(payload)[0] for payload in received] == recorded, socket_name
            sid = json.loads(received[0])["data"]["sid"]
            client_id = path.partition("clientId=")[2]
            assert sid == client_id if client_id else re.fullmatch(r"[0-9a-f]{32}", sid), socket_name
            recorded_data = {e["msg"]["type"]: e["msg"]["data"] for e in socket["frames"] if e["kind"] == "text"}
            for payload in received[1:]:  # the feature flags answer has the recorded values too
                message = json.loads(payload)
                assert message["data"] == recorded_data[message["type"]]


def _socket_frames(transcript: dict[str, Any], socket_name: str) -> list[Frame]:
    """Every frame one recorded socket received, without its connect ``status``."""
    frames = [_recorded_frame(entry) for entry in transcript["sockets"][socket_name]["frames"]]
    return [frame for frame in frames if frame is not None][1:]


def _collect(ws: websocket.WebSocket, until: Any, limit: float = 20, messages: list[dict[str, Any]] | None = None) -> list[Frame]:
    """Frames up to and including the one for which ``until(message)`` is true.

    A binary frame is offered to ``until`` as ``{"type": "binary:N"}``. The parsed text messages are
    appended to ``messages`` when given.
    """
    ws.settimeout(limit)
    frames: list[Frame] = []
    while True:
        frame, message = _live_frame(ws.recv())
        frames.append(frame)
        if message is None:
            message = {"type": frame[0]}
        elif messages is not None:
            messages.append(message)
        if until(message):
            return frames


@pytest.mark.parametrize("version", VERSIONS)
def test_interrupt_lands_at_the_next_node_as_recorded(version: str, tmp_path: Path) -> None:
    transcript = _transcript(version, "interrupted")
    prompt = json.loads((RECORDINGS / version / "workflows" / "interruptible_chain.json").read_text())
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as sim:
        ws = websocket.create_connection(sim.url.replace("http://", "ws://") + "/ws?clientId=me", timeout=20)
        ws.recv()
        with sim.pause(node="3") as third_node_running:  # the interrupt arrives while node 3 runs, as recorded
            prompt_id = httpx.post(sim.url + "/prompt", json={"prompt": prompt, "client_id": "me"}).json()["prompt_id"]
            frames = _collect(ws, lambda m: m["type"] == "executing" and m["data"].get("node") == "3")
            third_node_running.wait()
            httpx.post(sim.url + "/interrupt", json={"prompt_id": prompt_id})
        frames += _collect(ws, lambda m: m["type"] == "executing" and m["data"].get("node") is None)
        ws.close()
    assert frames == _socket_frames(transcript, "A")


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
        owner_frames = _collect(owner, lambda m: m["type"] == "executing" and m["data"].get("node") is None)
        observer_frames = _collect(observer, lambda m: m["type"] == "status"
                                  and m["data"]["status"]["exec_info"]["queue_remaining"] == 0)
        owner.close()
        observer.close()
    owner_name, observer_name = list(transcript["sockets"])
    assert owner_frames == _socket_frames(transcript, owner_name)
    assert observer_frames == _socket_frames(transcript, observer_name)


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

        frames = _collect(ws, done)
        ws.close()
    assert frames == _socket_frames(transcript, "A")


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
    """Replays ``reconnect_same_client_id``: a second socket with the job's clientId opens while a node runs."""
    transcript = _transcript(version, "reconnect_same_client_id")
    first_name, second_name = transcript["sockets"]
    recorded_first = _socket_frames(transcript, first_name)
    recorded_second = [frame for frame in map(_recorded_frame, transcript["sockets"][second_name]["frames"]) if frame is not None]
    [taken_over_at] = [e["msg"]["data"]["node"] for e in transcript["sockets"][second_name]["frames"]
                       if e["kind"] == "text" and e["msg"]["type"] == "executing" and "prompt_id" not in e["msg"]["data"]]
    prompt = json.loads((RECORDINGS / version / "workflows" / f"{transcript['workflow']}.json").read_text())
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as sim:
        base = sim.url.replace("http://", "ws://") + "/ws?clientId=same"
        first = _connect(sim, "same", timeout=10)
        with sim.pause(node=taken_over_at) as node_running:  # the second socket opens while the node runs
            prompt_id = httpx.post(sim.url + "/prompt", json={"prompt": prompt, "client_id": "same"}).json()["prompt_id"]
            first_frames = _collect(first, lambda m: m["type"] == "executing" and m["data"].get("node") == taken_over_at)
            node_running.wait()
            second = websocket.create_connection(base, timeout=10)
            second_frames = _collect(second, lambda m: m["type"] == "executing" and m["data"].get("node") == taken_over_at)
        second_frames += _collect(second, lambda m: m["type"] == "executing" and m["data"].get("node") is None)
        assert httpx.get(f"{sim.url}/history/{prompt_id}").json()[prompt_id]["status"]["completed"]
        # The replaced socket stays open but hears nothing more, not even the status broadcasts: a restart
        # closes it, and the close comes after anything that was queued for it.
        sim.restart()
        assert first.recv_data(control_frame=True)[0] == websocket.ABNF.OPCODE_CLOSE
        first.close()
        second.close()
    assert first_frames == recorded_first
    assert second_frames == recorded_second


def _recorded_queue_counts(transcript: dict[str, Any], socket_name: str) -> list[int]:
    """``queue_remaining`` of every ``status`` one recorded socket received after its connect status."""
    frames = transcript["sockets"][socket_name]["frames"]
    return _queue_counts([entry["msg"] for entry in frames if entry["kind"] == "text"])[1:]


def _queue_counts(messages: list[dict[str, Any]]) -> list[int]:
    return [m["data"]["status"]["exec_info"]["queue_remaining"] for m in messages if m["type"] == "status"]


def _without_status(frames: list[Frame]) -> list[Frame]:
    return [frame for frame in frames if frame[0] != "status"]


@pytest.mark.parametrize("version", VERSIONS)
def test_deleted_and_cleared_prompts_leave_no_trace(version: str, tmp_path: Path) -> None:
    """Replays ``queue_delete_and_clear``: a slow job runs, two more are posted, one deleted, the rest cleared.

    ``status`` frames answer HTTP requests on another connection, so where they fall between the job's
    frames is timing (the reference README, quirk 2): the job's frames are compared in order, and the
    ``status`` frames as their own sequence of queue counts.
    """
    transcript = _transcript(version, "queue_delete_and_clear")
    recorded = _socket_frames(transcript, "A")
    slow = json.loads((RECORDINGS / version / "workflows" / "slow.json").read_text())
    quick = json.loads((RECORDINGS / version / "workflows" / "invert_save.json").read_text())
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as sim:
        ws = _connect(sim, "q", timeout=10)
        messages: list[dict[str, Any]] = []
        with sim.pause(node="1") as slow_job_running:  # as recorded, the others are posted while the slow job runs
            ids = [httpx.post(sim.url + "/prompt", json={"prompt": slow, "client_id": "q"}).json()["prompt_id"]]
            frames = _collect(ws, lambda m: m["type"] == "execution_start", messages=messages)
            slow_job_running.wait()
            ids += [httpx.post(sim.url + "/prompt", json={"prompt": quick, "client_id": "q"}).json()["prompt_id"]
                    for _ in range(2)]
            httpx.post(sim.url + "/queue", json={"delete": [ids[1]]})
            httpx.post(sim.url + "/queue", json={"clear": True})
        frames += _collect(ws, lambda m: m["type"] == "executing" and m["data"].get("node") is None, messages=messages)
        ws.close()
        assert {m["data"].get("prompt_id") for m in messages if m["type"] != "status"} == {ids[0]}
        history = httpx.get(sim.url + "/history").json()
    assert list(history) == [ids[0]]
    assert _without_status(frames) == _without_status(recorded)
    assert _queue_counts(messages) == _recorded_queue_counts(transcript, "A")


@pytest.mark.parametrize("version", VERSIONS)
def test_image_batch_of_mixed_sizes_runs_as_a_batch_save(version: str, tmp_path: Path) -> None:
    """``image_batch_mixed_sizes`` has no transcript: it must report its batch as ``success_batch_4_images`` does.

    ImageBatch scales the second batch to the first image's size, so three 64x64 images are saved. The
    nodes run in ComfyUI's order: the second EmptyImage first (two links before the output node).
    """
    prompt = json.loads((RECORDINGS / version / "workflows" / "image_batch_mixed_sizes.json").read_text())
    recorded = _recorded_frames(_transcript(version, "success_batch_4_images"))
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as sim:
        ws = _connect(sim, "mixed")
        httpx.post(sim.url + "/prompt", json={"prompt": prompt, "client_id": "mixed"})
        messages: list[dict[str, Any]] = []
        frames = _collect(ws, lambda m: m["type"] == "executing" and m["data"].get("node") is None, messages=messages)
        ws.close()
        [executed] = [m["data"] for m in messages if m["type"] == "executed"]
        sizes = []
        for image in executed["output"]["images"]:
            response = httpx.get(sim.url + "/view", params=image)
            assert response.status_code == 200
            with Image.open(BytesIO(response.content)) as saved:
                sizes.append(saved.size)
    assert sizes == [(64, 64)] * 3
    assert [m["data"]["node"] for m in messages if m["type"] == "executing"] == ["2", "1", "3", "4", None]
    assert [frame for frame in frames if frame[0] == "executed"] == [frame for frame in recorded if frame[0] == "executed"]
    # The recorded batch job with two more nodes: each node adds its progress_state frames and its executing.
    kinds = [kind for kind, _ in _collapsed(frames)]
    recorded_kinds = [kind for kind, _ in _collapsed(recorded)]
    assert kinds == recorded_kinds[:recorded_kinds.index("executing")] + ["executing", "steps"] * 2 + recorded_kinds[
        recorded_kinds.index("executing"):]


@pytest.mark.parametrize("version", VERSIONS)
def test_a_websocket_image_larger_than_4_mib_arrives_whole(version: str, tmp_path: Path) -> None:
    """``websocket_image_large`` has no transcript: its one noisy 1536x1536 PNG is a frame of ~4.9 MB
    (the reference README, quirk 4), sent like the images of ``binary_images_legacy``."""
    prompt = json.loads((RECORDINGS / version / "workflows" / "websocket_image_large.json").read_text())
    recorded = _recorded_frames(_transcript(version, "binary_images_legacy"))
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as sim:
        ws = _connect(sim, "large")
        httpx.post(sim.url + "/prompt", json={"prompt": prompt, "client_id": "large"})
        ws.settimeout(60)
        frames: list[Frame] = []
        lengths: list[int] = []
        while not frames or frames[-1] != ("executing", {"node": "null", "prompt_id": "str"}):
            payload = ws.recv()
            if isinstance(payload, bytes):
                lengths.append(len(payload))
            frames.append(_live_frame(payload)[0])
        ws.close()
    assert len(lengths) == 1 and lengths[0] > 4 * 1024 * 1024

    def tail(frames: list[Frame]) -> list[str]:
        """From the SaveImageWebsocket node's start: kinds, with the step frames collapsed."""
        last_node = max(i for i, frame in enumerate(frames) if frame[0] == "executing" and frame[1]["node"] == "str")
        return [kind for kind, _ in _collapsed(frames[last_node:])]

    assert tail(frames) == tail(recorded)
    assert [frame for frame in frames if frame[0].startswith("binary")] == [("binary:1", {"image_format_code": 2})]


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
    expected = _recorded_frames(transcript)
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as sim:
        sim.knobs.preview_method = "latent2rgb" if "latent2rgb" in name else "none"
        _prerun(sim, transcript, prompt)
        actual = _run(sim, prompt, metadata=name.endswith("metadata"))
    assert actual == expected


def _collapsed(frames: list[Frame]) -> list[Any]:
    """Runs of per-step frames (progress, progress_state, previews) as one item: the distinct frames of the run.

    How many steps pass before an interrupt lands is timing (the recorder's sampler and ours run at
    different speeds), so a run keeps which kinds and shapes of step frames it had, not how many.
    """
    out: list[Any] = []
    for frame in frames:
        kind = frame[0]
        if kind in ("progress", "progress_state") or kind.startswith("binary:"):
            if not (out and isinstance(out[-1], tuple) and out[-1][0] == "steps"):
                out.append(("steps", []))
            shapes: list[str] = out[-1][1]
            text = json.dumps(frame, sort_keys=True)
            if text not in shapes:
                shapes.append(text)
                shapes.sort()
        else:
            out.append(frame)
    return out


def _until_action(transcript: dict[str, Any], label: str) -> tuple[list[Frame], list[Frame]]:
    """Frames before and after the client action whose label starts with ``label`` (without the connect status)."""
    [socket] = transcript["sockets"].values()
    before: list[Frame] = []
    after: list[Frame] = []
    target = before
    for entry in socket["frames"]:
        if entry["kind"] == "client_action" and str(entry.get("action", "")).startswith(label):
            target = after
        frame = _recorded_frame(entry)
        if frame is not None:
            target.append(frame)
    return before[1:], after  # before: without the connect status


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", ["sampler_nopreview_interrupted", "sampler_latent2rgb_interrupted"])
def test_an_interrupt_stops_the_sampler_mid_steps_as_recorded(version: str, name: str, tmp_path: Path) -> None:
    transcript = _transcript(version, name)
    prompt = _sampler_prompt(version, transcript)
    recorded_before, recorded_after = _until_action(transcript, "POST /interrupt")
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as sim:
        sim.knobs.preview_method = "latent2rgb" if "latent2rgb" in name else "none"
        _prerun(sim, transcript, prompt)
        # Steps slower than 0.33's 100 ms progress throttle, so that each step sends its frames as recorded
        # (a lower bound: a loaded machine only makes the steps slower).
        sim.knobs.step_seconds = 0.15
        ws = websocket.create_connection(sim.url.replace("http://", "ws://") + "/ws?clientId=sampler", timeout=20)
        ws.recv()
        progressed = 0
        previews = "latent2rgb" in name

        def third_step_done(message: dict[str, Any]) -> bool:
            # The recorded interrupt landed a few steps in, after a step's frames were all received: with
            # legacy previews a step ends with its type 1 frame, which ComfyUI sends after ``progress``.
            nonlocal progressed
            progressed += message["type"] == "progress"
            return progressed == 3 and (not previews or message["type"] == "binary:1")

        # The sampler holds after its third step, so the interrupt lands before the fourth, as recorded.
        with sim.pause(step=3) as third_step:
            prompt_id = httpx.post(sim.url + "/prompt", json={"prompt": prompt, "client_id": "sampler"}).json()["prompt_id"]
            before = _collect(ws, third_step_done)
            third_step.wait()
            httpx.post(sim.url + "/interrupt", json={"prompt_id": prompt_id})
        after = _collect(ws, lambda m: m["type"] == "executing" and m["data"].get("node") is None)
        ws.close()
    assert _collapsed(before) == _collapsed(recorded_before)
    assert _collapsed(after) == _collapsed(recorded_after)


def _running_at_interrupt(transcript: dict[str, Any]) -> str:
    """The node the last ``progress_state`` before the recorded ``POST /interrupt`` showed running."""
    [socket] = transcript["sockets"].values()
    running = ""
    for entry in socket["frames"]:
        if entry["kind"] == "client_action" and str(entry.get("action", "")).startswith("POST /interrupt"):
            return running
        if entry["kind"] == "text" and entry["msg"]["type"] == "progress_state":
            nodes = entry["msg"]["data"]["nodes"]
            running = next((node for node, state in nodes.items() if state["state"] == "running"), running)
    raise AssertionError("the transcript has no interrupt")


@pytest.mark.parametrize("version", VERSIONS)
def test_clientless_job_interrupt_is_broadcast_as_recorded(version: str, tmp_path: Path) -> None:
    transcript = _transcript(version, "job_without_client_id_interrupted")
    recorded_before, recorded_after = _until_action(transcript, "POST /interrupt")
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as sim:
        ws = websocket.create_connection(sim.url.replace("http://", "ws://") + "/ws?clientId=bystander", timeout=20)
        ws.recv()
        prompt = json.loads((RECORDINGS / version / "workflows" / f"{transcript['workflow']}.json").read_text())
        running = _running_at_interrupt(transcript)

        def recorded_node_running(message: dict[str, Any]) -> bool:  # where the recorded interrupt landed
            return message["type"] == "progress_state" and message["data"]["nodes"].get(running, {}).get("state") == "running"

        with sim.pause(node=running) as node_running:  # the interrupt arrives while that node runs
            httpx.post(sim.url + "/prompt", json={"prompt": prompt})
            before = _collect(ws, recorded_node_running)
            node_running.wait()
            httpx.post(sim.url + "/interrupt")
        after = _collect(ws, lambda m: m["type"] == "status" and m["data"]["status"]["exec_info"]["queue_remaining"] == 0)
        ws.close()
    assert _collapsed(before) == _collapsed(recorded_before)
    assert _collapsed(after) == _collapsed(recorded_after)


@pytest.mark.parametrize("version", VERSIONS)
def test_two_jobs_back_to_back_run_in_order_as_recorded(version: str, tmp_path: Path) -> None:
    transcript = _transcript(version, "two_jobs_back_to_back")
    [socket] = transcript["sockets"].values()
    recorded = [frame for frame in map(_recorded_frame, socket["frames"]) if frame is not None and frame[0] != "status"]
    first, second = (json.loads((RECORDINGS / version / "workflows" / f"{name.strip()}.json").read_text())
                     for name in transcript["workflow"].split("+"))
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as sim:
        ws = websocket.create_connection(sim.url.replace("http://", "ws://") + "/ws?clientId=pair", timeout=20)
        ws.recv()
        with sim.pause() as first_job_running:  # as recorded, the second job is posted while the first runs
            ids = [httpx.post(sim.url + "/prompt", json={"prompt": first, "client_id": "pair"}).json()["prompt_id"]]
            first_job_running.wait()
            ids.append(httpx.post(sim.url + "/prompt", json={"prompt": second, "client_id": "pair"}).json()["prompt_id"])
        frames = _collect(ws, lambda m: m["type"] == "executing" and m["data"] == {"node": None, "prompt_id": ids[1]})
        ws.close()
    assert [frame for frame in frames if frame[0] != "status"] == recorded
