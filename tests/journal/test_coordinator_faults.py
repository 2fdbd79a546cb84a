"""Three coordinator processes on one batch and three simulators: one is SIGKILLed, one SIGSTOPped past its lease.

Afterwards every job is done and no job ran twice: the simulators executed exactly one prompt
per job.  The test waits on what the database shows (who holds which job), never on sleeps.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from comfykit import ComfyUIClient
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
                                                                      sims: list[ComfyUISimulator], tmp_path: Path) -> None:
    batch = pg_journal_url.rpartition("batch=")[2]
    producer = open_journal(pg_journal_url)
    for index in range(JOBS):
        producer.add(Job(workflow={
            "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": index}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": f"f/{index}"}},
        }, job_id=f"job_{index}"))
    producer.close()

    errors: dict[int, str] = {}
    logs = [tmp_path / f"coordinator-{index}.log" for index in range(3)]
    children = [subprocess.Popen([sys.executable, str(CHILD), pg_journal_url, LEASE, *(sim.url for sim in sims)],
                                 stdout=subprocess.PIPE, stderr=log.open("w"), text=True) for log in logs]
    try:
        names = []
        for child in children:
            assert child.stdout is not None
            first = child.stdout.readline().split()
            assert first[:1] == ["coordinator"], first
            names.append(first[1])
        killed, stopped, survivor = children
        db = psycopg.connect(postgres_dsn, autocommit=True)

        def held_in_flight(name: str, *, posting_too: bool = True) -> int:
            """Jobs ``name`` holds that are (or may be) on a server; without the one it is posting, if ``posting_too``
            is false (a coordinator frozen mid-POST keeps that job: no one may post it again)."""
            not_posting = "" if posting_too else (
                " AND pg_try_advisory_xact_lock(hashtextextended('comfykit-job:' || batch || ':' || job_id, 0))")
            row = db.execute("SELECT COUNT(*) FROM comfykit_jobs WHERE batch=%s AND coordinator=%s AND prompt_id IS "
                             "NOT NULL AND status NOT IN ('completed','failed','cancelled')" + not_posting,
                             (batch, name)).fetchone()
            return int(row[0]) if row else 0

        _wait_for("the first coordinator to have jobs on the servers", lambda: held_in_flight(names[0]) > 0)
        os.kill(killed.pid, signal.SIGKILL)
        _wait_for("the second coordinator to have jobs on the servers",
                  lambda: held_in_flight(names[1], posting_too=False) >= 2)
        os.kill(stopped.pid, signal.SIGSTOP)
        try:
            # Past its lease: the others take over every job it held.
            _wait_for("the stopped coordinator's jobs to be taken over",
                      lambda: held_in_flight(names[1], posting_too=False) == 0)
        finally:
            os.kill(stopped.pid, signal.SIGCONT)
        for child in (stopped, survivor):
            try:
                out, _ = child.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                rows = db.execute("SELECT job_id, status, coordinator, lease_until - now(), prompt_id, pg_try_advisory_xact_lock("
                                  "hashtextextended('comfykit-job:' || batch || ':' || job_id, 0)) FROM comfykit_jobs "
                                  "WHERE batch=%s AND status <> 'completed'", (batch,)).fetchall()
                raise AssertionError(f"{names} {child.pid} hangs: {rows}\n" + "\n".join(
                    log.read_text()[-4000:] for log in logs)) from None
            assert child.returncode == 0, logs[children.index(child)].read_text()
            assert "done" in out
        errors = {child.pid: log.read_text() for child, log in zip(children, logs, strict=True)}
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
    assert len(executions) == JOBS and set(executions) == {1}, _runs_twice(sims, errors)


def _runs_twice(sims: list[ComfyUISimulator], errors: dict[int, str]) -> str:
    """Which job ran more than once, on which server under which prompt ids, and what the coordinators logged."""
    runs: dict[str, list[str]] = {}
    for sim in sims:
        with ComfyUIClient(url=sim.url) as client:
            for prompt_id, entry in client.get_history().items():
                prefix = entry["prompt"][2]["3"]["inputs"]["filename_prefix"]
                runs.setdefault(prefix, []).append(f"{sim.url} {prompt_id}")
    twice = {job: where for job, where in runs.items() if len(where) > 1}
    names = re.compile("|".join(rf"\bjob_{prefix.partition('/')[2]}\b" for prefix in twice) or "^$")
    logs = "\n".join(f"{pid}: {line}" for pid, text in errors.items() for line in text.splitlines() if names.search(line))
    return f"ran twice: {twice}\n{logs}"
