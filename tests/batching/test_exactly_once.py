"""Finished jobs never run twice: not when storing outputs outlasts the job timeout, not after Ctrl-C and --resume."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from batching.workloads import unique_workflows
from comfykit import ComfyUIClient, QueueManager, hookimpl, load_config
from comfykit.jobs import Job
from comfykit.outputs import OutputFile, StoredOutput
from comfykit.testing import ComfyUISimulator


class SlowSink:
    """A sink that takes its time: it waits for ``release`` (or ``patience`` seconds) before storing."""

    def __init__(self, patience: float = 30.0) -> None:
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)
        self.patience = patience

    @hookimpl
    def comfykit_store_outputs(self, job: Job, outputs: Sequence[OutputFile], client: ComfyUIClient) -> list[StoredOutput]:
        self.entered.release()
        self.release.wait(self.patience)
        return []


def test_storing_that_outlasts_the_job_timeout_does_not_run_the_job_again(new_sim: ComfyUISimulator) -> None:
    sink = SlowSink(patience=1.5)  # three times the job timeout: the old supervisor resubmitted every job
    config = load_config(use_file=False, overrides={"batch.retry_delay": 0.05})
    with QueueManager(servers=[new_sim.url], config=config, plugins=[sink], timeout=0.5, max_retries=3,
                      plugin_options=["no:download", "no:metadata"]) as queue:
        queue.add_jobs_from_list(unique_workflows(3, offset=300))
        stats = queue.run(timeout=60)
    assert stats["completed"] == 3 and stats["retries"] == 0
    # The simulator counts executions per prompt id: a second run would be a second prompt.
    assert sorted(new_sim.execution_counts.values()) == [1, 1, 1]


def test_ctrl_c_while_storing_then_resume_runs_no_finished_job_again(new_sim: ComfyUISimulator, tmp_path: Path) -> None:
    journal = tmp_path / "run.sqlite"
    sink = SlowSink()
    workflows = unique_workflows(6, offset=400)
    queue = QueueManager(servers=[new_sim.url], journal=journal, max_concurrent=2, plugins=[sink],
                         plugin_options=["no:download", "no:metadata"])
    queue.add_jobs_from_list(workflows)
    queue.start()
    for _ in range(2):  # two jobs done on the server, their sinks still storing: the moment of the Ctrl-C
        assert sink.entered.acquire(timeout=60)
    stopper = threading.Thread(target=lambda: left.append(queue.stop(wait=False, requeue=True)))
    left: list[int] = []
    stopper.start()
    assert queue._stop_event.wait(30)  # the stop has begun: the sinks may finish now
    sink.release.set()
    stopper.join(60)
    queue.close()
    executed_before = sum(new_sim.execution_counts.values())
    assert left and left[0] <= 6

    with QueueManager(journal=journal, plugin_options=["no:download", "no:metadata"]) as resumed:
        stats = resumed.run(timeout=60)
    assert stats["completed"] == 6
    # Each of the six jobs ran exactly once on the server (one prompt each), across both processes.
    assert sorted(new_sim.execution_counts.values()) == [1] * 6
    assert executed_before >= 2
