"""Three coordinator processes on one batch and four simulators, through every fault the issue names.

One coordinator is SIGKILLed mid batch, another SIGSTOPped until every job it held (but was not
fencing) is someone else's, then resumed; then the database is restarted.  Afterwards every job
is completed, no job ran twice (the simulators' execution counts and saved files), every output
is stored once, byte for byte what its simulator saved, and each sidecar names the coordinator
and host the journal says finished the job.  Each fault is triggered by what the database shows
(progress, who holds which job), never after a sleep; every wait has a deadline and dumps the
batch's state, the simulators' queues and the coordinators' logs when it runs out.

At the issue's full scale (1,000 jobs) it takes about 30 s on a loaded two-core machine, so it is part
of the normal run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from comfykit.jobs import Job, JobStatus
from comfykit.queue.journals import open_journal
from comfykit.testing import ComfyUISimulator
from comfykit.testing.knobs import Knobs

from . import pgcluster

CHILD = Path(__file__).with_name("coordinator_child.py")
SIMULATORS = 4
JOBS = 1000
# Above the database's restart time: the coordinators' claims outlive the restart (their fences do not).
LEASE = "5"
_UNFINISHED = "status NOT IN ('completed', 'failed', 'cancelled')"
# Whether a job is free of fences: its holder is neither posting it nor storing its outputs.
_UNFENCED = "pg_try_advisory_xact_lock(hashtextextended('comfykit-job:' || batch || ':' || job_id, 0))"


@pytest.fixture
def sims(tmp_path: Path) -> Iterator[list[ComfyUISimulator]]:
    # Slow enough that the coordinators wait on their servers most of the time, as real GPU jobs make them.
    started = [ComfyUISimulator(port=0, root=tmp_path / f"sim{i}", knobs=Knobs(node_seconds=0.02))
               for i in range(SIMULATORS)]
    for sim in started:
        sim.start()
    try:
        yield started
    finally:
        for sim in started:
            sim.stop()


def _graph(index: int) -> dict[str, Any]:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": index * 4099}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": f"f/{index}"}},
    }


class Batch:
    """The test's view of the batch, its coordinators and its simulators, and the state dump of a failed wait."""

    def __init__(self, dsn: str, batch: str, sims: list[ComfyUISimulator], logs: list[Path]) -> None:
        self.db = psycopg.connect(dsn, autocommit=True)
        self.dsn, self.batch, self.sims, self.logs = dsn, batch, sims, logs
        self.names: list[str] = []

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        for _ in range(240):
            try:
                return self.db.execute(sql, (self.batch, *args)).fetchall()
            except psycopg.OperationalError:  # the database is being restarted: the test waits like the coordinators
                time.sleep(0.25)
                self.db = psycopg.connect(self.dsn, autocommit=True)
        raise AssertionError("the test could not reach the database for a minute")

    def completed(self) -> int:
        return int(self.rows("SELECT COUNT(*) FROM comfykit_jobs WHERE batch=%s AND status='completed'")[0][0])

    def held(self, name: str, *, in_flight: bool = False) -> list[str]:
        """Unfinished jobs ``name`` holds and is not fencing (on a server or not yet posted, as asked)."""
        posted = " AND prompt_id IS NOT NULL" if in_flight else ""
        return [row[0] for row in self.rows(
            f"SELECT job_id FROM comfykit_jobs WHERE batch=%s AND coordinator=%s AND {_UNFINISHED}{posted} "
            f"AND {_UNFENCED}", name)]

    def dump(self) -> str:
        unfinished = self.rows(
            f"SELECT job_id, status, coordinator, round(EXTRACT(EPOCH FROM lease_until - now())::numeric, 1), "
            f"prompt_id, server, {_UNFENCED} AS unfenced FROM comfykit_jobs WHERE batch=%s AND {_UNFINISHED} "
            "ORDER BY seq LIMIT 40")
        counts = self.rows("SELECT status, coordinator, COUNT(*) FROM comfykit_jobs WHERE batch=%s GROUP BY 1, 2")
        queues = [f"{sim.url}: {len(sim.execution_counts)} executed" for sim in self.sims]
        logs = "\n".join(f"--- coordinator {index} ({path.name}), last lines:\n" + "\n".join(
            path.read_text().splitlines()[-40:]) for index, path in enumerate(self.logs))
        return (f"coordinators {self.names}\ncounts {counts}\nunfinished (first 40) {unfinished}\n"
                f"simulators {queues}\n{logs}")

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.dump()}")
            time.sleep(0.05)


def _saved_by_simulators(sims: list[ComfyUISimulator]) -> dict[tuple[str, str, str], bytes]:
    """``(server, subfolder, filename) -> bytes`` of every image the simulators saved."""
    return {(sim.url, path.parent.relative_to(sim.files.output_dir).as_posix(), path.name): path.read_bytes()
            for sim in sims for path in sim.files.output_dir.rglob("*.png")}


def test_killed_stopped_and_cut_off_coordinators_leave_every_job_done_once(
        postgres_cluster: tuple[Path | None, str], pg_journal_url: str, sims: list[ComfyUISimulator],
        tmp_path: Path) -> None:
    folder, dsn = postgres_cluster
    jobs = JOBS
    if folder is None:
        pytest.skip("the PostgreSQL server was not started by these tests, so they do not restart it")
    batch_name = pg_journal_url.rpartition("batch=")[2]
    producer = open_journal(pg_journal_url)
    for index in range(jobs):
        producer.add(Job(workflow=_graph(index), job_id=f"job_{index}"))
    producer.close()

    outputs = tmp_path / "out"  # shared by the coordinators, as a network share would be
    logs = [tmp_path / f"coordinator-{index}.log" for index in range(3)]
    children = [subprocess.Popen([sys.executable, str(CHILD), pg_journal_url, LEASE, str(outputs),
                                  *(sim.url for sim in sims)], stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
                for log in logs]
    batch = Batch(dsn, batch_name, sims, logs)
    try:
        for child in children:
            assert child.stdout is not None
            ready, _, _ = select.select([child.stdout], [], [], 120)
            first = child.stdout.readline().split() if ready else []
            assert first[:1] == ["coordinator"], (first, batch.dump())
            batch.names.append(first[1])
        killed, stopped, survivor = children
        killed_name, stopped_name, _ = batch.names
        budget = 60 + jobs * 0.25  # generous: a loaded machine may run a few times slower than an idle one

        # SIGKILL: mid batch, while it has jobs on the servers.
        batch.wait_for("the first coordinator to have jobs on the servers after some progress",
                       lambda: batch.completed() >= jobs // 20 and bool(batch.held(killed_name, in_flight=True)),
                       budget)
        os.kill(killed.pid, signal.SIGKILL)
        assert killed.wait(30) == -signal.SIGKILL
        held_by_killed = {row[0] for row in batch.rows(
            f"SELECT job_id FROM comfykit_jobs WHERE batch=%s AND coordinator=%s AND {_UNFINISHED}", killed_name)}

        # SIGSTOP: past its lease, until every job it held and was not fencing is another's (or done by another).
        for _ in range(20):
            batch.wait_for("the second coordinator to have jobs on the servers",
                           lambda: batch.completed() >= jobs // 5 and len(batch.held(stopped_name, in_flight=True)) >= 2,
                           budget)
            os.kill(stopped.pid, signal.SIGSTOP)
            taken = batch.held(stopped_name)
            if taken:
                break
            os.kill(stopped.pid, signal.SIGCONT)  # it fenced or finished them meanwhile: catch it holding some
        else:
            raise AssertionError(f"the second coordinator was never stopped while holding unfenced jobs\n{batch.dump()}")
        try:
            batch.wait_for(f"the stopped coordinator's jobs {taken} to be taken over",
                           lambda: not set(batch.held(stopped_name)) & set(taken), budget)
        finally:
            os.kill(stopped.pid, signal.SIGCONT)

        # The database restarts (abruptly, as a crash would) mid batch: the coordinators wait and go on.
        batch.wait_for("half the batch done", lambda: batch.completed() >= jobs // 2, budget)
        assert batch.completed() < jobs, "the batch ended before the database could be restarted"
        pgcluster.restart(folder)

        results = {}
        for child, log in ((stopped, logs[1]), (survivor, logs[2])):
            try:
                out, _ = child.communicate(timeout=budget)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"coordinator {child.pid} did not finish\n{batch.dump()}") from None
            assert child.returncode == 0, f"coordinator {child.pid} failed\n{batch.dump()}"
            results[log] = int(out.split()[-1])
        finished_by = Counter(dict(batch.rows(
            "SELECT coordinator, COUNT(*) FROM comfykit_jobs WHERE batch=%s AND status='completed' GROUP BY 1")))
        rows = {job_id: (status, coordinator) for job_id, status, coordinator in batch.rows(
            "SELECT job_id, status, coordinator FROM comfykit_jobs WHERE batch=%s")}
        stopped_log, survivor_log = (log.read_text() for log in logs[1:])
        dump = batch.dump()
    finally:
        for child in children:
            if child.poll() is None:
                os.kill(child.pid, signal.SIGCONT)
                child.kill()
                child.wait()
        batch.db.close()

    # Every job completed, and each coordinator's own count is what the journal says it finished.
    assert Counter(status for status, _ in rows.values()) == {"completed": jobs}, dump
    assert results == {logs[1]: finished_by[stopped_name], logs[2]: finished_by[batch.names[2]]}, dump
    assert sum(finished_by.values()) == jobs
    # Resumed, the stopped one noticed it had lost its jobs, and left them alone; the restart did cut everyone off.
    assert "another coordinator took it over" in stopped_log, dump
    assert "connected to the journal database again" in stopped_log and "connected to the journal database again" \
        in survivor_log, dump

    # No job ran twice: one execution per prompt, one prompt per job, one saved image per job.
    executions = [count for sim in sims for count in sim.execution_counts.values()]
    saved = _saved_by_simulators(sims)
    assert len(executions) == jobs and set(executions) == {1}, dump
    assert sorted(filename for _, subfolder, filename in saved) == sorted(f"{i}_00001_.png" for i in range(jobs))

    # Every output stored once, byte for byte what the simulator that ran the job saved; no stray files,
    # except partial ones the killed coordinator left in the folders of the jobs it held.
    journal = open_journal(pg_journal_url)
    try:
        finished = list(journal.jobs())
    finally:
        journal.close()
    assert all(job.status is JobStatus.COMPLETED for job in finished) and len(finished) == jobs
    expected: set[Path] = set()
    for job in finished:
        [image] = [record for record in job.stored if record.sink == "download"]
        [output] = job.outputs
        path = Path(image.location)
        assert job.server is not None and output.filename is not None
        data = saved[(job.server, output.subfolder, output.filename)]
        assert path.read_bytes() == data and image.sha256 == hashlib.sha256(data).hexdigest(), job.job_id
        [sidecar] = [record for record in job.stored if record.sink == "metadata"]
        document = json.loads(Path(sidecar.location).read_text())
        _, finisher = rows[job.job_id]
        assert document["metadata"]["comfykit_coordinator"] == {"coordinator": finisher, "host": socket.gethostname()}
        expected |= {path, Path(sidecar.location)}
    present = {path for path in outputs.rglob("*") if path.is_file()}
    assert expected <= present
    stray = present - expected
    assert all(_left_by_the_killed_one(path, outputs, held_by_killed) for path in stray), (sorted(stray), held_by_killed)


def _left_by_the_killed_one(path: Path, outputs: Path, held: set[str]) -> bool:
    """Whether ``path`` is a partial file (comfykit.paths.temp_file_beside) of a job the killed coordinator held:
    an image in the job's folder, or the job's sidecar."""
    partial = re.fullmatch(r"\.(.+)\.[0-9a-f]{12}\.part", path.name)
    if partial is None:
        return False
    if path.parent == outputs:
        return partial.group(1).removesuffix(".json") in held
    return path.parent.parent == outputs and path.parent.name in held
