"""The simulator's own behaviour: generic nodes, knobs (changed while it runs), restart, the fixture, quickstart."""

from __future__ import annotations

import json
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import websocket
from PIL import Image

from comfykit.testing import ComfyUISimulator, Knobs
from comfykit.testing.quickstart import TXT2IMG, run

RECORDINGS = Path(__file__).resolve().parent.parent / "fixtures" / "recordings"


def _workflow(name: str) -> dict[str, Any]:
    return dict(json.loads((RECORDINGS / "0.33.0" / "workflows" / f"{name}.json").read_text()))


def _wait_history(sim: ComfyUISimulator, prompt_id: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = httpx.get(f"{sim.url}/history/{prompt_id}").json()
        if prompt_id in entry:
            return dict(entry[prompt_id])
        time.sleep(0.01)
    raise AssertionError(f"{prompt_id} never reached history")


def test_quickstart_writes_real_pngs(tmp_path: Path) -> None:
    written = run(tmp_path / "out")
    assert len(written) == TXT2IMG["5"]["inputs"]["batch_size"]
    for path in written:
        assert path.parent == tmp_path / "out"
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.size == (512, 512)


def test_comfyui_simulator_fixture(comfyui_simulator: ComfyUISimulator) -> None:
    assert httpx.get(comfyui_simulator.url + "/system_stats").json()["system"]["comfyui_version"] == "0.33.0"


@pytest.mark.parametrize("comfyui_simulator", ["0.3.64"], indirect=True)
def test_comfyui_simulator_fixture_version(comfyui_simulator: ComfyUISimulator) -> None:
    assert httpx.get(comfyui_simulator.url + "/system_stats").json()["system"]["comfyui_version"] == "0.3.64"


def test_identical_prompt_is_cached_and_free_memory_clears_the_cache(comfyui_simulator: ComfyUISimulator) -> None:
    sim = comfyui_simulator
    workflow = _workflow("invert_save")
    first = httpx.post(sim.url + "/prompt", json={"prompt": workflow}).json()["prompt_id"]
    _wait_history(sim, first)
    second = httpx.post(sim.url + "/prompt", json={"prompt": workflow}).json()["prompt_id"]
    cached = _wait_history(sim, second)["status"]["messages"][1][1]["nodes"]
    assert sorted(cached) == ["1", "2", "3"]
    httpx.post(sim.url + "/free", json={"free_memory": True})
    third = httpx.post(sim.url + "/prompt", json={"prompt": workflow}).json()["prompt_id"]
    assert _wait_history(sim, third)["status"]["messages"][1][1]["nodes"] == []


def test_fail_next_and_response_delay_change_while_running(comfyui_simulator: ComfyUISimulator) -> None:
    sim = comfyui_simulator
    sim.knobs.fail_next = 2
    assert httpx.get(sim.url + "/queue").status_code == 500
    assert httpx.get(sim.url + "/queue").status_code == 500
    assert httpx.get(sim.url + "/queue").status_code == 200
    sim.knobs.fail_status = 503
    sim.knobs.fail_next = 1
    assert httpx.get(sim.url + "/queue").status_code == 503
    sim.knobs.response_delay = 1.0
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(sim.url + "/queue", timeout=0.2)
    sim.knobs.response_delay = 0.0
    assert httpx.get(sim.url + "/queue").status_code == 200


def test_refuse_connections_closes_and_reopens_the_port(comfyui_simulator: ComfyUISimulator) -> None:
    sim = comfyui_simulator
    sim.knobs.refuse_connections = True
    deadline = time.monotonic() + 30  # a condition awaited, not a speed: generous for a loaded machine
    refused = False
    while time.monotonic() < deadline and not refused:
        try:
            socket.create_connection(("127.0.0.1", sim.port), timeout=1).close()
            time.sleep(0.02)
        except ConnectionRefusedError:
            refused = True
    assert refused
    sim.knobs.refuse_connections = False
    deadline = time.monotonic() + 30  # a condition awaited, not a speed: generous for a loaded machine
    while True:
        try:
            assert httpx.get(sim.url + "/queue").status_code == 200
            break
        except httpx.ConnectError:
            assert time.monotonic() < deadline
            time.sleep(0.02)


def test_drop_websocket_after(comfyui_simulator: ComfyUISimulator) -> None:
    sim = comfyui_simulator
    sim.knobs.drop_websocket_after = 0.2
    ws = websocket.create_connection(sim.url.replace("http", "ws") + "/ws?clientId=a", timeout=5)
    ws.recv()
    started = time.monotonic()
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        while time.monotonic() - started < 30:
            ws.recv()
    ws.close()


def test_frame_log_records_each_frame_with_the_time_it_was_written(tmp_path: Path) -> None:
    log = tmp_path / "frames.jsonl"
    sim = ComfyUISimulator(port=0, root=tmp_path / "sim", knobs=Knobs(frame_log=str(log)))
    client_id = str(uuid.uuid4())
    with sim:
        ws = websocket.create_connection(sim.url.replace("http", "ws") + f"/ws?clientId={client_id}", timeout=5)
        received = [json.loads(ws.recv())]

        def run_job() -> tuple[str, float]:
            prompt = _workflow("preview_image")
            prompt["1"]["inputs"]["color"] = len(received)  # unique: not served from the cache
            prompt_id = httpx.post(sim.url + "/prompt", json={"prompt": prompt, "client_id": client_id}).json()["prompt_id"]
            while True:
                received.append(json.loads(ws.recv()))
                if received[-1]["type"] == "executing" and received[-1]["data"].get("node") is None:
                    return prompt_id, time.time()

        logged_job, arrived = run_job()
        sim.knobs.frame_log = None
        unlogged_job, _ = run_job()
        ws.close()
    # Complete now that the simulator has stopped.
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    ours = [line for line in lines if line["client_id"] == client_id]
    frames = [line["frame"] for line in ours]
    # Every frame this socket got while the knob was set, in order, as it was sent; none after.
    assert frames == received[: len(frames)]
    assert {"type": "executing", "data": {"node": None, "prompt_id": logged_job}} in frames
    assert unlogged_job not in json.dumps(frames)
    success = next(line for line in ours if line["frame"]["type"] == "execution_success")
    assert success["frame"]["data"]["prompt_id"] == logged_job
    # Written no earlier than the server's own (whole-millisecond) stamp and before the client read the end.
    assert success["frame"]["data"]["timestamp"] / 1000 <= success["sent"] + 0.001
    assert success["sent"] <= arrived


def test_history_delay_holds_the_history_entry_back(comfyui_simulator: ComfyUISimulator) -> None:
    sim = comfyui_simulator
    sim.knobs.history_delay = 0.5
    client_id = str(uuid.uuid4())
    ws = websocket.create_connection(sim.url.replace("http", "ws") + f"/ws?clientId={client_id}", timeout=5)
    ws.recv()
    prompt_id = httpx.post(sim.url + "/prompt", json={"prompt": _workflow("preview_image"), "client_id": client_id}).json()[
        "prompt_id"
    ]
    while (message := json.loads(ws.recv()))["type"] != "execution_success":
        pass
    _wait_history(sim, prompt_id)
    # Seen at least history_delay after the server stamped execution_success (a lower bound, whatever the load).
    assert time.time() * 1000 - message["data"]["timestamp"] >= 500
    ws.close()


def test_restart_forgets_queue_history_and_cache(comfyui_simulator: ComfyUISimulator) -> None:
    sim = comfyui_simulator
    workflow = _workflow("invert_save")
    done = httpx.post(sim.url + "/prompt", json={"prompt": workflow}).json()["prompt_id"]
    _wait_history(sim, done)
    with sim.pause() as running:  # one job running and one pending when the server restarts
        httpx.post(sim.url + "/prompt", json={"prompt": _workflow("scale_save")})
        running.wait()
        httpx.post(sim.url + "/prompt", json={"prompt": _workflow("preview_image")})
        assert len(httpx.get(sim.url + "/queue").json()["queue_pending"]) == 1
        sim.restart()
    assert httpx.get(sim.url + "/history").json() == {}
    assert httpx.get(sim.url + "/queue").json()["queue_pending"] == []
    again = httpx.post(sim.url + "/prompt", json={"prompt": workflow}).json()["prompt_id"]
    assert _wait_history(sim, again)["status"]["messages"][1][1]["nodes"] == []


def test_hostile_output_names_are_reported_as_configured(comfyui_simulator: ComfyUISimulator) -> None:
    sim = comfyui_simulator
    sim.knobs.output_filename = "../../escape.png"
    sim.knobs.output_subfolder = "/etc"
    prompt_id = httpx.post(sim.url + "/prompt", json={"prompt": _workflow("scale_save")}).json()["prompt_id"]
    [image] = _wait_history(sim, prompt_id)["outputs"]["3"]["images"]
    assert image["filename"] == "../../escape.png"
    assert image["subfolder"] == "/etc"


def test_interrupt_stops_the_running_job(comfyui_simulator: ComfyUISimulator) -> None:
    sim = comfyui_simulator
    with sim.pause() as running:
        prompt_id = httpx.post(sim.url + "/prompt", json={"prompt": _workflow("interruptible_chain")}).json()["prompt_id"]
        running.wait()
        assert [item[1] for item in httpx.get(sim.url + "/queue").json()["queue_running"]] == [prompt_id]
        httpx.post(sim.url + "/interrupt", json={"prompt_id": prompt_id})
    entry = _wait_history(sim, prompt_id)
    assert entry["status"]["status_str"] == "error"
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"
    job = httpx.get(f"{sim.url}/api/jobs/{prompt_id}").json()
    assert job["status"] == "cancelled"


def test_upload_renames_on_collision_and_dedupes_same_bytes(comfyui_simulator: ComfyUISimulator) -> None:
    sim = comfyui_simulator
    first = httpx.post(sim.url + "/upload/image", files={"image": ("a.png", b"one", "image/png")}).json()
    same = httpx.post(sim.url + "/upload/image", files={"image": ("a.png", b"one", "image/png")}).json()
    other = httpx.post(sim.url + "/upload/image", files={"image": ("a.png", b"two", "image/png")}).json()
    assert first["name"] == same["name"] == "a.png"
    assert other["name"] == "a (1).png"
    escape = httpx.post(sim.url + "/upload/image", files={"image": ("x.png", b"1", "image/png")}, data={"subfolder": "../.."})
    assert escape.status_code == 400
    view = httpx.get(sim.url + "/view", params={"filename": "a (1).png", "type": "input"}, headers={"Range": "bytes=0-1"})
    assert view.status_code == 206 and view.content == b"tw"


def test_model_lists_keep_recorded_names_and_can_be_replaced(tmp_path: Path) -> None:
    from comfykit.testing.catalog import load_object_info

    default = load_object_info("0.3.64")["UNETLoader"]["input"]["required"]["unet_name"][0]
    assert "comfykit_tiny_mmdit.safetensors" in default and "tiny_sd3.safetensors" in default
    chosen = load_object_info("0.3.64", models={"ckpt_name": ["only.safetensors"]})
    assert chosen["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == ["only.safetensors"]
    with ComfyUISimulator(port=0, root=tmp_path, models={"ckpt_name": ["only.safetensors"]}) as sim:
        answer = httpx.post(sim.url + "/prompt", json={"prompt": TXT2IMG})
    assert answer.status_code == 400
    assert answer.json()["node_errors"]["4"]["errors"][0]["type"] == "value_not_in_list"


@pytest.mark.parametrize("version", ["0.3.64", "0.33.0"])
def test_recorded_tiny_sampler_runs_with_step_time_and_previews(version: str, tmp_path: Path) -> None:
    workflow = json.loads((RECORDINGS / version / "workflows" / "tiny_ksampler.json").read_text())
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as sim:
        sim.knobs.preview_method = "latent2rgb"
        sim.knobs.step_seconds = 0.01
        client_id = str(uuid.uuid4())
        ws = websocket.create_connection(sim.url.replace("http", "ws") + f"/ws?clientId={client_id}", timeout=10)
        ws.recv()
        answer = httpx.post(sim.url + "/prompt", json={"prompt": workflow, "client_id": client_id})
        assert answer.status_code == 200, answer.text
        previews = progress = 0
        while True:
            frame = ws.recv()
            if isinstance(frame, bytes):
                assert frame[:4] == (1).to_bytes(4, "big") and frame[8:10] == b"\xff\xd8"  # legacy JPEG preview
                previews += 1
                continue
            message = json.loads(frame)
            progress += message["type"] == "progress"
            if message["type"] == "executing" and message["data"]["node"] is None:
                break
        ws.close()
    assert previews == progress == workflow["6"]["inputs"]["steps"]  # steps with previews are never throttled


def test_a_pause_holds_the_job_at_its_node_until_released(comfyui_simulator: ComfyUISimulator) -> None:
    sim = comfyui_simulator
    with sim.pause(node="2") as held:
        prompt_id = httpx.post(sim.url + "/prompt", json={"prompt": _workflow("invert_save")}).json()["prompt_id"]
        assert held.wait().where == (prompt_id, "2", None)
        assert [item[1] for item in httpx.get(sim.url + "/queue").json()["queue_running"]] == [prompt_id]
        assert httpx.get(f"{sim.url}/history/{prompt_id}").json() == {}
    assert _wait_history(sim, prompt_id)["status"]["completed"]
    with sim.pause(node="no such node") as never, pytest.raises(TimeoutError, match="never reached"):
        never.wait(timeout=0.01)
