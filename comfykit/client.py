"""``ComfyUIClient``: every HTTP endpoint of a ComfyUI server, with typed errors and one connection pool.

The client chooses each ``prompt_id`` itself (a lowercase UUID4, the only form ComfyUI
0.33 accepts), so a lost response can always be checked against the server instead of
being resubmitted blindly.  Credentials (bearer token, basic auth, comfy.org API key)
are sent but never logged and never put into exception messages.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import attrs
import httpx

from comfykit.answers import check_history, check_list, check_mapping, check_prompt_answer, check_queue
from comfykit.config import Config
from comfykit.errors import (
    ComfyKitError,
    ConfigError,
    FeatureUnavailable,
    NotFound,
    PromptRejected,
    ProtocolError,
    RequestTimeout,
    ServerError,
    ServerUnreachable,
    TransportError,
)
from comfykit.jobs import new_prompt_id
from comfykit.parsing import JSONBudgetExceeded, load_json, parse_retry_after
from comfykit.plugins import PluginManager, open_session
from comfykit.secrets import SecretMask, secrets_of
from comfykit.tracking import JobTracker, raise_for_outcome

if TYPE_CHECKING:
    from comfykit.events import Event
    from comfykit.protocols import EventSource

__all__ = ["ComfyUIClient", "ServerInfo", "raise_for_outcome"]  # raise_for_outcome lives in tracking

log = logging.getLogger("comfykit.client")

#: JSON answers larger than this are refused: a hostile or broken server cannot exhaust memory.
MAX_JSON_BYTES = 64 * 1024 * 1024
#: only this much of an error page is kept (for the exception's message and ``body``)
MAX_ERROR_BYTES = 1024 * 1024
#: answers that carry no data (POST /queue, /interrupt, /free, /history deletes) are refused past this
MAX_SMALL_BYTES = 1024 * 1024
#: ``get_image`` holds the file in memory; larger outputs are for ``stream_view`` (the download plugin)
MAX_IMAGE_BYTES = 512 * 1024 * 1024
#: headers describing the wire form of a body, dropped once it is read and decoded
_BODY_HEADERS = ("content-encoding", "content-length", "transfer-encoding")


@attrs.frozen
class ServerInfo:
    """What a server is and supports, detected once per client."""

    version: str | None
    has_jobs_api: bool
    features: dict[str, Any]
    system_stats: dict[str, Any]


def _checked_url(url: str) -> str:
    """``url`` when it is an http(s) URL with a host; otherwise a ConfigError saying how to write it."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError as exc:
        raise ConfigError(f"the server URL {_redact_safely(url)!r} is not valid: {exc}", key="comfyui.url",
                          hint="Write it as http://HOST:PORT, e.g. http://127.0.0.1:8188.") from None
    rest = url.split("://", 1)[-1].lstrip("/")
    if parts.scheme in ("http", "https") and parts.hostname:
        return url
    hint = "Write it as http://HOST:PORT, e.g. http://127.0.0.1:8188."
    if rest and not rest.startswith(("http:", "https:")):
        hint = f"Did you mean {_redact_safely('http://' + rest)!r}?"
    raise ConfigError(f"the server URL {_redact_safely(url)!r} needs an http:// or https:// scheme and a host",
                      key="comfyui.url", hint=hint)


def _redact_safely(url: str) -> str:
    # A URL too broken to parse is shown up to its "@", so a password before it never appears.
    return url.rpartition("@")[2] if "@" in url else url


def _split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """``url`` without its user information, and the (user, password) it held, if any."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    netloc = parts.netloc.rpartition("@")[2]
    credentials = (unquote(parts.username or ""), unquote(parts.password or ""))
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), credentials


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.username or parts.password:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


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
        section = self.config.section("comfyui")
        if section["url"]:
            self.base_url = str(section["url"]).rstrip("/")
        else:
            self.base_url = f"{section['protocol']}://{section['host']}:{section['port']}"
        # Credentials in the URL become basic auth, so that base_url (shown in logs, errors,
        # --json and sidecars) never carries a password.
        self.base_url, url_credentials = _split_credentials(_checked_url(self.base_url))
        self.client_id = client_id or new_prompt_id()
        scheme = "wss" if self.base_url.startswith("https") else "ws"
        self.ws_url = f"{scheme}{self.base_url[self.base_url.index(':'):]}/ws?clientId={quote(self.client_id)}"
        self._api_key = section["api_key"]
        self._headers = {str(k): str(v) for k, v in (section["headers"] or {}).items()}
        self._headers.update(headers or {})
        self._auth: httpx.Auth | None = None
        bearer = section["token"]
        if isinstance(auth, str):
            bearer = auth
        elif isinstance(auth, tuple):
            self._auth = httpx.BasicAuth(*auth)
        elif isinstance(auth, httpx.Auth):
            self._auth = auth
        elif section["username"] and section["password"]:
            self._auth = httpx.BasicAuth(section["username"], section["password"])
        if url_credentials is not None:
            if self._auth is not None:
                raise ConfigError("the server URL carries a user and password, and basic auth is configured too",
                                  key="comfyui.url", hint="Keep one of them: the URL's, or comfyui.username/password.")
            self._auth = httpx.BasicAuth(*url_credentials)
        if bearer and self._auth is not None:
            raise ConfigError(
                "both a bearer token and basic auth (or another httpx.Auth) are configured; a request carries one "
                "Authorization header, so one of them would be dropped",
                key="comfyui.token",
                hint="Keep the one your server or proxy expects: comfyui.token, or comfyui.username/password.",
            )
        if bearer:
            self._headers["Authorization"] = f"Bearer {bearer}"
        secret_keys = [key.dotted for key in self.config.registry if key.secret]
        hidden = secrets_of(dict(self.config), secret_keys) | set(self._headers.values())
        if url_credentials is not None:
            hidden.add(url_credentials[1])
        if isinstance(auth, tuple):
            hidden.add(auth[1])
        #: masks credentials in what the server echoes back (a 401 page repeating the headers)
        self.secret_mask = SecretMask(hidden)
        if verify is None:
            verify = section["ca_bundle"] or section["verify"]
        self.timeout = float(section["timeout"])
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=self._headers,
            auth=self._auth,
            verify=verify,
            timeout=httpx.Timeout(self.timeout, connect=float(section["connect_timeout"])),
            transport=transport,
        )
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
            self._http.close()

    def ws_headers(self) -> dict[str, str]:
        """Headers for the WebSocket handshake: the same credentials and custom headers as HTTP.

        An ``httpx.Auth`` (basic auth included) is asked for the headers it puts on a first
        request to the socket's address, through its public ``sync_auth_flow``; an auth that
        only answers challenges (digest) adds none, and the handshake goes without it.
        """
        headers = dict(self._headers)
        if self._auth is not None:
            probe = httpx.Request("GET", self.base_url + "/ws", headers=headers)
            flow = self._auth.sync_auth_flow(probe)
            try:
                first = next(flow)
            finally:
                flow.close()
            known = {k.lower() for k in headers} | {"host", "content-length"}
            for raw_key, raw_value in first.headers.raw:  # raw: names as the auth spelled them
                key = raw_key.decode("latin-1")
                if key.lower() not in known:
                    headers[key] = raw_value.decode("latin-1")
        return headers

    # -- transport -----------------------------------------------------------------

    def _request(self, method: str, path: str, *, limit: int = MAX_SMALL_BYTES, **kwargs: Any) -> httpx.Response:
        """Send a request and read its answer, refusing bodies larger than ``limit`` or slower than the timeout.

        The body is streamed so that a hostile or broken server cannot make the client hold
        more than ``limit`` bytes (a 100 MB ``/history``), and a body that never ends (one byte
        at a time, or a Content-Length never honoured) ends in an error within the timeout.
        A redirect is an error: following it would send the credentials to another address.
        """
        if self._closed:
            raise ComfyKitError("this client is closed", hint="Create a new ComfyUIClient.")
        if not self._started:
            self._started = True
            self.plugin_manager.session_start(self)
        url = self.base_url + path
        timeout = kwargs.get("timeout")
        budget = float(timeout) if isinstance(timeout, (int, float)) else self.timeout
        try:
            response = self._http.send(self._http.build_request(method, path, **kwargs), stream=True)
        except httpx.TimeoutException as exc:
            raise RequestTimeout(
                f"{method} {_redact(url)} timed out ({type(exc).__name__})",
                url=_redact(url),
                hint="The server is busy or unreachable; raise comfyui.timeout if it is just slow.",
            ) from None
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise ServerUnreachable(
                f"cannot reach ComfyUI at {_redact(self.base_url)}: {type(exc).__name__}: {exc}",
                url=_redact(url),
                hint="Is ComfyUI running there? Check the URL (--server / COMFYKIT_URL) and the network.",
            ) from None
        try:
            failed = response.status_code >= 300
            if failed:
                # An error page is only read for its message: keep its start, drop the rest.
                body = self._read_body(method, url, response, MAX_ERROR_BYTES, budget, truncate=True)
            else:
                body = self._read_body(method, url, response, limit, budget, truncate=False)
        finally:
            response.close()
        # A fresh, fully read response: the streamed one cannot be read again once closed.
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _BODY_HEADERS]
        answer = httpx.Response(response.status_code, headers=headers, content=body, request=response.request)
        if failed:
            self._raise_for_status(method, url, answer)
        return answer

    def _read_body(
        self, method: str, url: str, response: httpx.Response, limit: int, budget: float, *, truncate: bool
    ) -> bytes:
        where = f"{method} {_redact(url)}"
        declared = response.headers.get("Content-Length", "")
        if not truncate and declared.isdigit() and int(declared) > limit:
            raise ProtocolError(
                f"{where}: answer of {int(declared)} bytes is too large (limit {limit})", url=_redact(url),
                hint="Is this URL a ComfyUI server? A real answer is far smaller.",
            )
        deadline = time.monotonic() + budget
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > limit:
                    if truncate:
                        chunks.append(chunk[: len(chunk) - (size - limit)])
                        break
                    raise ProtocolError(
                        f"{where}: answer is too large (more than {limit} bytes)", url=_redact(url),
                        hint="Is this URL a ComfyUI server? A real answer is far smaller.",
                    )
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise RequestTimeout(
                        f"{where}: the answer did not end within {budget} s", url=_redact(url),
                        hint="The server keeps sending without finishing; raise comfyui.timeout if it is just slow.",
                    )
        except httpx.TimeoutException as exc:
            raise RequestTimeout(f"{where}: the answer stalled ({type(exc).__name__})", url=_redact(url),
                                 hint="The server stopped sending mid-answer; raise comfyui.timeout if it is just slow.",
                                 ) from None
        except httpx.RemoteProtocolError as exc:
            raise ProtocolError(f"{where}: the answer broke off: {exc}", url=_redact(url),
                                hint="The server closed the connection before the end of its answer.") from None
        except (httpx.ReadError, httpx.DecodingError) as exc:
            raise ProtocolError(f"{where}: the answer could not be read: {type(exc).__name__}: {exc}",
                                url=_redact(url)) from None
        return b"".join(chunks)

    def _raise_for_status(self, method: str, url: str, response: httpx.Response) -> None:
        body: Any
        try:
            body = load_json(response.content)
        except ValueError:
            body = response.text[:2000]
        body = self.secret_mask.data(body)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        status = response.status_code
        where = f"{method} {_redact(url)}"
        if status < 400:
            location = _redact(response.headers.get("Location", "")) or "nowhere"
            raise ServerError(
                f"{where} answered a redirect (HTTP {status} to {location}), which comfykit does not follow",
                status_code=status, url=_redact(url), body=body,
                hint="Credentials must not follow a redirect to another address: point the client at the "
                     "server's real address (the one the redirect names, if you trust it).",
            )
        if status == 404:
            raise NotFound(f"{where}: not found (404)", status_code=status, url=_redact(url), body=body)
        if isinstance(body, dict) and isinstance(body.get("error"), dict) and "node_errors" in body:
            raise PromptRejected(
                status_code=status, error=body["error"], node_errors=body.get("node_errors"), url=_redact(url), body=body
            )
        detail = body.get("error") if isinstance(body, dict) else body
        raise ServerError(
            f"{where} failed with HTTP {status}: {str(detail).strip()[:500]}",
            status_code=status,
            url=_redact(url),
            body=body,
            retry_after=retry_after,
            hint="The server had an internal error; it may succeed if retried." if status >= 500 else None,
        )

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, limit=MAX_JSON_BYTES, **kwargs)
        if not response.content:
            return None
        try:
            return load_json(response.content)
        except JSONBudgetExceeded as exc:
            raise ProtocolError(f"{method} {_redact(self.base_url + path)}: {exc}", url=_redact(self.base_url + path),
                                hint="Is this URL a ComfyUI server? A real answer is far smaller.") from None
        except ValueError:
            raise ProtocolError(
                f"{method} {_redact(self.base_url + path)} did not answer JSON: {self.secret_mask.text(response.text[:200])!r}",
                url=_redact(self.base_url + path),
                hint="Is this URL a ComfyUI server (and not a proxy's error page)?",
            ) from None

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
                self._request("GET", "/api/jobs", params={"limit": 1})
                has_jobs = True
            except NotFound:
                has_jobs = False
            system = stats.get("system")
            version = system.get("comfyui_version") if isinstance(system, Mapping) else None
            self._info = ServerInfo(version=version, has_jobs_api=has_jobs, features=features or {}, system_stats=stats)
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
        prompt = workflow["prompt"] if "prompt" in workflow and isinstance(workflow["prompt"], Mapping) else workflow
        prompt_id = prompt_id or new_prompt_id()
        self.tracker.watch(prompt_id, dict(prompt))
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
        prompt = workflow["prompt"] if "prompt" in workflow and isinstance(workflow["prompt"], Mapping) else workflow
        body: dict[str, Any] = {
            "prompt": prompt,
            "client_id": self.client_id,
            "prompt_id": prompt_id or new_prompt_id(),
        }
        extra = dict(extra_data or {})
        if self._api_key:
            extra.setdefault("api_key_comfy_org", self._api_key)
        if extra:
            body["extra_data"] = extra
        if front:
            body["front"] = True
        if number is not None:
            body["number"] = number
        if targets is not None:
            body["partial_execution_targets"] = list(targets)
        return check_prompt_answer(self._json("POST", "/prompt", json=body), "POST /prompt")

    def get_prompt_status(self) -> dict[str, Any]:
        return check_mapping(self._json("GET", "/prompt"), "GET /prompt")

    def get_queue(self) -> dict[str, Any]:
        return check_queue(self._json("GET", "/queue"), "GET /queue")

    def delete_from_queue(self, prompt_ids: Iterable[str]) -> None:
        self._request("POST", "/queue", json={"delete": list(prompt_ids)})

    def clear_queue(self) -> None:
        self._request("POST", "/queue", json={"clear": True})

    def get_history(
        self, prompt_id: str | None = None, max_items: int | None = None, offset: int | None = None
    ) -> dict[str, Any]:
        if prompt_id is not None:
            return check_history(self._json("GET", f"/history/{quote(prompt_id, safe='')}"), "GET /history/{id}")
        params = {k: v for k, v in {"max_items": max_items, "offset": offset}.items() if v is not None}
        return check_history(self._json("GET", "/history", params=params), "GET /history")

    def delete_history(self, prompt_ids: Iterable[str]) -> None:
        self._request("POST", "/history", json={"delete": list(prompt_ids)})

    def clear_history(self) -> None:
        self._request("POST", "/history", json={"clear": True})

    def interrupt_execution(self, prompt_id: str | None = None) -> None:
        self._request("POST", "/interrupt", json={"prompt_id": prompt_id} if prompt_id else None)

    def free_memory(self, *, unload_models: bool = False, free_memory: bool = False) -> None:
        self._request("POST", "/free", json={"unload_models": unload_models, "free_memory": free_memory})

    # -- information -------------------------------------------------------------------------

    def get_system_stats(self) -> dict[str, Any]:
        return check_mapping(self._json("GET", "/system_stats"), "GET /system_stats")

    def get_features(self) -> dict[str, Any]:
        return check_mapping(self._json("GET", "/features"), "GET /features")

    def get_embeddings(self) -> list[str]:
        return check_list(self._json("GET", "/embeddings"), "GET /embeddings")

    def get_extensions(self) -> list[str]:
        return check_list(self._json("GET", "/extensions"), "GET /extensions")

    def get_models(self, folder: str | None = None) -> list[str]:
        path = "/models" if folder is None else f"/models/{quote(folder, safe='')}"
        return check_list(self._json("GET", path), f"GET {path}")

    def get_object_info(self, node_class: str | None = None, *, refresh: bool = False) -> dict[str, Any]:
        """The node catalogue (cached per client), or one class's entry (``{}`` when unknown)."""
        if refresh:
            self._object_info = None
        if node_class is not None:
            if self._object_info is not None and node_class in self._object_info:
                return {node_class: self._object_info[node_class]}
            return check_mapping(self._json("GET", f"/object_info/{quote(node_class, safe='')}"), "GET /object_info/{class}")
        if self._object_info is None:
            self._object_info = check_mapping(self._json("GET", "/object_info"), "GET /object_info")
        return self._object_info

    def invalidate_object_info(self) -> None:
        self._object_info = None

    # -- jobs API (ComfyUI 0.33+) -------------------------------------------------------------

    def _require_jobs_api(self) -> None:
        if not self.server_info().has_jobs_api:
            raise FeatureUnavailable(
                f"the server at {_redact(self.base_url)} (ComfyUI {self.server_info().version}) has no jobs API",
                status_code=404,
                hint="The jobs API arrived in newer ComfyUI releases; use get_queue()/get_history() instead.",
            )

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
        if status is not None and not isinstance(status, str):
            status = ",".join(status)
        params = {
            k: v
            for k, v in {
                "status": status, "workflow_id": workflow_id, "sort_by": sort_by, "sort_order": sort_order,
                "limit": limit, "offset": offset,
            }.items()
            if v is not None
        }
        return check_mapping(self._json("GET", "/api/jobs", params=params), "GET /api/jobs")

    def get_job(self, job_id: str) -> dict[str, Any]:
        self._require_jobs_api()
        return check_mapping(self._json("GET", f"/api/jobs/{quote(job_id, safe='')}"), "GET /api/jobs/{id}")

    def cancel_job(self, job_id: str) -> bool:
        self._require_jobs_api()
        answer = check_mapping(self._json("POST", f"/api/jobs/{quote(job_id, safe='')}/cancel"), "POST /api/jobs/{id}/cancel")
        return bool(answer.get("cancelled"))

    def cancel_jobs(self, job_ids: Iterable[str]) -> bool:
        self._require_jobs_api()
        answer = check_mapping(self._json("POST", "/api/jobs/cancel", json={"job_ids": list(job_ids)}), "POST /api/jobs/cancel")
        return bool(answer.get("cancelled"))

    # -- files ------------------------------------------------------------------------------------

    def _upload(self, path: str, data: Any, filename: str | None, fields: dict[str, str]) -> dict[str, Any]:
        if isinstance(data, (str, os.PathLike)):
            source = Path(data)
            if not source.is_file():
                raise ComfyKitError(f"cannot upload {source}: no such file", hint="Check the path.")
            content = source.read_bytes()
            filename = filename or source.name
        elif isinstance(data, (bytes, bytearray)):
            content = bytes(data)
            filename = filename or "upload.png"
        elif hasattr(data, "save"):  # a PIL image
            import io

            buffer = io.BytesIO()
            data.save(buffer, format="PNG")
            content = buffer.getvalue()
            filename = filename or "upload.png"
        else:
            raise TypeError(f"cannot upload a {type(data).__name__}: give a path, bytes or a PIL image")
        return check_mapping(self._json("POST", path, files={"image": (filename, content, "application/octet-stream")},
                                        data=fields), f"POST {path}")

    def upload_image(
        self, path_or_bytes: Any, subfolder: str = "", overwrite: bool = False, type: str = "input", *,
        filename: str | None = None,
    ) -> dict[str, Any]:
        """Upload an image; returns the server's ``{"name", "subfolder", "type"}`` (it may rename)."""
        fields = {"subfolder": subfolder, "type": type, "overwrite": "true" if overwrite else "false"}
        return self._upload("/upload/image", path_or_bytes, filename, fields)

    def upload_mask(
        self, path_or_bytes: Any, original_ref: Mapping[str, Any], subfolder: str = "", overwrite: bool = False,
        type: str = "input", *, filename: str | None = None,
    ) -> dict[str, Any]:
        fields = {
            "subfolder": subfolder, "type": type, "overwrite": "true" if overwrite else "false",
            "original_ref": json.dumps(dict(original_ref)),
        }
        return self._upload("/upload/mask", path_or_bytes, filename, fields)

    def get_image(self, filename: str, subfolder: str = "", folder_type: str = "output") -> bytes:
        params = {"filename": filename, "subfolder": subfolder, "type": folder_type}
        return self._request("GET", "/view", params=params, limit=MAX_IMAGE_BYTES).content

    @contextmanager
    def stream_view(
        self, filename: str, subfolder: str = "", folder_type: str = "output", *, offset: int = 0
    ) -> Iterator[httpx.Response]:
        """Stream ``/view``; with ``offset`` a Range request (check ``status_code == 206``).

        Network errors, also those raised while the body is read inside the ``with``
        block, are raised as :class:`RequestTimeout` or :class:`ServerUnreachable`.
        """
        params = {"filename": filename, "subfolder": subfolder, "type": folder_type}
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        request = self._http.build_request("GET", "/view", params=params, headers=headers)
        try:
            response = self._http.send(request, stream=True)
        except httpx.TimeoutException:
            raise RequestTimeout(f"GET /view {filename!r} timed out", url="/view") from None
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"cannot download {filename!r}: {exc}", url="/view") from None
        try:
            if response.status_code >= 300:
                url = self.base_url + "/view"
                body = self._read_body("GET", url, response, MAX_ERROR_BYTES, self.timeout, truncate=True)
                kept = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _BODY_HEADERS]
                self._raise_for_status("GET", url, httpx.Response(response.status_code, headers=kept, content=body))
            # Errors raised while the caller reads the body arrive here too: they leave as comfykit errors.
            try:
                yield response
            except httpx.TimeoutException:
                raise RequestTimeout(f"GET /view {filename!r} timed out mid-transfer", url="/view") from None
            except httpx.TransportError as exc:
                raise ServerUnreachable(f"the download of {filename!r} broke: {exc}", url="/view") from None
        finally:
            response.close()

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
        try:
            self.plugin_manager.handle_event(event, self)
        except Exception:
            log.exception("a comfykit_handle_event implementation failed on %s", event.type)
        for callback in [*self._callbacks.get(event.type, []), *self._callbacks.get("*", [])]:
            try:
                callback(event)
            except Exception:
                self._callback_failed(callback, event)
        self.tracker.feed(event)

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
