"""The database crashing and coming back mid batch: the coordinator waits for it and goes on."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from comfykit import QueueManager
from comfykit.config import load_config
from comfykit.jobs import Job
from comfykit.queue.pgjournal import PostgresJournal
from comfykit.testing import ComfyUISimulator
from comfykit.testing.knobs import Knobs

from . import pgcluster

JOBS = 12


@pytest.fixture
def slow_sim(tmp_path: Path) -> Iterator[ComfyUISimulator]:
    with ComfyUISimulator(port=0, root=tmp_path / "sim", knobs=Knobs(node_seconds=0.05)) as simulator:
        yield simulator


def test_a_restarted_database_is_waited_for(postgres_cluster: tuple[Path | None, str], pg_journal_url: str,
                                            slow_sim: ComfyUISimulator, caplog: pytest.LogCaptureFixture) -> None:
    folder = postgres_cluster[0]
    if folder is None:
        pytest.skip("the PostgreSQL server was not started by these tests, so they do not restart it")
    caplog.set_level(logging.WARNING, logger="comfykit.journal")
    config = load_config(overrides={"batch.max_concurrent": 1}, use_file=False)
    with QueueManager(servers=[slow_sim.url], journal=pg_journal_url, config=config, store_outputs=False) as queue:
        for color in range(JOBS):
            queue.add_job({
                "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color}},
                "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
                "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": f"r/{color}"}},
            })
        some_done = threading.Event()
        queue.on("job_completed", lambda job: some_done.set())
        queue.start()
        assert some_done.wait(60)
        pgcluster.restart(folder)
        stats = queue.run(timeout=120)
    assert stats["completed"] == JOBS and stats["failed"] == 0
    assert "connected to the journal database again" in caplog.text  # the restart did cut the coordinator off
    executions = slow_sim.execution_counts
    assert len(executions) == JOBS and set(executions.values()) == {1}


def test_a_fence_is_taken_again_after_the_database_restarts(postgres_cluster: tuple[Path | None, str],
                                                            pg_journal_url: str, postgres_dsn: str) -> None:
    """The advisory lock dies with the old session; the reconnected one takes it again, so the job stays fenced."""
    folder = postgres_cluster[0]
    if folder is None:
        pytest.skip("the PostgreSQL server was not started by these tests, so they do not restart it")
    holder = PostgresJournal(pg_journal_url)
    holder.add(Job(workflow={"1": {"class_type": "EmptyImage", "inputs": {}}}, job_id="fenced"))
    assert [job.job_id for job in holder.claim(1)] == ["fenced"] and holder.fence("fenced")
    pgcluster.restart(folder)
    assert holder.renew() == {"fenced"}  # reconnected
    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        db.execute("UPDATE comfykit_jobs SET lease_until = now() - interval '1 second' WHERE batch=%s", (holder.batch,))
    other = PostgresJournal(pg_journal_url)
    try:
        assert other.claim(5) == []
        holder.unfence("fenced")
        assert [job.job_id for job in other.claim(5)] == ["fenced"]
    finally:
        other.close()
        holder.close()
