"""What the async client does as the sync API does: a job prepared as a queue prepares it, outputs stored through
a server's absence, the catalogue cached, ``/view`` streamed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from comfykit import AsyncComfyUIClient, ComfyUIClient, JobStatus, hookimpl
from comfykit.config import Config, load_config
from comfykit.errors import NotFound, OutputsNotStored, ServerUnreachable, WorkflowError
from comfykit.jobs import Job
from comfykit.outputs import OutputFile, StoredOutput
from comfykit.testing import ComfyUISimulator

from .conftest import workflow

pytestmark = pytest.mark.anyio


def _config(out_dir: Path, **values: object) -> Config:
    return load_config(overrides={"output.output_dir": str(out_dir), **values}, use_file=False)


# ---------------------------------------------------------------- preparing, as a queue prepares each attempt


async def test_the_prepare_hook_changes_what_is_posted_and_gets_the_job_and_the_sync_client(
    sim: ComfyUISimulator, config: Config
) -> None:
    seen: list[tuple[str, object]] = []

    class Prefixer:
        @hookimpl
        def comfykit_prepare_prompt(self, prompt: dict[str, Any], job: Job, client: object) -> None:
            seen.append((job.job_id, client))
            prompt["3"]["inputs"]["filename_prefix"] = "hooked/" + prompt["3"]["inputs"]["filename_prefix"]

    original = workflow("invert_save")
    async with AsyncComfyUIClient(url=sim.url, config=config, plugins=[Prefixer()]) as client:
        handle = await client.submit(original)
        job = await handle.result(timeout=30)
    assert [job_id for job_id, _ in seen] == [job.job_id] and isinstance(seen[0][1], ComfyUIClient)
    assert job.outputs and all(output.subfolder.startswith("hooked") for output in job.outputs)
    assert job.workflow == original  # the job keeps the workflow as given; the prepared copy was sent


async def test_local_inputs_are_uploaded_once_and_the_posted_prompt_names_them(
    sim: ComfyUISimulator, config: Config, tmp_path: Path
) -> None:
    from PIL import Image

    picture = tmp_path / "cat.png"
    Image.new("RGB", (8, 8), "orange").save(picture)
    async with AsyncComfyUIClient(url=sim.url, config=config, store_outputs=False) as client:
        jobs = await asyncio.gather(*(
            client.run(workflow("load_invert_save", filename_prefix_3=f"cat{n}"), inputs={"image": str(picture)},
                       timeout=30)
            for n in range(3)
        ))
    assert all(job.status is JobStatus.COMPLETED for job in jobs)
    uploaded = [path for path in sim.files.input_dir.rglob("cat*.png")]
    assert len(uploaded) == 1, uploaded  # three jobs, one upload
    for job in jobs:
        assert job.history is not None and job.history["prompt"][2]["1"]["inputs"]["image"] == uploaded[0].name


async def test_an_input_naming_no_file_input_fails_before_anything_is_posted(sim: ComfyUISimulator,
                                                                            config: Config) -> None:
    async with AsyncComfyUIClient(url=sim.url, config=config) as client:
        with pytest.raises(WorkflowError, match="mask"):
            await client.run(workflow("load_invert_save"), inputs={"mask": "cat.png"})
    assert sim.server.posted == []


@pytest.mark.parametrize("sim", ["0.33.0"], indirect=True)
async def test_vary_seeds_sends_fresh_seeds_and_leaves_them_alone_by_default(sim: ComfyUISimulator,
                                                                             config: Config) -> None:
    graph = workflow("tiny_ksampler", seed_6=7)
    async with AsyncComfyUIClient(url=sim.url, config=config, store_outputs=False) as client:
        kept = await client.run(graph, timeout=30)
        varied = await client.run(graph, vary_seeds=True, timeout=30)
    assert kept.history is not None and kept.history["prompt"][2]["6"]["inputs"]["seed"] == 7
    assert varied.history is not None and varied.history["prompt"][2]["6"]["inputs"]["seed"] != 7
    assert graph["6"]["inputs"]["seed"] == 7


async def test_a_failed_preparation_is_announced_as_a_failed_job(sim: ComfyUISimulator, config: Config) -> None:
    failed: list[tuple[str, str]] = []

    class Listener:
        @hookimpl
        def comfykit_job_failed(self, job: Job, error: BaseException) -> None:
            failed.append((job.job_id, type(error).__name__))

    async with AsyncComfyUIClient(url=sim.url, config=config, plugins=[Listener()]) as client:
        with pytest.raises(WorkflowError):
            await client.submit(workflow("load_invert_save"), inputs={"nowhere.image": "cat.png"})
    assert [kind for _, kind in failed] == ["WorkflowError"]


# ---------------------------------------------------------------- storing outputs while the server is briefly away


async def test_a_download_failing_with_a_5xx_is_stored_on_the_next_try(sim: ComfyUISimulator, out_dir: Path) -> None:
    calls: list[int] = []

    class Fault:
        @hookimpl(tryfirst=True)
        def comfykit_store_outputs(self, job: Job, outputs: list[OutputFile]) -> list[StoredOutput]:
            calls.append(len(calls))
            if len(calls) == 1:
                sim.knobs.fail_next = 1  # the download sink's /view, which runs next, gets a 503
            return []

    config = _config(out_dir, **{"output.download_attempts": 1, "batch.health_interval": 0.05})
    async with AsyncComfyUIClient(url=sim.url, config=config, plugins=[Fault()]) as client:
        job = await client.run(workflow("invert_save"), timeout=30)
    assert job.status is JobStatus.COMPLETED and len(calls) == 2
    downloads = [stored for stored in job.stored if stored.sink == "download"]
    assert len(downloads) == 1 and Path(downloads[0].location).is_file()  # stored once, not once per try
    assert sim.execution_counts == {job.prompt_id: 1}


async def test_outputs_the_server_keeps_failing_to_give_fail_the_job_after_the_retries(
    sim: ComfyUISimulator, out_dir: Path
) -> None:
    calls: list[int] = []
    failed: list[str] = []

    class Broken:
        @hookimpl
        def comfykit_store_outputs(self, job: Job) -> list[StoredOutput]:
            calls.append(1)
            raise ServerUnreachable("the server went away mid-download")

        @hookimpl
        def comfykit_job_failed(self, job: Job, error: BaseException) -> None:
            failed.append(type(error).__name__)

    config = _config(out_dir, **{"batch.max_retries": 2, "batch.health_interval": 0.05})
    async with AsyncComfyUIClient(url=sim.url, config=config, plugins=[Broken()]) as client:
        handle = await client.submit(workflow("invert_save"))
        with pytest.raises(OutputsNotStored, match="could not be stored"):
            await handle.result(timeout=30)
    assert len(calls) == 3  # the first try and max_retries more
    assert handle.job.status is JobStatus.FAILED and handle.job.error_type == "OutputsNotStored"
    assert failed == ["OutputsNotStored"]


# ---------------------------------------------------------------- the node catalogue and /view


async def test_object_info_is_the_sync_clients_cache_shared_by_callers_and_validation(sim: ComfyUISimulator,
                                                                                    config: Config) -> None:
    async with AsyncComfyUIClient(url=sim.url, config=config, store_outputs=False) as client:
        catalogues = await asyncio.gather(*(client.get_object_info() for _ in range(5)))
        assert all(catalogue is catalogues[0] for catalogue in catalogues)  # one answer, kept
        assert "EmptyImage" in catalogues[0]
        assert set(await client.get_object_info("EmptyImage")) == {"EmptyImage"}
        assert await client.get_object_info("NoSuchNode") == {}
        await client.run(workflow("invert_save"), timeout=30)  # validated against the same catalogue
        assert await asyncio.to_thread(client.sync_client.get_object_info) is catalogues[0]
        refreshed = await client.get_object_info(refresh=True)
        assert refreshed is not catalogues[0] and refreshed == catalogues[0]
        client.invalidate_object_info()
        assert await client.get_object_info() is not refreshed


async def test_stream_view_streams_ranges_and_raises_comfykit_errors(sim: ComfyUISimulator, config: Config) -> None:
    async with AsyncComfyUIClient(url=sim.url, config=config, store_outputs=False) as client:
        job = await client.run(workflow("invert_save"), timeout=30)
        [image] = [output for output in job.outputs if output.is_file]
        name, subfolder = image.filename or "", image.subfolder
        saved = (sim.files.output_dir / subfolder / name).read_bytes()
        async with client.stream_view(name, subfolder) as response:
            assert b"".join([chunk async for chunk in response.aiter_bytes()]) == saved
        async with client.stream_view(name, subfolder, offset=4) as response:
            assert response.status_code == 206
            assert b"".join([chunk async for chunk in response.aiter_bytes()]) == saved[4:]
        with pytest.raises(NotFound):
            async with client.stream_view("no-such-file.png"):
                pass
        sim.knobs.break_views, sim.knobs.break_view_after = 1, 16
        with pytest.raises(ServerUnreachable, match="broke"):
            async with client.stream_view(name, subfolder) as response:
                b"".join([chunk async for chunk in response.aiter_bytes()])


async def test_the_session_starts_once_and_finishes_once_however_many_jobs_start_together(
    sim: ComfyUISimulator, config: Config
) -> None:
    calls: list[str] = []

    class Session:
        @hookimpl
        def comfykit_session_start(self, client: object) -> None:
            calls.append("start")

        @hookimpl
        def comfykit_session_finish(self, client: object) -> None:
            calls.append("finish")

    async with AsyncComfyUIClient(url=sim.url, config=config, plugins=[Session()], store_outputs=False) as client:
        await asyncio.gather(*(client.run(workflow("invert_save", color_1=n), timeout=30) for n in range(8)))
        assert calls == ["start"]
    assert calls == ["start", "finish"]
