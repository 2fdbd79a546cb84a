"""The HTTP side of ComfyUI's protocol, written once for the sync and the async client.

Everything here is free of I/O: how the server address, credentials and secret mask
are derived from the config (:func:`connection_settings`), what each endpoint's request
is and how its answer is checked (:class:`Call` and the functions building one), how a
streamed body is bounded (:class:`BodyReader`), and how a failed exchange becomes a
comfykit error (:func:`send_error`, :func:`status_error`, :func:`decode_json`).
:class:`comfykit.ComfyUIClient` drives these with ``httpx.Client``,
:class:`comfykit.AsyncComfyUIClient` with ``httpx.AsyncClient``; neither repeats them.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol
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
)
from comfykit.jobs import new_prompt_id
from comfykit.parsing import JSONBudgetExceeded, load_json, parse_retry_after
from comfykit.secrets import SecretMask, secrets_of, without_credentials

__all__ = [
    "MAX_ERROR_BYTES", "MAX_IMAGE_BYTES", "MAX_JSON_BYTES", "MAX_SMALL_BYTES", "Answer", "BodyReader", "Call",
    "Connection", "Streamed",
    "buffered", "cancel_job", "cancel_jobs", "checked_url", "clear_history", "clear_queue", "connection_settings",
    "decode_json", "delete_from_queue", "delete_history", "download_error", "embeddings", "extensions", "features",
    "free_memory",
    "history", "image_fields", "interrupt", "job", "jobs", "jobs_api_missing", "jobs_probe", "mask_fields", "models",
    "object_info", "post_prompt", "prompt_of", "prompt_status", "queue", "redact", "send_error", "server_facts",
    "status_error", "system_stats", "upload", "view", "ws_headers",
]

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


# -- the address and the credentials ---------------------------------------------------------


def checked_url(url: str) -> str:
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


def redact(url: str) -> str:
    """``url`` as errors show it: without the user and password it may carry (even when it does not parse)."""
    return without_credentials(url)


@attrs.frozen
class Connection:
    """Where a client talks to and with which credentials, derived once from its config."""

    base_url: str
    client_id: str
    ws_url: str
    headers: dict[str, str]
    auth: httpx.Auth | None
    api_key: str | None
    #: masks credentials in what the server echoes back (a 401 page repeating the headers)
    secret_mask: SecretMask
    verify: bool | str
    timeout: float
    connect_timeout: float

    def timeouts(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, connect=self.connect_timeout)


def connection_settings(
    config: Config,
    *,
    headers: Mapping[str, str] | None,
    auth: tuple[str, str] | str | httpx.Auth | None,
    verify: bool | str | None,
    client_id: str | None,
) -> Connection:
    """The address, credentials and limits of a client for ``config`` plus the constructor's arguments.

    Credentials in the URL become basic auth, so that ``base_url`` (shown in logs, errors,
    ``--json`` and sidecars) never carries a password; two kinds of ``Authorization``
    configured at once are a ConfigError.
    """
    section = config.section("comfyui")
    if section["url"]:
        base_url = str(section["url"]).rstrip("/")
    else:
        base_url = f"{section['protocol']}://{section['host']}:{section['port']}"
    base_url, url_credentials = _split_credentials(checked_url(base_url))
    client_id = client_id or new_prompt_id()
    scheme = "wss" if base_url.startswith("https") else "ws"
    ws_url = f"{scheme}{base_url[base_url.index(':'):]}/ws?clientId={quote(client_id)}"
    merged = {str(k): str(v) for k, v in (section["headers"] or {}).items()}
    merged.update(headers or {})
    for name, value in merged.items():
        if any(c in name + value for c in "\r\n\0") or not name or ":" in name:
            # The value is not shown: it may be a credential.
            raise ConfigError(f"the header {name!r} cannot be sent: its name or value holds a line break, a NUL "
                              "or (in the name) a colon", key="comfyui.headers",
                              hint="Write each header as one line, a name without ':' and a value on the same line.")
    chosen_auth: httpx.Auth | None = None
    bearer = section["token"]
    if isinstance(auth, str):
        bearer = auth
    elif isinstance(auth, tuple):
        chosen_auth = httpx.BasicAuth(*auth)
    elif isinstance(auth, httpx.Auth):
        chosen_auth = auth
    elif section["username"] and section["password"]:
        chosen_auth = httpx.BasicAuth(section["username"], section["password"])
    if url_credentials is not None:
        if chosen_auth is not None:
            raise ConfigError("the server URL carries a user and password, and basic auth is configured too",
                              key="comfyui.url", hint="Keep one of them: the URL's, or comfyui.username/password.")
        chosen_auth = httpx.BasicAuth(*url_credentials)
    if bearer and chosen_auth is not None:
        raise ConfigError(
            "both a bearer token and basic auth (or another httpx.Auth) are configured; a request carries one "
            "Authorization header, so one of them would be dropped",
            key="comfyui.token",
            hint="Keep the one your server or proxy expects: comfyui.token, or comfyui.username/password.",
        )
    if bearer:
        merged["Authorization"] = f"Bearer {bearer}"
    secret_keys = [key.dotted for key in config.registry if key.secret]
    hidden = secrets_of(dict(config), secret_keys) | set(merged.values())
    if url_credentials is not None:
        hidden.add(url_credentials[1])
    if isinstance(auth, tuple):
        hidden.add(auth[1])
    if verify is None:
        verify = section["ca_bundle"] or section["verify"]
    return Connection(
        base_url=base_url, client_id=client_id, ws_url=ws_url, headers=merged, auth=chosen_auth,
        api_key=section["api_key"], secret_mask=SecretMask(hidden), verify=verify,
        timeout=float(section["timeout"]), connect_timeout=float(section["connect_timeout"]),
    )


def ws_headers(connection: Connection) -> dict[str, str]:
    """Headers for the WebSocket handshake: the same credentials and custom headers as HTTP.

    An ``httpx.Auth`` (basic auth included) is asked for the headers it puts on a first
    request to the socket's address, through its public ``sync_auth_flow``; an auth that
    only answers challenges (digest) adds none, and the handshake goes without it.
    """
    headers = dict(connection.headers)
    if connection.auth is not None:
        probe = httpx.Request("GET", connection.base_url + "/ws", headers=headers)
        flow = connection.auth.sync_auth_flow(probe)
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


# -- one exchange -------------------------------------------------------------------------------


def send_error(method: str, url: str, base_url: str, exc: Exception) -> Exception:
    """The comfykit error for ``exc`` raised while a request was sent (``exc`` itself when not a network failure)."""
    if isinstance(exc, httpx.TimeoutException):
        return RequestTimeout(
            f"{method} {redact(url)} timed out ({type(exc).__name__})",
            url=redact(url),
            hint="The server is busy or unreachable; raise comfyui.timeout if it is just slow.",
        )
    if isinstance(exc, (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return ServerUnreachable(
            f"cannot reach ComfyUI at {redact(base_url)}: {type(exc).__name__}: {exc}",
            url=redact(url),
            hint="Is ComfyUI running there? Check the URL (--server / COMFYKIT_URL) and the network.",
        )
    return exc


def download_error(filename: str, exc: httpx.TransportError, *, started: bool) -> ComfyKitError:
    """The comfykit error for a network failure while ``/view`` streamed ``filename`` (``started``: mid-transfer)."""
    if isinstance(exc, httpx.TimeoutException):
        return RequestTimeout(f"GET /view {filename!r} timed out{' mid-transfer' if started else ''}", url="/view")
    what = f"the download of {filename!r} broke" if started else f"cannot download {filename!r}"
    return ServerUnreachable(f"{what}: {exc}", url="/view")


class Streamed(Protocol):
    """What is read of an answer whose body is still coming: its status, and headers read case-insensitively."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Any: ...


@attrs.frozen
class Answer:
    """A fully read answer: its status, its headers (read case-insensitively) and its body."""

    status_code: int
    headers: Any
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class BodyReader:
    """Collects a streamed answer, refusing one larger than ``limit`` or slower than ``budget`` seconds.

    With ``truncate`` (an error page, read only for its message) the start is kept and
    the rest dropped instead.  The caller feeds chunks to :meth:`add` until it answers
    True or the stream ends, and passes any exception raised meanwhile to :meth:`failure`.
    """

    def __init__(self, method: str, url: str, response: Streamed, limit: int, budget: float, *,
                 truncate: bool) -> None:
        self.where = f"{method} {redact(url)}"
        self.url = redact(url)
        self.limit = limit
        self.budget = budget
        self.truncate = truncate
        declared = response.headers.get("Content-Length", "")
        if not truncate and declared.isdigit() and int(declared) > limit:
            raise ProtocolError(
                f"{self.where}: answer of {int(declared)} bytes is too large (limit {limit})", url=self.url,
                hint="Is this URL a ComfyUI server? A real answer is far smaller.",
            )
        self.deadline = time.monotonic() + budget
        self.chunks: list[bytes] = []
        self.size = 0

    def add(self, chunk: bytes) -> bool:
        """Keep ``chunk``; True when reading must stop (a truncated body is complete)."""
        self.size += len(chunk)
        if self.size > self.limit:
            if self.truncate:
                self.chunks.append(chunk[: len(chunk) - (self.size - self.limit)])
                return True
            raise ProtocolError(
                f"{self.where}: answer is too large (more than {self.limit} bytes)", url=self.url,
                hint="Is this URL a ComfyUI server? A real answer is far smaller.",
            )
        self.chunks.append(chunk)
        if time.monotonic() > self.deadline:
            raise RequestTimeout(
                f"{self.where}: the answer did not end within {self.budget} s", url=self.url,
                hint="The server keeps sending without finishing; raise comfyui.timeout if it is just slow.",
            )
        return False

    def failure(self, exc: Exception) -> Exception:
        """The comfykit error for ``exc`` raised while the body was read (``exc`` itself when not a read failure)."""
        if isinstance(exc, httpx.TimeoutException):
            return RequestTimeout(f"{self.where}: the answer stalled ({type(exc).__name__})", url=self.url,
                                  hint="The server stopped sending mid-answer; raise comfyui.timeout if it is just slow.")
        if isinstance(exc, httpx.RemoteProtocolError):
            return ProtocolError(f"{self.where}: the answer broke off: {exc}", url=self.url,
                                 hint="The server closed the connection before the end of its answer.")
        if isinstance(exc, (httpx.ReadError, httpx.DecodingError)):
            return ProtocolError(f"{self.where}: the answer could not be read: {type(exc).__name__}: {exc}", url=self.url)
        return exc

    def body(self) -> bytes:
        return b"".join(self.chunks)


def buffered(response: httpx.Response, body: bytes) -> httpx.Response:
    """A fresh, fully read copy of a streamed ``response`` (which cannot be read again once closed)."""
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _BODY_HEADERS]
    try:
        request: httpx.Request | None = response.request
    except RuntimeError:  # a response built by hand has no request
        request = None
    return httpx.Response(response.status_code, headers=headers, content=body, request=request)


def status_error(method: str, url: str, response: httpx.Response | Answer, mask: SecretMask) -> ComfyKitError:
    """The comfykit error for an answer with a status of 300 or more (its body read, credentials masked)."""
    body: Any
    try:
        body = load_json(response.content)
    except ValueError:
        body = response.text[:2000]
    body = mask.data(body)
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    status = response.status_code
    where = f"{method} {redact(url)}"
    if status < 400:
        location = redact(response.headers.get("Location", "")) or "nowhere"
        return ServerError(
            f"{where} answered a redirect (HTTP {status} to {location}), which comfykit does not follow",
            status_code=status, url=redact(url), body=body,
            hint="Credentials must not follow a redirect to another address: point the client at the "
                 "server's real address (the one the redirect names, if you trust it).",
        )
    if status == 404:
        return NotFound(f"{where}: not found (404)", status_code=status, url=redact(url), body=body)
    if isinstance(body, dict) and isinstance(body.get("error"), dict) and "node_errors" in body:
        return PromptRejected(
            status_code=status, error=body["error"], node_errors=body.get("node_errors"), url=redact(url), body=body
        )
    detail = body.get("error") if isinstance(body, dict) else body
    return ServerError(
        f"{where} failed with HTTP {status}: {str(detail).strip()[:500]}",
        status_code=status,
        url=redact(url),
        body=body,
        retry_after=retry_after,
        hint="The server had an internal error; it may succeed if retried." if status >= 500 else None,
    )


def decode_json(method: str, url: str, response: httpx.Response | Answer, mask: SecretMask) -> Any:
    """The JSON of a read answer (``None`` when empty); a ProtocolError for anything else."""
    if not response.content:
        return None
    try:
        return load_json(response.content)
    except JSONBudgetExceeded as exc:
        raise ProtocolError(f"{method} {redact(url)}: {exc}", url=redact(url),
                            hint="Is this URL a ComfyUI server? A real answer is far smaller.") from None
    except ValueError:
        raise ProtocolError(
            f"{method} {redact(url)} did not answer JSON: {mask.text(response.text[:200])!r}",
            url=redact(url),
            hint="Is this URL a ComfyUI server (and not a proxy's error page)?",
        ) from None


# -- the endpoints ------------------------------------------------------------------------------------


@attrs.frozen
class Call:
    """One endpoint's request, and how its answer is read.

    ``check`` gets the decoded JSON and ``where`` (``"GET /queue"``); a call without
    ``check`` wants no JSON back (its answer is bounded by ``limit``).
    """

    method: str
    path: str
    options: Mapping[str, Any] = attrs.field(factory=dict)
    check: Callable[[Any, str], Any] | None = None
    where: str = ""
    limit: int = MAX_SMALL_BYTES


def _json_call(method: str, path: str, check: Callable[[Any, str], Any], where: str | None = None,
               **options: Any) -> Call:
    return Call(method, path, options, check, where or f"{method} {path}")


def _quoted(value: str) -> str:
    return quote(value, safe="")


def prompt_of(workflow: Mapping[str, Any]) -> dict[str, Any]:
    """The API graph of ``workflow``, unwrapping a ``{"prompt": graph}`` wrapper."""
    prompt = workflow["prompt"] if "prompt" in workflow and isinstance(workflow["prompt"], Mapping) else workflow
    return dict(prompt)


def post_prompt(
    workflow: Mapping[str, Any], *, client_id: str, api_key: str | None, prompt_id: str | None = None,
    front: bool = False, number: float | None = None, extra_data: Mapping[str, Any] | None = None,
    targets: Iterable[str] | None = None,
) -> Call:
    body: dict[str, Any] = {"prompt": prompt_of(workflow), "client_id": client_id, "prompt_id": prompt_id or new_prompt_id()}
    extra = dict(extra_data or {})
    if api_key:
        extra.setdefault("api_key_comfy_org", api_key)
    if extra:
        body["extra_data"] = extra
    if front:
        body["front"] = True
    if number is not None:
        body["number"] = number
    if targets is not None:
        body["partial_execution_targets"] = list(targets)
    return _json_call("POST", "/prompt", check_prompt_answer, json=body)


def prompt_status() -> Call:
    return _json_call("GET", "/prompt", check_mapping)


def queue() -> Call:
    return _json_call("GET", "/queue", check_queue)


def delete_from_queue(prompt_ids: Iterable[str]) -> Call:
    return Call("POST", "/queue", {"json": {"delete": list(prompt_ids)}})


def clear_queue() -> Call:
    return Call("POST", "/queue", {"json": {"clear": True}})


def history(prompt_id: str | None = None, max_items: int | None = None, offset: int | None = None) -> Call:
    if prompt_id is not None:
        return _json_call("GET", f"/history/{_quoted(prompt_id)}", check_history, "GET /history/{id}")
    params = {k: v for k, v in {"max_items": max_items, "offset": offset}.items() if v is not None}
    return _json_call("GET", "/history", check_history, params=params)


def delete_history(prompt_ids: Iterable[str]) -> Call:
    return Call("POST", "/history", {"json": {"delete": list(prompt_ids)}})


def clear_history() -> Call:
    return Call("POST", "/history", {"json": {"clear": True}})


def interrupt(prompt_id: str | None = None) -> Call:
    return Call("POST", "/interrupt", {"json": {"prompt_id": prompt_id} if prompt_id else None})


def free_memory(*, unload_models: bool, free_memory: bool) -> Call:
    return Call("POST", "/free", {"json": {"unload_models": unload_models, "free_memory": free_memory}})


def system_stats() -> Call:
    return _json_call("GET", "/system_stats", check_mapping)


def features() -> Call:
    return _json_call("GET", "/features", check_mapping)


def jobs_probe() -> Call:
    """``GET /api/jobs?limit=1``: answers 404 on a server without the jobs API."""
    return Call("GET", "/api/jobs", {"params": {"limit": 1}})


def embeddings() -> Call:
    return _json_call("GET", "/embeddings", check_list)


def extensions() -> Call:
    return _json_call("GET", "/extensions", check_list)


def models(folder: str | None = None) -> Call:
    path = "/models" if folder is None else f"/models/{_quoted(folder)}"
    return _json_call("GET", path, check_list)


def object_info(node_class: str | None = None) -> Call:
    if node_class is None:
        return _json_call("GET", "/object_info", check_mapping)
    return _json_call("GET", f"/object_info/{_quoted(node_class)}", check_mapping, "GET /object_info/{class}")


def jobs(
    *, status: str | Iterable[str] | None = None, workflow_id: str | None = None, sort_by: str | None = None,
    sort_order: str | None = None, limit: int | None = None, offset: int | None = None,
) -> Call:
    if status is not None and not isinstance(status, str):
        status = ",".join(status)
    wanted = {"status": status, "workflow_id": workflow_id, "sort_by": sort_by, "sort_order": sort_order,
              "limit": limit, "offset": offset}
    return _json_call("GET", "/api/jobs", check_mapping, params={k: v for k, v in wanted.items() if v is not None})


def job(job_id: str) -> Call:
    return _json_call("GET", f"/api/jobs/{_quoted(job_id)}", check_mapping, "GET /api/jobs/{id}")


def cancel_job(job_id: str) -> Call:
    return _json_call("POST", f"/api/jobs/{_quoted(job_id)}/cancel", check_mapping, "POST /api/jobs/{id}/cancel")


def cancel_jobs(job_ids: Iterable[str]) -> Call:
    return _json_call("POST", "/api/jobs/cancel", check_mapping, json={"job_ids": list(job_ids)})


def view(filename: str, subfolder: str = "", folder_type: str = "output") -> Call:
    params = {"filename": filename, "subfolder": subfolder, "type": folder_type}
    return Call("GET", "/view", {"params": params}, limit=MAX_IMAGE_BYTES)


def upload(path: str, data: Any, filename: str | None, fields: Mapping[str, str]) -> Call:
    """An upload to ``path`` (``/upload/image``, ``/upload/mask``) of a file path, bytes or a PIL image."""
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
        buffer = io.BytesIO()
        data.save(buffer, format="PNG")
        content = buffer.getvalue()
        filename = filename or "upload.png"
    else:
        raise TypeError(f"cannot upload a {type(data).__name__}: give a path, bytes or a PIL image")
    return _json_call("POST", path, check_mapping, files={"image": (filename, content, "application/octet-stream")},
                      data=dict(fields))


def image_fields(subfolder: str, overwrite: bool, type: str) -> dict[str, str]:
    return {"subfolder": subfolder, "type": type, "overwrite": "true" if overwrite else "false"}


def mask_fields(original_ref: Mapping[str, Any], subfolder: str, overwrite: bool, type: str) -> dict[str, str]:
    return {**image_fields(subfolder, overwrite, type), "original_ref": json.dumps(dict(original_ref))}


def server_facts(stats: dict[str, Any], features: dict[str, Any] | None, has_jobs_api: bool) -> dict[str, Any]:
    """The fields of a ``ServerInfo`` from the answers of ``/system_stats``, ``/features`` and the jobs probe."""
    system = stats.get("system")
    version = system.get("comfyui_version") if isinstance(system, Mapping) else None
    return {"version": version, "has_jobs_api": has_jobs_api, "features": features or {}, "system_stats": stats}


def jobs_api_missing(base_url: str, version: str | None) -> ComfyKitError:
    return FeatureUnavailable(
        f"the server at {redact(base_url)} (ComfyUI {version}) has no jobs API",
        status_code=404,
        hint="The jobs API arrived in newer ComfyUI releases; use get_queue()/get_history() instead.",
    )
