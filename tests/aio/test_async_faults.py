"""The fault suite for the async client: WebSocket drops, restarts, 5xx, hostile bodies and sockets, polling."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
import struct
import threading
from collections.abc import Callable, Iterator

import pytest

from comfykit import AsyncComfyUIClient, JobStatus
from comfykit.config import Config, load_config
from comfykit.errors import ExecutionInterrupted, JobLost, ProtocolError, RequestTimeout, ServerError
from comfykit.testing import ComfyUISimulator

from .conftest import workflow

pytestmark = pytest.mark.anyio


async def test_jobs_complete_while_the_socket_drops_every_fraction_of_a_second(sim: ComfyUISimulator,
                                                                               config: Config) -> None:
    sim.knobs.drop_websocket_after = 0.15
    sim.knobs.node_seconds = 0.02
    async with AsyncComfyUIClient(url=sim.url, config=config, store_outputs=False) as client:
        jobs = await asyncio.gather(*(client.run(workflow("preview_image", color_1=n), timeout=60) for n in range(15)))
        source = client.event_source
        assert source is not None and source.reconnects >= 1
    assert all(job.status is JobStatus.COMPLETED for job in jobs)
    assert len(sim.execution_counts) == 15 and all(count == 1 for count in sim.execution_counts.values())


async def test_a_restart_mid_job_reports_the_jobs_lost(sim: ComfyUISimulator, config: Config) -> None:
    async with AsyncComfyUIClient(url=sim.url, config=config) as client:
        with sim.pause(node="2") as held:
            running = await client.submit(workflow("interruptible_chain"))
            behind = await client.submit(workflow("invert_save"))
            await asyncio.to_thread(held.wait)
            sim.restart()
            with pytest.raises(JobLost):
                await behind.result(timeout=30)
        with pytest.raises((JobLost, ExecutionInterrupted)):
            await running.result(timeout=30)
        # The socket came back, and the client works on the restarted server.
        assert (await client.run(workflow("invert_save", color_1=5), timeout=30)).status is JobStatus.COMPLETED


async def test_5xx_answers_raise_server_error_and_the_next_request_succeeds(sim: ComfyUISimulator,
                                                                             config: Config) -> None:
    async with AsyncComfyUIClient(url=sim.url, config=config) as client:
        await client.run(workflow("invert_save", color_1=1))  # the socket is open: the failure goes to the POST
        sim.knobs.fail_status = 503
        sim.knobs.fail_next = 1
        with pytest.raises(ServerError) as raised:
            await client.run(workflow("invert_save"))
        assert raised.value.status_code == 503
        assert (await client.run(workflow("invert_save"), timeout=30)).status is JobStatus.COMPLETED


async def test_5xx_while_jobs_wait_behind_a_dropped_socket_are_outlasted(sim: ComfyUISimulator, config: Config) -> None:
    sim.knobs.drop_websocket_after = 0.2
    sim.knobs.node_seconds = 0.05
    async with AsyncComfyUIClient(url=sim.url, config=config, store_outputs=False) as client:
        handles = [await client.submit(workflow("preview_image", color_1=n)) for n in range(5)]
        sim.knobs.fail_next = 6  # the reconciliations after the drops fail for a while, then succeed
        jobs = await asyncio.gather(*(handle.result(timeout=60) for handle in handles))
    assert all(job.status is JobStatus.COMPLETED for job in jobs)


async def test_polling_when_the_monitor_is_disabled(sim: ComfyUISimulator, config: Config) -> None:
    async with AsyncComfyUIClient(url=sim.url, config=config, plugin_options=["no:monitor"]) as client:
        job = await client.run(workflow("invert_save"), timeout=30)
        assert client.event_source is None
    assert job.status is JobStatus.COMPLETED and job.stored


async def test_history_written_late_is_still_found(sim: ComfyUISimulator, config: Config) -> None:
    sim.knobs.history_delay = 0.3
    async with AsyncComfyUIClient(url=sim.url, config=config) as client:
        job = await client.run(workflow("invert_save"), timeout=30)
    assert job.history is not None and job.history["outputs"]


@pytest.mark.parametrize("sim", ["0.33.0"], indirect=True)
async def test_a_huge_body_is_refused_and_one_that_never_ends_times_out(sim: ComfyUISimulator, config: Config) -> None:
    async with AsyncComfyUIClient(url=sim.url, config=config, timeout=0.5) as client:
        await client.get_queue()
        sim.knobs.hostile_body = "huge"
        with pytest.raises(ProtocolError, match="too large"):
            await client.get_history()
        sim.knobs.hostile_body = "trickle"
        with pytest.raises(RequestTimeout):
            await client.get_history()
        sim.knobs.hostile_body = "flood"
        with pytest.raises(ProtocolError, match="too large"):
            await client.get_object_info()
        sim.knobs.hostile_body = None
        assert await client.get_history() == {}


# ------------------------------------------------------------------ a hostile WebSocket peer

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _accept(conn: socket.socket, request: bytes) -> None:
    key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
               if line.lower().startswith(b"sec-websocket-key"))
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")


class _Peer:
    """Answers successive connections on one loopback port, each with the next behaviour; records the requests."""

    def __init__(self, *behaviours: Callable[[socket.socket, bytes], None]) -> None:
        self.behaviours = list(behaviours)
        self.requests: list[bytes] = []
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
            self.requests.append(request)
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


@pytest.fixture
def peers() -> Iterator[Callable[..., _Peer]]:
    made: list[_Peer] = []

    def make(*behaviours: Callable[[socket.socket, bytes], None]) -> _Peer:
        made.append(_Peer(*behaviours))
        return made[-1]

    yield make
    for peer in made:
        peer.close()


def _peer_config(**values: object) -> Config:
    return load_config(overrides={"websocket.reconnect_delay": 0.01, **values}, use_file=False)


async def test_an_oversized_frame_is_refused_unread_and_the_socket_reconnects(peers: Callable[..., _Peer]) -> None:
    def huge(conn: socket.socket, request: bytes) -> None:
        _accept(conn, request)
        conn.sendall(struct.pack("!BBQ", 0x81, 127, 10 * 1024 * 1024))  # a 10 MB text frame, never sent

    peer = peers(huge, _accept)
    client = AsyncComfyUIClient(url=f"http://127.0.0.1:{peer.port}", config=_peer_config(**{"websocket.max_frame_size": 4096}))
    gaps = asyncio.Event()
    loop = asyncio.get_running_loop()
    client.tracker.mark_gap = lambda: loop.call_soon_threadsafe(gaps.set)  # type: ignore[method-assign]
    try:
        await client._ensure_events()
        await asyncio.wait_for(gaps.wait(), 30)
        assert await asyncio.to_thread(peer.connected[1].wait, 30), "the socket did not reconnect"
    finally:
        await client.aclose()


async def test_a_redirected_handshake_is_refused_and_the_credentials_go_nowhere_else(peers: Callable[..., _Peer]) -> None:
    elsewhere = peers(_accept)

    def redirect(conn: socket.socket, request: bytes) -> None:
        conn.sendall(f"HTTP/1.1 302 Found\r\nLocation: ws://127.0.0.1:{elsewhere.port}/ws\r\n"
                     "Content-Length: 0\r\n\r\n".encode())

    server = peers(redirect)
    async with AsyncComfyUIClient(url=f"http://127.0.0.1:{server.port}", token="s3cret", config=_peer_config()) as client:
        await client._ensure_events()
        assert client.event_source is not None and not client.event_source.connected
    assert b"Bearer s3cret" in server.requests[0]
    assert elsewhere.requests == []
