"""``QueueManager``: run many workflows on one server or a pool, pipelined, retried without duplicates, resumable.

How a job moves: ``add_job`` records it (in the journal first, when there is one);
the dispatcher thread hands it to the least-loaded healthy server that has a free
slot in its in-flight window; a submit thread chooses the prompt id, journals it,
starts watching it and posts it.  Completion arrives from the client's tracker
(live events, or polling, both reconciled against the server), and a finisher
thread fetches the history, runs the output sinks and records the result.

Never running a job twice where the server kept its history rests on two rules:
a prompt id is journaled before it is posted, and after any doubt (a lost
answer, a timeout, a dropped server, a killed process) the server is asked
about that prompt id before anything is resubmitted.  Only a server that lost
the job (it restarted) or a server gone for longer than ``batch.down_timeout``
leads to a second submission: delivery is at-least-once, never silently zero.
"""

from __future__ import annotations

import collections
import copy
import hashlib
import heapq
import json
import logging
import queue as queue_module
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from comfykit.config import Config
from comfykit.errors import (
    ComfyKitError,
    ConfigError,
    ExecutionInterrupted,
    JobError,
    NotFound,
    PromptRejected,
    ServerError,
    ServerUnreachable,
    TransportError,
    WaitTimeout,
    WorkflowError,
)
from comfykit.jobs import Job, JobStatus, job_arguments, job_requests, new_prompt_id
from comfykit.outputs import discover_outputs
from comfykit.plugins import PluginManager, open_session
from comfykit.uploads import UploadCache, apply_inputs
from comfykit.workflow.api import validate_before_send

if TYPE_CHECKING:
    from comfykit.client import ComfyUIClient
    from comfykit.journal import Journal

__all__ = ["QUEUE_EVENTS", "QueueManager", "ServerSpec"]

log = logging.getLogger("comfykit.queue")

#: names accepted by :meth:`QueueManager.on`; job events call ``callback(job)``, ``queue_empty`` calls ``callback()``
QUEUE_EVENTS = (
    "job_submitted", "job_started", "job_completed", "job_failed", "job_cancelled", "job_retrying", "queue_empty",
)

_SEED_INPUTS = ("seed", "noise_seed")


@attrs.frozen
class ServerSpec:
    """One server of a pool: its URL, its share of the work, and its in-flight window."""

    url: str
    weight: float = 1.0
    max_concurrent: int | None = None

    @classmethod
    def parse(cls, value: str | Mapping[str, Any] | ServerSpec) -> ServerSpec:
        if isinstance(value, ServerSpec):
            return value
        if isinstance(value, str):
            return cls(url=value.rstrip("/"))
        if isinstance(value, Mapping) and isinstance(value.get("url"), str):
            try:
                weight = float(value.get("weight", 1.0))
                window = None if value.get("max_concurrent") is None else int(value["max_concurrent"])
            except (TypeError, ValueError):
                raise ConfigError(f"server {value['url']}: weight and max_concurrent must be numbers") from None
            if weight <= 0 or (window is not None and window < 1):
                raise ConfigError(f"server {value['url']}: weight must be > 0 and max_concurrent >= 1")
            return cls(url=value["url"].rstrip("/"), weight=weight, max_concurrent=window)
        raise ConfigError(
            f"cannot read server entry {value!r}",
            hint="Give a URL, or a mapping with url and optional weight and max_concurrent.",
        )


class _Server:
    """The queue's view of one server: its client, window, jobs in flight and health."""

    def __init__(self, spec: ServerSpec, client: ComfyUIClient, window: int) -> None:
        self.url = spec.url
        self.client = client
        self.weight = spec.weight
        self.window = window
        self.inflight: dict[str, Job] = {}  # prompt_id -> job
        self.reserved = 0  # slots taken by submissions being prepared
        self.healthy = True
        self.down_since: float | None = None
        self.next_check = 0.0
        self.last_reconcile = 0.0
        self.uploads = UploadCache()
        # Prompts to poll for rather than wait on events: resumed ones (their events go to the old
        # process's socket) and ones whose POST failed in a way the server could not be asked about.
        self.polled: set[str] = set()
        self.finishing: set[str] = set()  # prompts handed to a finisher
        self.counts: collections.Counter[str] = collections.Counter()

    @property
    def load(self) -> float:
        return (len(self.inflight) + self.reserved) / self.weight

    @property
    def has_room(self) -> bool:
        return self.healthy and len(self.inflight) + self.reserved < self.window


def _percentile(values: Sequence[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


class QueueManager:
    """A batch of jobs run on one or more ComfyUI servers.

    :param client: a :class:`comfykit.ComfyUIClient` to run on (its plugins are used).
    :param servers: a pool instead: URLs or :class:`ServerSpec`/mappings with ``url``,
        ``weight`` and ``max_concurrent``; default the ``servers`` config key, else ``comfyui.*``.
    :param max_concurrent: jobs in flight per server (``batch.max_concurrent``).
    :param retry_on_failure: retry failed attempts the retry hook deems transient.
    :param max_retries: retries per job on top of the first attempt.
    :param journal: an SQLite file that makes the batch resumable (``batch.journal``).
    :param timeout: seconds a job may stay on a server before it is cancelled and failed.
    :param vary_seeds: give every submission fresh ``seed``/``noise_seed`` values, so
        repeated identical jobs really execute instead of being served from cache.
    :param store_outputs: run the output sinks (download, metadata...) for finished jobs.
    :param plugin_manager: share the plugins of a session that already configured them (a CLI run).
    :param retry_failed: when resuming a journal, run its failed jobs again (completed ones never run again).
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
    ) -> None:
        self._own_clients: list[ComfyUIClient] = []
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
        self.vary_seeds = vary_seeds
        self.store_outputs = store_outputs

        self._servers = self._build_servers(client, servers)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._jobs: dict[str, Job] = {}
        self._pending: collections.deque[str] = collections.deque()
        self._delayed: list[tuple[float, int, str]] = []  # (due monotonic time, tiebreak, job_id)
        self._tiebreak = 0
        self._failures: collections.Counter[str] = collections.Counter()
        self._cancelling: set[str] = set()
        self._posting: set[str] = set()
        self._early: dict[str, list[str]] = {}  # prompt ids whose events came before the POST answer
        self._finish_queue: queue_module.Queue[tuple[_Server, str] | None] = queue_module.Queue()
        self._callbacks: dict[str, list[Callable[..., None]]] = {name: [] for name in QUEUE_EVENTS}
        self._id_counts: collections.Counter[str] = collections.Counter()
        self._threads: list[threading.Thread] = []
        self._submitters: list[threading.Thread] = []
        self._submit_queue: queue_module.Queue[tuple[Job, _Server] | None] = queue_module.Queue()
        self._started = False
        self._stopping = False
        self._stop_event = threading.Event()
        self._paused = False
        self._was_empty = True
        self._open = 0  # jobs not ended yet: counted, so waiting is not O(jobs) per wake-up
        self._first_submit: float | None = None
        self._last_finish: float | None = None
        journal_path = journal if journal is not None else batch["journal"]
        self.journal: Journal | None = None
        if journal_path:
            from comfykit.journal import Journal

            self.journal = Journal(journal_path)
            self._load_journal(retry_failed)

    # -- construction -----------------------------------------------------------------------

    def _build_servers(
        self, client: ComfyUIClient | None, servers: Iterable[str | Mapping[str, Any] | ServerSpec] | None
    ) -> list[_Server]:
        from comfykit.client import ComfyUIClient

        if client is not None and servers is not None:
            raise ConfigError("give QueueManager a client or a list of servers, not both")
        if client is not None:
            return [_Server(ServerSpec(client.base_url), client, self.max_concurrent)]
        specs = [ServerSpec.parse(s) for s in (servers if servers is not None else self.config["servers"] or [])]
        if not specs:
            lone = ComfyUIClient(config=self.config, plugin_manager=self.plugin_manager)
            self._own_clients.append(lone)
            return [_Server(ServerSpec(lone.base_url), lone, self.max_concurrent)]
        urls = [spec.url for spec in specs]
        if len(set(urls)) != len(urls):
            raise ConfigError(f"the server pool lists a server twice: {urls}", hint="Give each URL once; use weight instead.")
        pool = []
        for spec in specs:
            member = ComfyUIClient(url=spec.url, config=self.config, plugin_manager=self.plugin_manager)
            self._own_clients.append(member)
            pool.append(_Server(spec, member, spec.max_concurrent or self.max_concurrent))
        return pool

    def _load_journal(self, retry_failed: bool) -> None:
        assert self.journal is not None
        by_url = {server.url: server for server in self._servers}
        for job in self.journal.jobs():
            self._jobs[job.job_id] = job
            if retry_failed and job.status is JobStatus.FAILED:
                job.status, job.prompt_id, job.server, job.finished_at = JobStatus.PENDING, None, None, None
                job.warnings.append(f"failed before ({job.error}); run again")
                self.journal.update(job)
            if job.done:
                continue
            server = by_url.get(job.server or "")
            if job.prompt_id is not None and server is not None:
                # It may be queued, running or done there: the supervisor asks before anything is resubmitted.
                server.inflight[job.prompt_id] = job
                server.polled.add(job.prompt_id)
                server.client.tracker.watch(job.prompt_id, None, self._listener(server))
            else:
                # Never posted, or posted to a server no longer in the pool (at-least-once).
                job.status, job.prompt_id, job.server = JobStatus.PENDING, None, None
                self._pending.append(job.job_id)
        if self._jobs:
            self._open = sum(1 for job in self._jobs.values() if not job.done)
            self._was_empty = self._open == 0

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
        with the same journal resumes it.
        """
        prompt, job_id, metadata = job_arguments((first, second, third), workflow=workflow, job_id=job_id,
                                                 metadata=metadata)
        job = Job(
            workflow=copy.deepcopy(prompt),
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

    def clear_completed(self) -> int:
        """Forget the completed jobs (not the failed or cancelled ones) in memory; return how many. The journal keeps them."""
        with self._lock:
            done = [job_id for job_id, job in self._jobs.items() if job.status is JobStatus.COMPLETED]
            for job_id in done:
                del self._jobs[job_id]
            return len(done)

    @property
    def servers(self) -> list[str]:
        return [server.url for server in self._servers]

    @property
    def clients(self) -> list[ComfyUIClient]:
        return [server.client for server in self._servers]

    def get_statistics(self) -> dict[str, Any]:
        """Counts per state, throughput, durations (mean, p50/p90/p99) and per-server counts."""
        with self._lock:
            jobs = list(self._jobs.values())
            per_server = {
                server.url: {
                    "healthy": server.healthy, "in_flight": len(server.inflight), "weight": server.weight,
                    "window": server.window, **{k: server.counts[k] for k in ("submitted", "completed", "failed")},
                }
                for server in self._servers
            }
            first, last = self._first_submit, self._last_finish
        counts = collections.Counter(job.status.value for job in jobs)
        durations = [d for d in (job.duration for job in jobs if job.status is JobStatus.COMPLETED) if d is not None]
        finished = counts[JobStatus.COMPLETED.value]
        end = last if (last is not None and all(job.done for job in jobs)) else time.time()
        elapsed = (end - first) if first is not None else 0.0
        return {
            "total": len(jobs),
            **{status.value: counts[status.value] for status in JobStatus},
            "retries": sum(max(0, job.attempts - 1) for job in jobs),
            "elapsed": elapsed,
            "throughput": finished / elapsed if elapsed > 0 else 0.0,
            "mean_duration": statistics.fmean(durations) if durations else None,
            "p50_duration": _percentile(durations, 0.5),
            "p90_duration": _percentile(durations, 0.9),
            "p99_duration": _percentile(durations, 0.99),
            "servers": per_server,
        }

    # -- callbacks ------------------------------------------------------------------------------------

    def on(self, event: str, callback: Callable[..., None]) -> None:
        """Call ``callback(job)`` on a job event, or ``callback()`` on ``queue_empty``."""
        if event not in self._callbacks:
            raise ValueError(f"unknown queue event {event!r}; known: {', '.join(QUEUE_EVENTS)}")
        self._callbacks[event].append(callback)

    def _emit(self, event: str, *args: Any) -> None:
        for callback in list(self._callbacks[event]):
            try:
                callback(*args)
            except Exception:
                log.exception("a QueueManager.on(%r) callback failed", event)

    # -- running --------------------------------------------------------------------------------------

    def start(self, num_workers: int | None = None) -> None:
        """Start dispatching; ``num_workers`` threads finish jobs (history, sinks); default 4."""
        with self._lock:
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
            threading.Thread(target=self._finish_loop, name=f"comfykit-finish-{i}", daemon=True) for i in range(workers)
        ]
        # Two submitters per server: one posts while the other prepares (uploads, hooks).
        self._submitters = [
            threading.Thread(target=self._submit_loop, name=f"comfykit-submit-{i}", daemon=True)
            for i in range(2 * len(self._servers))
        ]
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
        if not self._started:
            self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._open:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._changed.wait(remaining if remaining is not None else 1.0)
        return True

    def stop(self, wait: bool = True, timeout: float | None = None, *, requeue: bool = False) -> int:
        """Stop the queue: after every job ended (``wait=True``), or now, cancelling what is in flight.

        With ``requeue`` (and a journal), the jobs cancelled this way are journaled as
        pending, so resuming the journal runs them: what Ctrl-C in a batch wants.
        Returns how many jobs were cancelled.
        """
        cancelled = []
        if wait and self._started:
            self.wait_for_completion(timeout)
        if not wait:
            cancelled = [job for job in self.get_all_jobs() if not job.done and self.cancel_job(job.job_id)]
        self._shutdown_threads()
        if requeue and self.journal is not None:
            for job in cancelled:
                self.journal.update(attrs.evolve(
                    job, status=JobStatus.PENDING, prompt_id=None, server=None, submitted_at=None, started_at=None,
                    finished_at=None,
                ))
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

    # -- dispatch ---------------------------------------------------------------------------------------

    def _pick_server(self) -> _Server | None:
        candidates = [server for server in self._servers if server.has_room]
        return min(candidates, key=lambda s: s.load) if candidates else None

    def _dispatch_loop(self) -> None:
        while True:
            with self._lock:
                while True:
                    if self._stopping:
                        return
                    server = None if (self._paused or not self._pending) else self._pick_server()
                    if server is not None:
                        break
                    self._changed.wait(0.5)
                job = self._jobs.get(self._pending.popleft())
                if job is None or job.status is not JobStatus.PENDING:
                    continue
                server.reserved += 1
            self._submit_queue.put((job, server))

    def _submit_loop(self) -> None:
        while True:
            item = self._submit_queue.get()
            if item is None:
                return
            job, server = item
            try:
                self._submit(job, server)
            except Exception as exc:  # a plugin hook or a bug: the job fails with the reason, the queue goes on
                log.exception("submitting job %s failed unexpectedly", job.job_id)
                if job.prompt_id is not None and server.inflight.get(job.prompt_id) is job:
                    self._release(server, job.prompt_id)
                self._fail(job, exc, server.client)

    def _prepare(self, job: Job, server: _Server) -> dict[str, Any]:
        prompt = copy.deepcopy(job.workflow)
        if self.vary_seeds:
            rng = random.SystemRandom()
            for node in prompt.values():
                for name in _SEED_INPUTS:
                    if isinstance((node.get("inputs") or {}).get(name), int):
                        node["inputs"][name] = rng.randrange(2**50)
        if job.inputs:
            apply_inputs(prompt, job.inputs, server.client, server.uploads)
        self.plugin_manager.prepare_prompt(prompt, job, server.client)
        # After the hooks: what is checked is what is sent.  Raises WorkflowValidationError (no retry).
        validate_before_send(prompt, client=server.client, config=self.config)
        return prompt

    def _submit(self, job: Job, server: _Server) -> None:
        client = server.client
        try:
            prompt = self._prepare(job, server)
        except Exception as exc:
            with self._lock:
                server.reserved -= 1
            if isinstance(exc, (WorkflowError, PromptRejected)):  # invalid: the same input would fail again
                self._fail(job, exc, client, retry=False)
            elif isinstance(exc, (TransportError, ServerError)):  # an upload failed
                self._server_trouble(server, exc)
                self._retry_or_fail(job, exc, client)
            else:
                raise
            return
        prompt_id = new_prompt_id()
        with self._lock:
            server.reserved -= 1
            if job.status is not JobStatus.PENDING:  # cancelled meanwhile
                return
            job.prompt_id, job.server = prompt_id, server.url
            job.attempts += 1
            server.inflight[prompt_id] = job
            self._posting.add(prompt_id)
            if self._first_submit is None:
                self._first_submit = time.time()
        # Journal the prompt id before posting: a crash after the POST can then be reconciled.
        self._journal(job)
        client.tracker.watch(prompt_id, prompt, self._listener(server))
        try:
            client.queue_prompt(prompt, prompt_id=prompt_id, extra_data=job.extra_data or None)
        except PromptRejected as exc:
            self._release(server, prompt_id)
            self._fail(job, exc, client, retry=False)
            return
        except (TransportError, ServerError) as exc:
            # The server may have queued it and only the answer was lost: ask before resubmitting.
            known = self._server_knows(server, prompt_id)
            if known is None:  # cannot tell now: the job stays in flight, polled until the server answers
                self._server_trouble(server, exc)
                with self._lock:
                    self._posting.discard(prompt_id)
                    server.polled.add(prompt_id)
                    early = self._early.pop(prompt_id, [])
                for what in early:
                    self._on_watch(server, prompt_id, what)
                return
            if not known:
                self._release(server, prompt_id)
                self._retry_or_fail(job, exc, client)
                return
            log.info("POST /prompt for %s failed (%s) but the server has it: not resubmitted", prompt_id, exc)
        with self._lock:
            self._posting.discard(prompt_id)
            early = self._early.pop(prompt_id, [])
            stale = job.prompt_id != prompt_id or job.done
            cancelled = job.status is JobStatus.CANCELLED
            if not stale:
                job.status = JobStatus.QUEUED
                job.submitted_at = time.time()
                server.counts["submitted"] += 1
        if stale:
            if cancelled:  # cancelled while the POST was on its way: take it off the server again
                self._cancel_on_server(server, prompt_id, job)
            return
        self._journal(job)
        self.plugin_manager.job_submitted(job, client)
        self._emit("job_submitted", job)
        for what in early:
            self._on_watch(server, prompt_id, what)

    def _server_knows(self, server: _Server, prompt_id: str) -> bool | None:
        """Whether the server has ``prompt_id`` queued, running or in its history; ``None`` when it cannot be asked.

        A server that answered the POST with a 5xx is usually answering again a moment later,
        so it is asked up to three times (0.05 s, 0.2 s apart) before the question is left
        to the supervisor's polling.
        """
        for delay in (0.05, 0.2, None):
            known = self._ask_once(server, prompt_id)
            if known is not None or delay is None or self._stop_event.is_set():
                return known
            time.sleep(delay)
        return None

    def _ask_once(self, server: _Server, prompt_id: str) -> bool | None:
        client = server.client
        try:
            if client.server_info().has_jobs_api:
                try:
                    client.get_job(prompt_id)
                    return True
                except NotFound:
                    return False
            queue = client.get_queue()
            if any(item[1] == prompt_id for key in ("queue_running", "queue_pending") for item in queue.get(key, [])):
                return True
            return prompt_id in client.get_history(prompt_id)
        except ComfyKitError as exc:
            log.info("cannot ask %s about %s: %s", server.url, prompt_id, exc)
            return None

    # -- completion -----------------------------------------------------------------------------------

    def _listener(self, server: _Server) -> Callable[[str, str], None]:
        return lambda prompt_id, what: self._on_watch(server, prompt_id, what)

    def _on_watch(self, server: _Server, prompt_id: str, what: str) -> None:
        with self._lock:
            job = server.inflight.get(prompt_id)
            if job is None:
                return
            if prompt_id in self._posting:
                self._early.setdefault(prompt_id, []).append(what)
                return
            if what == "started":
                if job.status is not JobStatus.QUEUED:
                    return
                job.status = JobStatus.RUNNING
                job.started_at = time.time()
            if what == "finished":
                if prompt_id in server.finishing:  # already handed to a finisher
                    return
                server.finishing.add(prompt_id)
        if what == "started":
            self._journal(job)
            self.plugin_manager.job_started(job, server.client)
            self._emit("job_started", job)
        else:
            self._finish_queue.put((server, prompt_id))

    def _finish_loop(self) -> None:
        while True:
            item = self._finish_queue.get()
            if item is None:
                return
            server, prompt_id = item
            try:
                self._finish(server, prompt_id)
            except Exception as exc:
                log.exception("finishing %s failed unexpectedly", prompt_id)
                with self._lock:
                    job = server.inflight.get(prompt_id)
                if job is not None:
                    self._release(server, prompt_id)
                    self._fail(job, exc, server.client)

    def _finish(self, server: _Server, prompt_id: str) -> None:
        client = server.client
        with self._lock:
            job = server.inflight.get(prompt_id)
        if job is None or job.done:
            return
        try:
            entry = client.tracker.result(prompt_id, from_events=True)
        except JobError as exc:
            self._release(server, prompt_id)
            if isinstance(exc, ExecutionInterrupted) and job.job_id in self._cancelling:
                return
            self._retry_or_fail(job, exc, client)
            return
        except (TransportError, ServerError) as exc:
            # Finished, but its history could not be read: ask again once the server answers.
            self._server_trouble(server, exc)
            with self._lock:
                server.finishing.discard(prompt_id)
            client.tracker.reopen(prompt_id)
            return
        started_at, cached, _ = client.tracker.details(prompt_id)
        job.history = entry
        job.outputs = discover_outputs(entry.get("outputs") or {}, include_temp=bool(self.config["output.include_temp"]))
        job.cached_nodes = list(cached) or _cached_from_history(entry)
        job.started_at = job.started_at or started_at or _history_time(entry, "execution_start")
        with self._lock:
            unseen_start = job.status is JobStatus.QUEUED
            if unseen_start:
                job.status = JobStatus.RUNNING
        if unseen_start:
            # It ran while no event could tell (a socket gap, or a poll that came after the end):
            # job_started still comes before job_completed, as it does for every other job.
            self.plugin_manager.job_started(job, client)
            self._emit("job_started", job)
        job.finished_at = _history_time(entry, "execution_success") or time.time()
        if self.store_outputs:
            for result in self.plugin_manager.store_outputs(job, job.outputs, client):
                job.stored.extend(result.stored)
                if result.error is not None:
                    job.warnings.append(f"output sink {result.plugin} failed: {result.error}")
        with self._lock:
            if job.done:
                return
            self._end(job, JobStatus.COMPLETED)
            job.error = job.error_type = None
            server.counts["completed"] += 1
            self._last_finish = time.time()
        self._release(server, prompt_id)
        self._journal(job)
        self.plugin_manager.job_completed(job, client)
        self._emit("job_completed", job)
        self._settle()

    def _release(self, server: _Server, prompt_id: str) -> None:
        with self._lock:
            server.inflight.pop(prompt_id, None)
            server.polled.discard(prompt_id)
            server.finishing.discard(prompt_id)
            self._posting.discard(prompt_id)
            self._early.pop(prompt_id, None)
            self._changed.notify_all()
        server.client.tracker.forget(prompt_id)

    # -- failure and retry ----------------------------------------------------------------------------

    def _backoff(self, failures: int, error: BaseException) -> float:
        delay = min(self.retry_delay_max, self.retry_delay * (2 ** max(0, failures - 1)))
        delay *= random.uniform(0.5, 1.0)  # jitter: a pool's retries do not hit a server at once
        retry_after = getattr(error, "retry_after", None)
        if retry_after:
            delay = max(delay, float(retry_after))
        return delay

    def _retry_or_fail(self, job: Job, error: BaseException, client: ComfyUIClient | None) -> None:
        with self._lock:
            self._failures[job.job_id] += 1
            failures = self._failures[job.job_id]
        retry = (
            self.retry_on_failure
            and failures <= self.max_retries
            and self.plugin_manager.should_retry(job, error, failures)
        )
        if not retry:
            self._fail(job, error, client, retry=False)
            return
        delay = self._backoff(failures, error)
        with self._lock:
            if job.done:
                return
            job.status, job.prompt_id, job.server = JobStatus.PENDING, None, None
            job.error, job.error_type = _describe(error), type(error).__name__
            self._tiebreak += 1
            heapq.heappush(self._delayed, (time.monotonic() + delay, self._tiebreak, job.job_id))
        log.info("job %s: attempt %d failed (%s); retrying in %.2f s", job.job_id, failures, error, delay)
        self._journal(job)
        self.plugin_manager.job_retrying(job, error, delay)
        self._emit("job_retrying", job)

    def _fail(self, job: Job, error: BaseException, client: ComfyUIClient | None, *, retry: bool = True) -> None:
        if retry:
            self._retry_or_fail(job, error, client)
            return
        with self._lock:
            if job.done:
                return
            self._end(job, JobStatus.FAILED)
            job.error, job.error_type = _describe(error), type(error).__name__
            job.finished_at = time.time()
            self._last_finish = job.finished_at
            if job.server is not None:
                for server in self._servers:
                    if server.url == job.server:
                        server.counts["failed"] += 1
            self._changed.notify_all()
        self._journal(job)
        self.plugin_manager.job_failed(job, error, client)
        self._emit("job_failed", job)
        self._settle()

    # -- cancelling -------------------------------------------------------------------------------------

    def cancel_job(self, job_id: str) -> bool:
        """Cancel a job: drop it if not sent, delete it from the server queue, or interrupt it if running.

        Returns ``False`` when the job is unknown or already ended.
        """
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.done:
                return False
            server = next((s for s in self._servers if job.prompt_id in s.inflight), None)
            prompt_id = job.prompt_id
            self._cancelling.add(job_id)
            self._end(job, JobStatus.CANCELLED)
            job.finished_at = time.time()
            if job_id in self._pending:
                self._pending.remove(job_id)
            self._delayed = [item for item in self._delayed if item[2] != job_id]
            heapq.heapify(self._delayed)
        if server is not None and prompt_id is not None:
            self._cancel_on_server(server, prompt_id, job)
        self._journal(job)
        self.plugin_manager.job_cancelled(job)
        self._emit("job_cancelled", job)
        self._settle()
        return True

    def _cancel_on_server(self, server: _Server, prompt_id: str, job: Job) -> None:
        client = server.client
        try:
            client.delete_from_queue([prompt_id])
            running = client.get_queue().get("queue_running", [])
            if any(item[1] == prompt_id for item in running):
                client.interrupt_execution(prompt_id)
        except ComfyKitError as exc:
            log.warning("could not cancel %s on %s: %s", prompt_id, server.url, exc)
            job.warnings.append(f"cancelling on the server failed: {exc}")
        self._release(server, prompt_id)

    # -- supervision ----------------------------------------------------------------------------------

    def _supervise_loop(self) -> None:
        # A timer, not the condition: waking on every job event would cost more than the checks.
        while not self._stop_event.wait(0.1):
            with self._lock:
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    _, _, job_id = heapq.heappop(self._delayed)
                    job = self._jobs.get(job_id)
                    if job is not None and job.status is JobStatus.PENDING:
                        self._pending.append(job_id)
                        self._changed.notify_all()
            self._check_timeouts()
            self._check_all_down(now)

    def _server_loop(self, server: _Server) -> None:
        # One thread per server: a server that hangs cannot delay the health checks of the others.
        while not self._stop_event.wait(0.1):
            try:
                self._supervise(server, time.monotonic())
            except Exception:
                log.exception("supervising %s failed", server.url)

    def _supervise(self, server: _Server, now: float) -> None:
        if not server.healthy:
            if now < server.next_check:
                return
            if server.client.ping(timeout=min(5.0, self.health_interval)):
                log.warning("server %s answers again; reconciling its %d job(s)", server.url, len(server.inflight))
                with self._lock:
                    server.healthy, server.down_since = True, None
                    server.last_reconcile = 0.0
                    self._changed.notify_all()
            else:
                server.next_check = now + self.health_interval
                if server.down_since is not None and now - server.down_since > self.down_timeout:
                    self._reassign(server)
                return
        with self._lock:
            waiting = [p for p in server.inflight if p not in self._posting]
            unclaimed = [p for p in waiting if p not in server.finishing and server.client.tracker.is_finished(p)]
        for prompt_id in unclaimed:
            # Its end was seen but never reached a finisher (a listener call was lost): finish it now.
            log.warning("job %s ended without being finished; finishing it now", prompt_id)
            self._on_watch(server, prompt_id, "finished")
        if not waiting:
            return
        source = server.client.event_source
        live = source is not None and source.connected and not server.polled.intersection(waiting)
        interval = 2.0 if live else float(self.config["batch.poll_interval"])
        if now - server.last_reconcile < interval:
            return
        server.last_reconcile = now
        try:
            server.client.tracker.reconcile(waiting, raise_errors=True)
        except (TransportError, ServerError) as exc:
            self._server_trouble(server, exc)

    def _server_trouble(self, server: _Server, error: BaseException) -> None:
        """Mark a server down when it cannot be reached; a 5xx alone does not take it out of the pool."""
        if not isinstance(error, (ServerUnreachable, TransportError)):
            return
        with self._lock:
            if not server.healthy:
                return
            server.healthy = False
            server.down_since = time.monotonic()
            server.next_check = server.down_since + min(self.health_interval, 0.5)
        log.warning("server %s is unreachable (%s); its jobs wait for it or move after %.0f s",
                    server.url, error, self.down_timeout)

    def _reassign(self, server: _Server) -> None:
        """Send a long-gone server's jobs elsewhere (at-least-once: it may have run some of them)."""
        with self._lock:
            moved = list(server.inflight.items())
            server.inflight.clear()
            for prompt_id, job in moved:
                self._posting.discard(prompt_id)
                if job.done:
                    continue
                job.status, job.prompt_id, job.server = JobStatus.PENDING, None, None
                job.warnings.append(f"moved from {server.url}, unreachable for over {self.down_timeout:.0f} s")
                self._pending.appendleft(job.job_id)
            self._changed.notify_all()
        for prompt_id, job in moved:
            server.client.tracker.forget(prompt_id)
            self._journal(job)
        if moved:
            log.warning("moved %d job(s) away from %s", len(moved), server.url)

    def _check_all_down(self, now: float) -> None:
        with self._lock:
            if any(s.healthy for s in self._servers):
                return
            if not all(s.down_since is not None and now - s.down_since > self.down_timeout for s in self._servers):
                return
            waiting = [self._jobs[j] for j in self._pending if j in self._jobs]
            self._pending.clear()
            waiting += [self._jobs[j] for _, _, j in self._delayed if j in self._jobs]
            self._delayed.clear()
        error = ServerUnreachable(
            f"no server of the pool answered for {self.down_timeout:.0f} s: {', '.join(self.servers)}",
            hint="Start the server(s) and resume the batch from its journal.",
        )
        for job in waiting:
            self._fail(job, error, None, retry=False)

    def _check_timeouts(self) -> None:
        if self.timeout is None:
            return
        limit = float(self.timeout)
        now = time.time()
        expired = []
        with self._lock:
            for server in self._servers:
                for prompt_id, job in server.inflight.items():
                    if job.submitted_at is not None and now - job.submitted_at > limit and prompt_id not in self._posting:
                        expired.append((server, prompt_id, job))
        for server, prompt_id, job in expired:
            try:
                server.client.delete_from_queue([prompt_id])
                server.client.interrupt_execution(prompt_id)
            except ComfyKitError as exc:
                log.warning("could not stop timed-out job %s: %s", prompt_id, exc)
            self._release(server, prompt_id)
            self._retry_or_fail(
                job, WaitTimeout(f"job {job.job_id} did not finish within {limit} s", prompt_id=prompt_id), server.client
            )

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

    def _end(self, job: Job, status: JobStatus) -> None:
        """Give a job its final status (the caller holds the lock and checked it had not ended).

        The caller then journals it, runs the hooks and callbacks, and calls :meth:`_settle`.
        """
        job.status = status

    def _journal(self, job: Job) -> None:
        if self.journal is not None:
            self.journal.update(job)


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text if isinstance(error, ComfyKitError) else f"{type(error).__name__}: {text}"


def _history_messages(entry: Mapping[str, Any]) -> list[Any]:
    return list((entry.get("status") or {}).get("messages") or [])


def _history_time(entry: Mapping[str, Any], event: str) -> float | None:
    for name, data in _history_messages(entry):
        if name == event and isinstance(data, Mapping) and isinstance(data.get("timestamp"), (int, float)):
            return float(data["timestamp"]) / 1000.0
    return None


def _cached_from_history(entry: Mapping[str, Any]) -> list[str]:
    for name, data in _history_messages(entry):
        if name == "execution_cached" and isinstance(data, Mapping):
            return [str(node) for node in data.get("nodes") or []]
    return []
