"""A keep-alive HTTP/1.1 client on plain sockets, for the sync client's plain requests.

httpx sends a request through several layers (URL merging, cookies, auth flows, httpcore's
pool, h11's pure-Python parser): about 0.6 ms of CPU for one ``POST /prompt`` on a small
machine, and a batch makes one or two requests per job; :mod:`http.client` still spends
0.18 ms (a header parser built for e-mail, two sends per request).  :class:`Wire` does what
ComfyUI's requests need and no more: persistent connections shared by the client's threads,
an empty or JSON body, query parameters, static headers, and answers framed by
``Content-Length``, chunked encoding or the end of the connection.  Each request is one
``sendall``; each answer is read 64 KiB at a time into one buffer.

It raises httpx's own exception types (``httpx.ConnectError``, ``httpx.ReadTimeout``...),
so the translation into comfykit errors (:func:`comfykit._http.send_error`,
:meth:`comfykit._http.BodyReader.failure`) is one for both paths.  :func:`usable` says
when a client may use it: no custom transport, no authentication beyond static headers
(bearer token, basic auth), no proxy configured for the server; everything else (and
every multipart upload) goes through httpx.
"""

from __future__ import annotations

import json
import select
import socket
import ssl
import threading
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

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

    # What urlencode(..., quote_via=quote) writes, without its per-item type checks.
    return "&".join(f"{quote(str(key), safe='')}={quote(text(value), safe='')}" for key, value in params.items())


class _Headers(dict[str, str]):
    """Answer headers under lowercase names, read case-insensitively (as ``httpx.Headers``)."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


class _Connection:
    """One socket to the server and what has been read from it but not used yet."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def fill(self, *, first: bool = False) -> bool:
        """Read what the server sent (up to :data:`READ_SIZE`); ``False`` when it closed the connection.

        ``first``: nothing of the answer has come yet, so a connection closed or reset now was
        given up by the server before it read the request (:class:`_StaleConnection`).
        """
        try:
            chunk = self.sock.recv(READ_SIZE)
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"the answer stalled: {exc}") from None
        except ConnectionResetError as exc:
            if first:
                raise _StaleConnection() from None
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}") from None
        except OSError as exc:
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}") from None
        if not chunk and first:
            raise _StaleConnection()
        self.buffer += chunk
        return bool(chunk)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass  # closing a broken socket: nothing is left to release


class WireResponse:
    """An answer whose body is still on the wire: ``status_code``, ``headers``, then :meth:`iter_bytes`.

    :meth:`close` hands the connection back to the pool when the body was read to its
    end (and the server keeps it open), and closes it otherwise.
    """

    def __init__(self, wire: Wire, connection: _Connection, status: int, headers: list[tuple[str, str]],
                 *, keep_alive: bool, bodiless: bool) -> None:
        self._wire, self._connection = wire, connection
        self.status_code = status
        self._raw = headers
        self.headers = _Headers((name.lower(), value) for name, value in headers)
        self._keep_alive = keep_alive and "close" not in self.headers.get("connection", "").lower()
        self._done = bodiless
        self._remaining: int | None = None  # bytes still to come when framed by Content-Length
        self._chunked = False
        if not bodiless:
            if "chunked" in self.headers.get("transfer-encoding", "").lower():
                self._chunked = True
            elif (length := self.headers.get("content-length", "").strip()).isdigit():
                self._remaining = int(length)
                self._done = self._remaining == 0
            else:
                self._keep_alive = False  # the body ends when the server closes the connection
        self._closed = False

    def raw_headers(self) -> list[tuple[str, str]]:
        return list(self._raw)

    def iter_bytes(self) -> Iterator[bytes]:
        """The body as it arrives (at most one network read per chunk)."""
        if self._done:
            return
        if self._chunked:
            yield from self._chunks()
        elif self._remaining is not None:
            yield from self._counted()
        else:
            yield from self._until_close()
        self._done = True

    def _counted(self) -> Iterator[bytes]:
        connection = self._connection
        while self._remaining:
            if not connection.buffer and not connection.fill():
                raise httpx.RemoteProtocolError(f"the answer broke off {self._remaining} bytes before its announced "
                                                "end (the server closed the connection)")
            take = min(self._remaining, len(connection.buffer))
            chunk = bytes(connection.buffer[:take])
            del connection.buffer[:take]
            self._remaining -= take
            yield chunk

    def _until_close(self) -> Iterator[bytes]:
        connection = self._connection
        while connection.buffer or connection.fill():
            chunk = bytes(connection.buffer)
            connection.buffer.clear()
            yield chunk

    def _chunks(self) -> Iterator[bytes]:
        connection = self._connection
        while True:
            line = _read_line(connection)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise httpx.RemoteProtocolError(f"a bad chunk size line {bytes(line[:40])!r}") from None
            if size == 0:
                while _read_line(connection):  # trailers, up to the empty line
                    pass
                return
            left = size
            while left:
                if not connection.buffer and not connection.fill():
                    raise httpx.RemoteProtocolError("the answer broke off inside a chunk")
                take = min(left, len(connection.buffer))
                chunk = bytes(connection.buffer[:take])
                del connection.buffer[:take]
                left -= take
                yield chunk
            if _read_line(connection):
                raise httpx.RemoteProtocolError("a chunk did not end with CRLF")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Anything unread (a body left half-read, bytes beyond the answer) makes the connection unusable.
        reusable = self._done and self._keep_alive and not self._connection.buffer
        self._wire.put_back(self._connection, reusable)


#: the most bytes of status line and headers accepted (http.client allows 100 lines of 64 KiB)
MAX_HEAD_BYTES = 256 * 1024


def _read_line(connection: _Connection) -> bytearray:
    """One CRLF-ended line of the answer (without the CRLF), bounded like the head."""
    buffer = connection.buffer
    while True:
        end = buffer.find(b"\r\n")
        if end >= 0:
            line = buffer[:end]
            del buffer[:end + 2]
            return line
        if len(buffer) > MAX_HEAD_BYTES:
            raise httpx.RemoteProtocolError("a line of the answer is too long")
        if not connection.fill():
            raise httpx.RemoteProtocolError("the answer broke off (the server closed the connection)")


class Wire:
    """Persistent HTTP/1.1 connections to one server, shared by the client's threads."""

    def __init__(self, base_url: str, headers: Mapping[str, str], *, verify: bool | str, timeout: float,
                 connect_timeout: float) -> None:
        parts = urlsplit(base_url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.https else 80)
        # Percent-encoded as httpx would send it (a proxy's base path may hold spaces); escapes already there stay.
        self.prefix = quote(parts.path.rstrip("/"), safe="/%:@!$&'()*+,;=~")
        host = f"[{self.host}]" if ":" in self.host else self.host
        default_port = 443 if self.https else 80
        sent = {"Host": host if self.port == default_port else f"{host}:{self.port}"}
        sent.update((name, value) for name, value in headers.items() if name.lower() != "host")
        _check_headers(sent)
        self.headers = sent
        self._head = "".join(f"{name}: {value}\r\n" for name, value in sent.items())
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        # httpx's own context: the same certificates (certifi, SSL_CERT_FILE) as the httpx path.
        self._ssl = httpx.create_ssl_context(verify=verify) if self.https else None
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    # -- connections -------------------------------------------------------------------

    def _connect(self, timeout: float) -> _Connection:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {self.host}:{self.port} timed out: {exc}") from None
        except OSError as exc:  # refused, unreachable, unknown host
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None:
                sock = self._ssl.wrap_socket(sock, server_hostname=self.host)
        except TimeoutError as exc:
            sock.close()
            raise httpx.ConnectTimeout(f"the TLS handshake with {self.host}:{self.port} timed out: {exc}") from None
        except OSError as exc:  # a certificate that does not verify, a broken handshake
            sock.close()
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}") from None
        return _Connection(sock)

    def _take(self, connect_timeout: float) -> tuple[_Connection, bool]:
        """An idle connection still open (and whether it was reused), else a new one."""
        while True:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                return self._connect(connect_timeout), False
            if _still_open(connection.sock):
                return connection, True
            connection.close()

    def put_back(self, connection: _Connection, reusable: bool) -> None:
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
        if not target.isascii() or any(c in target for c in " \r\n\t"):
            raise httpx.InvalidURL(f"the request target {target!r} is not URL-encoded")
        head = f"{method} {target} HTTP/1.1\r\n{self._head}"
        if headers:
            _check_headers(headers)
            head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        body = b""
        if json is not None:
            body = _encode_json(json)
            head += "Content-Type: application/json\r\n"
        if body or method in ("POST", "PUT", "PATCH"):
            head += f"Content-Length: {len(body)}\r\n"
        request = (head + "\r\n").encode("latin-1") + body
        read_timeout = self.timeout if timeout is None else float(timeout)
        # A request's own timeout (a health check's ping) bounds its connecting too, as httpx's does.
        connect_timeout = self.connect_timeout if timeout is None else min(self.connect_timeout, read_timeout)
        while True:
            connection, reused = self._take(connect_timeout)
            try:
                return self._exchange(connection, method, request, read_timeout)
            except _StaleConnection:
                # The server had closed this kept-alive connection before reading the request: send it again.
                connection.close()
                if not reused:
                    raise httpx.RemoteProtocolError("the server closed the connection without answering") from None
            except BaseException:
                connection.close()
                raise

    def _exchange(self, connection: _Connection, method: str, request: bytes, read_timeout: float) -> WireResponse:
        if connection.sock.gettimeout() != read_timeout:  # setting it is a system call, even to the same value
            connection.sock.settimeout(read_timeout)
        try:
            connection.sock.sendall(request)
        except TimeoutError as exc:
            raise httpx.WriteTimeout(f"sending the request timed out: {exc}") from None
        except (BrokenPipeError, ConnectionResetError):
            raise _StaleConnection() from None
        except OSError as exc:
            raise httpx.WriteError(f"{type(exc).__name__}: {exc}") from None
        first = True
        while True:
            status, version, headers = _read_head(connection, first=first)
            if not 100 <= status < 200:
                break
            first = False  # 1xx (100 Continue, 103 Early Hints): the real answer follows
        bodiless = method == "HEAD" or status in (204, 304)
        return WireResponse(self, connection, status, headers, keep_alive=version == "HTTP/1.1", bodiless=bodiless)


def _read_head(connection: _Connection, *, first: bool) -> tuple[int, str, list[tuple[str, str]]]:
    """The status, HTTP version and headers of the next answer (``first``: the first of this request)."""
    buffer = connection.buffer
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            break
        if len(buffer) > MAX_HEAD_BYTES:
            raise httpx.RemoteProtocolError(f"the answer's headers are larger than {MAX_HEAD_BYTES} bytes")
        if not connection.fill(first=first and not buffer):
            raise httpx.RemoteProtocolError("the answer broke off inside its headers")
    lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    del buffer[:end + 4]
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise httpx.RemoteProtocolError(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise httpx.RemoteProtocolError(f"a malformed header line {line[:80]!r}")
        headers.append((name, value.strip()))
    return int(code), version, headers


def _check_headers(headers: Mapping[str, str]) -> None:
    for name, value in headers.items():
        if any(c in f"{name}{value}" for c in "\r\n\0") or not name or ":" in name:
            raise httpx.LocalProtocolError(f"the header {name!r} cannot be sent (a line break or colon in it)")


class _StaleConnection(Exception):
    """The server closed the connection before answering (a kept-alive connection it had given up)."""


def _encode_json(value: Any) -> bytes:
    # httpx's encoding of ``json=``, so the server sees the same bytes on both paths.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _still_open(sock: socket.socket) -> bool:
    """An idle connection is usable when nothing is waiting on it: readable means closed (or garbage)."""
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
