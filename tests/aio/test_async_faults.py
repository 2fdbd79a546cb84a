"""The fault suite for the async client: WebSocket drops, restarts, 5xx, hostile bodies, polling.

A hostile WebSocket peer (huge frames, redirects) is in ``tests/test_ws_limits.py``, beside the sync monitor's.
"""

from __future__ import annotations

import asyncio

import pytest

from comfykit import AsyncComfyUIClient, JobStatus
from comfykit.config import Config
from comfykit.errors import ExecutionInterrupted, JobLost, ProtocolError, RequestTimeout, ServerError
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
