"""What a shared batch costs and buys: journal cost per job (SQLite vs PostgreSQL), and 1, 2, 4 coordinators.

``python benchmarks/journals.py [JOBS]`` (default 400) starts a throw-away PostgreSQL (as the
tests do), then prints two markdown tables:

- the journal's cost per job: one job's life as the queue records it (add, the prompt id
  before the POST, queued, running, completed), for each journal, in this process;
- jobs/s of 1, 2 and 4 ``comfykit`` coordinator processes sharing one PostgreSQL batch over
  the same four simulators (5 ms per node), from the first claim to the last job done.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "journal"))

import pgcluster  # noqa: E402  (the tests' throw-away cluster)

COORDINATOR = r"""
import sys
from comfykit import QueueManager
with QueueManager(servers=sys.argv[2:], journal=sys.argv[1], store_outputs=False) as queue:
    queue.run(timeout=600)
"""


def _graph(index: int) -> dict:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": index}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": f"b/{index}"}},
    }


def journal_cost(target: str, jobs: int) -> float:
    """Milliseconds of journal writes per job over one job's life."""
    from comfykit.jobs import Job, JobStatus
    from comfykit.queue.journals import ClaimingJournal, open_journal

    journal = open_journal(target)
    start = time.perf_counter()
    for index in range(jobs):
        journal.add(Job(workflow=_graph(index), job_id=f"job_{index}"))
    held = journal.claim(jobs) if isinstance(journal, ClaimingJournal) else list(journal.jobs())
    for job in held:
        job.move(JobStatus.PENDING, prompt_id=str(uuid.uuid4()), server="http://127.0.0.1:1", attempts=1)
        journal.update(job)
        for status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.COMPLETED):
            job.move(status)
            journal.update(job)
    seconds = time.perf_counter() - start
    journal.close()
    return seconds * 1000 / jobs


def coordinators(dsn: str, count: int, jobs: int, servers: list[str]) -> float:
    """Jobs/s of ``count`` coordinator processes finishing a ``jobs``-job batch on ``servers``."""
    from comfykit.jobs import Job
    from comfykit.queue.journals import open_journal

    url = f"{dsn}?batch=bench-{uuid.uuid4().hex[:8]}"
    producer = open_journal(url)
    for index in range(jobs):
        producer.add(Job(workflow=_graph(index), job_id=f"job_{index}"))
    producer.close()
    start = time.perf_counter()
    children = [subprocess.Popen([sys.executable, "-c", COORDINATOR, url, *servers]) for _ in range(count)]
    for child in children:
        if child.wait() != 0:
            raise RuntimeError(f"a coordinator failed ({child.returncode})")
    return jobs / (time.perf_counter() - start)


def main() -> None:
    from comfykit.testing import ComfyUISimulator
    from comfykit.testing.knobs import Knobs

    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    folder, dsn = pgcluster.start()
    sims = [ComfyUISimulator(port=0, knobs=Knobs(node_seconds=0.005)) for _ in range(4)]
    try:
        with tempfile.TemporaryDirectory() as scratch:
            sqlite_ms = journal_cost(str(Path(scratch) / "bench.sqlite"), jobs)
        postgres_ms = journal_cost(f"{dsn}?batch=cost-{uuid.uuid4().hex[:8]}", jobs)
        print("| journal | ms per job (add + 4 state writes) |\n| --- | --- |")
        print(f"| SQLite (WAL, synchronous=NORMAL) | {sqlite_ms:.2f} |")
        print(f"| PostgreSQL (loopback, fsync off) | {postgres_ms:.2f} |\n")
        for sim in sims:
            sim.start()
        urls = [sim.url for sim in sims]
        print("| coordinators | jobs | simulators | jobs/s |\n| --- | --- | --- | --- |")
        for count in (1, 2, 4):
            print(f"| {count} | {jobs} | 4 (5 ms per node) | {coordinators(dsn, count, jobs, urls):.1f} |", flush=True)
    finally:
        for sim in sims:
            sim.stop()
        pgcluster.stop(folder)


if __name__ == "__main__":
    main()
