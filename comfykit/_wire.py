"""A keep-alive HTTP/1.1 connection pool on :mod:`http.client`, for the sync client's plain requests.

httpx sends a request through several layers (URL merging, cookies, auth flows, httpcore's
pool, h11's pure-Python parser): about 0.6 ms of CPU for one ``POST /prompt`` on a small
machine, three times what :mod:`http.client` spends on the same exchange, and a batch makes
one or two requests per job.  :class:`Wire` does what those requests need and no more: a
pool of persistent connections, an empty or JSON body, query parameters, static headers.

It raises httpx's own exception types (``httpx.ConnectError``, ``httpx.ReadTimeout``...),
so the translation into comfykit errors (:func:`comfykit._http.send_error`,
:meth:`comfykit._http.BodyReader.failure`) is one for both paths.  :func:`usable` says
when a client may use it: no custom transport, no authentication beyond static headers
(bearer token, basic auth), no proxy configured for the server; everything else (and
every multipart upload) goes through httpx.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import ssl
import threading
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx

__all__ = ["Wire", "WireResponse", "usable"]

#: bytes asked of the socket per read of a body
READ_SIZE = 64 * 1024
#: idle connections kept per client (one per thread that makes requests is enough)
MAX_IDLE = 8
#: options of a request that the wire path sends itself; any other (files, data...) goes to httpx
WIRE_OPTIONS = frozenset({"params", "json", "timeout", "headers"})


def usable(base_url: str, *, transport: object, auth: object) -> bool:
    """Whether a client for ``base_url`` can send its plain requests over :class:`Wire`.

    Not with a custom httpx transport (tests, mocks), an auth flow that answers challenges
    (digest, a custom ``httpx.Auth``; basic auth is a static header), or a proxy that the
    environment sets for this server (httpx would use it).
    """
    if transport is not None or (auth is not None and not isinstance(auth, httpx.BasicAuth)):
        return False
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    proxies = urllib.request.getproxies_environment()
    wanted = proxies.get(parts.scheme) or proxies.get("all")
    return not wanted or bool(urllib.request.proxy_bypass(parts.hostname))


def static_auth_headers(auth: httpx.Auth | None) -> dict[str, str]:
    """The headers basic auth puts on every request (none for ``None``)."""
    if auth is None:
        return {}
    flow = auth.sync_auth_flow(httpx.Request("GET", "http://auth.invalid/"))
    try:
        first = next(flow)
    finally:
        flow.close()
    value = first.headers.get("Authorization")
    return {"Authorization": value} if value else {}


def _query(params: Mapping[str, Any]) -> str:
    # As httpx writes them: booleans in lowercase, None as an empty value.
    def text(value: Any) -> str:
        if value is True or value is False:
            return "true" if value else "false"
        return "" if value is None else str(value)

    return urlencode([(str(key), text(value)) for key, value in params.items()], quote_via=quote)


class WireResponse:
    """An answer whose body is still on the wire: ``status_code``, ``headers``, then :meth:`iter_bytes`.

    :meth:`close` hands the connection back to the pool when the body was read to its
    end (and the server keeps it open), and closes it otherwise.
    """

    def __init__(self, wire: Wire, connection: http.client.HTTPConnection, answer: http.client.HTTPResponse) -> None:
        self._wire, self._connection, self._answer = wire, connection, answer
        self.status_code = answer.status
        self.headers = answer.headers  # reads case-insensitively, as httpx.Headers
        self._closed = False

    def iter_bytes(self) -> Iterator[bytes]:
        """The body as it arrives (at most one network read per chunk)."""
        answer = self._answer
        while True:
            if answer.length == 0:  # the announced length is in: read() marks the answer done
                answer.read()
                return
            try:
                chunk = answer.read1(READ_SIZE)
            except TimeoutError as exc:
                raise httpx.ReadTimeout(f"the answer stalled: {exc}") from None
            except http.client.IncompleteRead as exc:
                raise httpx.RemoteProtocolError(f"the answer broke off: {exc!r}") from None
            except http.client.HTTPException as exc:
                raise httpx.RemoteProtocolError(f"{type(exc).__name__}: {exc}") from None
            except OSError as exc:
                raise httpx.ReadError(f"{type(exc).__name__}: {exc}") from None
            if not chunk:
                if answer.length:  # read1 reports a connection closed early as an end, not as an error
                    raise httpx.RemoteProtocolError(f"the connection closed {answer.length} bytes before the "
                                                    "announced end of the answer")
                return
            yield chunk

    def raw_headers(self) -> list[tuple[str, str]]:
        return list(self._answer.getheaders())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        reusable = self._answer.isclosed() and not self._answer.will_close
        self._answer.close()
        self._wire.put_back(self._connection, reusable)


class Wire:
    """Persistent HTTP/1.1 connections to one server, shared by the client's threads."""

    def __init__(self, base_url: str, headers: Mapping[str, str], *, verify: bool | str, timeout: float,
                 connect_timeout: float) -> None:
        parts = urlsplit(base_url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.headers = dict(headers)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        # httpx's own context: the same certificates (certifi, SSL_CERT_FILE) as the httpx path.
        self._ssl = httpx.create_ssl_context(verify=verify) if self.https else None
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    # -- connections -------------------------------------------------------------------

    def _connect(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection
        if self._ssl is not None:
            connection = http.client.HTTPSConnection(self.host, self.port, timeout=self.connect_timeout,
                                                     context=self._ssl)
        else:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=self.connect_timeout)
        try:
            connection.connect()
        except TimeoutError as exc:
            connection.close()
            raise httpx.ConnectTimeout(f"connecting to {self.host}:{self.port} timed out: {exc}") from None
        except OSError as exc:  # refused, unreachable, a certificate that does not verify
            connection.close()
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}") from None
        assert connection.sock is not None
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection still open (and whether it was reused), else a new one."""
        while True:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                return self._connect(), False
            if _still_open(connection):
                return connection, True
            connection.close()

    def put_back(self, connection: http.client.HTTPConnection, reusable: bool) -> None:
        with self._lock:
            if reusable and not self._closed and len(self._idle) < MAX_IDLE:
                self._idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    # -- one exchange ----------------------------------------------------------------------

    def send(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None,
             headers: Mapping[str, str] | None = None, timeout: float | None = None) -> WireResponse:
        """Send one request and read its status and headers; the body is read through the answer."""
        target = self.prefix + path
        if params:
            target += "?" + _query(params)
        sent = {**self.headers, **(headers or {})}
        body = None
        if json is not None:
            body = _encode_json(json)
            sent["Content-Type"] = "application/json"
        read_timeout = self.timeout if timeout is None else float(timeout)
        while True:
            connection, reused = self._take()
            try:
                return self._exchange(connection, method, target, body, sent, read_timeout)
            except _StaleConnection:
                # The server had closed this kept-alive connection before reading the request: send it again.
                connection.close()
                if not reused:
                    raise httpx.RemoteProtocolError("the server closed the connection without answering") from None
            except BaseException:
                connection.close()
                raise

    def _exchange(self, connection: http.client.HTTPConnection, method: str, target: str, body: bytes | None,
                  headers: dict[str, str], read_timeout: float) -> WireResponse:
        assert connection.sock is not None
        connection.sock.settimeout(read_timeout)
        try:
            connection.request(method, target, body=body, headers=headers)
        except TimeoutError as exc:
            raise httpx.WriteTimeout(f"sending the request timed out: {exc}") from None
        except (BrokenPipeError, ConnectionResetError):
            raise _StaleConnection() from None
        except OSError as exc:
            raise httpx.WriteError(f"{type(exc).__name__}: {exc}") from None
        try:
            answer = connection.getresponse()
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"no answer in time: {exc}") from None
        except (http.client.RemoteDisconnected, ConnectionResetError):
            raise _StaleConnection() from None
        except http.client.HTTPException as exc:
            raise httpx.RemoteProtocolError(f"{type(exc).__name__}: {exc}") from None
        except OSError as exc:
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}") from None
        return WireResponse(self, connection, answer)


class _StaleConnection(Exception):
    """The server closed the connection before answering (a kept-alive connection it had given up)."""


def _encode_json(value: Any) -> bytes:
    # httpx's encoding of ``json=``, so the server sees the same bytes on both paths.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _still_open(connection: http.client.HTTPConnection) -> bool:
    """An idle connection is usable when nothing is waiting on it: readable means closed (or garbage)."""
    sock = connection.sock
    if sock is None:
        return False
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return False
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return not poller.poll(0)
        return not select.select([sock], [], [], 0)[0]  # Windows has no poll
    except (OSError, ValueError):
        return False
