"""Several coordinators on one PostgreSQL batch: claims, leases, takeovers, and the queue on top of them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from comfykit import ComfyUIClient, QueueManager
from comfykit.config import Config, load_config
from comfykit.errors import JournalError
from comfykit.jobs import Job, JobStatus
from comfykit.queue.journals import LeaseLost, open_journal
from comfykit.queue.pgjournal import PostgresJournal
from comfykit.testing import ComfyUISimulator

RECORDINGS = Path(__file__).resolve().parent.parent / "fixtures" / "recordings" / "0.33.0" / "workflows"
INVERT = json.loads((RECORDINGS / "invert_save.json").read_text())


ORPHAN_PROMPT = str(uuid.uuid4())


def _workflow(color: int) -> dict:
    graph = json.loads(json.dumps(INVERT))
    for node in graph.values():
        if "color" in node.get("inputs", {}):
            node["inputs"]["color"] = color
    return graph


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[ComfyUISimulator]:
    with ComfyUISimulator(port=0, root=tmp_path / "sim") as simulator:
        yield simulator


def _config(tmp_path: Path) -> Config:
    return load_config(overrides={"output.output_dir": str(tmp_path / "out")}, use_file=False)


def _coordinator(url: str) -> PostgresJournal:
    journal = open_journal(url)
    assert isinstance(journal, PostgresJournal)
    return journal


def _expire_leases(postgres_dsn: str, url: str) -> None:
    """What time does to a coordinator that stopped renewing: its leases end (here at once, not after a wait)."""
    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        db.execute("UPDATE comfykit_jobs SET lease_until = now() - interval '1 second' WHERE batch=%s",
                   (url.rpartition("batch=")[2],))


def test_each_job_is_claimed_by_one_coordinator(pg_journal_url: str) -> None:
    first, second = _coordinator(pg_journal_url), _coordinator(pg_journal_url)
    for index in range(3):
        first.add(Job(workflow=INVERT, job_id=f"job_{index}"))
    assert [job.job_id for job in first.claim(2)] == ["job_0", "job_1"]
    assert [job.job_id for job in second.claim(5)] == ["job_2"]
    assert first.claim(5) == [] and second.claim(5) == []
    assert first.renew() == {"job_0", "job_1"} and second.renew() == {"job_2"}
    assert first.unfinished() == 3
    first.close()  # gives its unfinished jobs back at once
    assert sorted(job.job_id for job in second.claim(5)) == ["job_0", "job_1"]
    second.close()


def test_a_lapsed_lease_is_taken_over_and_the_old_holder_can_no_longer_write(pg_journal_url: str,
                                                                            postgres_dsn: str) -> None:
    stale, fresh = _coordinator(pg_journal_url), _coordinator(pg_journal_url)
    stale.add(Job(workflow=INVERT, job_id="only"))
    [job] = stale.claim(1)
    job.move(JobStatus.PENDING, prompt_id="p-stale", server="http://127.0.0.1:1", attempts=1)
    stale.update(job)
    assert fresh.claim(1) == []
    _expire_leases(postgres_dsn, pg_journal_url)
    [taken] = fresh.claim(1)
    assert (taken.prompt_id, taken.server) == ("p-stale", "http://127.0.0.1:1")  # the new holder asks about it
    with pytest.raises(LeaseLost, match="held by another coordinator"):
        stale.update(job)
    assert stale.renew() == set() and not stale.holds("only") and fresh.holds("only")
    summary = fresh.summary()
    assert summary["total"] == 1 and summary["coordinators"] == {fresh.coordinator: {"pending": 1}}
    assert summary["oldest_lease"]["coordinator"] == fresh.coordinator
    stale.close()
    fresh.close()


def test_a_batch_runs_on_the_queue_and_a_rerun_adds_nothing(pg_journal_url: str, sim: ComfyUISimulator,
                                                            tmp_path: Path) -> None:
    config = _config(tmp_path)
    with QueueManager(servers=[sim.url], journal=pg_journal_url, config=config) as queue:
        ids = [queue.add_job(_workflow(color)) for color in range(4)]
        stats = queue.run(timeout=60)
    assert stats["completed"] == 4
    assert sorted(sim.execution_counts.values()) == [1, 1, 1, 1]
    sidecars = sorted((tmp_path / "out").rglob("*.json"))
    assert sidecars and all(json.loads(p.read_text())["metadata"]["comfykit_coordinator"]["host"] for p in sidecars)
    with QueueManager(servers=[sim.url], journal=pg_journal_url, config=config) as again:
        assert [again.add_job(_workflow(color)) for color in range(4)] == ids
        assert again.run(timeout=60)["total"] == 0  # every job of the batch is done: nothing to claim
    assert len(sim.execution_counts) == 4
    journal = _coordinator(pg_journal_url)
    assert {job.status for job in journal.jobs()} == {JobStatus.COMPLETED} and journal.unfinished() == 0
    journal.close()


def test_a_takeover_asks_the_server_before_posting_again(pg_journal_url: str, postgres_dsn: str,
                                                         sim: ComfyUISimulator, tmp_path: Path) -> None:
    """A coordinator journaled a prompt id, posted it and died: the next one collects that run, it posts nothing."""
    dead = _coordinator(pg_journal_url)
    dead.add(Job(workflow=_workflow(7), job_id="orphan"))
    [job] = dead.claim(1)
    job.move(JobStatus.PENDING, prompt_id=ORPHAN_PROMPT, server=sim.url, attempts=1)
    dead.update(job)
    with ComfyUIClient(url=sim.url) as client:
        client.post_prompt(job.workflow, prompt_id=ORPHAN_PROMPT)
    _expire_leases(postgres_dsn, pg_journal_url)  # it stops renewing (its connection stays open: a hung process)

    with QueueManager(servers=[sim.url], journal=pg_journal_url,
                      config=_config(tmp_path)) as heir:
        stats = heir.run(timeout=60)
    assert stats["completed"] == 1
    assert sim.execution_counts == {ORPHAN_PROMPT: 1}
    with pytest.raises(JournalError):
        dead.update(job)
    dead.close()
