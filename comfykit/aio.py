"""``AsyncComfyUIClient``: the client's endpoints as coroutines, and jobs awaited without a thread each.

For services (a FastAPI or aiohttp backend, a chat bot) that wait on many jobs at once::

    async with AsyncComfyUIClient(url="http://127.0.0.1:8188") as client:
        job = await client.run(workflow, timeout=600)      # history, outputs, stored files
        handle = await client.submit(workflow)
        async for event in handle.events():                # typed events, as the sync API's
            ...
        await handle.cancel()                               # off the queue, or interrupted

What the server is asked and how its answers are checked comes from
:mod:`comfykit._http`, as for :class:`comfykit.ComfyUIClient`; the config, plugins,
errors, secret masking, caps and deadlines are the same.  The client builds a
synchronous :class:`~comfykit.ComfyUIClient` beside it (:attr:`sync_client`): it reads
the config and loads the plugins, and it is the ``client`` every synchronous plugin hook
receives, because hooks call the server synchronously (a sink downloads with it).

Which code runs where (so that nothing blocks the event loop):

- on the loop: the HTTP requests of the endpoints, the WebSocket (one per client, shared by
  every job), the tracker folding each event into its job's state, timeouts and cancellation;
- on one event thread, in arrival order: every ``comfykit_handle_event`` hook, the ``on()``
  callbacks and the lifecycle hooks (``comfykit_job_submitted/started/completed/failed/cancelled``);
- in a worker thread: ``comfykit_session_start`` (before the first request) and
  ``comfykit_session_finish`` (in :meth:`AsyncComfyUIClient.aclose`);
- in ``asyncio.to_thread`` (the loop's default executor, a few threads however many jobs
  wait): the output sinks (``comfykit_store_outputs``: download, metadata) and the
  reconciliation with ``/queue`` and ``/history`` after a socket drop or while polling.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from comfykit import _http
from comfykit._http import MAX_ERROR_BYTES, MAX_JSON_BYTES, MAX_SMALL_BYTES, BodyReader, Call
from comfykit.answers import queued_ids
from comfykit.client import ComfyUIClient, ServerInfo
from comfykit.errors import (
    ComfyKitError,
    ExecutionInterrupted,
    JobError,
    NotFound,
    ServerError,
    TransportError,
    WaitTimeout,
)
from comfykit.jobs import Job, JobStatus, new_prompt_id
from comfykit.queue import QueueManager, finish

if TYPE_CHECKING:
    from typing import TypedDict

    from typing_extensions import Unpack

    from comfykit.aio_socket import AsyncEventSocket
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

__all__ = ["AsyncComfyUIClient", "AsyncJob", "run_queue"]

log = logging.getLogger("comfykit.aio")


class AsyncJob:
    """One submitted workflow: ``await result()``, ``async for event in events()``, ``await cancel()``.

    :attr:`job` is its :class:`comfykit.Job` record, moving from ``queued`` to ``running``
    to ``completed`` (or ``failed``, ``cancelled``) as the server reports.
    """

    def __init__(self, client: AsyncComfyUIClient, prompt_id: str, job: Job, *, posted: bool = False) -> None:
        self.prompt_id = prompt_id
        self.job = job
        self._client = client
        self._loop = asyncio.get_running_loop()
        self._started = asyncio.Event()
        self._finished = asyncio.Event()
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._ending: asyncio.Task[Job] | None = None
        self._stopping: asyncio.Task[None] | None = None
        self._cancelled = False
        self.posted = posted

    def __repr__(self) -> str:
        return f"AsyncJob({self.prompt_id!r}, {self.job.status.value})"

    @property
    def done(self) -> bool:
        """Whether the server is done with it (its result may still be stored)."""
        return self._finished.is_set()

    # -- what the tracker reports (from the event thread or a reconciling thread) --------------

    def prompt_started(self, prompt_id: str) -> None:
        self._loop.call_soon_threadsafe(self._on_started)

    def prompt_finished(self, prompt_id: str) -> None:
        self._loop.call_soon_threadsafe(self._on_finished)

    def _on_started(self) -> None:
        self._started.set()
        self._advance()

    def _on_finished(self) -> None:
        if not self._finished.is_set():
            self._finished.set()
            self._events.put_nowait(None)

    def _advance(self) -> None:
        if self.posted and self._started.is_set() and self.job.status is JobStatus.QUEUED:
            started_at, _, _ = self._client.tracker.details(self.prompt_id)
            self.job.move(JobStatus.RUNNING, started_at=started_at or time.time())
            self._client._notify("job_started", self.job)

    def _deliver(self, event: Event) -> None:
        if not self._finished.is_set():
            self._events.put_nowait(event)

    # -- the caller's side --------------------------------------------------------------------

    async def events(self) -> AsyncIterator[Event]:
        """The job's live events in order, from its submission; ends when the job ends (one reader only)."""
        while True:
            event = await self._events.get()
            if event is None:
                self._events.put_nowait(None)  # a later events() call ends at once too
                return
            yield event

    async def result(self, timeout: float | None = None) -> Job:
        """Wait until the job ends and its outputs are stored; the completed :class:`~comfykit.Job`.

        Raises :class:`~comfykit.errors.ExecutionError`, :class:`~comfykit.errors.ExecutionInterrupted`
        (also after :meth:`cancel`), :class:`~comfykit.errors.JobLost`, or :class:`~comfykit.errors.WaitTimeout`
        after ``timeout`` seconds (the job keeps running then).  Cancelling the task awaiting this
        cancels the job on the server.
        """
        try:
            await asyncio.wait_for(self._finished.wait(), timeout)
        except asyncio.TimeoutError:
            raise WaitTimeout(
                f"job {self.prompt_id} did not finish within {timeout} s", prompt_id=self.prompt_id,
                hint="Raise the timeout, or look at the server queue (`comfykit queue`).",
            ) from None
        except asyncio.CancelledError:
            await self._cancel_for_caller()
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

    async def _cancel_for_caller(self) -> None:
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
            self._client._notify("job_cancelled", self.job)
        self._client._forget(self.prompt_id)

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
        client, job = self._client, self.job
        try:
            if self._cancelled:
                self._mark_cancelled()
                raise ExecutionInterrupted(prompt_id=self.prompt_id)
            collected = await asyncio.to_thread(
                finish.collect, client.sync_client, self.prompt_id, include_temp=bool(client.config["output.include_temp"])
            )
            if not isinstance(collected, finish.Finished):
                raise collected.error
            if job.status is JobStatus.QUEUED:  # its start was not seen (a gap): it ran all the same
                job.move(JobStatus.RUNNING, started_at=collected.started_at or job.submitted_at)
            job.history, job.outputs, job.cached_nodes = collected.entry, collected.outputs, collected.cached_nodes
            if client.store_outputs:
                stored = await asyncio.to_thread(
                    finish.store, client.plugin_manager, job, client.sync_client, sinks=client.config.get("output.sinks")
                )
                if not isinstance(stored, finish.Completed):  # the server went away, or a sink could not store
                    raise stored.error
                job.warnings.extend(stored.warnings)
            job.move(JobStatus.COMPLETED, finished_at=collected.finished_at)
            client._notify("job_completed", job)
            return job
        except BaseException as exc:
            if not job.done:
                final = JobStatus.CANCELLED if self._cancelled else JobStatus.FAILED
                job.move(final, finished_at=time.time(), error=str(exc), error_type=type(exc).__name__)
                if final is JobStatus.FAILED:
                    client._notify("job_failed", job, exc)
                else:
                    client._notify("job_cancelled", job)
            raise
        finally:
            client._forget(self.prompt_id)


class AsyncComfyUIClient:
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
        self.connection = self.sync_client.connection
        self.base_url = self.connection.base_url
        self.client_id = self.connection.client_id
        self.ws_url = self.connection.ws_url
        self.secret_mask = self.connection.secret_mask
        self.timeout = self.connection.timeout
        self.store_outputs = store_outputs
        #: whether the WebSocket reconnects after it drops (else waits poll the server)
        self.auto_reconnect = True
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self.connection.headers, auth=self.connection.auth,
            verify=self.connection.verify, timeout=self.connection.timeouts(), transport=transport,
        )
        self._closed = False
        self._session: asyncio.Task[None] | None = None
        self._info: ServerInfo | None = None
        self._jobs: dict[str, AsyncJob] = {}
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
            await self._http.aclose()

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

    def _notify(self, hook: str, *args: Any) -> None:
        if self._closed:
            log.debug("the client is closed: %s for job %s is not called", hook, args[0].job_id)
            return
        client = None if hook == "job_cancelled" else self.sync_client
        call = getattr(self.plugin_manager, hook)
        self._event_thread.submit(call, *args, *([client] if client is not None else []))

    def _forget(self, prompt_id: str) -> None:
        self._jobs.pop(prompt_id, None)
        self.tracker.forget(prompt_id)

    # -- transport -----------------------------------------------------------------------------

    async def _start_session(self) -> None:
        if self._session is None:
            self._session = asyncio.get_running_loop().create_task(asyncio.to_thread(self.sync_client.start_session))
        await asyncio.shield(self._session)

    async def _request(self, method: str, path: str, *, limit: int = MAX_SMALL_BYTES, **options: Any) -> httpx.Response:
        """As :meth:`ComfyUIClient._request <comfykit.ComfyUIClient>`: bounded, with a deadline, no redirects."""
        if self._closed:
            raise ComfyKitError("this client is closed", hint="Create a new AsyncComfyUIClient.")
        await self._start_session()
        url = self.base_url + path
        timeout = options.get("timeout")
        budget = float(timeout) if isinstance(timeout, (int, float)) else self.timeout
        try:
            response = await self._http.send(self._http.build_request(method, path, **options), stream=True)
        except httpx.HTTPError as exc:
            raise _http.send_error(method, url, self.base_url, exc) from None
        failed = response.status_code >= 300
        try:
            reader = BodyReader(method, url, response, MAX_ERROR_BYTES if failed else limit, budget, truncate=failed)
            async for chunk in response.aiter_bytes():
                if reader.add(chunk):
                    break
        except httpx.HTTPError as exc:
            raise reader.failure(exc) from None
        finally:
            await response.aclose()
        answer = _http.buffered(response, reader.body())
        if failed:
            raise _http.status_error(method, url, answer, self.secret_mask)
        return answer

    async def _call(self, call: Call) -> Any:
        """Make one endpoint's request; its checked JSON, or ``None`` for an endpoint that answers none."""
        if call.check is None:
            await self._request(call.method, call.path, limit=call.limit, **call.options)
            return None
        response = await self._request(call.method, call.path, limit=MAX_JSON_BYTES, **call.options)
        return call.check(_http.decode_json(call.method, self.base_url + call.path, response, self.secret_mask),
                          call.where)

    # -- endpoints -----------------------------------------------------------------------------

    async def ping(self, timeout: float = 3.0) -> bool:
        """True when the server answers ``/system_stats`` within ``timeout`` seconds."""
        try:
            await self._request("GET", "/system_stats", timeout=timeout)
        except (TransportError, ServerError):
            return False
        return True

    async def server_info(self) -> ServerInfo:
        """Version, features and whether the jobs API exists; asked once per client."""
        if self._info is None:
            stats = await self._call(_http.system_stats())
            features = await self._answer_or_none(_http.features())
            has_jobs = await self._answer_or_none(_http.jobs_probe(), found=True) is not None
            self._info = ServerInfo(**_http.server_facts(stats, features, has_jobs))
        return self._info

    async def _answer_or_none(self, call: Call, *, found: Any = None) -> Any:
        try:
            answer = await self._call(call)
        except NotFound:
            return None
        return found if found is not None else answer

    async def post_prompt(
        self, workflow: Mapping[str, Any], *, prompt_id: str | None = None, front: bool = False,
        number: float | None = None, extra_data: Mapping[str, Any] | None = None, targets: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """Only the ``POST /prompt``, nothing watched (see :meth:`submit` for a job to wait for)."""
        return await self._call(_http.post_prompt(
            workflow, client_id=self.client_id, api_key=self.connection.api_key, prompt_id=prompt_id, front=front,
            number=number, extra_data=extra_data, targets=targets,
        ))

    async def get_prompt_status(self) -> dict[str, Any]:
        return await self._call(_http.prompt_status())

    async def get_queue(self) -> dict[str, Any]:
        return await self._call(_http.queue())

    async def delete_from_queue(self, prompt_ids: Iterable[str]) -> None:
        await self._call(_http.delete_from_queue(prompt_ids))

    async def clear_queue(self) -> None:
        await self._call(_http.clear_queue())

    async def get_history(
        self, prompt_id: str | None = None, max_items: int | None = None, offset: int | None = None
    ) -> dict[str, Any]:
        return await self._call(_http.history(prompt_id, max_items, offset))

    async def delete_history(self, prompt_ids: Iterable[str]) -> None:
        await self._call(_http.delete_history(prompt_ids))

    async def clear_history(self) -> None:
        await self._call(_http.clear_history())

    async def interrupt_execution(self, prompt_id: str | None = None) -> None:
        await self._call(_http.interrupt(prompt_id))

    async def free_memory(self, *, unload_models: bool = False, free_memory: bool = False) -> None:
        await self._call(_http.free_memory(unload_models=unload_models, free_memory=free_memory))

    async def get_system_stats(self) -> dict[str, Any]:
        return await self._call(_http.system_stats())

    async def get_features(self) -> dict[str, Any]:
        return await self._call(_http.features())

    async def get_embeddings(self) -> list[str]:
        return await self._call(_http.embeddings())

    async def get_extensions(self) -> list[str]:
        return await self._call(_http.extensions())

    async def get_models(self, folder: str | None = None) -> list[str]:
        return await self._call(_http.models(folder))

    async def get_object_info(self, node_class: str | None = None) -> dict[str, Any]:
        """The node catalogue, or one class's entry (``{}`` when unknown); not cached, unlike the sync client's."""
        return await self._call(_http.object_info(node_class))

    async def get_jobs(self, **filters: Any) -> dict[str, Any]:
        """``GET /api/jobs`` (ComfyUI 0.33+) with the filters of :meth:`ComfyUIClient.get_jobs`."""
        await self._require_jobs_api()
        return await self._call(_http.jobs(**filters))

    async def get_job(self, job_id: str) -> dict[str, Any]:
        await self._require_jobs_api()
        return await self._call(_http.job(job_id))

    async def _require_jobs_api(self) -> None:
        info = await self.server_info()
        if not info.has_jobs_api:
            raise _http.jobs_api_missing(self.base_url, info.version)

    async def upload_image(
        self, path_or_bytes: Any, subfolder: str = "", overwrite: bool = False, type: str = "input", *,
        filename: str | None = None,
    ) -> dict[str, Any]:
        """Upload an image; returns the server's ``{"name", "subfolder", "type"}`` (it may rename)."""
        fields = _http.image_fields(subfolder, overwrite, type)
        call = await asyncio.to_thread(_http.upload, "/upload/image", path_or_bytes, filename, fields)  # reads a file
        return await self._call(call)

    async def get_image(self, filename: str, subfolder: str = "", folder_type: str = "output") -> bytes:
        call = _http.view(filename, subfolder, folder_type)
        return (await self._request(call.method, call.path, limit=call.limit, **call.options)).content

    # -- jobs ----------------------------------------------------------------------------------

    async def submit(
        self, workflow: Mapping[str, Any], *, prompt_id: str | None = None, metadata: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncJob:
        """Post an API-format workflow and return its handle once the server accepted it.

        The job is watched and the WebSocket opened before the POST, so no event is missed.
        ``options`` are :meth:`post_prompt`'s (``front``, ``number``, ``extra_data``, ``targets``).
        Cancelled during the POST, the prompt is taken off the server again.
        """
        prompt = _http.prompt_of(workflow)
        await self._ensure_events()
        job = Job(workflow=prompt, prompt_id=prompt_id or new_prompt_id(), server=self.base_url,
                  metadata=dict(metadata or {}), extra_data=dict(options.get("extra_data") or {}))
        handle = AsyncJob(self, job.prompt_id or "", job)
        self._jobs[handle.prompt_id] = handle
        self.tracker.watch(handle.prompt_id, prompt, handle)
        posting = asyncio.get_running_loop().create_task(self.post_prompt(prompt, prompt_id=handle.prompt_id, **options))
        try:
            await asyncio.shield(posting)
        except asyncio.CancelledError:
            # The POST may be on its way: let it end first, or the prompt could land after it was taken off.
            try:
                await posting
            except ComfyKitError as exc:
                log.debug("job %s: the POST cancelled on its way failed (%s); nothing to take off", handle.prompt_id, exc)
            await handle._cancel_for_caller()
            raise
        except BaseException as exc:
            self._forget(handle.prompt_id)
            job.move(JobStatus.FAILED, finished_at=time.time(), error=str(exc), error_type=type(exc).__name__)
            raise
        job.move(JobStatus.QUEUED, submitted_at=time.time(), attempts=1)
        handle.posted = True
        self._notify("job_submitted", job)
        handle._advance()  # it may have started before the POST's answer arrived
        return handle

    async def run(self, workflow: Mapping[str, Any], *, timeout: float | None = None, **options: Any) -> Job:
        """Submit ``workflow``, wait for it and store its outputs through the sinks; the completed Job.

        After ``timeout`` seconds the job is cancelled on the server and :class:`WaitTimeout`
        raised; cancelling the awaiting task cancels it too.  ``options`` are :meth:`submit`'s.
        """
        handle = await self.submit(workflow, **options)
        try:
            return await handle.result(timeout)
        except WaitTimeout:
            await handle._cancel_for_caller()
            raise

    async def wait_for_completion(self, prompt_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Wait until ``prompt_id`` (submitted here, or posted by anyone) ended; its history entry."""
        handle = self._jobs.get(prompt_id)
        adopted = handle is None
        if handle is None:
            await self._ensure_events()
            job = Job(workflow={}, prompt_id=prompt_id, status=JobStatus.QUEUED)
            handle = AsyncJob(self, prompt_id, job, posted=True)
            self._jobs[prompt_id] = handle
            self.tracker.watch(prompt_id, listener=handle)
        try:
            if adopted:
                await asyncio.to_thread(self.tracker.reconcile, [prompt_id])  # it may have ended already
            try:
                await asyncio.wait_for(asyncio.shield(handle._finished.wait()), timeout)
            except asyncio.TimeoutError:
                raise WaitTimeout(f"job {prompt_id} did not finish within {timeout} s", prompt_id=prompt_id) from None
            return await asyncio.to_thread(self.tracker.result, prompt_id)
        finally:
            if adopted:  # a job submitted here stays the submitter's to finish
                self._forget(prompt_id)

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
        # Where the sync client's monitor plugin would open its socket: with the monitor loaded and enabled.
        if self.plugin_manager.is_registered("monitor") and self.config.get("websocket.enable"):
            from comfykit.aio_socket import AsyncEventSocket

            self._socket = AsyncEventSocket(
                self.ws_url, _http.ws_headers(self.connection), self.config, deliver=self._dispatch,
                resync=self._resync, gap=self.tracker.mark_gap, auto_reconnect=lambda: self.auto_reconnect,
            )
            await self._socket.start()
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise(), name="comfykit-aio-supervisor")

    def _dispatch(self, event: Event) -> None:
        # The tracker is quick and never blocks: it runs here, so a job's progress is current when its
        # event is read, and its end (scheduled by the tracker) comes after its last event.
        self.tracker.feed(event)
        handle = self._jobs.get(event.prompt_id or "")
        if handle is not None:
            handle._deliver(event)
        if not self._closed:
            self._event_thread.submit(self.sync_client.notify_event, event)

    def _posted(self) -> list[str]:
        return [prompt_id for prompt_id, handle in self._jobs.items() if handle.posted and not handle.done]

    async def _resync(self) -> None:
        await asyncio.to_thread(self.tracker.mark_gap)
        await self._reconcile()

    async def _reconcile(self) -> None:
        posted = self._posted()
        if posted:
            await asyncio.to_thread(self.tracker.reconcile, posted)

    async def _supervise(self) -> None:
        # One timer for every waiting job: a thousand jobs cost one /queue request per interval.
        poll_interval = float(self.config["websocket.poll_interval"])
        interval = poll_interval
        while True:
            live = self._socket is not None and self._socket.connected
            interval = self.RECONCILE_INTERVAL if live else min(1.0, interval * 1.3) if self._posted() else poll_interval
            await asyncio.sleep(interval)
            try:
                await self._reconcile()
            except (ComfyKitError, JobError) as exc:
                log.warning("could not check %d job(s) with %s: %s", len(self._posted()), self.base_url, exc)


async def run_queue(queue: QueueManager, timeout: float | None = None) -> dict[str, Any]:
    """Run a :class:`~comfykit.QueueManager` batch from async code without blocking the loop; its statistics.

    A batch with retries, several servers, a journal and a window is the queue's work, and
    the queue already waits on its own threads (a fixed few, not one per job), so it is run
    as it is, with the loop awaiting its end in the default executor.  Cancelling the
    awaiting task stops the queue at once: what is in flight is cancelled on the servers.
    """
    loop = asyncio.get_running_loop()
    batch = loop.run_in_executor(None, queue.run, timeout)
    try:
        return await asyncio.shield(batch)
    except asyncio.CancelledError:
        await asyncio.to_thread(queue.stop, False)
        raise
