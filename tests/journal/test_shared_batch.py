"""Several coordinators on one PostgreSQL batch: claims, leases, takeovers, and the queue on top of them."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from comfykit import ComfyUIClient, QueueManager, hookimpl
from comfykit.config import Config, load_config
from comfykit.errors import JournalError
from comfykit.jobs import Job, JobStatus
from comfykit.outputs import OutputFile, StoredOutput
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


def test_a_coordinator_does_not_claim_its_own_lapsed_job_again(pg_journal_url: str, postgres_dsn: str) -> None:
    """Its heartbeat was late, not its work: a second copy of a job it runs would be counted (and run) twice."""
    late, other = _coordinator(pg_journal_url), _coordinator(pg_journal_url)
    late.add(Job(workflow=INVERT, job_id="only"))
    assert [job.job_id for job in late.claim(1)] == ["only"]
    _expire_leases(postgres_dsn, pg_journal_url)
    assert late.claim(5) == []
    assert [job.job_id for job in other.claim(5)] == ["only"]
    late.close()
    other.close()


def test_a_claim_whose_answer_was_lost_goes_back_to_the_batch(pg_journal_url: str, postgres_dsn: str,
                                                              sim: ComfyUISimulator, tmp_path: Path) -> None:
    """The claim committed but its answer never arrived (the database went away): the heartbeat gives the job back."""
    producer = _coordinator(pg_journal_url)
    producer.add(Job(workflow=_workflow(3), job_id="unanswered"))
    producer.close()
    with QueueManager(servers=[sim.url], journal=pg_journal_url, config=_config(tmp_path)) as queue:
        journal = queue.journal
        assert isinstance(journal, PostgresJournal)
        with psycopg.connect(postgres_dsn, autocommit=True) as db:
            db.execute("UPDATE comfykit_jobs SET coordinator=%s, lease_until=now() + interval '1 hour' WHERE batch=%s",
                       (journal.coordinator, journal.batch))
        stats = queue.run(timeout=60)
    assert stats["completed"] == 1 and len(sim.execution_counts) == 1


class FrozenSink:
    """An output sink that stops until told to go on: a coordinator frozen while it stores a job's outputs."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.go_on = threading.Event()
        self.stored: list[str] = []

    @hookimpl
    def comfykit_store_outputs(self, job: Job, outputs: list[OutputFile], client: ComfyUIClient) -> list[StoredOutput]:
        self.entered.set()
        assert self.go_on.wait(60), "the test never let the sink go on"
        self.stored.append(job.job_id)
        return []


def test_a_coordinator_frozen_while_storing_keeps_its_job(pg_journal_url: str, postgres_dsn: str,
                                                          sim: ComfyUISimulator, tmp_path: Path) -> None:
    """Past its lease inside the sinks, it is not taken over: its outputs are stored once, the job completed once."""
    sink = FrozenSink()
    with QueueManager(servers=[sim.url], journal=pg_journal_url, config=_config(tmp_path), plugins=[sink]) as frozen:
        frozen.add_job(_workflow(5), job_id="storing")
        frozen.start()
        assert sink.entered.wait(60)
        _expire_leases(postgres_dsn, pg_journal_url)  # frozen for longer than its lease
        successor = _coordinator(pg_journal_url)
        try:
            assert successor.claim(5) == []  # fenced: nobody can take the job over and store its outputs too
            sink.go_on.set()
            stats = frozen.run(timeout=60)
            assert successor.claim(5) == [] and successor.unfinished() == 0
            [job] = successor.jobs()
        finally:
            sink.go_on.set()
            successor.close()
        assert isinstance(frozen.journal, PostgresJournal)
        holder = frozen.journal.coordinator
    assert stats["completed"] == 1 and sink.stored == ["storing"]
    assert job.status is JobStatus.COMPLETED and len(sim.execution_counts) == 1
    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        assert db.execute("SELECT coordinator FROM comfykit_jobs WHERE batch=%s",
                          (pg_journal_url.rpartition("batch=")[2],)).fetchall() == [(holder,)]
