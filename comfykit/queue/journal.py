"""The durable batch journal: every job and every change of its state, in one SQLite file.

``QueueManager(journal="run.sqlite")`` writes a job's new state here *before*
acting on it (a prompt id is recorded before the prompt is posted), so a process
killed at any instant leaves a journal from which the next run can tell, for
every job, whether it is finished, possibly on a server (and under which prompt
id, to ask), or not started.  WAL mode with ``synchronous=NORMAL``: a commit
survives the process being killed; only a power cut can lose the last ones.
Workflows are stored once per distinct content, so a 10,000-job sweep of one
graph does not store it 10,000 times.  A journal is owned by the process that
opened it (:class:`comfykit.queue.lock.JournalLock`) until it is closed.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from comfykit.errors import JournalError
from comfykit.jobs import Job, JobStatus
from comfykit.outputs import OutputFile, StoredOutput
from comfykit.queue.lock import JournalLock
from comfykit.secrets import without_credentials

__all__ = [
    "JOB_RECORD_V1", "STATE_COLUMNS", "Journal", "dumps", "job_from_record", "job_state", "jobs_from_rows", "workflow_digest",
]

SCHEMA_VERSION = 1

#: A job's record in version 1 of both journals' ``jobs`` tables, after its keys (job id, order, workflow).
#: Never changed: a later version adds columns with a migration.  ``DOUBLE PRECISION`` is SQLite's REAL.
JOB_RECORD_V1 = """
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
    error_type TEXT"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS workflows (digest TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    workflow TEXT NOT NULL REFERENCES workflows(digest),
""" + JOB_RECORD_V1 + """
);
"""

#: the columns :func:`job_state` fills, in its order (shared by every journal's ``jobs`` table)
STATE_COLUMNS = (
    "status", "attempts", "server", "prompt_id", "submitted_at", "started_at", "finished_at",
    "outputs", "stored", "cached_nodes", "error", "error_type",
)


def dumps(value: Any) -> str:
    """Canonical compact JSON, as the journals store it."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def job_state(job: Job) -> tuple[Any, ...]:
    """The values of :data:`STATE_COLUMNS` for ``job``."""
    return (
        job.status.value, job.attempts, job.server, job.prompt_id, job.submitted_at, job.started_at,
        job.finished_at,
        dumps([attrs.asdict(o) for o in job.outputs]),
        dumps([attrs.asdict(s) for s in job.stored]),
        dumps(job.cached_nodes), job.error, job.error_type,
    )


def jobs_from_rows(
    names: Sequence[str], rows: Iterable[Sequence[Any]], known_workflows: set[str],
    damaged: Callable[[dict[str, Any], Exception], JournalError],
) -> Iterator[Job]:
    """The jobs of journal rows (columns ``names``), each workflow decoded once; see :func:`job_from_record`.

    Each job's workflow digest joins ``known_workflows`` (stored: not to be written again); a row
    that cannot be read raises what ``damaged`` makes of it and its error.
    """
    workflows: dict[str, Any] = {}
    for row in rows:
        record = dict(zip(names, row, strict=True))
        try:
            job = job_from_record(record, workflows)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise damaged(record, exc) from None
        known_workflows.add(record["workflow"])
        yield job


def job_from_record(record: dict[str, Any], workflows: dict[str, Any]) -> Job:
    """The job of one journal row (its columns by name, ``body`` its workflow's JSON); ``workflows`` caches bodies.

    Raises ``ValueError``/``TypeError``/``KeyError``/``AttributeError`` for a damaged row.
    """
    digest = record["workflow"]
    if digest not in workflows:
        if record["body"] is None:
            raise KeyError(f"workflow {digest} is missing")
        workflows[digest] = json.loads(record["body"])
    if not isinstance(record["job_id"], str) or not isinstance(record["attempts"], int):
        raise TypeError("job_id must be text and attempts a number")
    return Job(
        workflow=workflows[digest],
        job_id=record["job_id"],
        metadata=json.loads(record["metadata"]),
        params=json.loads(record["params"]),
        extra_data=json.loads(record["extra_data"]),
        inputs=json.loads(record["inputs"]),
        status=JobStatus(record["status"]),
        attempts=record["attempts"],
        server=record["server"],
        prompt_id=record["prompt_id"],
        created_at=record["created_at"],
        submitted_at=record["submitted_at"],
        started_at=record["started_at"],
        finished_at=record["finished_at"],
        outputs=[OutputFile(**o) for o in json.loads(record["outputs"])],
        stored=[StoredOutput(**s) for s in json.loads(record["stored"])],
        cached_nodes=json.loads(record["cached_nodes"]),
        error=record["error"],
        error_type=record["error_type"],
    )


def workflow_digest(workflow: Any) -> str:
    """A stable SHA-256 of a workflow's canonical JSON."""
    return hashlib.sha256(dumps(workflow).encode()).hexdigest()


class Journal:
    """One SQLite journal file, safe to use from several threads of one process."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        existed = self.path.exists()
        if existed and self.path.is_dir():
            raise self._error("this is a folder, not a journal file", hint="Give the path of a file.")
        # Owned by this process until close(): a second process resuming it would post every job again.
        self._owner = JournalLock(self.path)
        try:
            self._open(existed)
        except BaseException:
            self._owner.release()
            raise

    def _open(self, existed: bool) -> None:
        if existed and self.path.is_file() and self.path.stat().st_size == 0:
            raise self._error(
                "the file is empty, so it holds no journal (it may have been truncated)",
                hint="Resume from a copy of the journal, or delete the file to start the batch again.",
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._owner.acquire()
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if existed and not {"meta", "workflows", "jobs"} <= tables:
                missing = ", ".join(sorted({"meta", "workflows", "jobs"} - tables))
                raise self._error(
                    f"this is not a comfykit journal (no {missing} table)",
                    hint="Give the journal of the batch to resume, or a new file name to start one.",
                )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise self._error(
                f"cannot open the batch journal: {exc}",
                hint=_disk_hint(exc) or "Give a new file name, or delete the file if it is not a comfykit journal.",
            ) from None
        except OSError as exc:
            raise self._error(f"cannot open the batch journal: {exc.strerror or exc}",
                              hint="Check the folder exists and is writable.") from None
        if row is None:
            if existed:
                raise self._error("this is not a comfykit journal (it records no schema version)",
                                  hint="Give the journal of the batch to resume, or a new file name to start one.")
            self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif row[0] != str(SCHEMA_VERSION):
            raise self._error(
                f"the journal has schema {row[0]!r}, this comfykit writes {SCHEMA_VERSION}",
                hint="Finish that batch with the comfykit version that started it, or start a new journal.",
            )
        self._lock = threading.Lock()
        self._known_workflows: set[str] = set()
        self._seq = int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM jobs").fetchone()[0])

    def _error(self, message: str, *, hint: str | None = None) -> JournalError:
        return JournalError(message, path=str(self.path), hint=hint)

    def _write_failed(self, exc: sqlite3.Error, what: str) -> JournalError:
        return self._error(f"cannot record {what}: {exc}",
                           hint=_disk_hint(exc) or "The journal file may be damaged; resume from a copy.")

    @property
    def location(self) -> str:
        """Where the journal is, as it may be shown: its path."""
        return str(self.path)

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._owner.release()

    # -- the batch's servers -----------------------------------------------------------------

    @property
    def servers(self) -> list[str]:
        """The server URLs the batch ran on (without credentials), so a resume goes to the same ones."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key='servers'").fetchone()
        if row is None:
            return []
        try:
            urls = json.loads(row[0])
        except ValueError:
            urls = None
        if not isinstance(urls, list) or not all(isinstance(url, str) for url in urls):
            raise self._error("the journal's list of servers is damaged",
                              hint="Resume with --server to say where the jobs go.")
        return urls

    def remember_servers(self, urls: list[str]) -> None:
        """Record where the batch runs; user names and passwords are left out (they come from the config)."""
        value = dumps([without_credentials(url) for url in urls])
        with self._lock:
            try:
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('servers', ?)", (value,))
            except sqlite3.Error as exc:
                raise self._write_failed(exc, "the batch's servers") from None

    # -- writing ------------------------------------------------------------------------

    def add(self, job: Job) -> None:
        """Record a new job (ignored when its id is already journaled)."""
        digest = workflow_digest(job.workflow)
        with self._lock:
            self._seq += 1
            self._db.execute("BEGIN")
            try:
                if digest not in self._known_workflows:
                    self._db.execute(
                        "INSERT OR IGNORE INTO workflows VALUES (?, ?)", (digest, dumps(job.workflow))
                    )
                    self._known_workflows.add(digest)
                self._db.execute(
                    "INSERT OR IGNORE INTO jobs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        job.job_id, self._seq, digest, dumps(job.metadata), dumps(job.params),
                        dumps(job.extra_data), dumps(job.inputs), *job_state(job)[:4], job.created_at,
                        *job_state(job)[4:],
                    ),
                )
                self._db.execute("COMMIT")
            except BaseException as exc:
                self._known_workflows.discard(digest)
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # SQLite already rolled back (it does on a full disk); the first error is the one to report
                if isinstance(exc, sqlite3.Error):
                    raise self._write_failed(exc, f"job {job.job_id}") from None
                raise

    def update(self, job: Job) -> None:
        """Record the job's current state (status, attempt, server, prompt id, times, outputs, error)."""
        assignments = ", ".join(f"{column}=?" for column in STATE_COLUMNS)
        with self._lock:
            try:
                self._db.execute(f"UPDATE jobs SET {assignments} WHERE job_id=?", (*job_state(job), job.job_id))
            except sqlite3.Error as exc:
                raise self._write_failed(exc, f"the state of job {job.job_id}") from None

    # -- reading ------------------------------------------------------------------------

    def __contains__(self, job_id: object) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM jobs WHERE job_id=?", (job_id,)).fetchone() is not None

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])

    def jobs(self) -> Iterator[Job]:
        """Every journaled job, in the order it was added; a row that cannot be read is a :class:`JournalError`."""
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT j.*, w.body FROM jobs j LEFT JOIN workflows w ON w.digest = j.workflow ORDER BY j.seq"
                ).fetchall()
                names = [d[0] for d in self._db.execute("SELECT * FROM jobs LIMIT 0").description] + ["body"]
            except sqlite3.DatabaseError as exc:
                raise self._error(f"cannot read the journal: {exc}",
                                  hint="The file is damaged; resume from a copy of it.") from None
        yield from jobs_from_rows(names, rows, self._known_workflows, self._damaged)

    def _damaged(self, record: dict[str, Any], error: Exception) -> JournalError:
        return self._error(f"the record of job {record.get('job_id')!r} is damaged ({type(error).__name__}: {error})",
                           hint="The file was changed by something other than comfykit; resume from a copy of it.")



def _disk_hint(exc: BaseException) -> str | None:
    """The hint for a full disk, which SQLite reports as "database or disk is full"."""
    if "disk is full" in str(exc) or getattr(exc, "sqlite_errorcode", None) == getattr(sqlite3, "SQLITE_FULL", 13):
        return "The disk holding the journal is full: free some space, then resume with the same journal."
    return None
