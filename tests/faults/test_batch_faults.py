"""Batch faults through the QueueManager and the single-client wait: late history, refused connections, slow answers,
sockets cut mid-job and between jobs, a job posted without a client id, two clients on one server.

Every test asserts that each job ended completed and that the server ran each prompt exactly once.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from batching.workloads import unique_workflows

from comfykit import ComfyUIClient, JobStatus, QueueManager, load_config
from comfykit.events import Event
from comfykit.jobs import Job, new_prompt_id
from comfykit.testing import ComfyUISimulator
from faults.conftest import send_to_sockets


def _assert_each_ran_once(sim: ComfyUISimulator, jobs: list[Job]) -> None:
    assert all(job.status is JobStatus.COMPLETED for job in jobs), [(job.status, job.error) for job in jobs]
    assert sim.execution_counts == {job.prompt_id: 1 for job in jobs}


def _batch(
    sim: ComfyUISimulator, count: int, *, during: Any = None, offset: int = 0, output_dir: Path | None = None
) -> list[Job]:
    config = load_config(use_file=False, overrides={"output.output_dir": str(output_dir)}) if output_dir else None
    with ComfyUIClient(url=sim.url, config=config) as client:
        queue = QueueManager(client, max_concurrent=3, store_outputs=output_dir is not None)
        queue.retry_delay = 0.05
        queue.add_jobs_from_list(unique_workflows(count, offset=offset))
        queue.start()
        if during is not None:
            during(queue)
        assert queue.wait_for_completion(60)
        queue.close()
    return queue.get_all_jobs()


def _when_completed(queue: QueueManager, count: int) -> None:
    while queue.get_statistics()["completed"] < count:
        time.sleep(0.01)


def test_history_written_late_over_a_batch(sim: ComfyUISimulator) -> None:
    sim.knobs.history_delay = 0.3
    jobs = _batch(sim, 8)
    _assert_each_ran_once(sim, jobs)
    assert all(job.outputs for job in jobs)


def test_connections_refused_for_ten_seconds_mid_batch(sim: ComfyUISimulator, tmp_path: Path) -> None:
    sim.knobs.node_seconds = 0.02

    def refuse(queue: QueueManager) -> None:
        _when_completed(queue, 3)
        sim.knobs.refuse_connections = True
        send_to_sockets(sim, None)  # a dead server also drops its sockets
        time.sleep(10.0)
        sim.knobs.refuse_connections = False

    jobs = _batch(sim, 15, during=refuse, output_dir=tmp_path / "out")
    _assert_each_ran_once(sim, jobs)
    # No output lost or corrupted: every job's image is on disk, byte for byte what the server saved.
    for job in jobs:
        downloads = [stored for stored in job.stored if stored.sink == "download"]
        assert len(downloads) == 1, job.stored
        saved = job.outputs[0]
        original = sim.files.output_dir / saved.subfolder / (saved.filename or "")
        assert Path(downloads[0].location).read_bytes() == original.read_bytes()
        assert downloads[0].sha256 == hashlib.sha256(original.read_bytes()).hexdigest()


def test_slow_answers_over_a_batch(sim: ComfyUISimulator) -> None:
    sim.knobs.response_delay = 0.05
    jobs = _batch(sim, 12)
    _assert_each_ran_once(sim, jobs)


def test_5xx_burst_and_late_history_together(sim: ComfyUISimulator) -> None:
    sim.knobs.history_delay = 0.1

    def burst(queue: QueueManager) -> None:
        _when_completed(queue, 2)
        sim.knobs.fail_next = 6

    jobs = _batch(sim, 10, during=burst)
    _assert_each_ran_once(sim, jobs)


# ---------------------------------------------------------------- one client, wait_for_completion


def _wait_for(event: threading.Event) -> None:
    assert event.wait(20), "the expected event never came"


def test_socket_cut_mid_job_then_the_job_still_completes(sim: ComfyUISimulator) -> None:
    sim.knobs.node_seconds = 0.15
    running = threading.Event()
    with ComfyUIClient(url=sim.url) as client:
        client.on("executing", lambda e: running.set())
        prompt_id = client.queue_prompt(unique_workflows(1)[0])["prompt_id"]
        _wait_for(running)
        assert send_to_sockets(sim, None) == 1
        entry = client.wait_for_completion(prompt_id, timeout=30)
        source = client.event_source
        assert source is not None and getattr(source, "reconnects", 0) >= 1
    assert entry["status"]["status_str"] == "success" and entry["outputs"]
    assert sim.execution_counts == {prompt_id: 1}


def test_socket_cut_between_jobs(sim: ComfyUISimulator) -> None:
    with ComfyUIClient(url=sim.url) as client:
        first = client.queue_prompt(unique_workflows(1)[0])["prompt_id"]
        client.wait_for_completion(first, timeout=30)
        send_to_sockets(sim, None)
        # Submitted while the socket is (or is about to be) gone: reconciliation must still find its end.
        second = client.queue_prompt(unique_workflows(1, offset=1)[0])["prompt_id"]
        assert client.wait_for_completion(second, timeout=30)["status"]["status_str"] == "success"
        third = client.queue_prompt(unique_workflows(1, offset=2)[0])["prompt_id"]
        assert client.wait_for_completion(third, timeout=30)["status"]["status_str"] == "success"
    assert sim.execution_counts == {first: 1, second: 1, third: 1}


def test_a_job_without_client_id_does_not_confuse_a_watching_client(sim: ComfyUISimulator) -> None:
    sim.knobs.node_seconds = 0.05
    foreign_events: list[Event] = []
    foreign = new_prompt_id()
    with ComfyUIClient(url=sim.url) as client:
        client.on("*", lambda e: foreign_events.append(e) if e.prompt_id == foreign else None)
        mine = client.queue_prompt(unique_workflows(1)[0])["prompt_id"]
        # Someone else posts a job without a client id: the server broadcasts some of its events to everyone.
        answer = httpx.post(sim.url + "/prompt", json={"prompt": unique_workflows(1, offset=1)[0], "prompt_id": foreign})
        assert answer.status_code == 200
        assert client.wait_for_completion(mine, timeout=30)["status"]["status_str"] == "success"
        entry = client.wait_for_completion(foreign, timeout=30)
        assert entry["status"]["status_str"] == "success"
    assert sim.execution_counts == {mine: 1, foreign: 1}
    assert {e.type for e in foreign_events} <= {"progress", "progress_state", "execution_interrupted"}


def test_two_clients_on_one_server_each_see_only_their_jobs(sim: ComfyUISimulator) -> None:
    sim.knobs.node_seconds = 0.01
    seen: dict[str, set[str]] = {"a": set(), "b": set()}
    with ComfyUIClient(url=sim.url) as a, ComfyUIClient(url=sim.url) as b:
        a.on("executed", lambda e: seen["a"].add(e.prompt_id or ""))
        b.on("executed", lambda e: seen["b"].add(e.prompt_id or ""))
        ids_a = [a.queue_prompt(w)["prompt_id"] for w in unique_workflows(5)]
        ids_b = [b.queue_prompt(w)["prompt_id"] for w in unique_workflows(5, offset=5)]
        send_to_sockets(sim, None)  # both sockets cut while both have work queued
        for prompt_id in ids_a:
            a.wait_for_completion(prompt_id, timeout=30)
        for prompt_id in ids_b:
            b.wait_for_completion(prompt_id, timeout=30)
    assert seen["a"] <= set(ids_a) and seen["b"] <= set(ids_b)
    assert sim.execution_counts == dict.fromkeys(ids_a + ids_b, 1)
