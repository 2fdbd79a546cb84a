"""A damaged, foreign or full journal is a clear JournalError naming the file, never a silent "0 of 0"."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from comfykit.errors import JournalError
from comfykit.jobs import Job
from comfykit.queue.journal import Journal

WORKFLOW = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}}


def _journal_with_jobs(path: Path, count: int = 3) -> None:
    journal = Journal(path)
    for index in range(count):
        journal.add(Job(workflow=WORKFLOW, job_id=f"job_{index}"))
    journal.close()


def test_a_new_journal_and_reopening_it_work(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    _journal_with_jobs(path)
    reopened = Journal(path)
    assert [job.job_id for job in reopened.jobs()] == ["job_0", "job_1", "job_2"]
    reopened.close()


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    path.write_bytes(b"")
    with pytest.raises(JournalError, match="the file is empty") as caught:
        Journal(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("table", ["jobs", "workflows", "meta"])
def test_a_missing_table_is_refused(tmp_path: Path, table: str) -> None:
    path = tmp_path / "run.sqlite"
    _journal_with_jobs(path)
    with sqlite3.connect(path) as db:
        db.execute(f"DROP TABLE {table}")
    with pytest.raises(JournalError, match=f"not a comfykit journal \\(no {table} table\\)"):
        Journal(path)


def test_another_programs_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (body TEXT)")
    with pytest.raises(JournalError, match="not a comfykit journal"):
        Journal(path)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    path.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(JournalError, match="cannot open the batch journal"):
        Journal(path)


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("status", "exploded", "ValueError"),
        ("metadata", "{not json", "JSONDecodeError"),
        ("outputs", '[{"nonsense": 1}]', "TypeError"),
        ("attempts", "many", "TypeError"),
        ("workflow", "0" * 64, "KeyError"),
    ],
)
def test_a_tampered_row_names_the_job(tmp_path: Path, column: str, value: str, expected: str) -> None:
    path = tmp_path / "run.sqlite"
    _journal_with_jobs(path)
    with sqlite3.connect(path) as db:
        db.execute(f"UPDATE jobs SET {column}=? WHERE job_id='job_1'", (value,))
    journal = Journal(path)
    with pytest.raises(JournalError, match=f"the record of job 'job_1' is damaged \\({expected}"):
        list(journal.jobs())
    journal.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    _journal_with_jobs(path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema'")
    with pytest.raises(JournalError, match="schema '99'"):
        Journal(path)


def test_a_full_disk_is_reported_as_such_not_as_a_failed_rollback(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    journal = Journal(path)
    journal.add(Job(workflow=WORKFLOW, job_id="first"))
    # SQLite's own page limit makes "the disk" full without filling a real one.
    page_count = journal._db.execute("PRAGMA page_count").fetchone()[0]
    journal._db.execute(f"PRAGMA max_page_count={page_count}")
    big = {str(i): {"class_type": "EmptyImage", "inputs": {"note": "x" * 5000}} for i in range(40)}
    with pytest.raises(JournalError, match="disk is full") as caught:
        journal.add(Job(workflow=big, job_id="second"))
    assert "free some space, then resume" in (caught.value.hint or "")
    # Nothing half-written: the journal still reads, with the first job only.
    assert [job.job_id for job in journal.jobs()] == ["first"]
    journal.close()


def test_the_journal_remembers_its_servers_without_credentials(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    journal = Journal(path)
    assert journal.servers == []
    journal.remember_servers(["http://gpu1:8188", "http://ann:pw-s3cret@gpu2:8188/base"])
    journal.close()
    reopened = Journal(path)
    assert reopened.servers == ["http://gpu1:8188", "http://gpu2:8188/base"]
    assert not any(b"pw-s3cret" in file.read_bytes() for file in tmp_path.glob("run.sqlite*"))
    reopened.close()


@pytest.mark.timeout(60)
def test_a_journal_that_fills_up_mid_batch_stops_it_cleanly_and_it_resumes_later(tmp_path: Path) -> None:
    from batching.workloads import unique_workflows
    from comfykit import QueueManager
    from comfykit.testing import ComfyUISimulator

    path = tmp_path / "run.sqlite"
    with ComfyUISimulator(port=0, root=tmp_path / "sim") as sim:
        queue = QueueManager(servers=[sim.url], journal=path, max_concurrent=1, store_outputs=False)
        queue.add_jobs_from_list(unique_workflows(6, offset=800))
        real_update, writes = queue.journal.update, []

        def update_until_full(job: Job) -> None:
            writes.append(job.status)
            if len(writes) > 4:
                raise JournalError("cannot record the state of a job: database or disk is full", path=str(path),
                                   hint="The disk holding the journal is full.")
            real_update(job)

        queue.journal.update = update_until_full  # type: ignore[method-assign]
        with pytest.raises(JournalError, match="disk is full"):
            queue.run(timeout=50)  # stops, instead of hanging with tracebacks
        queue.close()
        posted = len(sim.execution_counts)
        assert posted < 6

        with QueueManager(servers=[sim.url], journal=path, store_outputs=False) as resumed:
            stats = resumed.run(timeout=50)
        assert stats["completed"] == 6
        assert sorted(sim.execution_counts.values()) == [1] * 6
