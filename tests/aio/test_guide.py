"""The asyncio guide's FastAPI app (examples/fastapi_progress.py) against the simulator: progress streamed to each request."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from comfykit import JobStatus, QueueManager
from comfykit.aio import run_queue
from comfykit.config import Config
from comfykit.testing import ComfyUISimulator

from .conftest import workflow

pytestmark = pytest.mark.anyio
APP = Path(__file__).resolve().parents[2] / "examples" / "fastapi_progress.py"


def _load_app_module() -> Any:
    spec = importlib.util.spec_from_file_location("fastapi_progress", APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _messages(body: str) -> list[tuple[str, dict[str, Any]]]:
    messages = []
    for block in body.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        messages.append((fields["event"], json.loads(fields["data"])))
    return messages


@pytest.mark.timeout(300)
@pytest.mark.parametrize("sim", ["0.33.0"], indirect=True)
async def test_the_fastapi_app_streams_progress_to_a_hundred_concurrent_requests(
    sim: ComfyUISimulator, config: Config, out_dir: Path
) -> None:
    app = _load_app_module().create_app(url=sim.url, config=config)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://app", timeout=120
    ) as http:
        answers = await asyncio.gather(*(
            http.post("/generate", json=workflow("tiny_ksampler", seed_6=n)) for n in range(100)
        ))
    prompt_ids = set()
    for answer in answers:
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
        messages = _messages(answer.text)
        kinds = [kind for kind, _ in messages]
        assert kinds[0] == "queued" and kinds[-1] == "done" and "progress" in kinds
        fractions = [data["fraction"] for kind, data in messages if kind == "progress"]
        assert fractions == sorted(fractions)
        assert [data["step"] for _, data in messages if "step" in data][-1] == 6, messages  # every sampler step reached it
        done = messages[-1][1]
        assert done["files"] and all(Path(f).is_relative_to(out_dir) for f in done["files"])
        prompt_ids.add(done["prompt_id"])
    assert len(prompt_ids) == 100 and all(sim.execution_counts[p] == 1 for p in prompt_ids)


async def test_a_failing_workflow_streams_an_error_event(sim: ComfyUISimulator, config: Config) -> None:
    app = _load_app_module().create_app(url=sim.url, config=config)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://app", timeout=60
    ) as http:
        answer = await http.post("/generate", json=workflow("exec_error_canny"))
    kind, data = _messages(answer.text)[-1]
    assert kind == "error" and "Canny" in data["error"]


async def test_run_queue_runs_a_batch_without_blocking_the_loop(sim: ComfyUISimulator, config: Config) -> None:
    with QueueManager(servers=[sim.url], config=config) as queue:
        ids = [queue.add_job(workflow("invert_save", color_1=n)) for n in range(3)]
        with sim.pause(node="1") as held:
            batch = asyncio.create_task(run_queue(queue, timeout=60))
            await asyncio.to_thread(held.wait)
            # The batch is held on the server, and the loop still serves other coroutines meanwhile.
            await asyncio.sleep(0)
            assert not batch.done()
        statistics = await batch
    assert statistics["completed"] == 3
    assert all(queue.get_job_status(job_id) is JobStatus.COMPLETED for job_id in ids)


async def test_progress_reaches_the_browser_while_the_job_runs(sim: ComfyUISimulator, config: Config) -> None:
    """Served by uvicorn on a real socket: the first messages arrive while the server holds the job."""
    import socket

    import uvicorn

    app = _load_app_module().create_app(url=sim.url, config=config)
    listener = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        base_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with sim.pause(node="6") as held:
            async with httpx.AsyncClient(base_url=base_url, timeout=60) as http, http.stream(
                "POST", "/generate", json=workflow("tiny_ksampler", seed_6=123)
            ) as answer:
                lines = answer.aiter_lines()
                early: list[str] = []
                while not any('"event": "execution_start"' in line for line in early):
                    early.append(await anext(lines))
                await asyncio.to_thread(held.wait)  # the sampler is held: the job cannot have ended
                assert not any(line.startswith("event: done") for line in early)
                held.release()
                rest = [line async for line in lines]
        assert any(line.startswith("event: done") for line in rest)
    finally:
        server.should_exit = True
        await serving
        listener.close()
