"""ComfyUIClient against the simulator over real sockets: every endpoint, both versions, every error path."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from comfykit import ComfyUIClient
from comfykit.errors import (
    ExecutionError,
    ExecutionInterrupted,
    FeatureUnavailable,
    NotFound,
    PromptRejected,
    ProtocolError,
    RequestTimeout,
    ServerError,
    ServerUnreachable,
    WaitTimeout,
)
from comfykit.testing import ComfyUISimulator
from comfykit.utils import extract_output_images

RECORDINGS = Path(__file__).resolve().parent / "fixtures" / "recordings"


def _workflow(name: str) -> dict[str, Any]:
    return dict(json.loads((RECORDINGS / "0.33.0" / "workflows" / f"{name}.json").read_text()))


@pytest.fixture(params=["0.3.64", "0.33.0"])
def sim(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    with ComfyUISimulator(port=0, comfyui_version=request.param, root=tmp_path / "sim") as simulator:
        yield simulator


@pytest.fixture
def client(sim: ComfyUISimulator) -> Any:
    with ComfyUIClient(url=sim.url, plugin_options=["no:monitor"]) as c:
        yield c


def test_run_a_workflow_and_read_everything_back(client: ComfyUIClient, sim: ComfyUISimulator) -> None:
    answer = client.queue_prompt(_workflow("invert_save"))
    prompt_id = answer["prompt_id"]
    assert answer["node_errors"] == {}
    assert len(prompt_id) == 36 and prompt_id == prompt_id.lower()
    entry = client.wait_for_completion(prompt_id, timeout=20)
    [image] = extract_output_images(entry)
    assert image["node_id"] == "3" and image["filename"].endswith(".png")
    assert client.get_image(image["filename"], image["subfolder"]).startswith(b"\x89PNG")
    with client.stream_view(image["filename"], image["subfolder"], offset=4) as response:
        assert response.status_code == 206
        assert b"".join(response.iter_bytes()).startswith(b"\r\n")
    assert prompt_id in client.get_history()
    assert list(client.get_history(max_items=1)) == [prompt_id]
    assert client.get_history(prompt_id)[prompt_id]["status"]["status_str"] == "success"
    client.delete_history([prompt_id])
    assert client.get_history(prompt_id) == {}
    assert client.get_queue() == {"queue_running": [], "queue_pending": []}
    assert client.get_prompt_status() == {"exec_info": {"queue_remaining": 0}}
    assert client.server_info().version == sim.comfyui_version
    assert "KSampler" in client.get_object_info()
    assert client.get_object_info("NoSuchNode") == {}
    assert "checkpoints" in client.get_models()
    assert client.get_models("checkpoints")
    with pytest.raises(NotFound):
        client.get_models("no_such_folder")
    assert isinstance(client.get_embeddings(), list)
    assert isinstance(client.get_extensions(), list)
    assert client.get_features()["supports_preview_metadata"] is True
    client.free_memory(free_memory=True)
    client.clear_history()
    assert client.get_history() == {}



def test_a_download_that_breaks_mid_body_raises_a_comfykit_error(client: ComfyUIClient, sim: ComfyUISimulator) -> None:
    entry = client.wait_for_completion(client.queue_prompt(_workflow("invert_save"))["prompt_id"], timeout=20)
    [image] = extract_output_images(entry)
    sim.knobs.break_views, sim.knobs.break_view_after = 1, 16
    # Raised while the caller reads the body, yet a comfykit error: plugins need not know httpx.
    with pytest.raises(ServerUnreachable, match="broke"), client.stream_view(image["filename"], image["subfolder"]) as response:
        b"".join(response.iter_bytes())

def test_client_prompt_id_and_queue_controls(client: ComfyUIClient, sim: ComfyUISimulator) -> None:
    sim.knobs.node_seconds = 0.2
    first = client.queue_prompt(_workflow("scale_save"))["prompt_id"]
    second = client.queue_prompt(_workflow("invert_save"), prompt_id="0b8e0f43-2d5b-4e0b-9a5c-111111111111")["prompt_id"]
    third = client.queue_prompt(_workflow("preview_image"), front=True)["prompt_id"]
    assert second == "0b8e0f43-2d5b-4e0b-9a5c-111111111111"
    pending = [item[1] for item in client.get_queue()["queue_pending"]]
    assert second in pending or third in pending
    client.delete_from_queue([second])
    assert second not in [item[1] for item in client.get_queue()["queue_pending"]]
    client.clear_queue()
    assert client.get_queue()["queue_pending"] == []
    client.interrupt_execution(first)
    with pytest.raises(ExecutionInterrupted) as info:
        client.wait_for_completion(first, timeout=20)
    assert info.value.prompt_id == first


def test_rejected_prompt_carries_node_errors(client: ComfyUIClient) -> None:
    workflow = _workflow("invert_save")
    workflow["1"]["inputs"]["width"] = 0
    with pytest.raises(PromptRejected) as info:
        client.queue_prompt(workflow)
    error = info.value
    assert error.status_code == 400
    assert error.error_type == "prompt_outputs_failed_validation"
    assert "1" in error.node_errors
    assert "node 1 (EmptyImage) input 'width'" in str(error)
    assert error.hint is not None


def test_execution_error_names_the_node(client: ComfyUIClient) -> None:
    prompt_id = client.queue_prompt(_workflow("exec_error_canny"))["prompt_id"]
    with pytest.raises(ExecutionError) as info:
        client.wait_for_completion(prompt_id, timeout=20)
    assert info.value.node_type == "Canny"
    assert "low_threshold" in info.value.exception_message


def test_wait_timeout(client: ComfyUIClient, sim: ComfyUISimulator) -> None:
    sim.knobs.node_seconds = 0.5
    prompt_id = client.queue_prompt(_workflow("invert_save"))["prompt_id"]
    with pytest.raises(WaitTimeout) as info:
        client.wait_for_completion(prompt_id, timeout=0.1)
    assert isinstance(info.value, TimeoutError)


def test_jobs_api_where_present(client: ComfyUIClient, sim: ComfyUISimulator) -> None:
    if sim.comfyui_version == "0.3.64":
        with pytest.raises(FeatureUnavailable, match="no jobs API"):
            client.get_jobs()
        return
    prompt_id = client.queue_prompt(_workflow("invert_save"))["prompt_id"]
    client.wait_for_completion(prompt_id, timeout=20)
    assert client.get_job(prompt_id)["status"] == "completed"
    assert client.get_jobs(status=["completed"], limit=5)["jobs"][0]["id"] == prompt_id
    assert client.cancel_job(prompt_id) is False
    with pytest.raises(NotFound):
        client.get_job("00000000-0000-4000-8000-000000000000")


def test_uploads_from_path_bytes_and_pil(client: ComfyUIClient, tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "cat.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(path)
    assert client.upload_image(path)["name"] == "cat.png"
    assert client.upload_image(b"other bytes", filename="cat.png")["name"] == "cat (1).png"
    assert client.upload_image(Image.new("RGB", (4, 4)), filename="pil.png", subfolder="s")["subfolder"] == "s"
    mask = client.upload_mask(Image.new("RGBA", (8, 8)), {"filename": "cat.png", "subfolder": "", "type": "input"},
                              filename="mask.png")
    assert mask["name"] == "mask.png"
    with pytest.raises(ServerError):
        client.upload_image(path, subfolder="../../outside")


def test_server_errors_5xx_with_retry_after(client: ComfyUIClient, sim: ComfyUISimulator) -> None:
    sim.knobs.fail_next = 1
    sim.knobs.fail_status = 503
    with pytest.raises(ServerError) as info:
        client.get_queue()
    assert info.value.status_code == 503
    assert info.value.retry_after == 0.0


def test_timeouts_and_refused_connections(sim: ComfyUISimulator) -> None:
    with ComfyUIClient(url=sim.url, timeout=0.2) as slow:
        sim.knobs.response_delay = 1.0
        with pytest.raises(RequestTimeout) as info:
            slow.get_queue()
        assert isinstance(info.value, TimeoutError)
        sim.knobs.response_delay = 0.0
    with ComfyUIClient(url="http://127.0.0.1:9") as nowhere, pytest.raises(ServerUnreachable) as refused:
        nowhere.get_queue()
    assert "Is ComfyUI running" in str(refused.value)


def test_garbage_and_oversized_bodies_become_protocol_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/queue":
            return httpx.Response(200, text="<html>proxy error</html>")
        return httpx.Response(200, content=b"[" + b"1," * (33 * 1024 * 1024) + b"1]")

    with ComfyUIClient(url="http://gpu.example", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(ProtocolError, match="did not answer JSON"):
            client.get_queue()
        with pytest.raises(ProtocolError, match="too large"):
            client.get_embeddings()


def test_credentials_are_sent_but_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/prompt"):
            return httpx.Response(500, text="boom")
        return httpx.Response(200, json={"queue_running": [], "queue_pending": []})

    transport = httpx.MockTransport(handler)
    with caplog.at_level(logging.DEBUG), ComfyUIClient(
        url="https://gpu.example/comfy", token="s3cret-token", api_key="comfy-key", headers={"X-Team": "a"},
        transport=transport,
    ) as client:
        client.get_queue()
        with pytest.raises(ServerError) as info:
            client.queue_prompt({"1": {"class_type": "X", "inputs": {}}})
    assert seen[0].url.path == "/comfy/queue"
    assert seen[0].headers["Authorization"] == "Bearer s3cret-token"
    assert seen[0].headers["X-Team"] == "a"
    body = json.loads(seen[1].content)
    assert body["extra_data"]["api_key_comfy_org"] == "comfy-key"
    assert "s3cret-token" not in caplog.text and "comfy-key" not in caplog.text
    assert "s3cret-token" not in str(info.value) and "comfy-key" not in str(info.value)
    assert client.ws_url.startswith("wss://gpu.example/comfy/ws?clientId=")


def test_basic_auth_and_closed_client() -> None:
    seen: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda r: seen.append(r) or httpx.Response(200, json=[]))
    client = ComfyUIClient(url="http://h", auth=("user", "pw"), transport=transport)
    client.get_embeddings()
    assert seen[0].headers["Authorization"].startswith("Basic ")
    assert client.ws_headers()["Authorization"].startswith("Basic ")
    client.close()
    with pytest.raises(Exception, match="closed"):
        client.get_embeddings()


def test_config_file_and_env_choose_the_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text("comfyui:\n  host: 10.0.0.5\n  port: 9999\n  protocol: http\n")
    with ComfyUIClient() as client:
        assert client.base_url == "http://10.0.0.5:9999"
    monkeypatch.setenv("COMFYKIT_URL", "http://127.0.0.1:7777/base/")
    with ComfyUIClient() as client:
        assert client.base_url == "http://127.0.0.1:7777/base"
    with ComfyUIClient(port=1234, host="a") as client:
        assert client.base_url == "http://127.0.0.1:7777/base"  # url wins over host/port
    monkeypatch.delenv("COMFYKIT_URL")
    with ComfyUIClient(port=1234, host="a") as client:
        assert client.base_url == "http://a:1234"


def test_extract_output_images_accepts_a_history_answer() -> None:
    history = {"p": {"outputs": {"9": {"images": [{"filename": "a.png", "subfolder": "", "type": "output"}]},
                                 "5": {"text": ["hi"]}}}}
    assert extract_output_images(history) == [{"filename": "a.png", "subfolder": "", "type": "output", "node_id": "9"}]


def test_without_the_monitor_polling_synthesizes_the_job_events(client: ComfyUIClient, sim: ComfyUISimulator) -> None:
    assert client.event_source is None or client.event_source.name == "polling"
    seen: list[tuple[str, str | None]] = []
    client.on("*", lambda event: seen.append((event.type, event.prompt_id)))
    sim.knobs.node_seconds = 0.2  # long enough for a poll to see it running
    good = client.queue_prompt(_workflow("invert_save"))["prompt_id"]
    client.wait_for_completion(good, timeout=30)
    bad = client.queue_prompt(_workflow("exec_error_canny"))["prompt_id"]
    with pytest.raises(ExecutionError):
        client.wait_for_completion(bad, timeout=30)
    assert client.event_source is not None and client.event_source.name == "polling"
    of_good = [kind for kind, prompt_id in seen if prompt_id == good]
    assert of_good[0] == "execution_start" and of_good.count("execution_start") == 1
    assert "executed" in of_good and of_good[-2:] == ["execution_success", "executing"]
    of_bad = [kind for kind, prompt_id in seen if prompt_id == bad]
    assert "execution_error" in of_bad and of_bad[-1] == "executing"


def test_bulk_cancel_object_info_cache_and_ping(client: ComfyUIClient, sim: ComfyUISimulator) -> None:
    assert client.ping() is True
    catalogue = client.get_object_info()
    assert client.get_object_info() is catalogue  # cached per client
    client.invalidate_object_info()
    assert client.get_object_info() is not catalogue and "SaveImage" in client.get_object_info()
    if sim.comfyui_version == "0.33.0":
        with sim.pause() as held:  # the first job holds at its first node: it is surely running when cancelled
            running = client.queue_prompt(_workflow("invert_save"))["prompt_id"]
            held.wait()
            waiting = client.queue_prompt(_workflow("scale_save"))["prompt_id"]
            assert client.cancel_jobs([running, waiting]) is True
        with pytest.raises(ExecutionInterrupted):
            client.wait_for_completion(running, timeout=20)
        assert waiting not in {item[1] for item in client.get_queue()["queue_pending"]}
    with ComfyUIClient(url="http://127.0.0.1:9", plugin_options=["no:monitor"]) as nobody:
        assert nobody.ping(timeout=0.5) is False
