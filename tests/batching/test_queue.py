"""QueueManager against real simulators: pipelining, hooks, retries without duplicates, cancel, pause, cache."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from batching.workloads import unique_workflows
from comfykit import ComfyUIClient, JobStatus, QueueManager, hookimpl
from comfykit.errors import ConfigError
from comfykit.jobs import Job
from comfykit.testing import ComfyUISimulator


def _run(queue: QueueManager, timeout: float = 60) -> dict[str, Any]:
    stats = queue.run(timeout=timeout)
    assert all(job.done for job in queue.get_all_jobs())
    return stats


def _executed_prompts(sim: ComfyUISimulator) -> set[str]:
    return {prompt_id for prompt_id, count in sim.execution_counts.items() if count}


class Recorder:
    """A plugin that notes every lifecycle hook call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def _note(self, hook: str, job: Job) -> None:
        with self.lock:
            self.calls.append((hook, job.job_id))

    @hookimpl
    def comfykit_job_submitted(self, job: Job, client: ComfyUIClient) -> None:
        self._note("submitted", job)

    @hookimpl
    def comfykit_job_started(self, job: Job, client: ComfyUIClient) -> None:
        self._note("started", job)

    @hookimpl
    def comfykit_job_completed(self, job: Job, client: ComfyUIClient) -> None:
        self._note("completed", job)

    @hookimpl
    def comfykit_job_failed(self, job: Job, error: BaseException, client: ComfyUIClient | None) -> None:
        self._note("failed", job)

    @hookimpl
    def comfykit_job_retrying(self, job: Job, error: BaseException, delay: float) -> None:
        self._note("retrying", job)

    @hookimpl
    def comfykit_job_cancelled(self, job: Job) -> None:
        self._note("cancelled", job)

    @hookimpl
    def comfykit_queue_empty(self, queue: QueueManager) -> None:
        with self.lock:
            self.calls.append(("empty", ""))

    def of(self, hook: str) -> list[str]:
        return [job_id for name, job_id in self.calls if name == hook]


@pytest.mark.parametrize("plugin_options", [(), ("no:monitor",)], ids=["websocket", "polling"])
def test_a_batch_runs_every_job_once_with_hooks_and_callbacks(
    sim: ComfyUISimulator, plugin_options: tuple[str, ...]
) -> None:
    recorder = Recorder()
    seen: list[str] = []
    with ComfyUIClient(url=sim.url, plugins=[recorder], plugin_options=plugin_options) as client:
        queue = QueueManager(client, max_concurrent=4, store_outputs=False)
        ids = queue.add_jobs_from_list(unique_workflows(24))
        queue.on("job_completed", lambda job: seen.append(job.job_id))
        queue.on("queue_empty", lambda: seen.append("empty"))
        stats = _run(queue)
        queue.close()
    assert stats["completed"] == 24 and stats["failed"] == 0 and stats["total"] == 24
    assert stats["servers"][sim.url]["completed"] == 24
    assert stats["throughput"] > 0 and stats["p90_duration"] is not None
    jobs = [queue.get_job(job_id) for job_id in ids]
    assert all(job is not None and job.status is JobStatus.COMPLETED for job in jobs)
    # Each job ran exactly once, under the prompt id it ended with.
    assert _executed_prompts(sim) == {job.prompt_id for job in jobs if job is not None}
    assert all(job is not None and job.attempts == 1 for job in jobs)
    first = jobs[0]
    assert first is not None and first.outputs and first.outputs[0].filename and first.outputs[0].node_id == "3"
    assert first.submitted_at is not None and first.finished_at is not None and first.duration is not None
    assert sorted(recorder.of("submitted")) == sorted(ids) == sorted(recorder.of("completed"))
    assert sorted(seen[:-1]) == sorted(ids) and seen[-1] == "empty"
    assert recorder.of("empty") == [""]
    # Without the monitor the polling source synthesizes the same events: started fires too.
    assert sorted(recorder.of("started")) == sorted(ids)


def test_pipelining_keeps_the_server_queue_fed(new_sim: ComfyUISimulator) -> None:
    # The first job is held running on the server; with a window of 3 the queue must post two more
    # behind it (and no more), so the server never waits for the client.  Waits on the pause and on
    # the server's queue, not on timing.
    with ComfyUIClient(url=new_sim.url) as client:
        queue = QueueManager(client, max_concurrent=3, store_outputs=False)
        queue.add_jobs_from_list(unique_workflows(6, offset=60))
        with new_sim.pause() as held:
            queue.start()
            held.wait()
            deadline = time.monotonic() + 30
            pending = client.get_queue()["queue_pending"]
            while len(pending) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)  # polling the server's state until it shows the posts, bounded by the deadline
                pending = client.get_queue()["queue_pending"]
            assert len(pending) == 2
        assert _run(queue)["completed"] == 6
        queue.close()


@pytest.mark.parametrize("validate", [True, False], ids=["validated-here", "rejected-by-server"])
def test_an_invalid_prompt_fails_at_once_with_the_node_named(new_sim: ComfyUISimulator, validate: bool) -> None:
    from comfykit import load_config

    bad = unique_workflows(1)[0]
    bad["1"]["inputs"]["width"] = "wide"
    recorder = Recorder()
    config = load_config(use_file=False, overrides={"workflow.validate_before_send": validate})
    with ComfyUIClient(url=new_sim.url, plugins=[recorder], config=config) as client:
        queue = QueueManager(client, store_outputs=False)
        job_id = queue.add_job(bad)
        good = queue.add_job(unique_workflows(1, offset=5)[0])
        _run(queue)
        queue.close()
    job = queue.get_job(job_id)
    assert job is not None and job.status is JobStatus.FAILED and job.attempts == (0 if validate else 1)
    assert job.error_type == ("WorkflowValidationError" if validate else "PromptRejected")
    assert "width" in (job.error or "") and "1" in (job.error or "")
    assert (job.prompt_id in new_sim.execution_counts) is False
    assert recorder.of("failed") == [job_id] and recorder.of("retrying") == []
    assert queue.get_job_status(good) is JobStatus.COMPLETED


def test_transient_execution_errors_are_retried_and_permanent_ones_are_not(new_sim: ComfyUISimulator) -> None:
    recorder = Recorder()
    new_sim.knobs.fail_nodes_next = 1  # "CUDA error: out of memory" once
    with ComfyUIClient(url=new_sim.url, plugins=[recorder]) as client:
        queue = QueueManager(client, max_concurrent=1, store_outputs=False)
        queue.retry_delay = 0.01
        flaky = queue.add_job(unique_workflows(1)[0])
        _run(queue)
        job = queue.get_job(flaky)
        assert job is not None and job.status is JobStatus.COMPLETED and job.attempts == 2
        assert recorder.of("retrying") == [flaky]

        new_sim.knobs.node_failure_message = "Given groups=1, weight of size [64], expected input to have 3 channels"
        new_sim.knobs.node_failure_type = "RuntimeError"
        new_sim.knobs.fail_nodes_next = 1
        broken = queue.add_job(unique_workflows(1, offset=9)[0])
        _run(queue)
        queue.close()
    job = queue.get_job(broken)
    assert job is not None and job.status is JobStatus.FAILED and job.attempts == 1
    assert job.error_type == "ExecutionError" and "EmptyImage" in (job.error or "")


def test_retries_stop_at_max_retries(new_sim: ComfyUISimulator) -> None:
    new_sim.knobs.fail_nodes_next = 10
    with ComfyUIClient(url=new_sim.url) as client:
        queue = QueueManager(client, max_retries=2, store_outputs=False)
        queue.retry_delay = 0.01
        job_id = queue.add_job(unique_workflows(1)[0])
        _run(queue)
        queue.close()
    job = queue.get_job(job_id)
    assert job is not None and job.status is JobStatus.FAILED and job.attempts == 3
    assert "out of memory" in (job.error or "")


def test_5xx_bursts_are_retried_without_duplicates(sim: ComfyUISimulator) -> None:
    with ComfyUIClient(url=sim.url) as client:
        queue = QueueManager(client, max_concurrent=2, max_retries=6, store_outputs=False)
        queue.retry_delay = 0.01
        queue.add_jobs_from_list(unique_workflows(10))
        sim.knobs.fail_next = 5
        stats = _run(queue)
        queue.close()
    assert stats["completed"] == 10
    jobs = queue.get_all_jobs()
    assert _executed_prompts(sim) == {job.prompt_id for job in jobs}
    assert sum(sim.execution_counts.values()) == 10


def test_a_lost_answer_is_checked_with_the_server_not_resubmitted(sim: ComfyUISimulator) -> None:
    # Every answer arrives after the client gave up waiting: the POST is queued but its answer is lost.
    with ComfyUIClient(url=sim.url, timeout=0.3) as client:
        queue = QueueManager(client, store_outputs=False)
        queue.health_interval = 0.1
        job_id = queue.add_job(unique_workflows(1)[0])
        sim.knobs.answer_delay = 0.6
        queue.start()
        time.sleep(1.5)
        sim.knobs.answer_delay = 0.0
        assert queue.wait_for_completion(30)
        queue.close()
    job = queue.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED and job.attempts == 1
    assert sim.execution_counts == {job.prompt_id: 1}


def test_cancel_pending_queued_and_running_jobs(new_sim: ComfyUISimulator) -> None:
    new_sim.knobs.node_seconds = 0.4
    recorder = Recorder()
    with ComfyUIClient(url=new_sim.url, plugins=[recorder]) as client:
        queue = QueueManager(client, max_concurrent=2, store_outputs=False)
        first, second, pending = queue.add_jobs_from_list(unique_workflows(3))
        queue.start()
        deadline = time.monotonic() + 10
        while {queue.get_job_status(first), queue.get_job_status(second)} != {JobStatus.RUNNING, JobStatus.QUEUED}:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        # The two submitters post concurrently: either job may have reached the server first.
        running, queued = (first, second) if queue.get_job_status(first) is JobStatus.RUNNING else (second, first)
        assert queue.cancel_job(pending) and queue.cancel_job(queued) and queue.cancel_job(running)
        assert not queue.cancel_job(running)  # already ended
        assert queue.wait_for_completion(10)
        time.sleep(0.5)
        server_queue = client.get_queue()
        queue.close()
    assert [queue.get_job_status(j) for j in (running, queued, pending)] == [JobStatus.CANCELLED] * 3
    assert sorted(recorder.of("cancelled")) == sorted([running, queued, pending])
    assert server_queue == {"queue_running": [], "queue_pending": []}
    job = queue.get_job(queued)
    assert job is not None and job.prompt_id not in new_sim.execution_counts
    assert recorder.of("failed") == [] and recorder.of("completed") == []


def test_pause_stops_new_submissions_only(new_sim: ComfyUISimulator) -> None:
    with ComfyUIClient(url=new_sim.url) as client:
        queue = QueueManager(client, max_concurrent=2, store_outputs=False)
        queue.pause()
        queue.add_jobs_from_list(unique_workflows(4))
        queue.start()
        time.sleep(0.3)
        assert new_sim.execution_counts == {}
        assert all(job.status is JobStatus.PENDING for job in queue.get_all_jobs())
        queue.resume()
        assert queue.wait_for_completion(30)
        queue.close()
    assert len(new_sim.execution_counts) == 4


def test_stop_without_waiting_cancels_what_is_in_flight(new_sim: ComfyUISimulator) -> None:
    new_sim.knobs.node_seconds = 0.3
    with ComfyUIClient(url=new_sim.url) as client:
        queue = QueueManager(client, max_concurrent=2, store_outputs=False)
        queue.add_jobs_from_list(unique_workflows(5))
        queue.start()
        time.sleep(0.4)
        queue.stop(wait=False)
        queue.close()
    statuses = {job.status for job in queue.get_all_jobs()}
    assert statuses <= {JobStatus.CANCELLED, JobStatus.COMPLETED} and JobStatus.CANCELLED in statuses


def test_fully_cached_jobs_still_yield_outputs_and_vary_seeds_makes_them_run(new_sim: ComfyUISimulator) -> None:
    sampler = {
        "1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["2", 1]}},
        "4": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 7, "steps": 2, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
                "model": ["2", 0], "positive": ["3", 0], "negative": ["3", 0], "latent_image": ["1", 0],
            },
        },
        "5": {"class_type": "VAEDecode", "inputs": {"samples": ["4", 0], "vae": ["2", 2]}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "cache"}},
    }
    with ComfyUIClient(url=new_sim.url) as client:
        queue = QueueManager(client, max_concurrent=1, store_outputs=False)
        queue.add_job(sampler)
        again = queue.add_job(sampler)
        _run(queue)
        cached = queue.get_job(again)
        assert cached is not None and cached.status is JobStatus.COMPLETED
        assert set(cached.cached_nodes) == set(sampler) and cached.outputs and cached.outputs[0].node_id == "6"
        varied = QueueManager(client, max_concurrent=1, store_outputs=False, vary_seeds=True)
        varied.add_job(sampler)
        _run(varied)
        job = varied.get_all_jobs()[0]
        assert job.history is not None
        sent = job.history["prompt"][2]
        assert sent["4"]["inputs"]["seed"] != 7 and "4" not in job.cached_nodes
        varied.close()
        queue.close()


def test_local_inputs_are_uploaded_once_per_server(tmp_path: Path, new_sim: ComfyUISimulator) -> None:
    from PIL import Image

    picture = tmp_path / "cat.png"
    Image.new("RGB", (8, 8), "orange").save(picture)
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "placeholder.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "up"}},
    }
    uploads: list[str] = []
    with ComfyUIClient(url=new_sim.url) as client:
        original = client.upload_image

        def counting_upload(*args: Any, **kwargs: Any) -> dict[str, Any]:
            uploads.append(kwargs.get("filename", ""))
            return original(*args, **kwargs)

        client.upload_image = counting_upload  # type: ignore[method-assign]
        queue = QueueManager(client, store_outputs=False)
        ids = [queue.add_job(graph, metadata={"n": n}, inputs={"image": picture}) for n in range(3)]
        _run(queue)
        queue.close()
    assert uploads == ["cat.png"]
    for job_id in ids:
        job = queue.get_job(job_id)
        assert job is not None and job.status is JobStatus.COMPLETED
        assert job.history is not None and job.history["prompt"][2]["1"]["inputs"]["image"] == "cat.png"


def test_a_job_over_its_timeout_is_stopped_and_failed(new_sim: ComfyUISimulator) -> None:
    new_sim.knobs.node_seconds = 1.0
    with ComfyUIClient(url=new_sim.url) as client:
        queue = QueueManager(client, timeout=0.5, max_retries=0, store_outputs=False)
        job_id = queue.add_job(unique_workflows(1)[0])
        _run(queue)
        # The simulator notices the interrupt when its current node ends (as ComfyUI does).
        deadline = time.monotonic() + 10
        while client.get_queue()["queue_running"]:
            assert time.monotonic() < deadline, "the timed-out job was never interrupted"
            time.sleep(0.05)
        queue.close()
    job = queue.get_job(job_id)
    assert job is not None and job.status is JobStatus.FAILED and job.error_type == "WaitTimeout"


def test_bad_arguments_are_clear() -> None:
    with pytest.raises(ConfigError, match="max_concurrent"):
        QueueManager(servers=["http://127.0.0.1:9"], max_concurrent=0)
    with pytest.raises(ConfigError, match="twice"):
        QueueManager(servers=["http://127.0.0.1:9", "http://127.0.0.1:9/"])
    with pytest.raises(ConfigError, match="weight"):
        QueueManager(servers=[{"url": "http://127.0.0.1:9", "weight": 0}])
    queue = QueueManager(servers=["http://127.0.0.1:9"])
    with pytest.raises(ValueError, match="job_finished"):
        queue.on("job_finished", print)
    queue.close()


def test_retry_delays_grow_with_jitter_and_honour_retry_after() -> None:
    from comfykit.errors import ServerError
    from comfykit.queue.schedule import backoff

    plain = RuntimeError("boom")
    assert [0.5 <= backoff(n, plain, base=1.0, cap=10.0) / 2 ** (n - 1) <= 1.0 for n in (1, 2, 3)] == [True] * 3
    assert backoff(10, plain, base=1.0, cap=10.0) <= 10.0
    busy = ServerError("busy", status_code=503, retry_after=3.0)
    assert backoff(1, busy, base=1.0, cap=10.0) == 3.0
    # A Retry-After longer than batch.retry_delay_max waits only that long; a non-finite one is ignored.
    for asked in (30.0, 1e12, float("inf"), float("nan")):
        hostile = ServerError("busy", status_code=503, retry_after=asked)
        assert backoff(1, hostile, base=1.0, cap=10.0) <= 10.0


def test_the_pool_can_come_from_the_config_file(tmp_path: Path) -> None:
    from comfykit import load_config

    config_file = tmp_path / "comfykit.yaml"
    config_file.write_text(
        "servers:\n  - http://127.0.0.1:9\n  - {url: 'http://127.0.0.1:10', weight: 3, max_concurrent: 5}\n"
        "batch:\n  max_concurrent: 2\n"
    )
    queue = QueueManager(config=load_config(path=config_file))
    assert queue.servers == ["http://127.0.0.1:9", "http://127.0.0.1:10"]
    stats = queue.get_statistics()["servers"]
    assert stats["http://127.0.0.1:9"]["window"] == 2
    assert stats["http://127.0.0.1:10"] == {**stats["http://127.0.0.1:10"], "weight": 3.0, "window": 5}
    queue.close()


def test_a_broken_prepare_hook_fails_its_job_and_the_batch_goes_on(new_sim: ComfyUISimulator) -> None:
    class Picky:
        @hookimpl
        def comfykit_prepare_prompt(self, prompt: dict[str, Any], job: Job, client: ComfyUIClient) -> None:
            if job.metadata.get("bad"):
                raise RuntimeError("this plugin is broken")
            prompt["3"]["inputs"]["filename_prefix"] = "prepared"

    with ComfyUIClient(url=new_sim.url, plugins=[Picky()]) as client:
        queue = QueueManager(client, max_concurrent=1, store_outputs=False)
        bad = [queue.add_job(w, metadata={"bad": True}) for w in unique_workflows(3)]
        good = [queue.add_job(w) for w in unique_workflows(4, offset=10)]
        _run(queue)
        queue.close()
    for job_id in bad:
        job = queue.get_job(job_id)
        assert job is not None and job.status is JobStatus.FAILED and "this plugin is broken" in (job.error or "")
    for job_id in good:
        job = queue.get_job(job_id)
        assert job is not None and job.status is JobStatus.COMPLETED and job.outputs
        assert job.outputs[0].filename is not None and job.outputs[0].filename.startswith("prepared")


def test_a_job_whose_outputs_are_being_stored_gives_its_slot_to_the_next(new_sim: ComfyUISimulator) -> None:
    """With max_concurrent=1 the second job is posted while the first one's sink is still busy."""
    second_posted = threading.Event()
    first_stored = threading.Event()

    class SlowSink:
        @hookimpl
        def comfykit_store_outputs(self, job: Job, outputs: Any, client: ComfyUIClient) -> list[Any]:
            if job.metadata.get("first"):
                # Holds the first job in its sink until the next one is on the server.
                assert second_posted.wait(60), "the next job was not posted while this one's outputs were stored"
            first_stored.set()
            return []

    with ComfyUIClient(url=new_sim.url, plugins=[SlowSink()], plugin_options=["no:download", "no:metadata"]) as client:
        queue = QueueManager(client, max_concurrent=1)
        first, second = unique_workflows(2)
        queue.on("job_submitted", lambda job: second_posted.set() if job.metadata.get("second") else None)
        first_id = queue.add_job(first, metadata={"first": True})
        second_id = queue.add_job(second, metadata={"second": True})
        _run(queue)
        queue.close()
    assert first_stored.is_set()
    for job_id in (first_id, second_id):
        job = queue.get_job(job_id)
        assert job is not None and job.status is JobStatus.COMPLETED, job and job.error
        assert not job.warnings
