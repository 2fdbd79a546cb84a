"""``AsyncComfyUIClient``: the endpoints as coroutines, and jobs prepared, posted and awaited without a thread each.

The client builds a synchronous :class:`~comfykit.ComfyUIClient` beside it
(:attr:`~AsyncComfyUIClient.sync_client`): it reads the config, loads the plugins, and is
the ``client`` every plugin hook receives, because hooks call the server synchronously
(a sink downloads with it, ``comfykit_prepare_prompt`` may upload).  Which code runs on
which thread is written in :mod:`comfykit.aio`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from comfykit import _http
from comfykit.aio.endpoints import AsyncEndpoints
from comfykit.aio.handle import AsyncJob
from comfykit.aio.outages import has_prompt, wait_for_server
from comfykit.aio.waiting import WaitingJobs
from comfykit.client import ComfyUIClient
from comfykit.errors import ComfyKitError, JobError, PromptRejected, RequestTimeout, ServerError, TransportError, WaitTimeout
from comfykit.jobs import Job, JobStatus, new_prompt_id
from comfykit.queue import submit as preparing
from comfykit.queue.inputs import UploadCache
from comfykit.socket_settings import SocketSettings

if TYPE_CHECKING:
    from typing import TypedDict

    from typing_extensions import Unpack

    from comfykit.aio.event_socket import AsyncEventSocket
    from comfykit.config import Config
    from comfykit.events import Event
    from comfykit.plugins import PluginManager
    from comfykit.tracking import JobTracker

    class ClientOptions(TypedDict, total=False):
        """The keyword arguments :class:`ComfyUIClient` takes besides ``transport``, each as it takes it."""

        url: str | None
        timeout: float | None
        headers: Mapping[str, str] | None
        auth: tuple[str, str] | str | httpx.Auth | None
        token: str | None
        api_key: str | None
        verify: bool | str | None
        config: Config | str | os.PathLike[str] | None
        plugins: Iterable[object]
        plugin_options: Iterable[str]
        client_id: str | None
        plugin_manager: PluginManager | None

__all__ = ["AsyncComfyUIClient"]

log = logging.getLogger("comfykit.aio")


class AsyncComfyUIClient(AsyncEndpoints):
    """An asyncio client for one ComfyUI server; ``async with AsyncComfyUIClient(...) as client:``.

    Takes the arguments of :class:`comfykit.ComfyUIClient`; ``transport`` is an
    ``httpx.AsyncBaseTransport`` for this client's own requests (the :attr:`sync_client` that
    plugin hooks, sinks and the reconciliation use goes over the network).
    ``store_outputs=False`` skips the output sinks.
    """

    #: seconds between server checks while jobs wait with a connected WebSocket
    RECONCILE_INTERVAL = 2.0

    def __init__(
        self, host: str | None = None, port: int | None = None, protocol: str | None = None, *,
        transport: httpx.AsyncBaseTransport | None = None, store_outputs: bool = True, **options: Unpack[ClientOptions],
    ) -> None:
        self.sync_client = ComfyUIClient(host, port, protocol, **options)
        self.config = self.sync_client.config
        self.plugin_manager = self.sync_client.plugin_manager
        super().__init__(self.sync_client.connection, transport=transport, before_request=self._start_session)
        self.store_outputs = store_outputs
        #: whether the WebSocket reconnects after it drops (else waits poll)
        self.auto_reconnect = True
        self._closed = False
        self._session: asyncio.Task[None] | None = None
        self._waiting = WaitingJobs(self.sync_client.tracker, self._announce)
        self._catalogue_lock = asyncio.Lock()
        self._uploads = UploadCache()  # each input file goes to this server once, whatever the number of jobs
        self._socket: AsyncEventSocket | None = None
        self._socket_asked = False
        self._supervisor: asyncio.Task[None] | None = None
        # One thread, so hooks and callbacks see events in order and the loop never waits on them.
        self._event_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="comfykit-aio-events")

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> AsyncComfyUIClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the WebSocket, wait for the event thread, run ``comfykit_session_finish``, close the pool."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._supervisor is not None:
                self._supervisor.cancel()
            if self._socket is not None:
                await self._socket.stop()
            await asyncio.to_thread(self._event_thread.shutdown, wait=True)  # what was handed to hooks runs
            await asyncio.to_thread(self.sync_client.close)
        finally:
            await self.close_pool()

    async def _start_session(self) -> None:
        if self._session is None:
            self._session = asyncio.get_running_loop().create_task(asyncio.to_thread(self.sync_client.start_session))
        await asyncio.shield(self._session)

    @property
    def tracker(self) -> JobTracker:
        """The job tracker (shared with :attr:`sync_client`): progress and details of every watched job."""
        return self.sync_client.tracker

    @property
    def event_source(self) -> AsyncEventSocket | None:
        """The WebSocket, once started (``None`` before the first submission, or without the monitor)."""
        return self._socket

    def on(self, event_type: str, callback: Callable[[Event], None]) -> None:
        """Call ``callback(event)`` on the event thread for every event of ``event_type`` (``"*"``: all).

        It runs off the loop: to touch asyncio objects from it, use ``loop.call_soon_threadsafe``;
        :meth:`AsyncJob.events` is the asyncio way to follow a job.
        """
        self.sync_client.on(event_type, callback)

    def off(self, event_type: str, callback: Callable[[Event], None]) -> None:
        self.sync_client.off(event_type, callback)

    def _announce(self, hook: str, *args: Any) -> None:
        if self._closed:
            log.debug("the client is closed: %s for job %s is not called", hook, args[0].job_id)
            return
        self._event_thread.submit(getattr(self.plugin_manager, hook), *args)

    # -- the node catalogue --------------------------------------------------------------------

    async def get_object_info(self, node_class: str | None = None, *, refresh: bool = False) -> dict[str, Any]:
        """The node catalogue, or one class's entry (``{}`` when unknown), cached as the sync client caches it.

        It is the :attr:`sync_client`'s cache, so the validation of every job and the callers
        share one request, and the large answer is decoded off the loop; jobs asking at once
        wait for that one request.  ``refresh=True`` asks the server again.
        """
        async with self._catalogue_lock:
            return await asyncio.to_thread(self.sync_client.get_object_info, node_class, refresh=refresh)

    def invalidate_object_info(self) -> None:
        """Forget the cached catalogue (a node pack was installed): the next call asks the server."""
        self.sync_client.invalidate_object_info()

    async def _catalogue_for_validation(self) -> None:
        # Fetched once here, under the lock, rather than by each preparing thread at once.
        if self.config.get("workflow.validate_before_send", True) and not self.config.get("workflow.object_info"):
            await self.get_object_info()

    # -- jobs ----------------------------------------------------------------------------------

    async def submit(
        self, workflow: Mapping[str, Any], *, prompt_id: str | None = None, metadata: Mapping[str, Any] | None = None,
        inputs: Mapping[str, str] | None = None, vary_seeds: bool = False, **options: Any,
    ) -> AsyncJob:
        """Prepare an API-format workflow as a ``QueueManager`` does, post it, and return its handle once accepted.

        Prepared off the loop, as each attempt of a queue is: fresh seeds with ``vary_seeds``,
        the local files of ``inputs`` (``{"image": "cat.png"}``, ``{"10.image": ...}``) uploaded
        once per client, the ``comfykit_prepare_prompt`` hooks, then validate-before-send
        (``workflow.validate_before_send``), which raises ``WorkflowValidationError`` before
        anything is posted.  The job is watched and the WebSocket opened before the POST, so
        no event is missed.  ``options`` are :meth:`post_prompt`'s (``front``, ``number``,
        ``extra_data``, ``targets``).  Cancelled during the POST, the prompt is taken off the server again.
        When the POST fails with a 5xx or a timeout, the server is asked whether it has the prompt
        all the same (its answer may be what was lost; after a timeout, once it answers again):
        then the handle is returned, else the error is raised.
        """
        job = Job(workflow=_http.prompt_of(workflow), prompt_id=prompt_id or new_prompt_id(), server=self.base_url,
                  metadata=dict(metadata or {}), extra_data=dict(options.pop("extra_data", None) or {}),
                  inputs=dict(inputs or {}))
        await self._start_session()  # before the preparation's threads use the sync client: it starts once
        try:
            await self._catalogue_for_validation()
            prompt = await asyncio.to_thread(
                preparing.prepare, job, self.sync_client, self._uploads, plugins=self.plugin_manager,
                config=self.config, vary_seeds=vary_seeds,
            )
        except Exception as exc:
            self._refused(job, exc)
            raise
        await self._ensure_events()
        handle = AsyncJob(self, self._waiting, job)
        self._waiting.add(handle, prompt)
        posting = asyncio.get_running_loop().create_task(
            self.post_prompt(prompt, prompt_id=handle.prompt_id, extra_data=job.extra_data or None, **options)
        )
        try:
            await asyncio.shield(posting)
        except asyncio.CancelledError:
            # The POST may be on its way: let it end first, or the prompt could land after it was taken off.
            try:
                await posting
            except ComfyKitError as exc:
                log.debug("job %s: the POST cancelled on its way failed (%s); nothing to take off", handle.prompt_id, exc)
            await handle.abandon()
            raise
        except (TransportError, ServerError) as exc:
            try:
                received = await self._received(handle.prompt_id, exc)
            except asyncio.CancelledError:
                await handle.abandon()  # it may be on the server: take it off
                raise
            except ComfyKitError as unanswered:  # the server stayed away: the POST's own error is the answer
                log.info("job %s: the server could not be asked about its failed POST: %s", handle.prompt_id, unanswered)
                received = False
            if not received:
                self._waiting.forget(handle.prompt_id)
                self._refused(job, exc)
                raise
            log.info("POST /prompt for %s failed (%s) but the server has it: not posted again", handle.prompt_id, exc)
        except BaseException as exc:
            self._waiting.forget(handle.prompt_id)
            self._refused(job, exc)
            raise
        handle.accepted()
        return handle

    async def _received(self, prompt_id: str, error: BaseException) -> bool:
        """Whether the server has a prompt whose POST failed: its answer may be what was lost, as a queue asks."""
        if isinstance(error, PromptRejected):
            return False
        known = await has_prompt(self, prompt_id)
        if known is None and isinstance(error, RequestTimeout):  # it may be queued there: ask once it answers again
            await wait_for_server(self, error)
            known = await has_prompt(self, prompt_id)
        return bool(known)

    def _refused(self, job: Job, error: BaseException) -> None:
        """The job never reached the server (a bad workflow, a failed upload or POST): it failed."""
        job.move(JobStatus.FAILED, finished_at=time.time(), error=str(error), error_type=type(error).__name__)
        self._announce("job_failed", job, error, self.sync_client)

    async def run(self, workflow: Mapping[str, Any], *, timeout: float | None = None, **options: Any) -> Job:
        """Submit ``workflow``, wait for it and store its outputs through the sinks; the completed Job.

        After ``timeout`` seconds the job is cancelled on the server and :class:`WaitTimeout`
        raised; cancelling the awaiting task cancels it too.  ``options`` are :meth:`submit`'s.
        """
        handle = await self.submit(workflow, **options)
        try:
            return await handle.result(timeout)
        except WaitTimeout:
            await handle.abandon()
            raise

    async def wait_for_completion(self, prompt_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Wait until ``prompt_id`` (submitted here, or posted by anyone) ended; its history entry."""
        handle = self._waiting.get(prompt_id)
        adopted = handle is None
        if handle is None:
            await self._ensure_events()
            handle = AsyncJob(self, self._waiting, Job(workflow={}, prompt_id=prompt_id, status=JobStatus.QUEUED),
                              posted=True)
            self._waiting.add(handle)
        try:
            if adopted:
                await asyncio.to_thread(self.tracker.reconcile, [prompt_id])  # it may have ended already
            await handle.ended(timeout)
            return await asyncio.to_thread(self.tracker.result, prompt_id)
        finally:
            if adopted:  # a job submitted here stays the submitter's to finish
                self._waiting.forget(prompt_id)

    # -- events --------------------------------------------------------------------------------

    async def connect_websocket(self, auto_reconnect: bool = True) -> AsyncEventSocket | None:
        """Open the live-event channel now (submitting does it anyway); ``None`` without the monitor (waits poll).

        The first connection attempt is awaited; a failed one is retried behind.
        ``auto_reconnect=False`` leaves the socket closed after a drop, and waits poll.
        """
        self.auto_reconnect = auto_reconnect
        await self._ensure_events()
        return self._socket

    async def _ensure_events(self) -> None:
        """Open the WebSocket (when the monitor is on) and start the supervisor, once per client."""
        if self._socket_asked:
            return
        self._socket_asked = True
        await self._start_session()  # the reconciling threads use the sync client too
        # Where the sync client's monitor plugin would open its socket: with the monitor loaded and enabled.
        if self.plugin_manager.is_registered("monitor") and self.config.get("websocket.enable"):
            from comfykit.aio.event_socket import AsyncEventSocket

            self._socket = AsyncEventSocket(
                self.ws_url, _http.ws_headers(self.connection), SocketSettings.from_config(self.config),
                deliver=self._dispatch, resync=self._resync, gap=self.tracker.mark_gap,
                auto_reconnect=lambda: self.auto_reconnect,
            )
            await self._socket.start()
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise(), name="comfykit-aio-supervisor")

    def _dispatch(self, event: Event) -> None:
        # The tracker is quick and never blocks: it runs here, so a job's progress is current when its
        # event is read, and its end (scheduled by the tracker) comes after its last event.
        self.tracker.feed(event)
        handle = self._waiting.get(event.prompt_id)
        if handle is not None:
            handle.deliver(event)
        if not self._closed:
            self._event_thread.submit(self.sync_client.notify_event, event)

    async def _resync(self) -> None:
        await asyncio.to_thread(self.tracker.mark_gap)
        await self._reconcile()

    async def _reconcile(self) -> None:
        posted = self._waiting.posted()
        if posted:
            await asyncio.to_thread(self.tracker.reconcile, posted)

    async def _supervise(self) -> None:
        # One timer for every waiting job: a thousand jobs cost one /queue request per interval.
        poll_interval = float(self.config["websocket.poll_interval"])
        interval = poll_interval
        while True:
            live = self._socket is not None and self._socket.connected
            waiting = bool(self._waiting.posted())
            interval = self.RECONCILE_INTERVAL if live else min(1.0, interval * 1.3) if waiting else poll_interval
            await asyncio.sleep(interval)
            try:
                await self._reconcile()
            except (ComfyKitError, JobError) as exc:
                log.warning("could not check %d job(s) with %s: %s", len(self._waiting.posted()), self.base_url, exc)
