"""The async client against the simulator over real sockets: endpoints, run(), submit() handles, cancellation."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import pytest

from comfykit import AsyncComfyUIClient, ComfyUIClient, JobStatus, hookimpl
from comfykit.aio import AsyncJob
from comfykit.config import Config, load_config
from comfykit.errors import (
    ComfyKitError,
    ExecutionError,
    ExecutionInterrupted,
    NotFound,
    PromptRejected,
    ServerError,
    WaitTimeout,
    WorkflowValidationError,
)
from comfykit.events import ExecutingEvent, ProgressEvent
from comfykit.testing import ComfyUISimulator

from .conftest import workflow

pytestmark = pytest.mark.anyio


async def test_endpoints_are_coroutines_with_checked_answers(sim: ComfyUISimulator, config: Config) -> None:
    async with AsyncComfyUIClient(url=sim.url, config=config) as client:
        assert await client.ping()
        queue = await client.get_queue()
        assert queue["queue_running"] == [] and queue["queue_pending"] == []
        info = await client.server_info()
        assert info.version == sim.comfyui_version
        assert info.has_jobs_api is (sim.comfyui_version == "0.33.0")
        assert "EmptyImage" in await client.get_object_info()
        with pytest.raises(NotFound):
            await client.get_models("no-such-folder")


async def test_run_returns_the_completed_job_with_stored_outputs(sim: ComfyUISimulator, config: Config, out_dir: Path) -> None:
    async with AsyncComfyUIClient(url=sim.url, config=config) as client:
        job = await client.run(workflow("invert_save"), timeout=30)
    assert job.status is JobStatus.COMPLETED
    assert job.history is not None and job.history["status"]["status_str"] == "success"
    assert [output.filename for output in job.outputs]
    downloaded = [s for s in job.stored if s.sink == "download"]
    assert len(downloaded) == 1 and Path(downloaded[0].location).is_file()
    assert Path(downloaded[0].location).is_relative_to(out_dir)
    assert sim.execution_counts[job.prompt_id or ""] == 1


async def test_a_failing_node_raises_and_the_job_is_failed(sim: ComfyUISimulator, config: Config) -> None:
    async with AsyncComfyUIClient(url=sim.url, config=config) as client:
        handle = await client.submit(workflow("exec_error_canny"))
        with pytest.raises(ExecutionError, match="Canny"):
            await handle.result(timeout=30)
    assert handle.job.status is JobStatus.FAILED and handle.job.error_type == "ExecutionError"


async def test_a_broken_workflow_is_refused_before_it_is_sent_and_the_server_rejects_it_without_validation(
    sim: ComfyUISimulator, config: Config
) -> None:
    broken = workflow("invert_save")
    broken["2"]["inputs"]["image"] = ["99", 0]
    async with AsyncComfyUIClient(url=sim.url, config=config) as client:  # workflow.validate_before_send: on
        with pytest.raises(WorkflowValidationError, match="99"):
            await client.run(broken)
    assert sim.server.posted == []
    unchecked = load_config(overrides={"workflow.validate_before_send": False}, use_file=False)
    async with AsyncComfyUIClient(url=sim.url, config=unchecked) as client:
        with pytest.raises(PromptRejected):
            await client.run(broken)


async def test_events_of_a_handle_are_typed_and_end_with_the_job(sim: ComfyUISimulator, config: Config) -> None:
    async with AsyncComfyUIClient(url=sim.url, config=config) as client:
        handle = await client.submit(workflow("tiny_ksampler"))
        seen = [event async for event in handle.events()]
        job = await handle.result(timeout=30)
    assert job.status is JobStatus.COMPLETED
    assert seen[0].type == "execution_start"
    assert isinstance(seen[-1], ExecutingEvent) and seen[-1].is_done
    assert any(isinstance(event, ProgressEvent) for event in seen)
    assert seen[-1]["type"] == "executing"  # typed, and also the raw message


async def test_cancel_takes_a_queued_job_off_the_server(sim: ComfyUISimulator, config: Config) -> None:
    async with AsyncComfyUIClient(url=sim.url, config=config) as client:
        with sim.pause(node="1") as held:
            first = await client.submit(workflow("invert_save", color_1=1))
            await asyncio.to_thread(held.wait)
            second = await client.submit(workflow("invert_save", color_1=2))
            await second.cancel()
            queue = await client.get_queue()
            assert second.prompt_id not in {item[1] for item in queue["queue_pending"]}
        with pytest.raises(ExecutionInterrupted):
            await second.result()
        assert (await first.result(timeout=30)).status is JobStatus.COMPLETED
    assert second.job.status is JobStatus.CANCELLED
    assert second.prompt_id not in sim.execution_counts


async def test_cancelling_the_awaiting_task_interrupts_the_running_job(sim: ComfyUISimulator, config: Config) -> None:
    async with AsyncComfyUIClient(url=sim.url, config=config) as client:
        with sim.pause(node="2") as held:
            task = asyncio.create_task(client.run(workflow("interruptible_chain")))
            await asyncio.to_thread(held.wait)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            prompt_id = held.where[0] if held.where else ""
            assert not client.tracker.is_watched(prompt_id)  # nothing of it stays behind in the client
        # The server was told: the running prompt ends interrupted (its history says so).
        with pytest.raises(ExecutionInterrupted):
            await client.wait_for_completion(prompt_id, timeout=30)


async def test_a_timeout_cancels_the_job_and_raises_wait_timeout(sim: ComfyUISimulator, config: Config) -> None:
    async with AsyncComfyUIClient(url=sim.url, config=config) as client:
        with sim.pause(node="1") as held:
            blocker = await client.submit(workflow("invert_save", color_1=6))
            await asyncio.to_thread(held.wait)
            with pytest.raises(WaitTimeout):
                await client.run(workflow("invert_save", color_1=7), timeout=0.2)  # queued behind the held job
            queue = await client.get_queue()
            assert [item[1] for item in queue["queue_pending"]] == []
        assert (await blocker.result(timeout=30)).status is JobStatus.COMPLETED
    assert len(sim.execution_counts) == 1


@pytest.mark.timeout(600)
@pytest.mark.parametrize("sim", ["0.33.0"], indirect=True)
async def test_a_thousand_concurrent_runs_complete_with_outputs_stored_once_and_no_thread_each(
    sim: ComfyUISimulator, config: Config, out_dir: Path
) -> None:
    def unique(i: int) -> dict[str, object]:
        return {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": i}},
                "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": f"many/{i}"}}}

    peak = 0

    async def count_threads() -> None:
        nonlocal peak
        while True:
            peak = max(peak, threading.active_count())
            await asyncio.sleep(0.05)

    async with AsyncComfyUIClient(url=sim.url, config=config) as client:
        await client.run(unique(1000))
        before = threading.active_count()
        counter = asyncio.create_task(count_threads())
        jobs = await asyncio.gather(*(client.run(unique(i)) for i in range(1000)))
        counter.cancel()
    assert all(job.status is JobStatus.COMPLETED for job in jobs)
    stored = [record.location for job in jobs for record in job.stored if record.sink == "download"]
    assert len(stored) == len(set(stored)) == 1000
    assert len([p for p in out_dir.rglob("*.png")]) == 1001
    assert all(count == 1 for count in sim.execution_counts.values())
    # Pool threads (the loop's executor, the sinks' downloads), bounded whatever the number of jobs.
    assert peak <= before + 32, f"{peak} threads while 1,000 jobs waited ({before} before)"


async def test_credentials_echoed_by_an_error_page_are_masked(config: Config) -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": f"bad credentials: {request.headers['Authorization']}"})

    async with AsyncComfyUIClient(url="http://127.0.0.1:9", token="t0ps3cret", config=config,
                                  transport=httpx.MockTransport(echo)) as client:
        with pytest.raises(ServerError) as raised:
            await client.get_queue()
    assert raised.value.status_code == 401
    assert "t0ps3cret" not in str(raised.value) and "t0ps3cret" not in repr(raised.value.body)


async def test_a_closed_client_refuses_requests(sim: ComfyUISimulator, config: Config) -> None:
    client = AsyncComfyUIClient(url=sim.url, config=config)
    await client.aclose()
    with pytest.raises(ComfyKitError, match="closed"):
        await client.get_queue()


async def test_plugin_hooks_and_callbacks_run_off_the_event_loop(sim: ComfyUISimulator, config: Config) -> None:
    seen: dict[str, set[str]] = {}

    def note(where: str) -> None:
        seen.setdefault(where, set()).add(threading.current_thread().name)

    class Recorder:
        @hookimpl
        def comfykit_handle_event(self, event: object, client: object) -> None:
            note("handle_event")

        @hookimpl
        def comfykit_job_completed(self, job: object, client: object) -> None:
            note("job_completed")

        @hookimpl
        def comfykit_store_outputs(self, job: object, outputs: object, client: object) -> list[object]:
            note("store_outputs")
            assert isinstance(client, ComfyUIClient)  # sinks get the sync client: they call the server synchronously
            return []

    loop_thread = threading.current_thread().name
    async with AsyncComfyUIClient(url=sim.url, config=config, plugins=[Recorder()]) as client:
        client.on("*", lambda event: note("on"))
        await client.run(workflow("invert_save", color_1=9), timeout=30)
    assert set(seen) == {"handle_event", "job_completed", "store_outputs", "on"}
    assert loop_thread not in set().union(*seen.values())
    assert seen["handle_event"] == seen["on"] == seen["job_completed"] == {"comfykit-aio-events_0"}


async def test_cancelled_while_the_post_awaits_its_answer_the_prompt_is_taken_off_again(sim: ComfyUISimulator,
                                                                                      config: Config) -> None:
    async with AsyncComfyUIClient(url=sim.url, config=config) as client:
        with sim.pause(node="1") as held:
            blocker = await client.submit(workflow("invert_save", color_1=11))
            await asyncio.to_thread(held.wait)
            sim.knobs.answer_delay = 0.3  # the server queues the prompt, then answers late
            task = asyncio.create_task(client.run(workflow("invert_save", color_1=12)))
            while len(sim.server.posted) < 2:  # the second POST reached the server
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            sim.knobs.answer_delay = 0.0
            queue = await client.get_queue()
            assert [item[1] for item in queue["queue_pending"]] == []
        assert (await blocker.result(timeout=30)).status is JobStatus.COMPLETED
    assert list(sim.execution_counts) == [blocker.prompt_id]


async def test_one_websocket_serves_every_waiting_job(sim: ComfyUISimulator, config: Config) -> None:
    async with AsyncComfyUIClient(url=sim.url, config=config, store_outputs=False) as client:
        with sim.pause(node="1") as held:
            handles = [await client.submit(workflow("invert_save", color_1=20 + n)) for n in range(10)]
            await asyncio.to_thread(held.wait)
            assert len(list(sim.server.all_sockets)) == 1
        streams = await asyncio.gather(*(_collect(handle) for handle in handles))
    for handle, types in zip(handles, streams, strict=True):
        assert types[0] == "execution_start" and types[-1] == "executing", handle.prompt_id
        assert handle.job.status is JobStatus.COMPLETED


async def _collect(handle: AsyncJob) -> list[str]:
    types = [event.type async for event in handle.events()]
    await handle.result(timeout=30)
    return types


async def test_wait_for_completion_of_a_prompt_posted_elsewhere(sim: ComfyUISimulator, config: Config) -> None:
    async with AsyncComfyUIClient(url=sim.url, config=config) as client:
        with sim.pause(node="1") as held:
            answer = await client.post_prompt(workflow("invert_save", color_1=30))  # not watched: posted "elsewhere"
            await asyncio.to_thread(held.wait)
            with pytest.raises(WaitTimeout):
                await client.wait_for_completion(answer["prompt_id"], timeout=0.2)
            assert not client.tracker.is_watched(answer["prompt_id"])
        entry = await client.wait_for_completion(answer["prompt_id"], timeout=30)
    assert entry["status"]["status_str"] == "success"
