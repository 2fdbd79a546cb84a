"""``QueueManager``: the public batch API, the job table, the lock, and :meth:`QueueManager._apply`.

The parts beside this module (``submit``, ``finish``, ``schedule``, ``pool``)
decide and answer with values; only :meth:`QueueManager._apply` changes a job:
it moves the job (:meth:`comfykit.jobs.Job.move`, under the lock), then
journals it, fires the plugin hook and calls the ``on()`` callbacks, in that
order.  See :mod:`comfykit.queue` for how a job travels.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import queue as queue_module
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from comfykit.config import Config
from comfykit.errors import ComfyKitError, ConfigError, JournalError, OutputsNotStored, WaitTimeout
from comfykit.jobs import Job, JobStatus, job_arguments, job_requests
from comfykit.plugins import PluginManager, open_session
from comfykit.queue import finish, pool, schedule, submit
from comfykit.queue.journals import LeaseLost
from comfykit.queue.state import (
    Attempt,
    Cancelled,
    Change,
    GiveUp,
    Moved,
    Phase,
    RetryLater,
    Sending,
    Started,
)
from comfykit.queue.stats import summarize
from comfykit.queue.workers import Listener, Workers

if TYPE_CHECKING:
    from comfykit.client import ComfyUIClient
    from comfykit.queue.journals import BatchJournal
    from comfykit.queue.pool import ServerSpec

__all__ = ["QUEUE_EVENTS", "QueueManager"]

log = logging.getLogger("comfykit.queue")

#: names accepted by :meth:`QueueManager.on`; job events call ``callback(job)``, ``queue_empty`` calls ``callback()``
QUEUE_EVENTS = (
    "job_submitted", "job_started", "job_completed", "job_failed", "job_cancelled", "job_retrying", "queue_empty",
)


#: outcomes that end the attempt and ask the retry decision (``Invalid``/``Failed`` answer it: no)
_ENDS_ATTEMPT = (submit.Rejected, submit.Invalid, finish.Retry, finish.Failed)


class QueueManager(Workers):
    """A batch of jobs run on one or more ComfyUI servers.

    :param client: a :class:`comfykit.ComfyUIClient` to run on (its plugins are used).
    :param servers: a pool instead: URLs or :class:`ServerSpec`/mappings with ``url``,
        ``weight`` and ``max_concurrent``; default the ``servers`` config key, else ``comfyui.*``.
    :param max_concurrent: jobs in flight per server (``batch.max_concurrent``).
    :param retry_on_failure: retry failed attempts the retry hook deems transient.
    :param max_retries: retries per job on top of the first attempt (counted in the journal too).
    :param journal: what makes the batch resumable (``batch.journal``): an SQLite file, or a batch in
        PostgreSQL, ``postgresql://user@host/db?batch=NAME`` (needs ``comfykit[postgres]``).
    :param timeout: seconds a job may stay on a server before it is cancelled and failed.
    :param vary_seeds: give every submission fresh ``seed``/``noise_seed`` values, so
        repeated identical jobs really execute instead of being served from cache.
    :param store_outputs: run the output sinks (download, metadata...) for finished jobs.
    :param plugin_manager: share the plugins of a session that already configured them (a CLI run).
    :param retry_failed: when resuming a journal, run its failed jobs again (completed ones never run again).
    :param follow: with a PostgreSQL journal, which several coordinators share, keep claiming the jobs
        producers add after the batch is done, until stopped (what ``comfykit work --follow`` does).
    """

    def __init__(
        self,
        client: ComfyUIClient | None = None,
        *,
        servers: Iterable[str | Mapping[str, Any] | ServerSpec] | None = None,
        max_concurrent: int | None = None,
        retry_on_failure: bool | None = None,
        max_retries: int | None = None,
        journal: str | Path | None = None,
        timeout: float | None = None,
        vary_seeds: bool = False,
        store_outputs: bool = True,
        config: Config | str | Path | None = None,
        plugins: Iterable[object] = (),
        plugin_options: Iterable[str] = (),
        plugin_manager: PluginManager | None = None,
        retry_failed: bool = False,
        follow: bool = False,
    ) -> None:
        if client is not None:
            self.plugin_manager: PluginManager = client.plugin_manager
            self.config: Config = client.config
        else:
            self.plugin_manager, self.config = open_session(
                config, plugins=plugins, plugin_options=plugin_options, plugin_manager=plugin_manager
            )
        batch = self.config.section("batch")
        self.max_concurrent = int(max_concurrent if max_concurrent is not None else batch["max_concurrent"])
        if self.max_concurrent < 1:
            raise ConfigError("max_concurrent must be at least 1", hint="It is the number of jobs in flight per server.")
        self.retry_on_failure = bool(batch["retry_on_failure"] if retry_on_failure is None else retry_on_failure)
        self.max_retries = int(batch["max_retries"] if max_retries is None else max_retries)
        self.timeout = timeout if timeout is not None else batch["timeout"]
        self.retry_delay = float(batch["retry_delay"])
        self.retry_delay_max = float(batch["retry_delay_max"])
        self.down_timeout = float(batch["down_timeout"])
        self.health_interval = float(batch["health_interval"])
        self.lease_seconds = float(batch["lease_seconds"])
        self.follow = follow
        self.vary_seeds = vary_seeds
        self.store_outputs = store_outputs

        journal_path = journal if journal is not None else batch["journal"]
        self.journal: BatchJournal | None = None
        if journal_path:
            from comfykit.queue.journals import open_journal

            self.journal = open_journal(journal_path, lease_seconds=self.lease_seconds)
            if client is None and servers is None and self.journal.servers:
                # A resumed batch goes back to the servers it ran on (its prompt ids are theirs), unless told otherwise.
                servers = self.journal.servers
        try:
            self._servers, self._own_clients = pool.build_servers(
                client, servers, config=self.config, plugin_manager=self.plugin_manager, window=self.max_concurrent
            )
        except BaseException:
            if self.journal is not None:
                self.journal.close()
            raise
        if self.journal is not None:
            self.journal.remember_servers([server.url for server in self._servers])
        self._listeners = {server.url: Listener(self, server) for server in self._servers}
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._jobs: dict[str, Job] = {}
        self._pending: collections.deque[str] = collections.deque()
        self._delayed = schedule.Delayed()
        self._finish_queue: queue_module.Queue[Attempt | None] = queue_module.Queue()
        self._submit_queue: queue_module.Queue[Attempt | None] = queue_module.Queue()
        self._callbacks: dict[str, list[Callable[..., None]]] = {name: [] for name in QUEUE_EVENTS}
        self._id_counts: collections.Counter[str] = collections.Counter()
        # Failed attempts that never reached a server (an upload failed): posted ones are job.attempts, journaled.
        self._unposted: collections.Counter[str] = collections.Counter()
        self._threads: list[threading.Thread] = []
        self._submitters: list[threading.Thread] = []
        self._started = False
        self._stopping = False
        #: why the batch had to stop (its journal could not be written), raised to whoever waits
        self._fatal: JournalError | None = None
        self._stop_event = threading.Event()
        self._paused = False
        self._was_empty = True
        self._open = 0  # jobs not ended yet: counted, so waiting is not O(jobs) per wake-up
        self._shared_open = False  # a shared journal's batch has unfinished jobs this coordinator does not hold
        self._first_submit: float | None = None
        self._last_finish: float | None = None
        if self.journal is not None:
            self._load_journal(retry_failed)

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

    @property
    def servers(self) -> list[str]:
        return [server.url for server in self._servers]

    @property
    def clients(self) -> list[ComfyUIClient]:
        return [server.client for server in self._servers]

    def get_statistics(self) -> dict[str, Any]:
        """Counts per state, throughput, durations (mean, p50/p90/p99) and per-server counts."""
        with self._lock:
            return summarize(self.get_all_jobs(), self._servers, self._first_submit, self._last_finish)

    # -- callbacks ------------------------------------------------------------------------------------

    def on(self, event: str, callback: Callable[..., None]) -> None:
        """Call ``callback(job)`` on a job event, or ``callback()`` on ``queue_empty``.

        A callback that raises is logged and changes nothing about the job.
        """
        if event not in self._callbacks:
            raise ValueError(f"unknown queue event {event!r}; known: {', '.join(QUEUE_EVENTS)}")
        self._callbacks[event].append(callback)

    def _emit(self, event: str, *args: Any) -> None:
        for callback in list(self._callbacks[event]):
            try:
                callback(*args)
            except Exception:
                log.exception("the QueueManager.on(%r) callback %s failed", event, getattr(callback, "__qualname__", callback))

    # -- running --------------------------------------------------------------------------------------

    def start(self, num_workers: int | None = None) -> None:
        """Start dispatching; ``num_workers`` threads finish jobs (history, sinks); default 4."""
        with self._lock:
            if self._fatal is not None:
                raise self._fatal  # its journal could not be written: open the journal again to resume
            if self._started:
                return
            self._started = True
            self._stopping = False
            self._stop_event.clear()
        workers = max(1, num_workers or 4)
        self._threads = [threading.Thread(target=self._dispatch_loop, name="comfykit-dispatch", daemon=True),
                         threading.Thread(target=self._supervise_loop, name="comfykit-supervise", daemon=True)]
        self._threads += [
            threading.Thread(target=self._server_loop, args=(server,), name=f"comfykit-server-{i}", daemon=True)
            for i, server in enumerate(self._servers)
        ]
        self._threads += [
            threading.Thread(
                target=self._work_loop, args=(self._finish_queue, "finish"), name=f"comfykit-finish-{i}", daemon=True,
            )
            for i in range(workers)
        ]
        # Two submitters per server: one posts while the other prepares (uploads, hooks).
        self._submitters = [
            threading.Thread(
                target=self._work_loop, args=(self._submit_queue, "submit"), name=f"comfykit-submit-{i}", daemon=True,
            )
            for i in range(2 * len(self._servers))
        ]
        if self._claims:
            self._threads.append(threading.Thread(target=self._claim_loop, name="comfykit-claim", daemon=True))
        for client in self.clients:
            client.ensure_event_source()
        for thread in [*self._threads, *self._submitters]:
            thread.start()

    def pause(self) -> None:
        """Stop sending new jobs; jobs already on a server go on."""
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        with self._lock:
            self._paused = False
            self._changed.notify_all()

    @property
    def paused(self) -> bool:
        return self._paused

    def wait_for_completion(self, timeout: float | None = None) -> bool:
        """Block until every job ended (starting the queue if needed); ``False`` when ``timeout`` passed first."""
        self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while (self._open or self._shared_open) and self._fatal is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._changed.wait(remaining if remaining is not None else 1.0)
            if self._fatal is not None:
                raise self._fatal
        return True

    def stop(self, wait: bool = True, timeout: float | None = None, *, requeue: bool = False) -> int:
        """Stop the queue: after every job ended (``wait=True``), or now (``wait=False``).

        Stopping now cancels what is in flight (on the server too) and returns how many
        jobs were cancelled.  With ``requeue`` and a journal (what Ctrl-C in a batch does)
        nothing more is posted and nothing is cancelled: every posted job keeps its prompt
        id in the journal, and the jobs on the servers go on, so resuming the journal asks
        each server about each prompt id and runs only what never ran; the number of jobs
        left for the resume is returned.
        """
        if wait:
            if self._started:
                self.wait_for_completion(timeout)
            self._shutdown_threads()
            return 0
        if requeue and self.journal is not None:
            self._shutdown_threads()  # first: from here on nothing is posted
            return sum(1 for job in self.get_all_jobs() if not job.done)
        cancelled = [job for job in self.get_all_jobs() if not job.done and self.cancel_job(job.job_id)]
        self._shutdown_threads()
        return len(cancelled)

    def close(self) -> None:
        """Stop without waiting for jobs (they stay journaled) and close the clients this queue created."""
        if self._started:
            self._shutdown_threads()
        for client in self._own_clients:
            client.close()
        if self.journal is not None:
            self.journal.close()

    def _shutdown_threads(self) -> None:
        with self._lock:
            self._stopping = True
            self._stop_event.set()
            self._changed.notify_all()
        for _ in self._threads:
            self._finish_queue.put(None)
        for _ in self._submitters:
            self._submit_queue.put(None)
        for thread in [*self._threads, *self._submitters]:
            thread.join(10)
        with self._lock:
            self._threads, self._submitters = [], []
            self._started = False

    def __enter__(self) -> QueueManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, timeout: float | None = None) -> dict[str, Any]:
        """Start, wait for every job, and return the statistics."""
        self.start()
        if not self.wait_for_completion(timeout):
            raise WaitTimeout(f"the batch did not finish within {timeout} s", hint="Raise the timeout.")
        return self.get_statistics()

    def run_one(self, workflow: Mapping[str, Any], *, timeout: float | None = None, **job: Any) -> Job:
        """Add one job (``job``: :meth:`add_job`'s ``job_id``, ``metadata``, ``params``, ``extra_data``,
        ``inputs``), run the queue until every job ended, and return that job, however it ended.

        What ``comfykit send --wait`` does: the same path as a batch, so every hook and sink runs.
        """
        job_id = self.add_job(workflow=workflow, **job)
        self.run(timeout)
        found = self.get_job(job_id)
        assert found is not None
        return found

    # -- the one place a job changes -------------------------------------------------------------------

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
            self._emit(change.event, job)
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

    # -- cancelling -------------------------------------------------------------------------------------

    def cancel_job(self, job_id: str) -> bool:
        """Cancel a job: drop it if not sent, delete it from the server queue, or interrupt it if running.

        Returns ``False`` when the job is unknown or already ended.
        """
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.done:
                return False
            server = next((s for s in self._servers if s.url == job.server), None)
            attempt = None if server is None or job.prompt_id is None else server.attempts.get(job.prompt_id)
            if job_id in self._pending:
                self._pending.remove(job_id)
            self._delayed.discard(job_id)
        self._apply(job, Cancelled())
        if attempt is not None:
            self._cancel_on_server(attempt)
        return True

    def _settle(self) -> None:
        """A job ended and everything about it was recorded and announced: only now may waiters wake."""
        with self._lock:
            self._open -= 1
            empty = self._open == 0
            fire = empty and not self._was_empty
            self._was_empty = empty
            self._changed.notify_all()
        if fire:
            self.plugin_manager.queue_empty(self)
            self._emit("queue_empty")

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
            if first:
                log.error("the batch stops: %s", exc)
            return False
        return True


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text if isinstance(error, ComfyKitError) else f"{type(error).__name__}: {text}"
