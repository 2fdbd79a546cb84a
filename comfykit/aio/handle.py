"""``AsyncJob``: the handle of one submitted workflow, ``await result()``, ``async for event in events()``, ``await cancel()``.

A handle hears its prompt's start and end from the tracker (it is the watch's listener,
called from whichever thread saw them) and its events from the client's socket task;
it reaches its client only through the client's public endpoints and the
:class:`~comfykit.aio.waiting.WaitingJobs` it was given.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from comfykit.aio.finishing import collect_and_store
from comfykit.answers import queued_ids
from comfykit.errors import ComfyKitError, ExecutionInterrupted, WaitTimeout
from comfykit.jobs import Job, JobStatus

if TYPE_CHECKING:
    from comfykit.aio.client import AsyncComfyUIClient
    from comfykit.aio.waiting import WaitingJobs
    from comfykit.events import Event

__all__ = ["AsyncJob"]

log = logging.getLogger("comfykit.aio")


class AsyncJob:
    """One submitted workflow: ``await result()``, ``async for event in events()``, ``await cancel()``.

    :attr:`job` is its :class:`comfykit.Job` record, moving from ``queued`` to ``running``
    to ``completed`` (or ``failed``, ``cancelled``) as the server reports.
    """

    def __init__(self, client: AsyncComfyUIClient, jobs: WaitingJobs, job: Job, *, posted: bool = False) -> None:
        self.prompt_id = job.prompt_id or ""
        self.job = job
        #: whether the server has the prompt (its POST was answered, or it was posted elsewhere)
        self.posted = posted
        self._client = client
        self._jobs = jobs
        self._loop = asyncio.get_running_loop()
        self._started = asyncio.Event()
        self._finished = asyncio.Event()
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._ending: asyncio.Task[Job] | None = None
        self._stopping: asyncio.Task[None] | None = None
        self._cancelled = False

    def __repr__(self) -> str:
        return f"AsyncJob({self.prompt_id!r}, {self.job.status.value})"

    @property
    def done(self) -> bool:
        """Whether the server is done with it (its result may still be stored)."""
        return self._finished.is_set()

    # -- what the tracker and the client report ------------------------------------------------

    def prompt_started(self, prompt_id: str) -> None:
        """The tracker saw it start (from any thread)."""
        self._loop.call_soon_threadsafe(self._on_started)

    def prompt_finished(self, prompt_id: str) -> None:
        """The tracker saw it end (from any thread)."""
        self._loop.call_soon_threadsafe(self._on_finished)

    def deliver(self, event: Event) -> None:
        """One of its live events, from the client's socket task (on the loop)."""
        if not self._finished.is_set():
            self._events.put_nowait(event)

    def accepted(self) -> None:
        """The server accepted its POST: it is queued (and running, if its start was already seen)."""
        self.job.move(JobStatus.QUEUED, submitted_at=time.time(), attempts=1)
        self.posted = True
        self._jobs.announce("job_submitted", self.job, self._client.sync_client)
        self._advance()

    def _on_started(self) -> None:
        self._started.set()
        self._advance()

    def _on_finished(self) -> None:
        if not self._finished.is_set():
            self._finished.set()
            self._events.put_nowait(None)

    def _advance(self) -> None:
        if self.posted and self._started.is_set() and self.job.status is JobStatus.QUEUED:
            started_at, _, _ = self._jobs.tracker.details(self.prompt_id)
            self.job.move(JobStatus.RUNNING, started_at=started_at or time.time())
            self._jobs.announce("job_started", self.job, self._client.sync_client)

    # -- the caller's side ---------------------------------------------------------------------

    async def events(self) -> AsyncIterator[Event]:
        """The job's live events in order, from its submission; ends when the job ends (one reader only)."""
        while True:
            event = await self._events.get()
            if event is None:
                self._events.put_nowait(None)  # a later events() call ends at once too
                return
            yield event

    async def ended(self, timeout: float | None = None) -> None:
        """Wait until the server is done with it (its outputs not yet stored); WaitTimeout after ``timeout`` s."""
        try:
            await asyncio.wait_for(self._finished.wait(), timeout)
        except asyncio.TimeoutError:
            raise WaitTimeout(
                f"job {self.prompt_id} did not finish within {timeout} s", prompt_id=self.prompt_id,
                hint="Raise the timeout, or look at the server queue (`comfykit queue`).",
            ) from None

    async def result(self, timeout: float | None = None) -> Job:
        """Wait until the job ends and its outputs are stored; the completed :class:`~comfykit.Job`.

        Raises :class:`~comfykit.errors.ExecutionError`, :class:`~comfykit.errors.ExecutionInterrupted`
        (also after :meth:`cancel`), :class:`~comfykit.errors.JobLost`, :class:`~comfykit.errors.OutputsNotStored`,
        or :class:`~comfykit.errors.WaitTimeout` after ``timeout`` seconds (the job keeps running then).
        Cancelling the task awaiting this cancels the job on the server.
        """
        try:
            await self.ended(timeout)
        except asyncio.CancelledError:
            await self.abandon()
            raise
        if self._ending is None:
            self._ending = self._loop.create_task(self._end())
        # Shielded: a caller cancelled while the sinks run leaves the storing to finish (the server is done).
        return await asyncio.shield(self._ending)

    async def cancel(self) -> None:
        """Take the job off the server's queue, or interrupt it if it runs; its result raises ExecutionInterrupted."""
        if self._stopping is None:
            self._stopping = self._loop.create_task(self._stop_on_server())
        await asyncio.shield(self._stopping)

    async def abandon(self) -> None:
        """Cancel the job because its caller gave up on it (a cancelled task, a timeout): nobody awaits the result."""
        try:
            await self.cancel()
        except ComfyKitError as exc:
            # The caller's cancellation goes on; the server could not be told, which must not stay silent.
            log.warning("job %s: cancelling it on the server failed: %s", self.prompt_id, exc)
            self.job.warnings.append(f"cancelling it on the server failed: {exc}")
            self._cancelled = True
            self._on_finished()
        self._mark_cancelled()

    def _mark_cancelled(self) -> None:
        if not self.job.done:
            self.job.move(JobStatus.CANCELLED, finished_at=time.time())
            self._jobs.announce("job_cancelled", self.job)
        self._jobs.forget(self.prompt_id)

    async def _stop_on_server(self) -> None:
        if self._finished.is_set():
            return
        self._cancelled = True
        client = self._client
        await client.delete_from_queue([self.prompt_id])
        running = queued_ids(await client.get_queue(), running_only=True)
        if self.prompt_id in running:
            await client.interrupt_execution(self.prompt_id)
        self._on_finished()

    async def _end(self) -> Job:
        job = self.job
        try:
            if self._cancelled:
                self._mark_cancelled()
                raise ExecutionInterrupted(prompt_id=self.prompt_id)
            collected = await collect_and_store(self._client, job, self.prompt_id)
            job.move(JobStatus.COMPLETED, finished_at=collected.finished_at)
            self._jobs.announce("job_completed", job, self._client.sync_client)
            return job
        except BaseException as exc:
            if not job.done:
                final = JobStatus.CANCELLED if self._cancelled else JobStatus.FAILED
                job.move(final, finished_at=time.time(), error=str(exc), error_type=type(exc).__name__)
                if final is JobStatus.FAILED:
                    self._jobs.announce("job_failed", job, exc, self._client.sync_client)
                else:
                    self._jobs.announce("job_cancelled", job)
            raise
        finally:
            self._jobs.forget(self.prompt_id)
