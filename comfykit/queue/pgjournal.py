"""A batch journal kept in PostgreSQL: ``postgresql://user@host/db?batch=NAME``.

The database holds any number of batches, each a name; the tables are created and migrated by
comfykit itself (``comfykit_schema`` records the schema version, and a database written by a
newer comfykit is refused rather than misread).  Every write is committed before the call
returns (the server's ``synchronous_commit``), so the write-ahead rule holds as it does for
SQLite: a prompt id is durable before the prompt is posted.

Several coordinators (processes, on any hosts) share one batch: each *claims* jobs
(``SELECT ... FOR UPDATE SKIP LOCKED``) under a lease of ``batch.lease_seconds``, renewed by
its heartbeat while it holds them.  Every write of a job's state is conditional on still
holding it, so a coordinator whose lease was taken over (it was stopped, or cut off) learns so
at its next write (:class:`~comfykit.queue.journals.LeaseLost`) instead of overwriting the new
holder.  A dead coordinator's jobs are claimable once their leases end; the new holder asks
the job's server about its recorded prompt id first, as a resume does.  While a coordinator
journals a prompt id and posts it, and while it stores a job's outputs and journals it complete,
it holds the job's advisory lock (:meth:`PostgresJournal.fence`), which claims respect: a
coordinator frozen there cannot have its job taken over, posted a second time or its outputs
stored twice.  A finished job keeps the name of the coordinator and host that finished it.  A lost connection (the database
restarted) is retried for ``reconnect_timeout`` seconds before it is an error.  The URL's
password never leaves this module: locations and errors show it through
:func:`comfykit.secrets.redact_url`.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from comfykit.errors import JournalError
from comfykit.jobs import Job, JobStatus
from comfykit.queue.journal import JOB_RECORD_V1, STATE_COLUMNS, dumps, job_state, jobs_from_rows, workflow_digest
from comfykit.queue.journals import LeaseLost
from comfykit.secrets import SecretMask, redact_url, without_credentials

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "PostgresJournal", "split_journal_url"]

log = logging.getLogger("comfykit.journal")

INSTALL_HINT = "Install the PostgreSQL extra: pip install 'comfykit[postgres]'"

#: ``MIGRATIONS[n]`` takes the schema from version ``n`` to ``n + 1``
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE comfykit_batches (batch TEXT PRIMARY KEY, servers TEXT NOT NULL DEFAULT '[]');
    CREATE TABLE comfykit_workflows (digest TEXT PRIMARY KEY, body TEXT NOT NULL);
    CREATE TABLE comfykit_jobs (
        batch TEXT NOT NULL REFERENCES comfykit_batches(batch),
        job_id TEXT NOT NULL,
        seq BIGSERIAL,
        workflow TEXT NOT NULL REFERENCES comfykit_workflows(digest),""" + JOB_RECORD_V1 + """,
        coordinator TEXT,
        host TEXT,
        lease_until TIMESTAMPTZ,
        PRIMARY KEY (batch, job_id)
    );
    CREATE INDEX comfykit_jobs_by_status ON comfykit_jobs (batch, status, seq);
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)

# Any fixed number: every comfykit creating or migrating the schema takes this transaction lock first.
_SCHEMA_LOCK = 0x636F6D6679

_DONE = tuple(status.value for status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED))
_NOT_DONE = "status NOT IN ('completed', 'failed', 'cancelled')"


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


def _server_list(text: str) -> list[str]:
    """The batch's recorded server URLs; ``ValueError`` when they are not a JSON list of strings."""
    urls = json.loads(text)
    if not isinstance(urls, list) or not all(isinstance(url, str) for url in urls):
        raise ValueError("not a list of URLs")
    return urls


class PostgresJournal:
    """One batch of a PostgreSQL journal database, shared with other coordinators, safe to use from several threads.

    :param lease_seconds: how long a claim lasts without a heartbeat (``batch.lease_seconds``).
    :param reconnect_timeout: how long a lost connection is retried before an operation fails.
    :param create: create the batch (and the tables) if missing; ``False`` only reads: an unknown batch
        is a :class:`~comfykit.errors.JournalError` naming the batches the database holds.
    """

    claims = True

    def __init__(self, url: str, *, lease_seconds: float = 30.0, reconnect_timeout: float = 60.0,
                 create: bool = True) -> None:
        self._conninfo, self.batch = split_journal_url(url)
        self._shown = redact_url(url)
        password = urlsplit(url).password
        self._mask = SecretMask([password] if password else [])
        if lease_seconds <= 0:
            raise self._error("batch.lease_seconds must be positive", hint="It is how long a claim on a job lasts.")
        self.lease_seconds = float(lease_seconds)
        self.reconnect_timeout = float(reconnect_timeout)
        self.host = socket.gethostname()
        #: this process's name in the batch: who holds (and who finished) each job
        self.coordinator = f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        try:
            import psycopg
        except ImportError:
            raise self._error("the PostgreSQL journal needs psycopg 3, which is not installed",
                              hint=INSTALL_HINT) from None
        self._psycopg = psycopg
        self._lock = threading.Lock()
        self._known_workflows: set[str] = set()
        self._column_names: list[str] | None = None
        #: how many times this session holds each job's advisory lock (they are counted, and taken again after
        #: a reconnect: the old session's locks died with it)
        self._fenced: collections.Counter[str] = collections.Counter()
        self._db = self._connect()
        try:
            if create:
                self._migrate()
                self._execute("INSERT INTO comfykit_batches (batch) VALUES (%s) ON CONFLICT DO NOTHING", (self.batch,),
                              f"open batch {self.batch!r}")
            else:
                self._find_batch()
        except BaseException:
            self._db.close()
            raise

    # -- the connection ------------------------------------------------------------------------

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

    def _connect(self) -> Any:
        try:
            return self._psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10)
        except self._psycopg.Error as exc:
            raise self._error(f"cannot connect to the journal database: {self._text(exc)}",
                              hint="Check the host, port, database name and credentials, and that the server runs.") from None

    def _execute(self, sql: str, args: tuple[Any, ...], what: str, *, rows: bool = False) -> Any:
        """Run one statement (the caller may hold the lock); a lost connection is retried, then a JournalError.

        Returns the rows (``rows=True``) or the number of rows changed.  Every statement here is
        safe to run again: inserts ignore conflicts, updates set values, and a claim whose answer
        was lost only leaves leases that run out.
        """
        psycopg = self._psycopg
        deadline = time.monotonic() + self.reconnect_timeout
        while True:
            try:
                if self._db.closed:
                    self._db = self._psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10)
                    log.warning("%s: connected to the journal database again", self._shown)
                    self._fence_again()
                cursor = self._db.execute(sql, args)
                return cursor.fetchall() if rows else cursor.rowcount
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise self._failed(exc, what) from None
                if not self._db.closed:
                    self._db.close()
                log.warning("%s: the journal database is unreachable (%s); trying again", self._shown, self._text(exc))
                time.sleep(0.5)
            except psycopg.Error as exc:
                raise self._failed(exc, what) from None

    def _fence_again(self) -> None:
        """After a reconnect: the old session's advisory locks died with it, so take this coordinator's again."""
        for key, times in sorted(self._fenced.items()):
            for _ in range(times):
                found = self._db.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)).fetchone()
                if not (found and found[0]):
                    # Another session took it while this one was cut off: only the conditional writes protect the job now.
                    log.warning("%s: could not take the lock of %s again after reconnecting", self._shown, key)
                    del self._fenced[key]
                    break

    def _migrate(self) -> None:
        psycopg = self._psycopg
        try:
            with self._db.transaction():
                self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                self._db.execute("CREATE TABLE IF NOT EXISTS comfykit_schema (version INTEGER NOT NULL)")
                row = self._db.execute("SELECT MAX(version) FROM comfykit_schema").fetchone()
                current = 0 if row is None or row[0] is None else int(row[0])
                self._check_version(current)
                for version in range(current, SCHEMA_VERSION):
                    self._db.execute(MIGRATIONS[version])
                if current < SCHEMA_VERSION:
                    self._db.execute("DELETE FROM comfykit_schema")
                    self._db.execute("INSERT INTO comfykit_schema VALUES (%s)", (SCHEMA_VERSION,))
        except psycopg.Error as exc:
            raise self._failed(exc, "create the journal's tables") from None

    def _find_batch(self) -> None:
        """Check, writing nothing, that the schema is this comfykit's and the batch exists; else say which batches do."""
        found = self._execute("SELECT to_regclass('comfykit_schema') IS NOT NULL", (), "read the journal", rows=True)
        if found[0][0]:
            version = self._execute("SELECT MAX(version) FROM comfykit_schema", (), "read the journal", rows=True)[0][0]
            self._check_version(0 if version is None else int(version))
            batches = [row[0] for row in self._execute("SELECT batch FROM comfykit_batches ORDER BY batch", (),
                                                       "read the journal", rows=True)]
        else:
            batches = []
        if self.batch in batches:
            return
        shown = ", ".join(batches[:20]) + (f" and {len(batches) - 20} more" if len(batches) > 20 else "")
        raise self._error(
            f"the database has no batch {self.batch!r}",
            hint=f"Its batches: {shown}." if batches else
                 "It holds no comfykit batch yet: a producer creates one (comfykit batch ... --enqueue-only).",
        )

    def _check_version(self, current: int) -> None:
        if current > SCHEMA_VERSION:
            raise self._error(
                f"the journal database has schema {current}, newer than this comfykit's {SCHEMA_VERSION}",
                hint="Upgrade comfykit on this machine to the version the other coordinators run.",
            )

    def close(self) -> None:
        """Give back the claims on jobs not finished (another coordinator may take them at once) and disconnect."""
        with self._lock:
            if self._db.closed:
                return
            try:
                self._db.execute(f"UPDATE comfykit_jobs SET coordinator=NULL, host=NULL, lease_until=NULL "
                                 f"WHERE batch=%s AND coordinator=%s AND {_NOT_DONE}", (self.batch, self.coordinator))
            except self._psycopg.Error as exc:
                log.warning("%s: could not give back this coordinator's claims (%s); they end with their lease",
                            self._shown, self._text(exc))
            self._db.close()

    # -- the batch's servers -------------------------------------------------------------------

    @property
    def servers(self) -> list[str]:
        """Every server a coordinator of the batch ran on (without credentials)."""
        with self._lock:
            found = self._execute("SELECT servers FROM comfykit_batches WHERE batch=%s", (self.batch,),
                                  "read the batch's servers", rows=True)
        try:
            return _server_list(found[0][0] if found else "[]")
        except ValueError:
            raise self._error("the batch's list of servers is damaged",
                              hint="Resume with --server to say where the jobs go.") from None

    def remember_servers(self, urls: list[str]) -> None:
        """Add this coordinator's servers to the batch's (coordinators may each have their own pool)."""
        with self._lock:
            try:
                with self._db.transaction():  # the row lock keeps two coordinators starting at once from losing one's
                    row = self._db.execute("SELECT servers FROM comfykit_batches WHERE batch=%s FOR UPDATE",
                                           (self.batch,)).fetchone()
                    known = _server_list(row[0] if row else "[]")
                    merged = known + [url for url in (without_credentials(u) for u in urls) if url not in known]
                    self._db.execute("UPDATE comfykit_batches SET servers=%s WHERE batch=%s", (dumps(merged), self.batch))
            except ValueError:
                raise self._error("the batch's list of servers is damaged",
                                  hint="Resume with --server to say where the jobs go.") from None
            except self._psycopg.Error as exc:
                raise self._failed(exc, "record the batch's servers") from None

    # -- writing -------------------------------------------------------------------------------

    def add(self, job: Job) -> None:
        """Record a new job, claimed by nobody (any coordinator of the batch may run it)."""
        digest = workflow_digest(job.workflow)
        columns = ["batch", "job_id", "workflow", "metadata", "params", "extra_data", "inputs", "created_at",
                   *STATE_COLUMNS]
        with self._lock:
            if digest not in self._known_workflows:
                self._execute("INSERT INTO comfykit_workflows VALUES (%s, %s) ON CONFLICT DO NOTHING",
                              (digest, dumps(job.workflow)), f"record job {job.job_id}")
            self._execute(
                f"INSERT INTO comfykit_jobs ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "
                "ON CONFLICT DO NOTHING",
                (self.batch, job.job_id, digest, dumps(job.metadata), dumps(job.params), dumps(job.extra_data),
                 dumps(job.inputs), job.created_at, *job_state(job)),
                f"record job {job.job_id}",
            )
            self._known_workflows.add(digest)

    def update(self, job: Job) -> None:
        """Record the job's state and renew its lease; :class:`LeaseLost` when another coordinator holds it now."""
        assignments = ", ".join(f"{column}=%s" for column in STATE_COLUMNS)
        with self._lock:
            # Read the state under the lock: two threads recording one job write in the order they read it,
            # so the last write carries the latest state (a job_started write never lands after job_completed).
            lease = "NULL" if job.done else "now() + make_interval(secs => %s)"
            args: tuple[Any, ...] = (*job_state(job), *(() if job.done else (self.lease_seconds,)),
                                     self.batch, job.job_id, self.coordinator)
            changed = self._execute(
                f"UPDATE comfykit_jobs SET {assignments}, lease_until={lease} "
                "WHERE batch=%s AND job_id=%s AND coordinator=%s",
                args, f"record the state of job {job.job_id}",
            )
        if not changed:
            raise LeaseLost(f"job {job.job_id} is held by another coordinator now", path=self._shown,
                            hint="Its lease ran out (this process was stopped or cut off), and another took it over.")

    # -- claiming ------------------------------------------------------------------------------

    def _job_key(self, job_id: str) -> str:
        return f"comfykit-job:{self.batch}:{job_id}"

    def fence(self, job_id: str) -> bool:
        """Take the job's advisory lock: from now on no coordinator can claim the job, until :meth:`unfence`.

        Held while a prompt id is journaled and posted, and while outputs are stored and the job is
        journaled complete.  A claim skips a job whose lock another session holds, so a coordinator
        frozen inside a fence keeps its job (nobody posts it again, nobody stores its outputs a
        second time); the lock ends with the session, so a killed coordinator's job is free once its
        lease runs out.  A claim looking at the job takes the lock for the length of one statement:
        while the job is still this coordinator's, the lock is tried again.  ``False`` when the job is
        another's now.  The caller checks that it still holds the job *after* fencing (a conditional
        write, or :meth:`holds`): a claim may have got in just before.
        """
        key = self._job_key(job_id)
        deadline = time.monotonic() + max(1.0, self.lease_seconds / 3)
        while True:
            with self._lock:
                found = self._execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,),
                                      f"lock job {job_id}", rows=True)
                if found and found[0][0]:
                    self._fenced[key] += 1
                    return True
            if time.monotonic() > deadline or not self.holds(job_id):
                return False
            time.sleep(0.01)

    def unfence(self, job_id: str) -> None:
        """Let go of the job's advisory lock (see :meth:`fence`)."""
        key = self._job_key(job_id)
        with self._lock:
            if not self._fenced[key]:
                return
            self._fenced[key] -= 1
            if not self._fenced[key]:
                del self._fenced[key]
            self._execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,), f"unlock job {job_id}",
                          rows=True)

    def release(self, job_id: str) -> None:
        with self._lock:
            self._execute("UPDATE comfykit_jobs SET coordinator=NULL, host=NULL, lease_until=NULL "
                          "WHERE batch=%s AND job_id=%s AND coordinator=%s", (self.batch, job_id, self.coordinator),
                          f"give back job {job_id}")

    def reopen_failed(self) -> int:
        """Make the batch's failed jobs pending again, claimed by nobody (``--retry-failed``); return how many."""
        with self._lock:
            return int(self._execute(
                "UPDATE comfykit_jobs SET status='pending', prompt_id=NULL, server=NULL, finished_at=NULL, "
                "coordinator=NULL, host=NULL, lease_until=NULL WHERE batch=%s AND status='failed'",
                (self.batch,), "run the failed jobs again",
            ))

    def claim(self, limit: int) -> list[Job]:
        """Claim up to ``limit`` unfinished jobs nobody holds (or whose lease ran out), oldest first."""
        if limit < 1:
            return []
        with self._lock:
            found = self._execute(
                "WITH claimed AS (UPDATE comfykit_jobs SET coordinator=%s, host=%s, "
                "lease_until=now() + make_interval(secs => %s) WHERE (batch, job_id) IN ("
                f"SELECT batch, job_id FROM comfykit_jobs WHERE batch=%s AND {_NOT_DONE} "
                # Not its own lapsed jobs: it still runs them (its heartbeat was late), and claiming one again
                # would make a second copy of a job it holds.
                "AND (coordinator IS NULL OR (lease_until < now() AND coordinator <> %s)) "
                # A job its holder has fenced (posting it, storing its outputs) is not taken over, however late its lease.
                "AND pg_try_advisory_xact_lock(hashtextextended('comfykit-job:' || batch || ':' || job_id, 0)) "
                "ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED) "
                "RETURNING *) "
                "SELECT c.*, w.body FROM claimed c LEFT JOIN comfykit_workflows w ON w.digest = c.workflow ORDER BY c.seq",
                (self.coordinator, self.host, self.lease_seconds, self.batch, self.coordinator, limit), "claim jobs",
                rows=True,
            )
            names = self._names
        return self._jobs_of(found, names)

    def renew(self) -> set[str]:
        """The heartbeat: extend this coordinator's leases; return the ids of the unfinished jobs it still holds."""
        with self._lock:
            found = self._execute(
                "UPDATE comfykit_jobs SET lease_until=now() + make_interval(secs => %s) "
                f"WHERE batch=%s AND coordinator=%s AND {_NOT_DONE} RETURNING job_id",
                (self.lease_seconds, self.batch, self.coordinator), "renew the leases", rows=True,
            )
        return {row[0] for row in found}

    def holds(self, job_id: str) -> bool:
        """Whether this coordinator still holds ``job_id`` (renewing its lease if so): asked before storing outputs."""
        with self._lock:
            return bool(self._execute(
                "UPDATE comfykit_jobs SET lease_until=now() + make_interval(secs => %s) "
                "WHERE batch=%s AND job_id=%s AND coordinator=%s",
                (self.lease_seconds, self.batch, job_id, self.coordinator), f"check the claim on job {job_id}",
            ))

    def unfinished(self) -> int:
        """How many jobs of the batch (whoever holds them) have not ended."""
        with self._lock:
            found = self._execute(f"SELECT COUNT(*) FROM comfykit_jobs WHERE batch=%s AND {_NOT_DONE}", (self.batch,),
                                  "read the journal", rows=True)
        return int(found[0][0])

    def summary(self) -> dict[str, Any]:
        """The batch's state: counts per status, per coordinator and per server, and the oldest live lease."""
        def grouped(column: str) -> dict[str, dict[str, int]]:
            found = self._execute(
                f"SELECT COALESCE({column}, ''), status, COUNT(*) FROM comfykit_jobs WHERE batch=%s GROUP BY 1, 2",
                (self.batch,), "read the journal", rows=True,
            )
            table: dict[str, dict[str, int]] = {}
            for key, status, count in found:
                table.setdefault(key or "-", {})[status] = int(count)
            return table

        with self._lock:
            statuses = self._execute("SELECT status, COUNT(*) FROM comfykit_jobs WHERE batch=%s GROUP BY status",
                                     (self.batch,), "read the journal", rows=True)
            per_coordinator, per_server = grouped("coordinator"), grouped("server")
            oldest = self._execute(
                "SELECT job_id, coordinator, EXTRACT(EPOCH FROM lease_until - now()) FROM comfykit_jobs "
                f"WHERE batch=%s AND {_NOT_DONE} AND lease_until IS NOT NULL ORDER BY lease_until LIMIT 1",
                (self.batch,), "read the journal", rows=True,
            )
        lease = None
        if oldest:
            job_id, holder, left = oldest[0]
            lease = {"job_id": job_id, "coordinator": holder, "expires_in": round(float(left), 1)}
        counts = {status: int(count) for status, count in statuses}
        return {"batch": self.batch, "total": sum(counts.values()), "statuses": counts,
                "coordinators": per_coordinator, "servers": per_server, "oldest_lease": lease}

    # -- reading -------------------------------------------------------------------------------

    @property
    def _names(self) -> list[str]:
        return [*self._columns(), "body"]

    def _columns(self) -> list[str]:
        if self._column_names is None:
            found = self._execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name='comfykit_jobs' "
                "AND table_schema=current_schema() ORDER BY ordinal_position", (), "read the journal", rows=True,
            )
            self._column_names = [row[0] for row in found]
        return self._column_names

    def __contains__(self, job_id: object) -> bool:
        with self._lock:
            return bool(self._execute("SELECT 1 FROM comfykit_jobs WHERE batch=%s AND job_id=%s", (self.batch, job_id),
                                      "read the journal", rows=True))

    def __len__(self) -> int:
        with self._lock:
            found = self._execute("SELECT COUNT(*) FROM comfykit_jobs WHERE batch=%s", (self.batch,), "read the journal",
                                  rows=True)
        return int(found[0][0])

    def jobs(self) -> Iterator[Job]:
        """Every job of the batch, whoever holds it (what ``comfykit jobs`` and a report read)."""
        with self._lock:
            found = self._execute(
                "SELECT j.*, w.body FROM comfykit_jobs j LEFT JOIN comfykit_workflows w ON w.digest = j.workflow "
                "WHERE j.batch=%s ORDER BY j.seq", (self.batch,), "read the journal", rows=True,
            )
            names = self._names
        yield from self._jobs_of(found, names)

    def _jobs_of(self, found: list[tuple[Any, ...]], names: list[str]) -> list[Job]:
        return list(jobs_from_rows(names, found, self._known_workflows, self._damaged))

    def _damaged(self, record: dict[str, Any], error: Exception) -> JournalError:
        return self._error(
            f"the record of job {record.get('job_id')!r} in batch {self.batch!r} is damaged ({type(error).__name__}: {error})",
            hint="The row was changed by something other than comfykit; fix or delete it, then resume.",
        )
