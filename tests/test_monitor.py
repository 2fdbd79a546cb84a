"""Live events through the monitor plugin's WebSocket, against the simulator: completion that cannot be lost."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from comfykit import ComfyUIClient
from comfykit.errors import ExecutionError, ExecutionInterrupted, JobLost
from comfykit.events import Event, ExecutingEvent
from comfykit.testing import ComfyUISimulator

RECORDINGS = Path(__file__).resolve().parent / "fixtures" / "recordings"


def _workflow(name: str) -> dict[str, Any]:
    return dict(json.loads((RECORDINGS / "0.33.0" / "workflows" / f"{name}.json").read_text()))


def _unique_preview(color: int) -> dict[str, Any]:
    workflow = _workflow("preview_image")
    workflow["1"]["inputs"]["color"] = color
    return workflow


@pytest.fixture(params=["0.3.64", "0.33.0"])
def sim(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    with ComfyUISimulator(port=0, comfyui_version=request.param, root=tmp_path / "sim") as simulator:
        yield simulator


def test_websocket_source_delivers_events_in_order(sim: ComfyUISimulator) -> None:
    seen: list[Event] = []
    with ComfyUIClient(url=sim.url) as client:
        client.on("*", seen.append)
        prompt_id = client.queue_prompt(_workflow("invert_save"))["prompt_id"]
        assert client.event_source is not None and client.event_source.name == "websocket"
        entry = client.wait_for_completion(prompt_id, timeout=20)
        assert entry["status"]["status_str"] == "success"
        progress = client.tracker.progress(prompt_id)
        assert progress.done and progress.fraction == 1.0
    mine = [e.type for e in seen if e.prompt_id == prompt_id]
    assert mine[0] == "execution_start"
    assert mine[-1] == "executing"
    assert "executed" in mine


def test_errors_and_interrupts_through_events(sim: ComfyUISimulator) -> None:
    with ComfyUIClient(url=sim.url) as client:
        failing = client.queue_prompt(_workflow("exec_error_canny"))["prompt_id"]
        with pytest.raises(ExecutionError, match="Canny"):
            client.wait_for_completion(failing, timeout=20)
        sim.knobs.node_seconds = 0.1
        running = client.queue_prompt(_workflow("interruptible_chain"))["prompt_id"]
        started = threading.Event()
        client.on("executing", lambda e: started.set())
        assert started.wait(10)
        client.interrupt_execution(running)
        with pytest.raises(ExecutionInterrupted):
            client.wait_for_completion(running, timeout=20)


def test_sampler_progress_reaches_the_end_even_when_throttled(sim: ComfyUISimulator) -> None:
    from comfykit.testing.quickstart import TXT2IMG

    steps: list[float] = []
    with ComfyUIClient(url=sim.url) as client:
        client.on("progress", lambda e: steps.append(e.data["value"]))
        prompt_id = client.queue_prompt(TXT2IMG)["prompt_id"]
        client.wait_for_completion(prompt_id, timeout=30)
        assert client.tracker.progress(prompt_id).fraction == 1.0
    assert steps[-1] == 20
    if sim.comfyui_version == "0.33.0":
        assert len(steps) < 20  # throttled, like the real 0.33 server


def test_socket_dropped_every_fraction_of_a_second(sim: ComfyUISimulator) -> None:
    sim.knobs.drop_websocket_after = 0.15
    sim.knobs.node_seconds = 0.02
    with ComfyUIClient(url=sim.url) as client:
        ids = [client.queue_prompt(_unique_preview(n))["prompt_id"] for n in range(15)]
        for prompt_id in ids:
            assert client.wait_for_completion(prompt_id, timeout=30)["status"]["completed"]
        source = client.event_source
        assert source is not None and getattr(source, "reconnects", 0) >= 1
    assert all(count == 1 for count in sim.execution_counts.values())


def test_restart_mid_job_reports_the_job_lost(sim: ComfyUISimulator) -> None:
    sim.knobs.node_seconds = 0.3
    with ComfyUIClient(url=sim.url) as client:
        prompt_id = client.queue_prompt(_workflow("interruptible_chain"))["prompt_id"]
        queued_behind = client.queue_prompt(_workflow("invert_save"))["prompt_id"]
        time.sleep(0.2)
        sim.restart()
        with pytest.raises(JobLost):
            client.wait_for_completion(queued_behind, timeout=20)
        with pytest.raises((JobLost, ExecutionInterrupted)):
            client.wait_for_completion(prompt_id, timeout=20)


def test_polling_when_the_monitor_is_disabled(sim: ComfyUISimulator) -> None:
    with ComfyUIClient(url=sim.url, plugin_options=["no:monitor"]) as client:
        prompt_id = client.queue_prompt(_workflow("invert_save"))["prompt_id"]
        assert client.event_source is not None and client.event_source.name == "polling"
        assert client.wait_for_completion(prompt_id, timeout=20)["status"]["status_str"] == "success"


def test_history_written_late_is_still_found(sim: ComfyUISimulator) -> None:
    sim.knobs.history_delay = 0.3
    finals: list[ExecutingEvent] = []
    with ComfyUIClient(url=sim.url) as client:
        client.on("executing", lambda e: finals.append(e) if isinstance(e, ExecutingEvent) and e.is_done else None)
        prompt_id = client.queue_prompt(_workflow("invert_save"))["prompt_id"]
        assert client.wait_for_completion(prompt_id, timeout=20)["outputs"]
    assert [e.prompt_id for e in finals] == [prompt_id]
