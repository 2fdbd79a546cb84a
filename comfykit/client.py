"""``ComfyUIClient``: every HTTP endpoint of a ComfyUI server, with typed errors and one connection pool.

The client chooses each ``prompt_id`` itself (a lowercase UUID4, the only form ComfyUI
0.33 accepts), so a lost response can always be checked against the server instead of
being resubmitted blindly.  Credentials (bearer token, basic auth, comfy.org API key)
are sent but never logged and never put into exception messages.  What each endpoint
sends and how its answer is checked lives in :mod:`comfykit._http`, shared with
:class:`comfykit.AsyncComfyUIClient`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import attrs
import httpx

from comfykit import _http, _wire
from comfykit._http import MAX_ERROR_BYTES, MAX_JSON_BYTES, MAX_SMALL_BYTES, Answer, BodyReader, Call
from comfykit.config import Config
from comfykit.errors import ComfyKitError, NotFound, ServerError, TransportError
from comfykit.jobs import new_prompt_id
from comfykit.plugins import PluginManager, open_session
from comfykit.tracking import JobTracker, raise_for_outcome

if TYPE_CHECKING:
    from comfykit.events import Event
    from comfykit.protocols import EventSource

__all__ = ["ComfyUIClient", "ServerInfo", "raise_for_outcome"]  # raise_for_outcome lives in tracking

log = logging.getLogger("comfykit.client")


@attrs.frozen
class ServerInfo:
    """What a server is and supports, detected once per client."""

    version: str | None
    has_jobs_api: bool
    features: dict[str, Any]
    system_stats: dict[str, Any]


class ComfyUIClient:
    """A synchronous client for one ComfyUI server (or the simulator)."""

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        protocol: str | None = None,
        *,
        url: str | None = None,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | str | httpx.Auth | None = None,
        token: str | None = None,
        api_key: str | None = None,
        verify: bool | str | None = None,
        config: Config | str | os.PathLike[str] | None = None,
        plugins: Iterable[object] = (),
        plugin_options: Iterable[str] = (),
        transport: httpx.BaseTransport | None = None,
        client_id: str | None = None,
        plugin_manager: PluginManager | None = None,
    ) -> None:
        overrides = {
            "comfyui.host": host,
            "comfyui.port": port,
            "comfyui.protocol": protocol,
            "comfyui.url": url,
            "comfyui.timeout": timeout,
            "comfyui.token": token,
            "comfyui.api_key": api_key,
        }
        # A QueueManager or a CLI run shares one plugin manager (one session) between its clients.
        self.plugin_manager, self.config = open_session(
            config, plugins=plugins, plugin_options=plugin_options, overrides=overrides, plugin_manager=plugin_manager
        )
        self.connection = _http.connection_settings(
            self.config, headers=headers, auth=auth, verify=verify, client_id=client_id
        )
        self.base_url = self.connection.base_url
        self.client_id = self.connection.client_id
        self.ws_url = self.connection.ws_url
        #: masks credentials in what the server echoes back (a 401 page repeating the headers)
        self.secret_mask = self.connection.secret_mask
        self.timeout = self.connection.timeout
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=self.connection.headers,
            auth=self.connection.auth,
            verify=self.connection.verify,
            timeout=self.connection.timeouts(),
            transport=transport,
        )
        #: plain requests (no upload, no auth flow, no proxy) go over this lighter pool instead of httpx
        self._wire: _wire.Wire | None = None
        if _wire.usable(self.base_url, transport=transport, auth=self.connection.auth):
            # httpx's own headers (its User-Agent, the custom ones); uncompressed answers, since the wire does
            # not inflate (without an Accept-Encoding header any coding would be acceptable).
            wire_headers = {k: v for k, v in self._http.headers.items() if k.lower() != "accept-encoding"}
            wire_headers["Accept-Encoding"] = "identity"
            wire_headers.update(_wire.static_auth_headers(self.connection.auth))
            self._wire = _wire.Wire(self.base_url, wire_headers, verify=self.connection.verify,
                                    timeout=self.connection.timeout, connect_timeout=self.connection.connect_timeout)
        self._closed = False
        self._started = False
        self._info: ServerInfo | None = None
        self._object_info: dict[str, Any] | None = None
        self._tracker: JobTracker | None = None
        self._event_source: EventSource | None = None
        self._event_source_asked = False
        #: whether the event source reconnects after its live channel drops (connect_websocket() sets it)
        self.auto_reconnect = True
        self._callbacks: dict[str, list[Callable[[Event], None]]] = {}
        self._failing_callbacks: set[tuple[int, str]] = set()  # (id(callback), event type) already logged
        self._failing_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------

    def __enter__(self) -> ComfyUIClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._event_source is not None:
                self._event_source.stop()
            if self._started:
                self.plugin_manager.session_finish(self)
        finally:
            if self._wire is not None:
                self._wire.close()
            self._http.close()

    def ws_headers(self) -> dict[str, str]:
        """Headers for the WebSocket handshake: the same credentials and custom headers as HTTP."""
        return _http.ws_headers(self.connection)

    def start_session(self) -> None:
        """Run the plugins' ``comfykit_session_start`` for this client, once (the first request does it)."""
        if not self._started:
            self._started = True
            self.plugin_manager.session_start(self)

    # -- transport -----------------------------------------------------------------

    def _request(self, method: str, path: str, *, limit: int = MAX_SMALL_BYTES, **kwargs: Any) -> Answer:
        """Send a request and read its answer, refusing bodies larger than ``limit`` or slower than the timeout.

        The body is streamed so that a hostile or broken server cannot make the client hold
        more than ``limit`` bytes (a 100 MB ``/history``), and a body that never ends (one byte
        at a time, or a Content-Length never honoured) ends in an error within the timeout.
        A redirect is an error: following it would send the credentials to another address.
        """
        if self._closed:
            raise ComfyKitError("this client is closed", hint="Create a new ComfyUIClient.")
        self.start_session()
        url = self.base_url + path
        timeout = kwargs.get("timeout")
        budget = float(timeout) if isinstance(timeout, (int, float)) else self.timeout
        try:
            response = self._send(method, path, kwargs)
        except httpx.HTTPError as exc:
            raise _http.send_error(method, url, self.base_url, exc) from None
        try:
            failed = response.status_code >= 300
            # An error page is only read for its message: keep its start, drop the rest.
            body = self._read_body(method, url, response, MAX_ERROR_BYTES if failed else limit, budget, truncate=failed)
        finally:
            response.close()
        answer = Answer(response.status_code, response.headers, body)
        if failed:
            raise _http.status_error(method, url, answer, self.secret_mask)
        return answer

    def _send(self, method: str, path: str, options: dict[str, Any]) -> httpx.Response | _wire.WireResponse:
        """Send a request, its body left to read: over the wire pool when it can carry it, else httpx."""
        if self._wire is not None and options.keys() <= _wire.WIRE_OPTIONS:
            return self._wire.send(method, path, **options)
        return self._http.send(self._http.build_request(method, path, **options), stream=True)

    def _read_body(
        self, method: str, url: str, response: httpx.Response | _wire.WireResponse, limit: int, budget: float, *,
        truncate: bool
    ) -> bytes:
        reader = BodyReader(method, url, response, limit, budget, truncate=truncate)
        try:
            for chunk in response.iter_bytes():
                if reader.add(chunk):
                    break
        except httpx.HTTPError as exc:
            raise reader.failure(exc) from None
        return reader.body()

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, limit=MAX_JSON_BYTES, **kwargs)
        return _http.decode_json(method, self.base_url + path, response, self.secret_mask)

    def _call(self, call: Call) -> Any:
        """Make one endpoint's request; its checked JSON, or ``None`` for an endpoint that answers none."""
        if call.check is None:
            self._request(call.method, call.path, limit=call.limit, **call.options)
            return None
        return call.check(self._json(call.method, call.path, **call.options), call.where)

    # -- server facts ------------------------------------------------------------------

    def ping(self, timeout: float = 3.0) -> bool:
        """True when the server answers ``/system_stats`` within ``timeout`` seconds."""
        try:
            self._request("GET", "/system_stats", timeout=timeout)
        except (TransportError, ServerError):
            return False
        return True

    def server_info(self) -> ServerInfo:
        """Version, features and whether the jobs API exists; asked once per client."""
        if self._info is None:
            stats = self.get_system_stats()
            try:
                features = self.get_features()
            except NotFound:
                features = {}
            try:
                self._call(_http.jobs_probe())
                has_jobs = True
            except NotFound:
                has_jobs = False
            self._info = ServerInfo(**_http.server_facts(stats, features, has_jobs))
        return self._info

    def required_frontend_version(self) -> str | None:
        """The editor version the server expects (``/system_stats`` → ``system.required_frontend_version``).

        Read with :meth:`server_info`, so once per client; ``None`` when the server does not say.
        Editor workflows are converted with that frontend's rules.
        """
        stats = self.server_info().system_stats
        system = stats.get("system") if isinstance(stats, dict) else None
        version = system.get("required_frontend_version") if isinstance(system, dict) else None
        return version if isinstance(version, str) and version else None

    # -- prompts --------------------------------------------------------------------------

    def queue_prompt(self, workflow: Mapping[str, Any], *, prompt_id: str | None = None, **options: Any) -> dict[str, Any]:
        """Queue an API-format workflow to wait for; returns ``{"prompt_id", "number", "node_errors"}``.

        The prompt is watched and the event source started *before* it is posted (events
        are never replayed), so :meth:`wait_for_completion` misses nothing; then
        :meth:`post_prompt` posts it (``options``: its ``front``, ``number``, ``extra_data``, ``targets``).
        """
        prompt = _http.prompt_of(workflow)
        prompt_id = prompt_id or new_prompt_id()
        self.tracker.watch(prompt_id, prompt)
        self.ensure_event_source()
        return self.post_prompt(prompt, prompt_id=prompt_id, **options)

    def post_prompt(
        self,
        workflow: Mapping[str, Any],
        *,
        prompt_id: str | None = None,
        front: bool = False,
        number: float | None = None,
        extra_data: Mapping[str, Any] | None = None,
        targets: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """Only the ``POST /prompt``, nothing watched: for a caller that tracks the prompt itself (the queue)."""
        return self._call(_http.post_prompt(
            workflow, client_id=self.client_id, api_key=self.connection.api_key, prompt_id=prompt_id, front=front,
            number=number, extra_data=extra_data, targets=targets,
        ))

    def get_prompt_status(self) -> dict[str, Any]:
        return self._call(_http.prompt_status())

    def get_queue(self) -> dict[str, Any]:
        return self._call(_http.queue())

    def delete_from_queue(self, prompt_ids: Iterable[str]) -> None:
        self._call(_http.delete_from_queue(prompt_ids))

    def clear_queue(self) -> None:
        self._call(_http.clear_queue())

    def get_history(
        self, prompt_id: str | None = None, max_items: int | None = None, offset: int | None = None
    ) -> dict[str, Any]:
        return self._call(_http.history(prompt_id, max_items, offset))

    def delete_history(self, prompt_ids: Iterable[str]) -> None:
        self._call(_http.delete_history(prompt_ids))

    def clear_history(self) -> None:
        self._call(_http.clear_history())

    def interrupt_execution(self, prompt_id: str | None = None) -> None:
        self._call(_http.interrupt(prompt_id))

    def free_memory(self, *, unload_models: bool = False, free_memory: bool = False) -> None:
        self._call(_http.free_memory(unload_models=unload_models, free_memory=free_memory))

    # -- information -------------------------------------------------------------------------

    def get_system_stats(self) -> dict[str, Any]:
        return self._call(_http.system_stats())

    def get_features(self) -> dict[str, Any]:
        return self._call(_http.features())

    def get_embeddings(self) -> list[str]:
        return self._call(_http.embeddings())

    def get_extensions(self) -> list[str]:
        return self._call(_http.extensions())

    def get_models(self, folder: str | None = None) -> list[str]:
        return self._call(_http.models(folder))

    def get_object_info(self, node_class: str | None = None, *, refresh: bool = False) -> dict[str, Any]:
        """The node catalogue (cached per client), or one class's entry (``{}`` when unknown)."""
        if refresh:
            self._object_info = None
        if node_class is not None:
            if self._object_info is not None and node_class in self._object_info:
                return {node_class: self._object_info[node_class]}
            return self._call(_http.object_info(node_class))
        if self._object_info is None:
            self._object_info = self._call(_http.object_info())
        return self._object_info

    def invalidate_object_info(self) -> None:
        self._object_info = None

    # -- jobs API (ComfyUI 0.33+) -------------------------------------------------------------

    def _require_jobs_api(self) -> None:
        if not self.server_info().has_jobs_api:
            raise _http.jobs_api_missing(self.base_url, self.server_info().version)

    def get_jobs(
        self,
        *,
        status: str | Iterable[str] | None = None,
        workflow_id: str | None = None,
        sort_by: str | None = None,
        sort_order: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> dict[str, Any]:
        self._require_jobs_api()
        return self._call(_http.jobs(status=status, workflow_id=workflow_id, sort_by=sort_by, sort_order=sort_order,
                                     limit=limit, offset=offset))

    def get_job(self, job_id: str) -> dict[str, Any]:
        self._require_jobs_api()
        return self._call(_http.job(job_id))

    def cancel_job(self, job_id: str) -> bool:
        self._require_jobs_api()
        return bool(self._call(_http.cancel_job(job_id)).get("cancelled"))

    def cancel_jobs(self, job_ids: Iterable[str]) -> bool:
        self._require_jobs_api()
        return bool(self._call(_http.cancel_jobs(job_ids)).get("cancelled"))

    # -- files ------------------------------------------------------------------------------------

    def upload_image(
        self, path_or_bytes: Any, subfolder: str = "", overwrite: bool = False, type: str = "input", *,
        filename: str | None = None,
    ) -> dict[str, Any]:
        """Upload an image; returns the server's ``{"name", "subfolder", "type"}`` (it may rename)."""
        fields = _http.image_fields(subfolder, overwrite, type)
        return self._call(_http.upload("/upload/image", path_or_bytes, filename, fields))

    def upload_mask(
        self, path_or_bytes: Any, original_ref: Mapping[str, Any], subfolder: str = "", overwrite: bool = False,
        type: str = "input", *, filename: str | None = None,
    ) -> dict[str, Any]:
        fields = _http.mask_fields(original_ref, subfolder, overwrite, type)
        return self._call(_http.upload("/upload/mask", path_or_bytes, filename, fields))

    def get_image(self, filename: str, subfolder: str = "", folder_type: str = "output") -> bytes:
        call = _http.view(filename, subfolder, folder_type)
        return self._request(call.method, call.path, limit=call.limit, **call.options).content

    @contextmanager
    def stream_view(
        self, filename: str, subfolder: str = "", folder_type: str = "output", *, offset: int = 0
    ) -> Iterator[httpx.Response]:
        """Stream ``/view``; with ``offset`` a Range request (check ``status_code == 206``).

        Network errors, also those raised while the body is read inside the ``with``
        block, are raised as :class:`RequestTimeout` or :class:`ServerUnreachable`.
        """
        call = _http.view(filename, subfolder, folder_type)
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            response = self._stream(call, headers)
        except httpx.TransportError as exc:
            raise _http.download_error(filename, exc, started=False) from None
        try:
            if response.status_code >= 300:
                url = self.base_url + "/view"
                body = self._read_body("GET", url, response, MAX_ERROR_BYTES, self.timeout, truncate=True)
                raise _http.status_error("GET", url, Answer(response.status_code, response.headers, body),
                                         self.secret_mask)
            # Errors raised while the caller reads the body arrive here too: they leave as comfykit errors.
            try:
                yield response
            except httpx.TransportError as exc:
                raise _http.download_error(filename, exc, started=True) from None
        finally:
            response.close()

    def _stream(self, call: Call, headers: dict[str, str]) -> httpx.Response:
        if self._wire is None:
            return self._http.send(self._http.build_request(call.method, call.path, headers=headers, **call.options),
                                   stream=True)
        answer = self._wire.send(call.method, call.path, headers=headers, **call.options)
        return httpx.Response(answer.status_code, headers=answer.raw_headers(), stream=_WireStream(answer))

    # -- completion ------------------------------------------------------------------------------------

    def wait_for_completion(self, prompt_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Wait until ``prompt_id`` finished; return its history entry.

        Raises :class:`ExecutionError` when a node failed, :class:`ExecutionInterrupted`
        when it was interrupted, :class:`JobLost` when the server forgot the job, and
        :class:`WaitTimeout` after ``timeout`` seconds.  Live events come from the
        event source (the WebSocket monitor); without one the server is polled.
        A prompt posted with :meth:`post_prompt` (not watched) is watched from
        here on, and checked against the server at once.
        """
        self.ensure_event_source()
        return self.tracker.wait(prompt_id, timeout)

    # -- live events -------------------------------------------------------------------------------

    @property
    def tracker(self) -> JobTracker:
        if self._tracker is None:
            self._tracker = JobTracker(self)
        return self._tracker

    @property
    def event_source(self) -> EventSource | None:
        """The active event source, once started (``None`` before the first submission)."""
        return self._event_source

    def ensure_event_source(self) -> EventSource | None:
        """Start the event source a plugin provides (the monitor's WebSocket), once per client."""
        if self._event_source is None and not self._event_source_asked:
            self._event_source_asked = True
            source = self.plugin_manager.event_source(self)
            if source is not None:
                source.start()
                self._event_source = source
        return self._event_source

    def connect_websocket(self, auto_reconnect: bool = True) -> EventSource | None:
        """Open the live-event channel now (the original tool's call); returns the event source.

        With the monitor plugin this is the WebSocket, opened before returning (when it
        cannot be opened it is retried in the background, and waits poll meanwhile);
        ``auto_reconnect=False`` stops it from reconnecting after a drop, so waits poll
        the server from then on.  Without the monitor (``-p no:monitor``,
        ``websocket.enable: false``) there is no socket to open: the polling fallback
        starts instead and the call succeeds, but no ``progress`` events arrive.
        Calling it again changes ``auto_reconnect`` and keeps the running channel.
        Submitting a prompt opens the channel anyway; this only makes it explicit.
        """
        self.auto_reconnect = auto_reconnect
        if self._event_source is None:
            self._event_source_asked = False  # connect again after disconnect_websocket()
        source = self.ensure_event_source()
        if source is not None and source.name != "websocket":
            log.info("no WebSocket event source is installed (monitor disabled); %s delivers the events", source.name)
        return source

    def disconnect_websocket(self) -> None:
        """Close the live-event channel (safe to call twice); later waits poll until connect_websocket()."""
        source, self._event_source = self._event_source, None
        self._event_source_asked = True  # a later submission must not quietly reopen it
        if source is not None:
            source.stop()

    def on(self, event_type: str, callback: Callable[[Event], None]) -> None:
        """Call ``callback(event)`` for every event of ``event_type`` (``"*"``: every event).

        The event is typed (:mod:`comfykit.events`) and also reads as the raw message,
        ``event["type"]`` and ``event["data"]``.  A callback that raises is logged once
        per event type (then at debug level), and never stops the other consumers.
        """
        self._callbacks.setdefault(event_type, []).append(callback)

    def off(self, event_type: str, callback: Callable[[Event], None]) -> None:
        callbacks = self._callbacks.get(event_type, [])
        if callback in callbacks:
            callbacks.remove(callback)
            with self._failing_lock:
                self._failing_callbacks = {key for key in self._failing_callbacks if key[0] != id(callback)}

    def dispatch_event(self, event: Event) -> None:
        """Hand one event to the event hook, the ``on()`` callbacks and the tracker (event sources call this)."""
        self.notify_event(event)
        self.tracker.feed(event)

    def notify_event(self, event: Event) -> None:
        """Hand one event to the event hook and the ``on()`` callbacks only (the async client feeds its tracker itself)."""
        try:
            self.plugin_manager.handle_event(event, self)
        except Exception:
            log.exception("a comfykit_handle_event implementation failed on %s", event.type)
        for callback in [*self._callbacks.get(event.type, []), *self._callbacks.get("*", [])]:
            try:
                callback(event)
            except Exception:
                self._callback_failed(callback, event)

    def _callback_failed(self, callback: Callable[[Event], None], event: Event) -> None:
        # A callback broken for one kind of event fails on every frame of it (16 per sampler run):
        # the first traceback says everything, the rest would bury the log.
        key = (id(callback), event.type)
        with self._failing_lock:
            first = key not in self._failing_callbacks
            self._failing_callbacks.add(key)
        name = getattr(callback, "__qualname__", repr(callback))
        if first:
            log.exception("the on(%r) callback %s failed; its further failures on %r events are logged at debug level",
                          event.type, name, event.type)
        else:
            log.debug("the on(%r) callback %s failed again", event.type, name, exc_info=True)


class _WireStream(httpx.SyncByteStream):
    """The body of a wire answer as httpx reads a streamed body (``stream_view`` answers an ``httpx.Response``)."""

    def __init__(self, answer: _wire.WireResponse) -> None:
        self._answer = answer

    def __iter__(self) -> Iterator[bytes]:
        return self._answer.iter_bytes()

    def close(self) -> None:
        self._answer.close()
