"""The one place a job changes: an outcome in; the job's move, its journal entry, the hook and the callbacks out.

The deciding parts (:mod:`~comfykit.queue.submit`, :mod:`~comfykit.queue.finish`,
:mod:`~comfykit.queue.schedule`, :mod:`~comfykit.queue.pool`) and the threads'
loops (:mod:`~comfykit.queue.workers`) never change a job: they hand what they
found out, as a value, to :meth:`Transitions._apply`.  It moves the job
(:meth:`comfykit.jobs.Job.move`, checked against the table of allowed edges, under
the queue's lock), then journals it, fires the plugin hook and calls the ``on()``
callbacks, in that order, and lets waiters wake only after all of that.

:class:`Transitions` is one of the bases of :class:`~comfykit.queue.QueueManager`,
as :class:`~comfykit.queue.workers.Workers` is; the state it changes (the job
table, the lock, the server states, the counters) is created and owned by
``QueueManager.__init__``, and is declared below only so that it is typed.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import TYPE_CHECKING

from comfykit.errors import ComfyKitError, JournalError, OutputsNotStored
from comfykit.jobs import Job, JobStatus
from comfykit.plugins import PluginManager
from comfykit.queue import finish, schedule, submit
from comfykit.queue.callbacks import Callbacks
from comfykit.queue.journals import BatchJournal, LeaseLost
from comfykit.queue.state import (
    Attempt,
    Cancelled,
    Change,
    GiveUp,
    Moved,
    Phase,
    RetryLater,
    Sending,
    ServerState,
    Started,
)

__all__ = ["Transitions"]

log = logging.getLogger("comfykit.queue")

#: outcomes that end the attempt and ask the retry decision (``Invalid``/``Failed`` answer it: no)
_ENDS_ATTEMPT = (submit.Rejected, submit.Invalid, finish.Retry, finish.Failed)


class Transitions:
    """Outcomes turned into job moves, and each move recorded and announced (see the module docstring)."""

    plugin_manager: PluginManager
    journal: BatchJournal | None
    retry_on_failure: bool
    max_retries: int
    retry_delay: float
    retry_delay_max: float
    _lock: threading.RLock
    _changed: threading.Condition
    _settled: threading.Condition
    _servers: list[ServerState]
    _pending: collections.deque[str]
    _delayed: schedule.Delayed
    _callbacks: Callbacks
    _unposted: collections.Counter[str]
    _stopping: bool
    _stop_event: threading.Event
    _fatal: JournalError | None
    _first_submit: float | None
    _last_finish: float | None

    if TYPE_CHECKING:  # defined by the other bases of QueueManager; only declared here, for the type checker
        def _settle(self) -> None: ...

        def _server_trouble(self, server: ServerState, error: BaseException) -> None: ...

        def _drop(self, job: Job) -> None: ...

    def _apply(self, job: Job, outcome: object, attempt: Attempt | None = None) -> bool:
        """Turn an outcome into the job's next state, then journal it, fire the hook, call the callbacks.

        Returns whether anything changed (a stale outcome, for a job that ended or an
        attempt that was released meanwhile, changes nothing).
        """
        if isinstance(outcome, _ENDS_ATTEMPT):
            with self._lock:
                if attempt is not None:
                    if not attempt.current:
                        return False
                    if attempt.phase is Phase.PREPARING:  # never posted, so job.attempts does not count it
                        self._unposted[job.job_id] += 1
                        self._server_trouble(attempt.server, outcome.error)
                    self._release(attempt)
                if job.done:
                    return False
                failures = job.attempts + self._unposted[job.job_id]
            error = outcome.error
            retry = not isinstance(outcome, (submit.Invalid, finish.Failed)) and schedule.should_retry(
                job, error, failures, enabled=self.retry_on_failure, max_retries=self.max_retries,
                plugins=self.plugin_manager,
            )
            delay = schedule.backoff(failures, error, base=self.retry_delay, cap=self.retry_delay_max)
            outcome = RetryLater(error, delay) if retry else GiveUp(error)
            attempt = None
        with self._lock:
            change = self._move(job, outcome, attempt)
        if change is None:
            return False
        if change.journal and not self._journal(job):
            return False
        if change.event is not None:
            getattr(self.plugin_manager, change.event)(job, *change.args)
            self._callbacks.call(change.event, job)
        if change.final:
            self._settle()
        return True

    def _move(self, job: Job, outcome: object, attempt: Attempt | None) -> Change | None:
        """The move an outcome makes (the caller holds the lock); ``None`` when it is stale."""
        if attempt is not None and not attempt.current:
            return None
        client = attempt.server.client if attempt is not None else None
        if job.done:  # cancelled meanwhile: whatever this attempt did no longer matters
            if attempt is not None:
                self._release(attempt)
            return None
        if isinstance(outcome, GiveUp):
            counted = next((s for s in self._servers if s.url == job.server), None)
            if counted is not None:
                counted.counts["failed"] += 1
            job.move(JobStatus.FAILED, error=_describe(outcome.error), error_type=type(outcome.error).__name__,
                     finished_at=time.time())
            self._last_finish = job.finished_at
            return Change("job_failed", (outcome.error, client), final=True)
        if isinstance(outcome, RetryLater):
            job.move(JobStatus.PENDING, prompt_id=None, server=None, error=_describe(outcome.error),
                     error_type=type(outcome.error).__name__)
            self._delayed.push(job.job_id, outcome.delay)
            log.info("job %s: attempt %d failed (%s); retrying in %.2f s", job.job_id, job.attempts, outcome.error,
                     outcome.delay)
            return Change("job_retrying", (outcome.error, outcome.delay))
        if isinstance(outcome, Cancelled):
            job.move(JobStatus.CANCELLED, finished_at=time.time())
            return Change("job_cancelled", final=True)
        assert attempt is not None
        server = attempt.server
        if isinstance(outcome, Sending):
            if job.status is not JobStatus.PENDING:
                return None
            if self._stopping:
                # Stopped (Ctrl-C) while this attempt waited for a submitter: post nothing more.
                self._release(attempt)
                self._pending.appendleft(job.job_id)
                return None
            job.move(JobStatus.PENDING, prompt_id=attempt.prompt_id, server=server.url, attempts=job.attempts + 1)
            attempt.phase = Phase.POSTING
            if self._first_submit is None:
                self._first_submit = time.time()
            return Change(None)
        if isinstance(outcome, Moved):
            self._release(attempt)
            job.move(JobStatus.PENDING, prompt_id=None, server=None)
            job.warnings.append(outcome.reason)
            self._pending.appendleft(job.job_id)
            return Change(None)
        if isinstance(outcome, submit.Unknown):  # stays in flight, polled until the server answers
            self._server_trouble(server, outcome.error)
            attempt.phase, attempt.polled = Phase.WAITING, True
            return None
        if isinstance(outcome, submit.Posted):
            attempt.phase = Phase.WAITING
            job.move(JobStatus.QUEUED, submitted_at=time.time())
            server.counts["submitted"] += 1
            return Change("job_submitted", (client,))
        if isinstance(outcome, Started):
            if job.status is not JobStatus.QUEUED:
                return None
            job.move(JobStatus.RUNNING, started_at=time.time())
            return Change("job_started", (client,))
        if isinstance(outcome, finish.ServerDown):
            return self._server_down(attempt, outcome)
        if isinstance(outcome, finish.Finished):
            unseen_start = job.status is not JobStatus.RUNNING
            if job.status is JobStatus.PENDING:  # resumed from a journal that recorded only the prompt id
                job.move(JobStatus.QUEUED)
            if unseen_start:
                # It ran while no event could tell (a socket gap, or a poll that came after the end):
                # job_started still comes before job_completed, as it does for every other job.
                job.move(JobStatus.RUNNING)
            attempt.ran = True
            self._changed.notify_all()  # its slot of the window is free while its outputs are stored
            job.history, job.outputs, job.cached_nodes = outcome.entry, outcome.outputs, outcome.cached_nodes
            job.started_at = job.started_at or outcome.started_at
            job.finished_at, job.stored = outcome.finished_at, []
            return Change("job_started" if unseen_start else None, (client,), journal=unseen_start)
        if isinstance(outcome, finish.Completed):
            self._release(attempt)
            job.move(JobStatus.COMPLETED, error=None, error_type=None)
            job.warnings.extend(outcome.warnings)
            server.counts["completed"] += 1
            self._last_finish = time.time()
            return Change("job_completed", (client,), final=True)
        raise TypeError(f"no move for outcome {outcome!r}")

    def _server_down(self, attempt: Attempt, outcome: finish.ServerDown) -> Change | None:
        """Its history or outputs could not be read: finish it again once the server answers (outputs: up to the retries)."""
        server, job, error = attempt.server, attempt.job, outcome.error
        self._server_trouble(server, error)
        if outcome.storing:
            attempt.store_failures += 1
            if attempt.store_failures > self.max_retries:
                self._release(attempt)
                reason = OutputsNotStored(f"the outputs of job {job.job_id} could not be stored: {error}")
                job.move(JobStatus.FAILED, error=_describe(reason), error_type=type(reason).__name__,
                         finished_at=time.time())
                server.counts["failed"] += 1
                self._last_finish = job.finished_at
                return Change("job_failed", (reason, server.client), final=True)
            log.warning("job %s: storing its outputs failed (%s); trying again once %s answers", job.job_id, error,
                        server.url)
        attempt.phase = Phase.WAITING
        server.client.tracker.reopen(attempt.prompt_id)
        return None

    def _release(self, attempt: Attempt) -> None:
        """End an attempt (the caller holds the lock)."""
        attempt.server.release(attempt)
        self._changed.notify_all()

    def _journal(self, job: Job) -> bool:
        """Record the job's state; ``False`` when it could not be recorded.

        When another coordinator holds the job now (a shared batch), it is dropped here.  On a
        journal that cannot be written (disk full) the batch stops cleanly: nothing more is posted,
        since the write-ahead rule would break, and :meth:`wait_for_completion` (so :meth:`run`)
        raises the JournalError; the journal keeps every state recorded before, so the batch
        resumes once there is room.
        """
        if self.journal is None:
            return True
        try:
            self.journal.update(job)
        except LeaseLost:
            self._drop(job)
            return False
        except JournalError as exc:
            with self._lock:
                first = self._fatal is None
                if first:
                    self._fatal = exc
                self._stopping = True
                self._stop_event.set()
                self._changed.notify_all()
                self._settled.notify_all()
            if first:
                log.error("the batch stops: %s", exc)
            return False
        return True


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text if isinstance(error, ComfyKitError) else f"{type(error).__name__}: {text}"
