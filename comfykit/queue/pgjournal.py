"""A batch journal kept in PostgreSQL: ``postgresql://user@host/db?batch=NAME``.

The database holds any number of batches, each a name; the tables are created and migrated by
comfykit itself (``comfykit_schema`` records the schema version, and a database written by a
newer comfykit is refused rather than misread).  Every write is committed before the call
returns (the server's ``synchronous_commit``), so the write-ahead rule holds as it does for
SQLite: a prompt id is durable before the prompt is posted.  While open, a batch is owned by
one process through a session advisory lock, which PostgreSQL drops when that process's
connection ends, even when it was killed.  The URL's password never leaves this module: every
location and error shows the URL through :func:`comfykit.secrets.redact_url`.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from comfykit.errors import JournalError
from comfykit.jobs import Job
from comfykit.queue.journal import STATE_COLUMNS, dumps, job_from_record, job_state, without_credentials, workflow_digest
from comfykit.secrets import SecretMask, redact_url

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "PostgresJournal", "split_journal_url"]

INSTALL_HINT = "Install the PostgreSQL extra: pip install 'comfykit[postgres]'"

#: ``MIGRATIONS[n]`` takes the schema from version ``n`` to ``n + 1``
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE comfykit_batches (
        batch TEXT PRIMARY KEY,
        servers TEXT NOT NULL DEFAULT '[]',
        owner TEXT
    );
    CREATE TABLE comfykit_workflows (digest TEXT PRIMARY KEY, body TEXT NOT NULL);
    CREATE TABLE comfykit_jobs (
        batch TEXT NOT NULL REFERENCES comfykit_batches(batch),
        job_id TEXT NOT NULL,
        seq BIGSERIAL,
        workflow TEXT NOT NULL REFERENCES comfykit_workflows(digest),
        metadata TEXT NOT NULL,
        params TEXT NOT NULL,
        extra_data TEXT NOT NULL,
        inputs TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        server TEXT,
        prompt_id TEXT,
        created_at DOUBLE PRECISION,
        submitted_at DOUBLE PRECISION,
        started_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION,
        outputs TEXT NOT NULL,
        stored TEXT NOT NULL,
        cached_nodes TEXT NOT NULL,
        error TEXT,
        error_type TEXT,
        PRIMARY KEY (batch, job_id)
    );
    CREATE INDEX comfykit_jobs_by_status ON comfykit_jobs (batch, status, seq);
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)

# Any fixed number: every comfykit creating or migrating the schema takes this transaction lock first.
_SCHEMA_LOCK = 0x636F6D6679


def split_journal_url(url: str) -> tuple[str, str]:
    """``(connection URL, batch name)`` of a journal URL; the ``batch`` parameter is comfykit's, not libpq's."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    batches = [value for name, value in pairs if name == "batch"]
    if len(batches) != 1 or not batches[0].strip():
        raise JournalError(
            "a PostgreSQL journal URL names its batch once, as ?batch=NAME",
            path=redact_url(url),
            hint="For example postgresql://user@host/db?batch=render-2026-12 (the batch is created on first use).",
        )
    rest = urlencode([(name, value) for name, value in pairs if name != "batch"])
    return urlunsplit(parts._replace(query=rest)), batches[0].strip()


class PostgresJournal:
    """One batch of a PostgreSQL journal database, safe to use from several threads of one process."""

    def __init__(self, url: str) -> None:
        self._conninfo, self.batch = split_journal_url(url)
        self._shown = redact_url(url)
        password = urlsplit(url).password
        self._mask = SecretMask([password] if password else [])
        try:
            import psycopg
        except ImportError:
            raise self._error("the PostgreSQL journal needs psycopg 3, which is not installed",
                              hint=INSTALL_HINT) from None
        self._psycopg = psycopg
        self._lock = threading.Lock()
        self._known_workflows: set[str] = set()
        try:
            self._db = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise self._error(f"cannot connect to the journal database: {self._text(exc)}",
                              hint="Check the host, port, database name and credentials, and that the server runs.") from None
        try:
            self._migrate()
            self._take_batch()
        except BaseException:
            self._db.close()
            raise

    # -- opening -------------------------------------------------------------------------------

    @property
    def location(self) -> str:
        return self._shown

    def _text(self, exc: BaseException) -> str:
        return self._mask.text(str(exc).strip())

    def _error(self, message: str, *, hint: str | None = None) -> JournalError:
        return JournalError(message, path=self._shown, hint=hint)

    def _failed(self, exc: BaseException, what: str) -> JournalError:
        return self._error(f"cannot {what}: {self._text(exc)}",
                           hint="Check that the database server runs and is reachable; then resume the batch.")

    def _migrate(self) -> None:
        psycopg = self._psycopg
        try:
            with self._db.transaction():
                self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                self._db.execute("CREATE TABLE IF NOT EXISTS comfykit_schema (version INTEGER NOT NULL)")
                row = self._db.execute("SELECT MAX(version) FROM comfykit_schema").fetchone()
                current = 0 if row is None or row[0] is None else int(row[0])
                if current > SCHEMA_VERSION:
                    raise self._error(
                        f"the journal database has schema {current}, newer than this comfykit's {SCHEMA_VERSION}",
                        hint="Upgrade comfykit on this machine to the version the other coordinators run.",
                    )
                for version in range(current, SCHEMA_VERSION):
                    self._db.execute(MIGRATIONS[version])
                if current < SCHEMA_VERSION:
                    self._db.execute("DELETE FROM comfykit_schema")
                    self._db.execute("INSERT INTO comfykit_schema VALUES (%s)", (SCHEMA_VERSION,))
        except psycopg.Error as exc:
            raise self._failed(exc, "create the journal's tables") from None

    def _take_batch(self) -> None:
        psycopg = self._psycopg
        owner = {"pid": os.getpid(), "host": socket.gethostname(),
                 "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        try:
            self._db.execute("INSERT INTO comfykit_batches (batch) VALUES (%s) ON CONFLICT DO NOTHING", (self.batch,))
            row = self._db.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))",
                                   ("comfykit-batch:" + self.batch,)).fetchone()
            if row is None or not row[0]:
                found = self._db.execute("SELECT owner FROM comfykit_batches WHERE batch=%s", (self.batch,)).fetchone()
                holder = json.loads(found[0]) if found and found[0] else {}
                who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since {holder.get('since', '?')}"
                raise self._error(
                    f"batch {self.batch!r} is in use by {who}",
                    hint="Wait for that run to end (or stop it) before resuming; two runs of one batch would post "
                         "every pending job twice.",
                )
            self._db.execute("UPDATE comfykit_batches SET owner=%s WHERE batch=%s", (json.dumps(owner), self.batch))
        except psycopg.Error as exc:
            raise self._failed(exc, f"open batch {self.batch!r}") from None

    def close(self) -> None:
        with self._lock:
            if not self._db.closed:
                try:
                    self._db.execute("UPDATE comfykit_batches SET owner=NULL WHERE batch=%s", (self.batch,))
                except self._psycopg.Error:
                    pass  # the connection is gone, and with it the batch's lock: nothing is left to give up
                self._db.close()

    # -- the batch's servers -------------------------------------------------------------------

    def _one(self, sql: str, args: tuple[Any, ...], what: str) -> Any:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchone()
            except self._psycopg.Error as exc:
                raise self._failed(exc, what) from None

    @property
    def servers(self) -> list[str]:
        row = self._one("SELECT servers FROM comfykit_batches WHERE batch=%s", (self.batch,), "read the batch's servers")
        try:
            urls = json.loads(row[0]) if row else []
        except ValueError:
            urls = None
        if not isinstance(urls, list) or not all(isinstance(url, str) for url in urls):
            raise self._error("the batch's list of servers is damaged", hint="Resume with --server to say where the jobs go.")
        return urls

    def remember_servers(self, urls: list[str]) -> None:
        value = dumps([without_credentials(url) for url in urls])
        with self._lock:
            try:
                self._db.execute("UPDATE comfykit_batches SET servers=%s WHERE batch=%s", (value, self.batch))
            except self._psycopg.Error as exc:
                raise self._failed(exc, "record the batch's servers") from None

    # -- writing -------------------------------------------------------------------------------

    def add(self, job: Job) -> None:
        digest = workflow_digest(job.workflow)
        state = job_state(job)
        with self._lock:
            try:
                with self._db.transaction():
                    if digest not in self._known_workflows:
                        self._db.execute("INSERT INTO comfykit_workflows VALUES (%s, %s) ON CONFLICT DO NOTHING",
                                         (digest, dumps(job.workflow)))
                    self._db.execute(
                        "INSERT INTO comfykit_jobs (batch, job_id, workflow, metadata, params, extra_data, inputs, "
                        f"created_at, {', '.join(STATE_COLUMNS)}) VALUES ({', '.join(['%s'] * (8 + len(STATE_COLUMNS)))}) "
                        "ON CONFLICT DO NOTHING",
                        (self.batch, job.job_id, digest, dumps(job.metadata), dumps(job.params), dumps(job.extra_data),
                         dumps(job.inputs), job.created_at, *state),
                    )
            except self._psycopg.Error as exc:
                raise self._failed(exc, f"record job {job.job_id}") from None
            self._known_workflows.add(digest)

    def update(self, job: Job) -> None:
        assignments = ", ".join(f"{column}=%s" for column in STATE_COLUMNS)
        with self._lock:
            try:
                self._db.execute(
                    f"UPDATE comfykit_jobs SET {assignments} WHERE batch=%s AND job_id=%s",
                    (*job_state(job), self.batch, job.job_id),
                )
            except self._psycopg.Error as exc:
                raise self._failed(exc, f"record the state of job {job.job_id}") from None

    # -- reading -------------------------------------------------------------------------------

    def __contains__(self, job_id: object) -> bool:
        return self._one("SELECT 1 FROM comfykit_jobs WHERE batch=%s AND job_id=%s", (self.batch, job_id),
                         "read the journal") is not None

    def __len__(self) -> int:
        row = self._one("SELECT COUNT(*) FROM comfykit_jobs WHERE batch=%s", (self.batch,), "read the journal")
        return int(row[0])

    def jobs(self) -> Iterator[Job]:
        with self._lock:
            try:
                cursor = self._db.execute(
                    "SELECT j.*, w.body FROM comfykit_jobs j LEFT JOIN comfykit_workflows w ON w.digest = j.workflow "
                    "WHERE j.batch=%s ORDER BY j.seq", (self.batch,),
                )
                names = [column.name for column in cursor.description or ()]
                rows = cursor.fetchall()
            except self._psycopg.Error as exc:
                raise self._failed(exc, "read the journal") from None
        workflows: dict[str, Any] = {}
        for row in rows:
            record = dict(zip(names, row, strict=True))
            try:
                job = job_from_record(record, workflows)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                raise self._error(
                    f"the record of job {record.get('job_id')!r} in batch {self.batch!r} is damaged "
                    f"({type(exc).__name__}: {exc})",
                    hint="The row was changed by something other than comfykit; fix or delete it, then resume.",
                ) from None
            self._known_workflows.add(record["workflow"])
            yield job
