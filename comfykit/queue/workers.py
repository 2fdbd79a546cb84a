"""The threads of a :class:`~comfykit.queue.QueueManager`: submit, finish and supervise.

Each loop asks the deciding parts (:mod:`~comfykit.queue.submit`,
:mod:`~comfykit.queue.finish`, :mod:`~comfykit.queue.schedule`,
:mod:`~comfykit.queue.pool`) and hands what they answer to ``_apply``, the one
method that changes a job.  Which hook runs on which of these threads is written
in each ``comfykit_job_*`` hookspec.
"""

from __future__ import annotations

import collections
import functools
import logging
import queue as queue_module
import threading
import time
from typing import TYPE_CHECKING

from comfykit.answers import queued_ids
from comfykit.config import Config
from comfykit.errors import ComfyKitError, JournalError, ServerUnreachable, WaitTimeout
from comfykit.jobs import Job, JobStatus, new_prompt_id
from comfykit.plugins import PluginManager
from comfykit.queue import finish, pool, schedule, submit
from comfykit.queue.journals import BatchJournal, ClaimingJournal
from comfykit.queue.state import Attempt, Moved, Phase, Seen, Sending, ServerState, Started

if TYPE_CHECKING:
    from comfykit.queue.manager import QueueManager

__all__ = ["Listener", "Workers"]

log = logging.getLogger("comfykit.queue")

#: seconds between two looks for claimable jobs when the last look found none
CLAIM_INTERVAL = 0.25


class Listener:
    """Hears the tracker about one server's prompts (on the event source's thread) and tells the queue."""

    def __init__(self, queue: QueueManager, server: ServerState) -> None:
        self.queue, self.server = queue, server

    def prompt_started(self, prompt_id: str) -> None:
        self.queue._on_event(self.server, prompt_id, Seen.STARTED)

    def prompt_finished(self, prompt_id: str) -> None:
        self.queue._on_event(self.server, prompt_id, Seen.FINISHED)


class Workers:
    """The loops of the queue's threads; the state they read belongs to :class:`~comfykit.queue.QueueManager`."""

    config: Config
    plugin_manager: PluginManager
    vary_seeds: bool
    store_outputs: bool
    timeout: float | None
    health_interval: float
    down_timeout: float
    journal: BatchJournal | None
    follow: bool
    _open: int
    _shared_open: bool
    _was_empty: bool
    _servers: list[ServerState]
    _listeners: dict[str, Listener]
    _lock: threading.RLock
    _changed: threading.Condition
    _settled: threading.Condition
    _jobs: dict[str, Job]
    _pending: collections.deque[str]
    _delayed: schedule.Delayed
    _finish_queue: queue_module.Queue[Attempt | None]
    _stopping: bool
    _paused: bool
    _stop_event: threading.Event

    def _apply(self, job: Job, outcome: object, attempt: Attempt | None = None) -> bool:
        raise NotImplementedError

    def _release(self, attempt: Attempt) -> None:
        raise NotImplementedError

    # -- resuming ------------------------------------------------------------------------------------

    @functools.cached_property
    def _shared_journal(self) -> ClaimingJournal | None:
        """The journal when several coordinators share it, each running only the jobs it claimed; else ``None``.

        Asked once: ``isinstance`` against a runtime-checkable protocol walks its members every
        time, and the posting of every job asks it twice.
        """
        return self.journal if isinstance(self.journal, ClaimingJournal) else None

    @functools.cached_property
    def _durable_outputs(self) -> bool:
        """Whether the sinks flush what they store (see :func:`comfykit.queue.finish.durable_outputs`)."""
        return finish.durable_outputs(self.config.get("output.fsync"), journaled=self.journal is not None)

    @property
    def _claims(self) -> bool:
        """Whether the journal is shared by several coordinators, each running only the jobs it claimed."""
        return self._shared_journal is not None

    def _load_journal(self, retry_failed: bool) -> None:
        journal = self.journal
        assert journal is not None
        if isinstance(journal, ClaimingJournal):
            # Nothing is loaded: the claim thread takes jobs as this coordinator has room for them.
            if retry_failed:
                journal.reopen_failed()
            self._shared_open = self.follow or journal.unfinished() > 0
            return
        for job in journal.jobs():
            if job.status is JobStatus.FAILED and job.error_type == "OutputsNotStored" and job.prompt_id:
                # It ran; only its outputs are missing: ask its server again and store them (it does not run again).
                job.move(JobStatus.PENDING, finished_at=None)
                job.warnings.append(f"its outputs were not stored before ({job.error}); fetching them again")
            elif retry_failed and job.status is JobStatus.FAILED:
                job.move(JobStatus.PENDING, prompt_id=None, server=None, finished_at=None)
                job.warnings.append(f"failed before ({job.error}); run again")
                journal.update(job)
            self._adopt(job)
        self._was_empty = self._open == 0

    def _adopt(self, job: Job) -> None:
        """Take a journaled job on (the caller holds the lock, or the queue has not started)."""
        self._jobs[job.job_id] = job
        if job.done:
            return
        self._open += 1
        self._was_empty = False
        server = {s.url: s for s in self._servers}.get(job.server or "")
        if job.prompt_id is not None and server is not None:
            # It may be queued, running or done there: the supervisor asks before anything is resubmitted.
            server.attempts[job.prompt_id] = Attempt(job.prompt_id, server, job, Phase.WAITING, polled=True)
            server.client.tracker.watch(job.prompt_id, None, self._listeners[server.url])
        else:
            # Never posted, or posted to a server no longer in the pool (at-least-once).
            job.move(JobStatus.PENDING, prompt_id=None, server=None)
            self._pending.append(job.job_id)

    # -- sharing a batch with other coordinators ------------------------------------------------------

    def _claim_loop(self) -> None:
        """Claim jobs as room appears, renew the leases, and notice the jobs another coordinator took over.

        It claims as soon as a job of this coordinator ends (woken by the queue's condition), and
        looks at the database on a timer only when the batch had nothing left to claim.
        """
        journal = self.journal
        assert isinstance(journal, ClaimingJournal)
        next_beat = 0.0
        adopted: set[str] = set()  # every job a claim of this coordinator answered with
        while not self._stop_event.is_set():
            try:
                if time.monotonic() >= next_beat:
                    self._heartbeat(journal, adopted)
                    next_beat = time.monotonic() + journal.lease_seconds / 3
                room = self._wait_for_room(next_beat)
                if room <= 0:
                    continue
                claimed = journal.claim(room)
                with self._lock:
                    for job in claimed:
                        if job.job_id in self._jobs:
                            continue  # a claim never returns its own jobs; were it to, the job must not be counted twice
                        job.metadata["comfykit_coordinator"] = {"coordinator": journal.coordinator, "host": journal.host}
                        self._adopt(job)
                        adopted.add(job.job_id)
                    self._changed.notify_all()
                if len(claimed) == room:
                    continue  # there may be more: claim again as soon as there is room
                unfinished = journal.unfinished()
            except JournalError as exc:
                log.warning("the shared journal cannot be used just now (%s); trying again", exc)
                self._stop_event.wait(1.0)
                continue
            with self._lock:
                shared = self.follow or unfinished > self._open
                if shared != self._shared_open:
                    self._shared_open = shared
                    self._changed.notify_all()
                    self._settled.notify_all()
            self._stop_event.wait(CLAIM_INTERVAL)  # nothing left to claim for now

    def _wait_for_room(self, until: float) -> int:
        """How many more jobs this coordinator can keep busy (a window per healthy server, one waiting job each
        more), once there is room or at ``until`` (monotonic), whichever comes first."""
        with self._lock:
            while True:
                if self._paused or self._stopping:
                    room = 0
                else:
                    # Every job held and not ended counts: pending, waiting out a retry, or in flight.
                    room = sum(server.window + 1 for server in self._servers if server.healthy) - self._open
                left = until - time.monotonic()
                if room > 0 or left <= 0 or self._stopping:
                    return room
                self._changed.wait(min(left, CLAIM_INTERVAL))

    def _heartbeat(self, journal: ClaimingJournal, adopted: set[str]) -> None:
        """Renew the leases; drop the jobs another coordinator holds now, give back those no claim answered with."""
        held = journal.renew()
        with self._lock:
            lost = [job for job in self._jobs.values() if not job.done and job.job_id not in held]
        for job in lost:
            self._drop(job)
        for job_id in held - adopted:
            # Claimed, but the claim's answer never arrived (the database went away meanwhile): renewed
            # here, such a job would be held for ever and run by no one, so it goes back to the batch.
            log.warning("job %s: claimed without this coordinator knowing; giving it back", job_id)
            journal.release(job_id)

    def _fence(self, job: Job, *, check: bool = False) -> bool:
        """Fence ``job`` in a shared batch: until :meth:`_unfence`, no other coordinator can take it over.

        Taken while a prompt id is journaled and posted (frozen in between, a coordinator could
        otherwise post after another found the server ignorant of that prompt id and posted the job
        again; the journaling, a conditional write, checks the claim), and while outputs are stored
        and the job journaled complete (otherwise both would store them; ``check`` asks the journal
        whether the claim still holds, since nothing is written before the sinks run).  ``False``,
        and the job dropped, when another coordinator holds it now.
        """
        journal = self._shared_journal
        if journal is None:
            return True
        if journal.fence(job.job_id):
            if not check or journal.holds(job.job_id):
                return True
            journal.unfence(job.job_id)
        self._drop(job)
        journal.release(job.job_id)  # only if still this coordinator's: let whoever claims it next run it
        return False

    def _unfence(self, job: Job) -> None:
        journal = self._shared_journal
        if journal is not None:
            journal.unfence(job.job_id)

    def _drop(self, job: Job) -> None:
        """Let go of a job another coordinator took over: nothing more is posted, stored or recorded for it here."""
        with self._lock:
            if self._jobs.pop(job.job_id, None) is not job:
                return
            if job.job_id in self._pending:
                self._pending.remove(job.job_id)
            self._delayed.discard(job.job_id)
            for server in self._servers:
                for attempt in [a for a in server.attempts.values() if a.job is job]:
                    self._release(attempt)
            self._open -= 1  # it was counted open: it is dropped before it could settle
            self._changed.notify_all()
            self._settled.notify_all()
        log.warning("job %s: another coordinator took it over (this one's lease ran out); leaving it to that one",
                    job.job_id)

    def _cancel_on_server(self, attempt: Attempt) -> None:
        client = attempt.server.client
        try:
            client.delete_from_queue([attempt.prompt_id])
            if attempt.prompt_id in queued_ids(client.get_queue(), running_only=True):
                client.interrupt_execution(attempt.prompt_id)
        except ComfyKitError as exc:
            log.warning("could not cancel %s on %s: %s", attempt.prompt_id, attempt.server.url, exc)
            with self._lock:
                attempt.job.warnings.append(f"cancelling on the server failed: {exc}")
        with self._lock:
            self._release(attempt)

    # -- submitting --------------------------------------------------------------------------------------

    def _submit_loop(self) -> None:
        """A submitter thread: take the next pending job as soon as a server has room, prepare it and post it."""
        while (attempt := self._next_attempt()) is not None:
            try:
                self._submit(attempt)
            except Exception as exc:  # a bug: the job fails with the reason (or is retried), the queue goes on
                log.exception("submitting job %s failed unexpectedly", attempt.job.job_id)
                self._apply(attempt.job, submit.Rejected(exc), attempt)

    def _next_attempt(self) -> Attempt | None:
        """The next pending job as an attempt on the server picked for it, once one has room; ``None`` when stopping.

        The submitters pick for themselves: a dispatcher thread handing them attempts cost a
        thread switch per job, and held attempts in a queue while no submitter was free.
        """
        with self._lock:
            while True:
                while True:
                    if self._stopping:
                        return None
                    server = None if (self._paused or not self._pending) else pool.pick(self._servers)
                    if server is not None:
                        break
                    self._changed.wait(0.5)
                job = self._jobs.get(self._pending.popleft())
                if job is None or job.status is not JobStatus.PENDING:
                    continue
                attempt = Attempt(new_prompt_id(), server, job)
                server.attempts[attempt.prompt_id] = attempt
                return attempt

    def _finish_loop(self) -> None:
        """A finisher thread: finish each attempt whose end was seen (history, sinks) until told to stop."""
        while (attempt := self._finish_queue.get()) is not None:
            try:
                self._finish(attempt)
            except Exception as exc:  # a bug: the job is retried (or fails with the reason), the queue goes on
                log.exception("finishing job %s failed unexpectedly", attempt.job.job_id)
                self._apply(attempt.job, finish.Retry(exc), attempt)

    def _submit(self, attempt: Attempt) -> None:
        job, server = attempt.job, attempt.server
        try:
            prompt = submit.prepare(
                job, server.client, server.uploads, plugins=self.plugin_manager, config=self.config,
                vary_seeds=self.vary_seeds,
            )
        except Exception as exc:
            self._apply(job, submit.prepare_error(exc), attempt)
            return
        if not self._fence(job):
            return
        try:
            # Journal the prompt id before posting: a crash after the POST can then be reconciled.
            if not self._apply(job, Sending(), attempt):
                return
            server.client.tracker.watch(attempt.prompt_id, prompt, self._listeners[server.url])
            outcome = submit.post(server.client, prompt, attempt.prompt_id, job.extra_data, self._stop_event)
        finally:
            self._unfence(job)
        self._apply(job, outcome, attempt)
        if isinstance(outcome, submit.Posted) and job.status is JobStatus.CANCELLED:
            self._cancel_on_server(attempt)  # cancelled while the POST was on its way: take it off the server again
        with self._lock:
            early, attempt.early_events = attempt.early_events, []
        for seen in early:
            self._on_event(server, attempt.prompt_id, seen)

    # -- finishing ------------------------------------------------------------------------------------

    def _on_event(self, server: ServerState, prompt_id: str, seen: Seen) -> None:
        with self._lock:
            attempt = server.attempts.get(prompt_id)
            if attempt is None or attempt.phase is Phase.PREPARING:
                return
            if attempt.phase is Phase.POSTING:
                attempt.early_events.append(seen)
                return
            if seen is Seen.FINISHED:
                if attempt.phase is Phase.FINISHING:  # already handed to a finisher
                    return
                attempt.phase = Phase.FINISHING
        if seen is Seen.STARTED:
            self._apply(attempt.job, Started(), attempt)
        else:
            self._finish_queue.put(attempt)

    def _finish(self, attempt: Attempt) -> None:
        client, job = attempt.server.client, attempt.job
        with self._lock:
            if job.done or not attempt.current:
                return
        result = finish.collect(client, attempt.prompt_id, include_temp=bool(self.config["output.include_temp"]))
        if not isinstance(result, finish.Finished):
            self._apply(job, result, attempt)
            return
        if not self._apply(job, result, attempt):
            return
        if not self.store_outputs:
            self._apply(job, finish.Completed(), attempt)  # in a shared batch a conditional write: only its holder completes it
            return
        if not self._fence(job, check=True):
            return
        try:
            stored = finish.store(self.plugin_manager, job, client, sinks=self.config.get("output.sinks"),
                                  durable=self._durable_outputs)
            self._apply(job, stored, attempt)
        finally:
            self._unfence(job)

    # -- supervision ----------------------------------------------------------------------------------

    def _supervise_loop(self) -> None:
        # A timer, not the condition: waking on every job event would cost more than the checks.
        while not self._stop_event.wait(0.1):
            now = time.monotonic()
            with self._lock:
                for job_id in self._delayed.due(now):
                    job = self._jobs.get(job_id)
                    if job is not None and job.status is JobStatus.PENDING:
                        self._pending.append(job_id)
                        self._changed.notify_all()
            self._check_timeouts()
            self._check_all_down(now)

    def _server_loop(self, server: ServerState) -> None:
        # One thread per server: a server that hangs cannot delay the health checks of the others.
        while not self._stop_event.wait(0.1):
            try:
                self._supervise(server, time.monotonic())
            except Exception:
                log.exception("supervising %s failed", server.url)

    def _supervise(self, server: ServerState, now: float) -> None:
        if not server.healthy:
            if now < server.next_check:
                return
            if server.client.ping(timeout=min(5.0, self.health_interval)):
                log.warning("server %s answers again; reconciling its %d job(s)", server.url, len(server.attempts))
                with self._lock:
                    server.healthy, server.down_since = True, None
                    server.last_reconcile = 0.0
                    self._changed.notify_all()
            else:
                server.next_check = now + self.health_interval
                if server.down_since is not None and now - server.down_since > self.down_timeout:
                    self._reassign(server)
                return
        tracker = server.client.tracker
        with self._lock:
            waiting = [a for a in server.attempts.values() if a.on_server]
            unclaimed = {a.prompt_id for a in waiting if a.phase is Phase.WAITING and tracker.is_finished(a.prompt_id)}
            # The tracker marks a prompt ended, then calls its listener: a look between the two sees a job
            # about to be finished.  Only one still unclaimed a look later lost its listener call.
            lost = unclaimed & server.ended_unclaimed
            server.ended_unclaimed = unclaimed - lost
            polled = any(a.polled for a in waiting)
        for prompt_id in sorted(lost):
            # Its end was seen but never reached a finisher (a listener call was lost): finish it now.
            log.warning("job %s ended without being finished; finishing it now", prompt_id)
            self._on_event(server, prompt_id, Seen.FINISHED)
        if not waiting:
            return
        source = server.client.event_source
        live = source is not None and source.connected and not polled
        interval = 2.0 if live else float(self.config["batch.poll_interval"])
        if now - server.last_reconcile < interval:
            return
        server.last_reconcile = now
        try:
            tracker.reconcile([a.prompt_id for a in waiting], raise_errors=True)
        except ComfyKitError as exc:
            with self._lock:
                self._server_trouble(server, exc)

    def _server_trouble(self, server: ServerState, error: BaseException) -> None:
        """Mark a server down when it cannot be reached (the caller holds the lock)."""
        if pool.goes_down(server, error, self.health_interval):
            log.warning("server %s is unreachable (%s); its jobs wait for it or move after %.0f s",
                        server.url, error, self.down_timeout)

    def _reassign(self, server: ServerState) -> None:
        """Send a long-gone server's jobs elsewhere (at-least-once: it may have run some of them)."""
        with self._lock:
            moved = [a for a in server.attempts.values() if a.phase is not Phase.PREPARING]
        reason = f"moved from {server.url}, unreachable for over {self.down_timeout:.0f} s"
        for attempt in moved:
            self._apply(attempt.job, Moved(reason), attempt)
        if moved:
            log.warning("moved %d job(s) away from %s", len(moved), server.url)

    def _check_all_down(self, now: float) -> None:
        with self._lock:
            if any(s.healthy for s in self._servers):
                return
            if not all(s.down_since is not None and now - s.down_since > self.down_timeout for s in self._servers):
                return
            waiting = [self._jobs[j] for j in [*self._pending, *self._delayed.drain()] if j in self._jobs]
            self._pending.clear()
        error = ServerUnreachable(
            f"no server of the pool answered for {self.down_timeout:.0f} s: {', '.join(server.url for server in self._servers)}",
            hint="Start the server(s) and resume the batch from its journal.",
        )
        for job in waiting:
            self._apply(job, finish.Failed(error))

    def _check_timeouts(self) -> None:
        if self.timeout is None:
            return
        limit = float(self.timeout)
        with self._lock:
            expired = schedule.timed_out(self._servers, limit, time.time())
        for attempt in expired:
            client = attempt.server.client
            try:
                client.delete_from_queue([attempt.prompt_id])
                client.interrupt_execution(attempt.prompt_id)
            except ComfyKitError as exc:
                log.warning("could not stop timed-out job %s: %s", attempt.prompt_id, exc)
            error = WaitTimeout(f"job {attempt.job.job_id} did not finish within {limit} s", prompt_id=attempt.prompt_id)
            self._apply(attempt.job, finish.Retry(error), attempt)
