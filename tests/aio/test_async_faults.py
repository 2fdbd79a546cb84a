"""The fault suite for the async client: WebSocket drops, restarts, 5xx, refused connections, slow and hostile
answers, garbage frames, foreign jobs, polling; the scenarios of ``tests/faults`` and ``tests/batching`` for the sync API.

A hostile WebSocket peer (huge frames, redirects) is in ``tests/test_ws_limits.py``, beside the sync monitor's.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from pathlib import Path

import httpx
import pytest
from batching.workloads import unique_workflows
from faults.conftest import GarbageProbe, send_to_sockets

from comfykit import AsyncComfyUIClient, JobStatus
from comfykit.aio import AsyncJob
from comfykit.config import Config, load_config
from comfykit.errors import ExecutionInterrupted, JobLost, ProtocolError, RequestTimeout, ServerError
from comfykit.jobs import Job, new_prompt_id
from comfykit.testing import ComfyUISimulator

from .conftest import workflow

pytestmark = pytest.mark.anyio


async def test_jobs_complete_while_the_socket_drops_every_fraction_of_a_second(sim: ComfyUISimulator,
                                                                               config: Config) -> None:
    sim.knobs.drop_websocket_after = 0.15
    sim.knobs.node_seconds = 0.02
    async with AsyncComfyUIClient(url=sim.url, config=config, store_outputs=False) as client:
        jobs = await asyncio.gather(*(client.run(workflow("preview_image", color_1=n), timeout=60) for n in range(15)))
        source = client.event_source
        assert source is not None and source.reconnects >= 1
    assert all(job.status is JobStatus.COMPLETED for job in jobs)
    assert len(sim.execution_counts) == 15 and all(count == 1 for count in sim.execution_counts.values())


async def test_a_restart_mid_job_reports_the_jobs_lost(sim: ComfyUISimulator, config: Config) -> None:
    async with AsyncComfyUIClient(url=sim.url, config=config) as client:
        with sim.pause(node="2") as held:
            running = await client.submit(workflow("interruptible_chain"))
            behind = await client.submit(workflow("invert_save"))
            await asyncio.to_thread(held.wait)
            sim.restart()
            with pytest.raises(JobLost):
                await behind.result(timeout=30)
        with pytest.raises((JobLost, ExecutionInterrupted)):
            await running.result(timeout=30)
        # The socket came back, and the client works on the restarted server.
        assert (await client.run(workflow("invert_save", color_1=5), timeout=30)).status is JobStatus.COMPLETED


async def test_5xx_answers_raise_server_error_and_the_next_request_succeeds(sim: ComfyUISimulator,
                                                                             config: Config) -> None:
    async with AsyncComfyUIClient(url=sim.url, config=config) as client:
        await client.run(workflow("invert_save", color_1=1))  # the socket is open: the failure goes to the POST
        sim.knobs.fail_status = 503
        sim.knobs.fail_next = 1
        with pytest.raises(ServerError) as raised:
            await client.run(workflow("invert_save"))
        assert raised.value.status_code == 503
        assert (await client.run(workflow("invert_save"), timeout=30)).status is JobStatus.COMPLETED


async def test_5xx_while_jobs_wait_behind_a_dropped_socket_are_outlasted(sim: ComfyUISimulator, config: Config) -> None:
    sim.knobs.drop_websocket_after = 0.2
    sim.knobs.node_seconds = 0.05
    async with AsyncComfyUIClient(url=sim.url, config=config, store_outputs=False) as client:
        handles = [await client.submit(workflow("preview_image", color_1=n)) for n in range(5)]
        sim.knobs.fail_next = 6  # the reconciliations after the drops fail for a while, then succeed
        jobs = await asyncio.gather(*(handle.result(timeout=60) for handle in handles))
    assert all(job.status is JobStatus.COMPLETED for job in jobs)


async def test_polling_when_the_monitor_is_disabled(sim: ComfyUISimulator, config: Config) -> None:
    async with AsyncComfyUIClient(url=sim.url, config=config, plugin_options=["no:monitor"]) as client:
        job = await client.run(workflow("invert_save"), timeout=30)
        assert client.event_source is None
    assert job.status is JobStatus.COMPLETED and job.stored


async def test_history_written_late_is_still_found(sim: ComfyUISimulator, config: Config) -> None:
    sim.knobs.history_delay = 0.3
    async with AsyncComfyUIClient(url=sim.url, config=config) as client:
        job = await client.run(workflow("invert_save"), timeout=30)
    assert job.history is not None and job.history["outputs"]


@pytest.mark.parametrize("sim", ["0.33.0"], indirect=True)
async def test_a_huge_body_is_refused_and_one_that_never_ends_times_out(sim: ComfyUISimulator, config: Config) -> None:
    async with AsyncComfyUIClient(url=sim.url, config=config, timeout=0.5) as client:
        await client.get_queue()
        sim.knobs.hostile_body = "huge"
        with pytest.raises(ProtocolError, match="too large"):
            await client.get_history()
        sim.knobs.hostile_body = "trickle"
        with pytest.raises(RequestTimeout):
            await client.get_history()
        sim.knobs.hostile_body = None
        assert await client.get_history() == {}
    # A body without end, sent as fast as it is read, is cut at the size cap (given the time to reach it).
    async with AsyncComfyUIClient(url=sim.url, config=config, timeout=60) as client:
        sim.knobs.hostile_body = "flood"
        with pytest.raises(ProtocolError, match="too large"):
            await client.get_object_info()


# ---------------------------------------------------------------- the sync fault suite's scenarios (tests/faults)


def _all_completed_once(sim: ComfyUISimulator, jobs: list[Job]) -> None:
    assert [(job.status, job.error) for job in jobs if job.status is not JobStatus.COMPLETED] == []
    assert sim.execution_counts == {job.prompt_id: 1 for job in jobs}


async def _until_completed(handles: list[AsyncJob], count: int) -> None:
    while sum(handle.job.status is JobStatus.COMPLETED for handle in handles) < count:
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("sim", ["0.33.0"], indirect=True)
async def test_connections_refused_for_seconds_mid_run_and_every_output_stored_byte_for_byte(
    sim: ComfyUISimulator, out_dir: Path
) -> None:
    sim.knobs.node_seconds = 0.05
    config = load_config(overrides={"output.output_dir": str(out_dir), "batch.health_interval": 0.2,
                                    "websocket.reconnect_delay": 0.2}, use_file=False)
    async with AsyncComfyUIClient(url=sim.url, config=config) as client:
        handles = [await client.submit(graph) for graph in unique_workflows(12)]
        results = asyncio.gather(*(handle.result(timeout=120) for handle in handles))
        await _until_completed(handles, 3)
        sim.knobs.refuse_connections = True
        send_to_sockets(sim, None)  # a dead server also drops its sockets
        await asyncio.sleep(3.0)  # the outage
        sim.knobs.refuse_connections = False
        jobs = await results
    _all_completed_once(sim, jobs)
    for job in jobs:
        [download] = [stored for stored in job.stored if stored.sink == "download"]
        saved = job.outputs[0]
        original = (sim.files.output_dir / saved.subfolder / (saved.filename or "")).read_bytes()
        assert Path(download.location).read_bytes() == original
        assert download.sha256 == hashlib.sha256(original).hexdigest()


async def test_slow_answers_over_concurrent_runs(sim: ComfyUISimulator, config: Config) -> None:
    sim.knobs.response_delay = 0.05
    async with AsyncComfyUIClient(url=sim.url, config=config, store_outputs=False) as client:
        jobs = await asyncio.gather(*(client.run(graph, timeout=60) for graph in unique_workflows(10)))
    _all_completed_once(sim, jobs)


async def test_a_5xx_burst_and_late_history_together(sim: ComfyUISimulator, config: Config) -> None:
    sim.knobs.history_delay = 0.1
    sim.knobs.node_seconds = 0.02
    async with AsyncComfyUIClient(url=sim.url, config=config) as client:
        handles = [await client.submit(graph) for graph in unique_workflows(8)]
        results = asyncio.gather(*(handle.result(timeout=60) for handle in handles))
        await _until_completed(handles, 2)
        sim.knobs.fail_next = 6  # downloads, history reads and reconciliations meet it, and are tried again
        jobs = await results
    _all_completed_once(sim, jobs)
    assert all(any(stored.sink == "download" for stored in job.stored) for job in jobs)


async def test_the_socket_cut_mid_job_then_the_job_still_completes(sim: ComfyUISimulator, config: Config) -> None:
    sim.knobs.node_seconds = 0.15
    async with AsyncComfyUIClient(url=sim.url, config=config, store_outputs=False) as client:
        handle = await client.submit(unique_workflows(1)[0])
        async for event in handle.events():
            if event.type == "executing":
                break
        assert send_to_sockets(sim, None) == 1
        job = await handle.result(timeout=30)
        source = client.event_source
        assert source is not None and source.reconnects >= 1
    _all_completed_once(sim, [job])


async def test_the_socket_cut_between_jobs(sim: ComfyUISimulator, config: Config) -> None:
    async with AsyncComfyUIClient(url=sim.url, config=config, store_outputs=False) as client:
        first = await client.run(unique_workflows(1)[0], timeout=30)
        send_to_sockets(sim, None)
        # Submitted while the socket is (or is about to be) gone: reconciliation must still find its end.
        second = await client.run(unique_workflows(1, offset=1)[0], timeout=30)
        third = await client.run(unique_workflows(1, offset=2)[0], timeout=30)
    _all_completed_once(sim, [first, second, third])


async def test_a_job_posted_without_a_client_id_does_not_confuse_a_watching_client(sim: ComfyUISimulator,
                                                                                  config: Config) -> None:
    sim.knobs.node_seconds = 0.05
    foreign = new_prompt_id()
    foreign_events: list[str] = []
    async with AsyncComfyUIClient(url=sim.url, config=config, store_outputs=False) as client:
        client.on("*", lambda e: foreign_events.append(e.type) if e.prompt_id == foreign else None)
        mine = await client.submit(unique_workflows(1)[0])
        # Someone else posts a job without a client id: the server broadcasts some of its events to everyone.
        async with httpx.AsyncClient() as other:
            answer = await other.post(sim.url + "/prompt",
                                      json={"prompt": unique_workflows(1, offset=1)[0], "prompt_id": foreign})
        assert answer.status_code == 200
        seen = {event.prompt_id async for event in mine.events()}
        assert (await mine.result(timeout=30)).status is JobStatus.COMPLETED
        entry = await client.wait_for_completion(foreign, timeout=30)
    assert seen == {mine.prompt_id} and entry["status"]["status_str"] == "success"
    assert sim.execution_counts == {mine.prompt_id: 1, foreign: 1}
    assert set(foreign_events) <= {"progress", "progress_state", "execution_interrupted"}


async def test_two_clients_on_one_server_each_see_only_their_jobs(sim: ComfyUISimulator, config: Config) -> None:
    sim.knobs.node_seconds = 0.01
    async with AsyncComfyUIClient(url=sim.url, config=config, store_outputs=False) as a, AsyncComfyUIClient(
        url=sim.url, config=config, store_outputs=False
    ) as b:
        ours = {"a": [await a.submit(graph) for graph in unique_workflows(5)],
                "b": [await b.submit(graph) for graph in unique_workflows(5, offset=5)]}
        send_to_sockets(sim, None)  # both sockets cut while both have work queued
        streams = {name: await asyncio.gather(*(_prompt_ids_of(handle) for handle in handles))
                   for name, handles in ours.items()}
    for name, handles in ours.items():
        for handle, seen in zip(handles, streams[name], strict=True):
            assert seen <= {handle.prompt_id} and handle.job.status is JobStatus.COMPLETED
    _all_completed_once(sim, [handle.job for handles in ours.values() for handle in handles])


async def _prompt_ids_of(handle: AsyncJob) -> set[str | None]:
    seen = {event.prompt_id async for event in handle.events()}
    await handle.result(timeout=30)
    return seen


@pytest.mark.parametrize("sim", ["0.33.0"], indirect=True)
async def test_garbage_frames_never_stop_the_socket_task(sim: ComfyUISimulator, config: Config) -> None:
    probe = GarbageProbe(sim)
    async with AsyncComfyUIClient(url=sim.url, config=config, store_outputs=False) as client:
        client.on("status", probe.on_status)
        source = await client.connect_websocket()
        assert source is not None and source.connected
        await asyncio.to_thread(probe.run)  # the loop reads the socket meanwhile
        assert source.connected and source.reconnects == 0
        # And a real job after all that still completes from its events.
        assert (await client.run(unique_workflows(1)[0], timeout=30)).status is JobStatus.COMPLETED


@pytest.mark.parametrize("sim", ["0.33.0"], indirect=True)
@pytest.mark.parametrize("filename", ["../../../escape.png", "/tmp/comfykit-hostile-{}.png", ".."])
async def test_escaping_output_names_stay_in_the_output_folder(sim: ComfyUISimulator, tmp_path: Path,
                                                               filename: str) -> None:
    filename = filename.format(uuid.uuid4().hex)
    area = tmp_path / "area"
    root = area / "deep" / "out"
    sim.knobs.output_filename, sim.knobs.output_subfolder, sim.knobs.view_any_name = filename, "../../..", True
    config = load_config(overrides={"output.output_dir": str(root)}, use_file=False)
    async with AsyncComfyUIClient(url=sim.url, config=config) as client:
        jobs = await asyncio.gather(*(client.run(graph, timeout=60) for graph in unique_workflows(3)))
    assert all(job.status is JobStatus.COMPLETED for job in jobs)
    stored = [Path(record.location).resolve() for job in jobs for record in job.stored]
    assert stored and all(root.resolve() in path.parents for path in stored)
    outside = [path for path in area.rglob("*") if path.is_file() and root.resolve() not in path.resolve().parents]
    assert outside == []
    if filename.startswith("/"):
        assert not Path(filename).exists()


async def test_a_lost_post_answer_is_checked_with_the_server_not_raised_or_resubmitted(sim: ComfyUISimulator,
                                                                                      out_dir: Path) -> None:
    # Validation off: its catalogue request would meet the late answers before the POST does.
    config = load_config(overrides={"output.output_dir": str(out_dir), "batch.health_interval": 0.1,
                                    "workflow.validate_before_send": False}, use_file=False)
    async with AsyncComfyUIClient(url=sim.url, config=config, timeout=0.3, store_outputs=False) as client:
        await client.connect_websocket()
        # Every answer arrives after the client gave up waiting: the POST is queued but its answer is lost.
        sim.knobs.answer_delay = 0.6
        running = asyncio.create_task(client.run(unique_workflows(1)[0], timeout=30))
        while not sim.server.posted and not running.done():
            await asyncio.sleep(0.01)
        await asyncio.sleep(1.0)  # the lost answers, and the questions that time out too
        sim.knobs.answer_delay = 0.0
        job = await running
    assert job.status is JobStatus.COMPLETED and job.attempts == 1
    _all_completed_once(sim, [job])
