"""The durable batch journal: every job and every change of its state, in one SQLite file.

``QueueManager(journal="run.sqlite")`` writes a job's new state here *before*
acting on it (a prompt id is recorded before the prompt is posted), so a process
killed at any instant leaves a journal from which the next run can tell, for
every job, whether it is finished, possibly on a server (and under which prompt
id, to ask), or not started.  WAL mode with ``synchronous=NORMAL``: a commit
survives the process being killed; only a power cut can lose the last ones.
Workflows are stored once per distinct content, so a 10,000-job sweep of one
graph does not store it 10,000 times.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from comfykit.errors import ConfigError
from comfykit.jobs import Job, JobStatus
from comfykit.outputs import OutputFile, StoredOutput

__all__ = ["Journal"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS workflows (digest TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    workflow TEXT NOT NULL REFERENCES workflows(digest),
    metadata TEXT NOT NULL,
    params TEXT NOT NULL,
    extra_data TEXT NOT NULL,
    inputs TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    server TEXT,
    prompt_id TEXT,
    created_at REAL,
    submitted_at REAL,
    started_at REAL,
    finished_at REAL,
    outputs TEXT NOT NULL,
    stored TEXT NOT NULL,
    cached_nodes TEXT NOT NULL,
    error TEXT,
    error_type TEXT
);
"""

_STATE_COLUMNS = (
    "status", "attempts", "server", "prompt_id", "submitted_at", "started_at", "finished_at",
    "outputs", "stored", "cached_nodes", "error", "error_type",
)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def workflow_digest(workflow: Any) -> str:
    """A stable SHA-256 of a workflow's canonical JSON."""
    return hashlib.sha256(_dumps(workflow).encode()).hexdigest()


class Journal:
    """One SQLite journal file, safe to use from several threads of one process."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise ConfigError(
                f"cannot open the batch journal {self.path}: {exc}",
                hint="Give a new file name, or delete the file if it is not a comfykit journal.",
            ) from None
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise ConfigError(
                f"the batch journal {self.path} has schema {row[0]}, this comfykit writes {SCHEMA_VERSION}",
                hint="Finish that batch with the comfykit version that started it, or start a new journal.",
            )
        self._lock = threading.Lock()
        self._known_workflows: set[str] = set()
        self._seq = int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM jobs").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

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
                        "INSERT OR IGNORE INTO workflows VALUES (?, ?)", (digest, _dumps(job.workflow))
                    )
                    self._known_workflows.add(digest)
                self._db.execute(
                    "INSERT OR IGNORE INTO jobs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        job.job_id, self._seq, digest, _dumps(job.metadata), _dumps(job.params),
                        _dumps(job.extra_data), _dumps(job.inputs), *self._state(job)[:4], job.created_at,
                        *self._state(job)[4:],
                    ),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def update(self, job: Job) -> None:
        """Record the job's current state (status, attempt, server, prompt id, times, outputs, error)."""
        assignments = ", ".join(f"{column}=?" for column in _STATE_COLUMNS)
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {assignments} WHERE job_id=?", (*self._state(job), job.job_id))

    @staticmethod
    def _state(job: Job) -> tuple[Any, ...]:
        return (
            job.status.value, job.attempts, job.server, job.prompt_id, job.submitted_at, job.started_at,
            job.finished_at,
            _dumps([attrs.asdict(o) for o in job.outputs]),
            _dumps([attrs.asdict(s) for s in job.stored]),
            _dumps(job.cached_nodes), job.error, job.error_type,
        )

    # -- reading ------------------------------------------------------------------------

    def __contains__(self, job_id: object) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM jobs WHERE job_id=?", (job_id,)).fetchone() is not None

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])

    def jobs(self) -> Iterator[Job]:
        """Every journaled job, in the order it was added."""
        with self._lock:
            rows = self._db.execute(
                "SELECT j.*, w.body FROM jobs j JOIN workflows w ON w.digest = j.workflow ORDER BY j.seq"
            ).fetchall()
            names = [d[0] for d in self._db.execute("SELECT * FROM jobs LIMIT 0").description] + ["body"]
        workflows: dict[str, Any] = {}
        for row in rows:
            record = dict(zip(names, row, strict=True))
            digest = record["workflow"]
            if digest not in workflows:
                workflows[digest] = json.loads(record["body"])
            self._known_workflows.add(digest)
            job = Job(
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
            yield job
