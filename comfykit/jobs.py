"""The job record: one workflow to run, its state, where it ran, and what it produced.

Used by ``QueueManager`` for batches and for single jobs (``comfykit send`` is a
one-job queue); the lifecycle hooks receive it.  It is mutable on purpose (its
status moves on), unlike the frozen event and output records, but its status
moves only through :meth:`Job.move`, along the edges of :data:`MOVES`.
"""

from __future__ import annotations

import enum
import time
import uuid
from collections.abc import Mapping
from typing import Any

import attrs

from comfykit.outputs import OutputFile, StoredOutput

__all__ = ["FINAL_STATES", "MOVES", "IllegalMove", "Job", "JobStatus", "new_prompt_id"]


def new_prompt_id() -> str:
    """A fresh prompt id: a lowercase hyphenated UUID4, the only form ComfyUI 0.33 accepts."""
    return str(uuid.uuid4())


class JobStatus(str, enum.Enum):
    """Where a job is in its life."""

    PENDING = "pending"  # known to the client, not sent yet
    QUEUED = "queued"  # accepted by a server, waiting in its queue
    RUNNING = "running"  # the server is executing it
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


FINAL_STATES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})

_P, _Q, _R = JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RUNNING
_C, _F, _X = JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED

#: The moves a job's status may make.  Back to ``PENDING`` is a retry (or a job taken off a
#: dead server); ``PENDING -> PENDING`` is a retry of an attempt the server never accepted.
#: A job reaches ``COMPLETED`` only from ``RUNNING``, so ``job_started`` always comes first.
#: ``FAILED -> PENDING`` is a resumed journal's failed job run again; the other ends are final.
MOVES: Mapping[JobStatus, frozenset[JobStatus]] = {
    _P: frozenset({_P, _Q, _F, _X}),
    _Q: frozenset({_P, _R, _F, _X}),
    _R: frozenset({_P, _C, _F, _X}),
    _F: frozenset({_P}),
    _C: frozenset(),
    _X: frozenset(),
}


class IllegalMove(RuntimeError):
    """A job was asked to make a move :data:`MOVES` does not allow (a bug in whoever asked)."""


@attrs.define(eq=False)
class Job:
    """One workflow run, from the moment it is added until it ends."""

    workflow: dict[str, Any]
    job_id: str = attrs.field(factory=lambda: uuid.uuid4().hex)
    metadata: dict[str, Any] = attrs.field(factory=dict)
    params: dict[str, Any] = attrs.field(factory=dict)
    extra_data: dict[str, Any] = attrs.field(factory=dict)
    #: local files to upload to whichever server runs the job: ``{"NODE.INPUT" or "INPUT": path}``
    inputs: dict[str, str] = attrs.field(factory=dict)
    status: JobStatus = JobStatus.PENDING
    attempts: int = 0
    server: str | None = None
    prompt_id: str | None = None
    created_at: float = attrs.field(factory=time.time)
    submitted_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    outputs: list[OutputFile] = attrs.field(factory=list)
    stored: list[StoredOutput] = attrs.field(factory=list)
    cached_nodes: list[str] = attrs.field(factory=list)
    history: dict[str, Any] | None = None
    error: str | None = None
    error_type: str | None = None
    #: things that went wrong without failing the job (a sink that failed, a job moved off a dead server)
    warnings: list[str] = attrs.field(factory=list)

    def move(self, to: JobStatus, **fields: Any) -> None:
        """Change the status to ``to`` and set ``fields``; raise :class:`IllegalMove` for an edge not in :data:`MOVES`.

        The queue calls this under its lock, so a reader holding the lock sees a
        status and the fields that go with it together.
        """
        if to not in MOVES[self.status]:
            raise IllegalMove(f"job {self.job_id}: {self.status.value} -> {to.value} is not a move a job can make")
        unknown = set(fields) - _FIELDS
        if unknown:
            raise TypeError(f"Job has no field(s) {', '.join(sorted(unknown))}")
        self.status = to
        for name, value in fields.items():
            setattr(self, name, value)

    @property
    def done(self) -> bool:
        return self.status in FINAL_STATES

    @property
    def duration(self) -> float | None:
        """Seconds from execution start (or submission) to the end, when known."""
        start = self.started_at or self.submitted_at
        if start is None or self.finished_at is None:
            return None
        return max(0.0, self.finished_at - start)


_FIELDS = frozenset(field.name for field in attrs.fields(Job)) - {"status", "job_id"}
