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
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import attrs

from comfykit.errors import WorkflowError
from comfykit.outputs import OutputFile, StoredOutput

__all__ = [
    "FINAL_STATES", "MOVES", "IllegalMove", "Job", "JobRequest", "JobStatus", "job_arguments", "job_requests",
    "new_prompt_id",
]


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


_ADD_JOB_USAGE = ("Call add_job(workflow), add_job(job_id, workflow) as the original tool did, "
                  "or add_job(workflow, job_id=...); load files with comfykit.workflow.load_workflow() first.")


def job_arguments(
    positional: tuple[object, ...], *, workflow: object = None, job_id: object = None, metadata: object = None
) -> tuple[dict[str, Any], str | None, Mapping[str, Any] | None]:
    """The API graph, job id and metadata of an ``add_job`` call, whichever form it was written in.

    Positionally the workflow comes first (``add_job(workflow, job_id, metadata)``), or
    the job id does, as in the original tool (``add_job(job_id, workflow, metadata)``);
    ``workflow=``, ``job_id=`` and ``metadata=`` may name any of them.  A ``{"prompt":
    graph}`` wrapper is unwrapped.  Anything else raises :class:`WorkflowError` with a hint.
    """
    given = list(positional)
    while given and given[-1] is None:
        given.pop()
    order = ("job_id", "workflow", "metadata") if given and isinstance(given[0], (str, int)) else (
        "workflow", "job_id", "metadata")
    values: dict[str, object] = dict(zip(order, given, strict=False))
    for name, value in (("workflow", workflow), ("job_id", job_id), ("metadata", metadata)):
        if value is not None:
            if values.get(name) is not None:
                raise WorkflowError(f"add_job got the {name.replace('_', ' ')} twice", hint=_ADD_JOB_USAGE)
            values[name] = value
    graph, chosen_id, extra = values.get("workflow"), values.get("job_id"), values.get("metadata")
    if not isinstance(graph, Mapping):
        raise WorkflowError(f"add_job got {'no' if graph is None else 'a ' + type(graph).__name__} workflow",
                            hint=_ADD_JOB_USAGE)
    prompt = graph["prompt"] if isinstance(graph.get("prompt"), Mapping) else graph
    if not prompt:
        raise WorkflowError("add_job needs an API-format workflow ({node_id: {class_type, inputs}})", hint=_ADD_JOB_USAGE)
    if chosen_id is not None and not isinstance(chosen_id, (str, int)):
        raise WorkflowError(f"the job id must be a text, not a {type(chosen_id).__name__}", hint=_ADD_JOB_USAGE)
    if extra is not None and not isinstance(extra, Mapping):
        raise WorkflowError(f"the metadata must be a mapping, not a {type(extra).__name__}", hint=_ADD_JOB_USAGE)
    return dict(prompt), None if chosen_id is None else str(chosen_id), extra


@attrs.frozen
class JobRequest:
    """One item of an ``add_jobs_from_list`` call, ready for ``add_job``."""

    workflow: Mapping[str, Any]
    job_id: str | None = None
    metadata: Mapping[str, Any] | None = None
    params: Mapping[str, Any] | None = None
    extra_data: Mapping[str, Any] | None = None
    inputs: Mapping[str, Any] | None = None


def job_requests(workflows: Iterable[Mapping[str, Any]], job_prefix: str | None = "job") -> Iterator[JobRequest]:
    """The jobs of an ``add_jobs_from_list`` call: the i-th gets the id ``f"{job_prefix}_{i}"`` (``job_0``, ``job_1``...).

    An item is a workflow, or ``{"workflow": ..., "job_id"?, "metadata"?, "params"?,
    "extra_data"?, "inputs"?}`` whose own ``job_id`` wins.  With ``job_prefix=None`` the
    queue chooses the ids, as for ``add_job(workflow)``.
    """
    for index, item in enumerate(workflows):
        numbered = None if job_prefix is None else f"{job_prefix}_{index}"
        if isinstance(item, Mapping) and isinstance(item.get("workflow"), Mapping):
            yield JobRequest(item["workflow"], item.get("job_id", numbered), item.get("metadata"), item.get("params"),
                             item.get("extra_data"), item.get("inputs"))
        else:
            yield JobRequest(item, numbered)


_FIELDS = frozenset(field.name for field in attrs.fields(Job)) - {"status", "job_id"}
