"""What only the PostgreSQL journal has: its URL, its schema versions, a missing extra, a password kept out of sight."""

from __future__ import annotations

import socket
import sys

import psycopg
import pytest

from comfykit.errors import JournalError
from comfykit.queue import pgjournal
from comfykit.queue.journals import journal_location, open_journal

PASSWORD = "not-a-real-secret"


def test_the_url_must_name_a_batch(postgres_dsn: str) -> None:
    with pytest.raises(JournalError, match=r"\?batch=NAME") as refused:
        open_journal(postgres_dsn)
    assert PASSWORD not in str(refused.value) and "***" in str(refused.value)


def test_the_location_and_connection_errors_hide_the_password() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    url = f"postgresql://comfykit:{PASSWORD}@127.0.0.1:{closed_port}/comfykit?batch=b"
    assert journal_location(url) == f"postgresql://comfykit:***@127.0.0.1:{closed_port}/comfykit?batch=b"
    with pytest.raises(JournalError, match="cannot connect to the journal database") as refused:
        open_journal(url)
    assert PASSWORD not in str(refused.value)


def test_without_psycopg_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(JournalError, match=r"pip install 'comfykit\[postgres\]'"):
        open_journal("postgresql://someone@127.0.0.1/db?batch=b")


def test_the_schema_version_is_recorded_and_a_newer_one_refused(pg_journal_url: str, postgres_dsn: str) -> None:
    open_journal(pg_journal_url).close()  # creates the tables at this comfykit's version
    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        assert db.execute("SELECT version FROM comfykit_schema").fetchall() == [(pgjournal.SCHEMA_VERSION,)]
        db.execute("UPDATE comfykit_schema SET version = %s", (pgjournal.SCHEMA_VERSION + 1,))
    try:
        for create in (True, False):  # a coordinator, and a look at the batch (comfykit jobs)
            with pytest.raises(JournalError, match="newer than this comfykit's") as refused:
                open_journal(pg_journal_url, create=create)
            assert "Upgrade comfykit" in str(refused.value)
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as db:
            db.execute("UPDATE comfykit_schema SET version = %s", (pgjournal.SCHEMA_VERSION,))


def test_a_damaged_row_names_the_job_and_the_batch(pg_journal_url: str, postgres_dsn: str) -> None:
    from comfykit.jobs import Job

    journal = open_journal(pg_journal_url)
    journal.add(Job(workflow={"1": {"class_type": "X", "inputs": {}}}, job_id="broken"))
    journal.close()
    batch = pg_journal_url.rpartition("batch=")[2]
    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        db.execute("UPDATE comfykit_jobs SET status='exploded' WHERE batch=%s", (batch,))
    journal = open_journal(pg_journal_url)
    with pytest.raises(JournalError, match=f"job 'broken' in batch '{batch}' is damaged"):
        list(journal.jobs())
    journal.close()
