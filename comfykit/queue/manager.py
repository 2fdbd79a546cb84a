"""``QueueManager``: the public batch API; its state and lock; starting, pausing, waiting for and stopping a batch.

Every piece of the queue's state is created here, in ``__init__``, and guarded by
its one lock.  Its bases hold the rest of its behaviour, on that state:
:class:`~comfykit.queue.table.JobTable` adds and looks up jobs,
:class:`~comfykit.queue.transitions.Transitions` is the one place a job changes
(outcome in; move, journal, hook, callbacks out), and
:class:`~comfykit.queue.workers.Workers` holds the loops of the queue's threads,
which ask the deciding parts (``submit``, ``finish``, ``schedule``, ``pool``) and
hand their answers to it.  See :mod:`comfykit.queue` for how a job travels.
"""

from __future__ import annotations

import collections
import queue as queue_module
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from comfykit.config import Config
from comfykit.errors import ConfigError, JournalError, WaitTimeout
from comfykit.jobs import Job
from comfykit.plugins import PluginManager, open_session
from comfykit.queue import pool, schedule
from comfykit.queue.callbacks import QUEUE_EVENTS, Callbacks
from comfykit.queue.state import Attempt, Cancelled
from comfykit.queue.stats import summarize
from comfykit.queue.table import JobTable
from comfykit.queue.transitions import Transitions
from comfykit.queue.workers import Listener, Workers

if TYPE_CHECKING:
    from comfykit.client import ComfyUIClient
    from comfykit.queue.journals import BatchJournal
    from comfykit.queue.pool import ServerSpec

__all__ = ["QUEUE_EVENTS", "QueueManager"]


# Transitions before Workers: its _apply and _release are the ones the loops of Workers call.
class QueueManager(JobTable, Transitions, Workers):
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
        # Its own condition: waking whoever waits for the end at every change of every job cost two thread switches per job.
        self._settled = threading.Condition(self._lock)
        self._jobs: dict[str, Job] = {}
        self._pending: collections.deque[str] = collections.deque()
        self._delayed = schedule.Delayed()
        self._finish_queue: queue_module.Queue[Attempt | None] = queue_module.Queue()
        self._callbacks = Callbacks()
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

    # -- looking at the batch -------------------------------------------------------------------------

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
        self._callbacks.add(event, callback)

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
        self._threads = [threading.Thread(target=self._supervise_loop, name="comfykit-supervise", daemon=True)]
        self._threads += [
            threading.Thread(target=self._server_loop, args=(server,), name=f"comfykit-server-{i}", daemon=True)
            for i, server in enumerate(self._servers)
        ]
        self._threads += [
            threading.Thread(target=self._finish_loop, name=f"comfykit-finish-{i}", daemon=True) for i in range(workers)
        ]
        # Two submitters per server: one posts while the other prepares (uploads, hooks).
        self._submitters = [
            threading.Thread(target=self._submit_loop, name=f"comfykit-submit-{i}", daemon=True)
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
                self._settled.wait(remaining if remaining is not None else 1.0)
            if self._fatal is not None:
                raise self._fatal
        return True

    def _settle(self) -> None:
        """A job ended and everything about it was recorded and announced: only now may waiters wake."""
        with self._lock:
            self._open -= 1
            empty = self._open == 0
            fire = empty and not self._was_empty
            self._was_empty = empty
            if self._claims:
                self._changed.notify_all()  # room to claim more (the submitters heard when its slot was freed)
            if empty:
                self._settled.notify_all()
        if fire:
            self.plugin_manager.queue_empty(self)
            self._callbacks.call("queue_empty")

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
            self._settled.notify_all()
        for _ in self._threads:
            self._finish_queue.put(None)  # the submitters see _stopping
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
