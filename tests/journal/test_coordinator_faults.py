"""Three coordinator processes on one batch and three simulators: one is SIGKILLed, one SIGSTOPped past its lease.

Afterwards every job is done and no job ran twice: the simulators executed exactly one prompt
per job.  The test waits on what the database shows (who holds which job), never on sleeps.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from comfykit.jobs import Job
from comfykit.queue.journals import open_journal
from comfykit.testing import ComfyUISimulator
from comfykit.testing.knobs import Knobs

CHILD = Path(__file__).with_name("coordinator_child.py")
JOBS = 45
LEASE = "2"


@pytest.fixture
def sims(tmp_path: Path) -> Iterator[list[ComfyUISimulator]]:
    # Slow enough that each coordinator waits on its servers most of the time, as real GPU jobs make it.
    started = [ComfyUISimulator(port=0, root=tmp_path / f"sim{i}", knobs=Knobs(node_seconds=0.05)) for i in range(3)]
    for sim in started:
        sim.start()
    try:
        yield started
    finally:
        for sim in started:
            sim.stop()


def _wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_killed_and_a_stopped_coordinator_leave_every_job_done_once(pg_journal_url: str, postgres_dsn: str,
                                                                      sims: list[ComfyUISimulator]) -> None:
    batch = pg_journal_url.rpartition("batch=")[2]
    producer = open_journal(pg_journal_url)
    for index in range(JOBS):
        producer.add(Job(workflow={
            "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": index}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": f"f/{index}"}},
        }, job_id=f"job_{index}"))
    producer.close()

    children = [subprocess.Popen([sys.executable, str(CHILD), pg_journal_url, LEASE, *(sim.url for sim in sims)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    try:
        names = []
        for child in children:
            assert child.stdout is not None
            first = child.stdout.readline().split()
            assert first[:1] == ["coordinator"], child.stderr.read() if child.stderr else first
            names.append(first[1])
        killed, stopped, survivor = children
        db = psycopg.connect(postgres_dsn, autocommit=True)

        def held_in_flight(name: str) -> int:
            row = db.execute("SELECT COUNT(*) FROM comfykit_jobs WHERE batch=%s AND coordinator=%s AND prompt_id IS "
                             "NOT NULL AND status NOT IN ('completed','failed','cancelled')", (batch, name)).fetchone()
            return int(row[0]) if row else 0

        _wait_for("the first coordinator to have jobs on the servers", lambda: held_in_flight(names[0]) > 0)
        os.kill(killed.pid, signal.SIGKILL)
        _wait_for("the second coordinator to have jobs on the servers", lambda: held_in_flight(names[1]) > 0)
        os.kill(stopped.pid, signal.SIGSTOP)
        try:
            # Past its lease: the others take over every job it held.
            _wait_for("the stopped coordinator's jobs to be taken over", lambda: held_in_flight(names[1]) == 0)
        finally:
            os.kill(stopped.pid, signal.SIGCONT)
        errors = {}
        for child in (stopped, survivor):
            out, errors[child.pid] = child.communicate(timeout=120)
            assert child.returncode == 0, errors[child.pid]
            assert "done" in out
        # Resumed, it noticed that its jobs had been taken over, and left them alone.
        assert "another coordinator took it over" in errors[stopped.pid]
        assert killed.wait(10) == -signal.SIGKILL
        statuses = db.execute("SELECT status, COUNT(*) FROM comfykit_jobs WHERE batch=%s GROUP BY status",
                              (batch,)).fetchall()
        db.close()
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert statuses == [("completed", JOBS)]
    executions = [count for sim in sims for count in sim.execution_counts.values()]
    assert len(executions) == JOBS and set(executions) == {1}, "a job ran twice"
