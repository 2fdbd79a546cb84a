"""Fault injection for batches: dropped sockets, restarts, a dead pool member, a killed client.

Each test asserts the same things: every job ends completed or failed with a
reason, nothing hangs, and no job runs twice where the server kept its history.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from batching.workloads import unique_workflows
from comfykit import ComfyUIClient, JobStatus, QueueManager
from comfykit.queue.journal import Journal
from comfykit.testing import ComfyUISimulator

CHILD = Path(__file__).with_name("batch_child.py")
REPO = Path(__file__).resolve().parents[2]


def _assert_each_ran_once(sims: list[ComfyUISimulator], queue_jobs: list) -> None:
    executed: dict[str, int] = {}
    for sim in sims:
        for prompt_id, count in sim.execution_counts.items():
            executed[prompt_id] = executed.get(prompt_id, 0) + count
    assert executed == {job.prompt_id: 1 for job in queue_jobs}


def test_websocket_dropped_every_half_second(new_sim: ComfyUISimulator) -> None:
    new_sim.knobs.node_seconds = 0.01
    new_sim.knobs.drop_websocket_after = 0.5
    with ComfyUIClient(url=new_sim.url) as client:
        queue = QueueManager(client, max_concurrent=3, store_outputs=False)
        queue.add_jobs_from_list(unique_workflows(80))
        stats = queue.run(timeout=120)
        reconnects = client.event_source.reconnects  # type: ignore[union-attr]
        queue.close()
    assert stats["completed"] == 80
    assert reconnects >= 2
    _assert_each_ran_once([new_sim], queue.get_all_jobs())


def test_a_restart_mid_batch_loses_jobs_that_are_then_resubmitted(new_sim: ComfyUISimulator) -> None:
    new_sim.knobs.node_seconds = 0.03
    with ComfyUIClient(url=new_sim.url) as client:
        queue = QueueManager(client, max_concurrent=3, store_outputs=False)
        queue.retry_delay = 0.05
        queue.add_jobs_from_list(unique_workflows(20))
        queue.start()
        while queue.get_statistics()["completed"] < 5:
            time.sleep(0.02)
        new_sim.restart()
        assert queue.wait_for_completion(60)
        queue.close()
    jobs = queue.get_all_jobs()
    assert all(job.status is JobStatus.COMPLETED for job in jobs)
    assert any(job.attempts > 1 for job in jobs), "the restart should have lost at least one job"


def test_http_5xx_and_slow_answers_over_a_pool(tmp_path: Path) -> None:
    with ComfyUISimulator(port=0, root=tmp_path / "a") as a, ComfyUISimulator(port=0, root=tmp_path / "b") as b:
        a.knobs.response_delay = 0.02
        b.knobs.fail_next = 4
        queue = QueueManager(servers=[a.url, {"url": b.url, "weight": 2}], max_concurrent=2, max_retries=8,
                             store_outputs=False)
        queue.retry_delay = 0.01
        queue.add_jobs_from_list(unique_workflows(30))
        stats = queue.run(timeout=120)
        queue.close()
        assert stats["completed"] == 30
        assert stats["servers"][a.url]["completed"] > 0 and stats["servers"][b.url]["completed"] > 0
        _assert_each_ran_once([a, b], queue.get_all_jobs())


def test_a_dead_pool_member_s_jobs_move_to_the_others(tmp_path: Path) -> None:
    sims = [ComfyUISimulator(port=0, root=tmp_path / name).start() for name in "abc"]
    try:
        for sim in sims:
            sim.knobs.node_seconds = 0.02
        queue = QueueManager(servers=[sim.url for sim in sims], max_concurrent=2, store_outputs=False)
        queue.down_timeout = 1.0
        queue.health_interval = 0.2
        queue.add_jobs_from_list(unique_workflows(40))
        queue.start()
        while queue.get_statistics()["servers"][sims[2].url]["completed"] < 2:
            time.sleep(0.02)
        sims[2].stop()
        assert queue.wait_for_completion(60)
        stats = queue.get_statistics()
        queue.close()
    finally:
        for sim in sims[:2]:
            sim.stop()
    jobs = queue.get_all_jobs()
    assert stats["completed"] == 40, [(job.status, job.error) for job in jobs if job.status is not JobStatus.COMPLETED]
    assert stats["servers"][sims[2].url]["healthy"] is False
    moved = [job for job in jobs if any("moved from" in warning for warning in job.warnings)]
    assert moved and all(job.server != sims[2].url for job in moved)


def test_every_server_gone_fails_the_rest_with_a_reason(tmp_path: Path) -> None:
    queue = QueueManager(servers=["http://127.0.0.1:9"], store_outputs=False)
    queue.down_timeout = 0.5
    queue.health_interval = 0.1
    ids = queue.add_jobs_from_list(unique_workflows(3))
    assert queue.wait_for_completion(30)
    queue.close()
    for job_id in ids:
        job = queue.get_job(job_id)
        assert job is not None and job.status is JobStatus.FAILED
        assert job.error is not None and ("no server" in job.error or "cannot reach" in job.error)


def test_a_journaled_batch_resumes_after_close_without_redoing_work(tmp_path: Path, new_sim: ComfyUISimulator) -> None:
    journal = tmp_path / "run.sqlite"
    new_sim.knobs.node_seconds = 0.02
    workflows = unique_workflows(12)
    with ComfyUIClient(url=new_sim.url) as client:
        first = QueueManager(client, journal=journal, max_concurrent=2, store_outputs=False)
        first.add_jobs_from_list(workflows)
        first.start()
        while first.get_statistics()["completed"] < 4:
            time.sleep(0.01)
        first.close()  # jobs in flight stay journaled as submitted
    with ComfyUIClient(url=new_sim.url) as client:
        second = QueueManager(client, journal=journal, max_concurrent=2, store_outputs=False)
        assert len(second.get_all_jobs()) == 12
        assert second.add_jobs_from_list(workflows) == [job.job_id for job in second.get_all_jobs()]
        stats = second.run(timeout=60)
        second.close()
    assert stats["completed"] == 12 and stats["total"] == 12
    _assert_each_ran_once([new_sim], second.get_all_jobs())


def test_sigkill_at_random_moments_then_resume(tmp_path: Path, new_sim: ComfyUISimulator) -> None:
    """20 kills of a journaled batch at random instants; the final run finishes it with no job lost or redone."""
    journal = tmp_path / "killed.sqlite"
    count = 80
    new_sim.knobs.node_seconds = 0.02  # 4.8 s of server work: more than 20 short runs get through
    rng = random.Random(20261125)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "plugins"), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, str(CHILD), new_sim.url, str(journal), str(count)]
    kills = 0
    for _ in range(30):
        if kills == 20:
            break
        child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "running"
        time.sleep(rng.uniform(0.0, 0.25))
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        kills += child.returncode == -signal.SIGKILL
    assert kills == 20
    final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr[-2000:]
    journal_jobs = list(Journal(journal).jobs())
    assert len(journal_jobs) == count
    assert all(job.status is JobStatus.COMPLETED for job in journal_jobs)
    _assert_each_ran_once([new_sim], journal_jobs)


def test_resuming_with_retry_failed_runs_only_the_failed_jobs_again(tmp_path: Path, new_sim: ComfyUISimulator) -> None:
    journal = tmp_path / "run.sqlite"
    workflows = unique_workflows(4)
    new_sim.knobs.node_failure_type = "RuntimeError"  # not transient: no retry within the run
    new_sim.knobs.node_failure_message = "a broken node"
    with ComfyUIClient(url=new_sim.url) as client:
        first = QueueManager(client, journal=journal, max_concurrent=1, store_outputs=False)
        first.add_jobs_from_list(workflows)
        new_sim.knobs.fail_nodes_next = 1
        first.run(timeout=60)
        first.close()
    failed = [job.job_id for job in first.get_all_jobs() if job.status is JobStatus.FAILED]
    assert len(failed) == 1
    with ComfyUIClient(url=new_sim.url) as client:
        plain = QueueManager(client, journal=journal, store_outputs=False)
        assert plain.get_job_status(failed[0]) is JobStatus.FAILED
        plain.close()
        executed_before = set(new_sim.execution_counts)
        again = QueueManager(client, journal=journal, store_outputs=False, retry_failed=True)
        stats = again.run(timeout=60)
        again.close()
    assert stats["completed"] == 4 and stats["failed"] == 0
    rerun = set(new_sim.execution_counts) - executed_before
    assert rerun == {again.get_job(failed[0]).prompt_id}  # type: ignore[union-attr]
