"""The monitor's WebSocket against a hostile peer: huge frames, endless fragments, redirects with credentials."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
import struct
import threading
from collections.abc import Callable, Iterator

import pytest

from comfykit import AsyncComfyUIClient
from comfykit.config import Config, load_config
from comfykit_monitor.frames import BoundedWebSocket, MessageTooLarge, RedirectRefused

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class RawPeer:
    """A one-connection-at-a-time TCP peer on loopback that speaks just enough WebSocket to misbehave."""

    def __init__(self, behave: Callable[[socket.socket, bytes], None]) -> None:
        self.behave = behave
        self.requests: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            self.requests.append(request)
            self.behave(conn, request)
            # Hold the socket open until the test is over: a client that waits for the rest
            # of a frame would block here rather than see an early close.
            self.done.wait(30)

    def close(self) -> None:
        self.done.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes a thread still blocked in accept()
        except OSError:
            pass  # not connected: nothing was waiting
        self.listener.close()
        self.thread.join(5)


def _accept(conn: socket.socket, request: bytes) -> None:
    key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key"))
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")


def _header(opcode: int, length: int, *, fin: bool = True) -> bytes:
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        return struct.pack("!BB", first, length)
    if length < 1 << 16:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


@pytest.fixture
def peer() -> Iterator[Callable[[Callable[[socket.socket, bytes], None]], RawPeer]]:
    made: list[RawPeer] = []

    def make(behave: Callable[[socket.socket, bytes], None]) -> RawPeer:
        made.append(RawPeer(behave))
        return made[-1]

    yield make
    for one in made:
        one.close()


def _client(limit: int) -> BoundedWebSocket:
    return BoundedWebSocket(max_message_bytes=limit, skip_utf8_validation=True)


def test_a_frame_announcing_more_than_the_limit_fails_before_its_payload_is_read(peer) -> None:
    def huge(conn: socket.socket, request: bytes) -> None:
        _accept(conn, request)
        conn.sendall(_header(0x2, 500 * 1024 * 1024) + b"\0" * 1024)  # then nothing: the rest never comes

    server = peer(huge)
    ws = _client(1024 * 1024)
    ws.connect(f"ws://127.0.0.1:{server.port}/ws", timeout=20)
    # Were the payload read first, this would block until the 20 s timeout and raise a timeout instead.
    with pytest.raises(MessageTooLarge, match="524,288,000-byte frame"):
        ws.recv_data()
    ws.shutdown()


def test_fragments_that_never_end_are_cut_off_at_the_limit(peer) -> None:
    def endless(conn: socket.socket, request: bytes) -> None:
        _accept(conn, request)
        conn.sendall(_header(0x1, 1000, fin=False) + b"x" * 1000)
        try:
            for _ in range(200):
                conn.sendall(_header(0x0, 1000, fin=False) + b"x" * 1000)
        except (ConnectionResetError, BrokenPipeError):
            pass  # the client gave up on the message and closed: what the test expects of it

    server = peer(endless)
    ws = _client(50_000)
    ws.connect(f"ws://127.0.0.1:{server.port}/ws", timeout=20)
    with pytest.raises(MessageTooLarge, match="fragmented message grew past 50,000 bytes"):
        ws.recv_data()
    ws.shutdown()


def test_messages_within_the_limit_arrive_whole(peer) -> None:
    def polite(conn: socket.socket, request: bytes) -> None:
        _accept(conn, request)
        conn.sendall(_header(0x1, 5, fin=False) + b"hello" + _header(0x0, 6) + b" world")
        conn.sendall(_header(0x2, 3) + b"\x01\x02\x03")

    server = peer(polite)
    ws = _client(64)
    ws.connect(f"ws://127.0.0.1:{server.port}/ws", timeout=20)
    assert ws.recv_data() == (0x1, b"hello world")
    assert ws.recv_data() == (0x2, b"\x01\x02\x03")
    ws.shutdown()


def test_frames_split_anywhere_or_packed_together_arrive_whole_and_pings_are_answered(peer) -> None:
    pongs: list[bytes] = []
    answered = threading.Event()

    def awkward(conn: socket.socket, request: bytes) -> None:
        _accept(conn, request)
        stream = (_header(0x1, 300) + b"a" * 300 + _header(0x9, 4) + b"ping"
                  + _header(0x2, 2, fin=False) + b"\x01\x02" + _header(0x9, 0) + _header(0x0, 1) + b"\x03"
                  + _header(0x1, 70_000) + b"z" * 70_000)
        for index in range(0, 400):  # the start a byte at a time: headers and payloads cut anywhere
            conn.sendall(stream[index:index + 1])
        conn.sendall(stream[400:] + _header(0x1, 2) + b"ok" + _header(0x1, 3) + b"end")  # the rest packed together
        conn.settimeout(5)
        while len(pongs) < 2:  # the client's pong frames: masked, as every client frame is
            head = conn.recv(2)
            length = head[1] & 0x7F
            key, body = conn.recv(4), conn.recv(length) if length else b""
            if head[0] & 0x0F == 0xA:
                pongs.append(bytes(b ^ key[i % 4] for i, b in enumerate(body)))
        answered.set()

    server = peer(awkward)
    ws = _client(100_000)
    ws.connect(f"ws://127.0.0.1:{server.port}/ws", timeout=20)
    assert ws.recv_data() == (0x1, b"a" * 300)
    assert ws.recv_data() == (0x2, b"\x01\x02\x03")  # the pings between were answered, not returned
    assert ws.recv_data() == (0x1, b"z" * 70_000)
    assert ws.recv_data() == (0x1, b"ok")
    assert ws.recv_data() == (0x1, b"end")
    assert answered.wait(10)
    assert pongs == [b"ping", b""]
    ws.shutdown()


def test_a_masked_frame_from_the_server_is_unmasked(peer) -> None:
    def masked(conn: socket.socket, request: bytes) -> None:
        _accept(conn, request)
        key = b"\x11\x22\x33\x44"
        body = bytes(b ^ key[i % 4] for i, b in enumerate(b"hidden"))
        conn.sendall(struct.pack("!BB", 0x81, 0x80 | len(body)) + key + body)

    server = peer(masked)
    ws = _client(64)
    ws.connect(f"ws://127.0.0.1:{server.port}/ws", timeout=20)
    assert ws.recv_data() == (0x1, b"hidden")
    ws.shutdown()


def test_a_redirect_is_refused_and_the_credentials_go_nowhere_else(peer) -> None:
    elsewhere = peer(_accept)

    def redirect(conn: socket.socket, request: bytes) -> None:
        conn.sendall(f"HTTP/1.1 302 Found\r\nLocation: ws://127.0.0.1:{elsewhere.port}/ws\r\n"
                     "Content-Length: 0\r\n\r\n".encode())

    server = peer(redirect)
    ws = _client(1024)
    with pytest.raises(RedirectRefused, match=f"redirected \\(302\\) to ws://127.0.0.1:{elsewhere.port}/ws"):
        ws.connect(f"ws://127.0.0.1:{server.port}/ws", timeout=20, header=["Authorization: Bearer s3cret"])
    assert b"Bearer s3cret" in server.requests[0]
    assert elsewhere.requests == []


class _Peers:
    """Answers successive WebSocket connections on one port, each with the next behaviour."""

    def __init__(self, *behaviours: Callable[[socket.socket, bytes], None]) -> None:
        self.behaviours = list(behaviours)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connected = [threading.Event() for _ in behaviours]
        self.done = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        for index, behave in enumerate(self.behaviours):
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096) or b"\r\n\r\n"
            behave(conn, request)
            self.connected[index].set()
            threading.Thread(target=lambda c=conn: (self.done.wait(30), c.close()), daemon=True).start()

    def close(self) -> None:
        self.done.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # not listening any more
        self.listener.close()


def test_the_monitor_drops_an_oversized_frame_by_reconnecting_and_reads_history(monkeypatch: pytest.MonkeyPatch) -> None:
    from comfykit import ComfyUIClient
    from comfykit.config import load_config
    from comfykit_monitor import WebSocketEventSource

    def huge(conn: socket.socket, request: bytes) -> None:
        _accept(conn, request)
        conn.sendall(_header(0x1, 10 * 1024 * 1024))

    peers = _Peers(huge, _accept)
    try:
        config = load_config(overrides={"websocket.max_frame_size": 4096, "websocket.reconnect_delay": 0.01},
                             use_file=False)
        client = ComfyUIClient(url=f"http://127.0.0.1:{peers.port}", config=config)
        gaps = threading.Event()
        monkeypatch.setattr(client.tracker, "mark_gap", gaps.set)
        source = WebSocketEventSource(client)
        source.start()
        try:
            assert gaps.wait(30), "the oversized frame was not noticed"
            assert peers.connected[1].wait(30), "the monitor did not reconnect"
        finally:
            source.stop()
            client.close()
    finally:
        peers.close()


# ---------------------------------------------------------------- the async client's socket (comfykit.aio_socket)


def _async_config(**values: object) -> Config:
    return load_config(overrides={"websocket.reconnect_delay": 0.01, **values}, use_file=False)


@pytest.mark.anyio
async def test_the_async_socket_drops_an_oversized_frame_unread_and_reconnects() -> None:
    def huge(conn: socket.socket, request: bytes) -> None:
        _accept(conn, request)
        conn.sendall(_header(0x1, 10 * 1024 * 1024))

    peers = _Peers(huge, _accept)
    client = AsyncComfyUIClient(url=f"http://127.0.0.1:{peers.port}",
                                config=_async_config(**{"websocket.max_frame_size": 4096}))
    gaps = asyncio.Event()
    loop = asyncio.get_running_loop()
    client.tracker.mark_gap = lambda: loop.call_soon_threadsafe(gaps.set)  # type: ignore[method-assign]
    try:
        await client.connect_websocket()
        await asyncio.wait_for(gaps.wait(), 30)
        assert await asyncio.to_thread(peers.connected[1].wait, 30), "the async socket did not reconnect"
    finally:
        await client.aclose()
        peers.close()


@pytest.mark.anyio
async def test_the_async_socket_refuses_a_redirect_and_the_credentials_go_nowhere_else(peer) -> None:
    elsewhere = peer(_accept)

    def redirect(conn: socket.socket, request: bytes) -> None:
        conn.sendall(f"HTTP/1.1 302 Found\r\nLocation: ws://127.0.0.1:{elsewhere.port}/ws\r\n"
                     "Content-Length: 0\r\n\r\n".encode())

    server = peer(redirect)
    async with AsyncComfyUIClient(url=f"http://127.0.0.1:{server.port}", token="s3cret", config=_async_config()) as client:
        await client.connect_websocket()
        assert client.event_source is not None and not client.event_source.connected
    assert b"Bearer s3cret" in server.requests[0]
    assert elsewhere.requests == []
