"""The batch's job table: adding jobs, the ids they get, looking them up, forgetting completed ones.

With a journal, adding is idempotent: a job already journaled (the same ``job_id``,
or, without one, the same content added in the same order) is not added again, so
re-running a killed script with the same journal resumes it.  With a shared
(PostgreSQL) journal a job is only recorded: whichever coordinator claims it runs it.

:class:`JobTable` is one of the bases of :class:`~comfykit.queue.QueueManager`;
the table itself (``_jobs``, the ``_pending`` deque, the count of open jobs) and the
lock guarding it are created and owned by ``QueueManager.__init__``, and are
declared below only so that they are typed.
"""

from __future__ import annotations

import collections
import hashlib
import json
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from comfykit.errors import ComfyKitError
from comfykit.jobs import Job, JobStatus, job_arguments, job_requests
from comfykit.queue import submit

if TYPE_CHECKING:
    from comfykit.queue.journals import BatchJournal

__all__ = ["JobTable"]


class JobTable:
    """The jobs of a batch by id, and the ids of those waiting for a submitter, in order."""

    journal: BatchJournal | None
    _lock: threading.RLock
    _changed: threading.Condition
    _jobs: dict[str, Job]
    _pending: collections.deque[str]
    _id_counts: collections.Counter[str]
    _open: int
    _was_empty: bool
    _shared_open: bool

    if TYPE_CHECKING:  # defined by Workers, another base of QueueManager; only declared here, for the type checker
        @property
        def _claims(self) -> bool: ...

    # -- adding jobs -------------------------------------------------------------------------------

    def add_job(
        self,
        first: Mapping[str, Any] | str | None = None,
        second: Mapping[str, Any] | str | None = None,
        third: Mapping[str, Any] | None = None,
        /,
        *,
        workflow: Mapping[str, Any] | None = None,
        job_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        extra_data: Mapping[str, Any] | None = None,
        inputs: Mapping[str, str | Path] | None = None,
    ) -> str:
        """Add one API-format workflow; return its job id.

        ``add_job(workflow, job_id, metadata)``, or in the original tool's order
        ``add_job(job_id, workflow, metadata)``; each may also be named.  The
        workflow is copied, so the caller may change and re-add the same dict.  With a
        journal, a job already journaled (same ``job_id``, or same content added in the
        same order when no id is given) is not added again: re-running a killed script
        with the same journal resumes it.  With a PostgreSQL journal the job goes to the shared
        batch, and whichever coordinator claims it runs it: ``get_job`` knows it once this one has.
        """
        prompt, job_id, metadata = job_arguments((first, second, third), workflow=workflow, job_id=job_id,
                                                 metadata=metadata)
        job = Job(
            workflow=submit.copy_graph(dict(prompt)),
            metadata=dict(metadata or {}),
            params=dict(params or {}),
            extra_data=dict(extra_data or {}),
            inputs={key: str(path) for key, path in (inputs or {}).items()},
        )
        if job_id is not None:
            job.job_id = str(job_id)
        elif self.journal is not None:
            job.job_id = self._content_id(job)
        with self._lock:
            if job.job_id in self._jobs:
                if self.journal is not None:
                    return job.job_id
                raise ComfyKitError(f"a job with id {job.job_id!r} was already added", hint="Job ids must be unique.")
            if self.journal is not None:
                self.journal.add(job)
            if self._claims:
                # A shared batch: whoever claims the job runs it, this coordinator too once started.
                self._shared_open = True
                return job.job_id
            self._jobs[job.job_id] = job
            self._pending.append(job.job_id)
            self._open += 1
            self._was_empty = False
            self._changed.notify_all()
        return job.job_id

    def _content_id(self, job: Job) -> str:
        canonical = json.dumps(
            [job.workflow, job.metadata, job.params, job.extra_data, job.inputs], sort_keys=True, default=str
        )
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:20]
        self._id_counts[digest] += 1
        return f"{digest}-{self._id_counts[digest]}"

    def add_jobs_from_list(self, workflows: Iterable[Mapping[str, Any]], job_prefix: str | None = "job") -> list[str]:
        """Add many jobs, with ids ``job_0``, ``job_1``... (see :func:`comfykit.jobs.job_requests`); return the ids."""
        return [self.add_job(r.workflow, r.job_id, r.metadata, params=r.params, extra_data=r.extra_data, inputs=r.inputs)
                for r in job_requests(workflows, job_prefix)]

    def clear_completed(self) -> int:
        """Forget the completed jobs (not the failed or cancelled ones) in memory; return how many. The journal keeps them."""
        with self._lock:
            done = [job_id for job_id, job in self._jobs.items() if job.status is JobStatus.COMPLETED]
            for job_id in done:
                del self._jobs[job_id]
            return len(done)

    # -- looking at jobs ------------------------------------------------------------------------------

    def get_job(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def get_job_status(self, job_id: str) -> JobStatus | None:
        job = self.get_job(job_id)
        return None if job is None else job.status

    def get_all_jobs(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def get_jobs_by_status(self, status: JobStatus | str) -> list[Job]:
        wanted = JobStatus(status)
        with self._lock:
            return [job for job in self._jobs.values() if job.status is wanted]
