"""The long fault run (``pytest -m soak``, not part of the default run): 2,000 jobs through sockets cut every
half second, bursts of 5xx answers and a server restart, all at once.
"""

from __future__ import annotations

import os
import random
import threading

import pytest
from batching.workloads import unique_workflows

from comfykit import ComfyUIClient, JobStatus, QueueManager
from comfykit.testing import ComfyUISimulator

JOBS = int(os.environ.get("SOAK_JOBS", "2000"))


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_two_thousand_jobs_through_drops_bursts_and_a_restart(sim: ComfyUISimulator) -> None:
    rng = random.Random(20261125)
    sim.knobs.drop_websocket_after = 0.5
    sim.knobs.node_seconds = 0.001
    done = threading.Event()
    chaos: list[str] = []

    with ComfyUIClient(url=sim.url) as client:
        queue = QueueManager(client, max_concurrent=4, max_retries=10, store_outputs=False)
        queue.retry_delay = 0.02
        queue.add_jobs_from_list(unique_workflows(JOBS))

        def make_trouble() -> None:
            restarted = False
            while not done.wait(rng.uniform(0.5, 1.5)):
                completed = queue.get_statistics()["completed"]
                if not restarted and completed >= JOBS // 2:
                    sim.restart()
                    restarted = True
                    chaos.append("restart")
                elif rng.random() < 0.5:
                    # A burst is a short bad moment: the next few requests fail, then the server recovers
                    # (left armed, an idle batch's rare requests would keep meeting it: a server failing forever).
                    sim.knobs.fail_next = rng.randint(2, 6)
                    chaos.append("5xx")
                    done.wait(0.2)
                    sim.knobs.fail_next = 0

        troublemaker = threading.Thread(target=make_trouble, name="soak-chaos", daemon=True)
        queue.start()
        troublemaker.start()
        try:
            assert queue.wait_for_completion(1500), queue.get_statistics()
        finally:
            done.set()
            troublemaker.join(10)
        reconnects = getattr(client.event_source, "reconnects", 0)
        queue.close()

    jobs = queue.get_all_jobs()
    assert len(jobs) == JOBS
    assert [(job.status, job.error) for job in jobs if job.status is not JobStatus.COMPLETED] == []
    assert "restart" in chaos and "5xx" in chaos and reconnects > 0
    assert any(job.attempts > 1 for job in jobs), "the restart should have lost jobs that were then resubmitted"
    counts = sim.execution_counts
    # Each finished job ran once under the prompt id it ended with; no prompt id ran twice.
    assert all(counts.get(job.prompt_id or "") == 1 for job in jobs)
    assert max(counts.values()) == 1
