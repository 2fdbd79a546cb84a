"""The ``/ws`` route: one outbox per socket, fed from any thread and written in order on the event loop."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from aiohttp import WSMsgType, web

from comfykit.testing.frame_log import FrameLog
from comfykit.testing.replies import Routes, mirror
from comfykit.testing.routes_info import server_features
from comfykit.testing.server import SimServer

__all__ = ["Socket", "add_websocket_routes"]


class Socket:
    """One WebSocket and the ordered outbox that the executor thread feeds."""

    def __init__(self, ws: web.WebSocketResponse, client_id: str) -> None:
        self.ws = ws
        self.client_id = client_id
        self.preview_metadata = False
        self.outbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.opened = time.monotonic()


def add_websocket_routes(server: SimServer, routes: Routes) -> None:
    """Add ``/ws`` to ``routes``: each socket gets the queue status, then every event routed to its client id."""
    route = mirror(routes)

    @route("GET", "/ws")
    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=64 * 1024 * 1024)
        await ws.prepare(request)
        client_id = request.query.get("clientId") or uuid.uuid4().hex
        socket = Socket(ws, client_id)
        with server.lock:  # the executor thread reads the sockets to route events
            server.sockets[client_id] = socket
            server.all_sockets.append(socket)
            remaining = server.queue_remaining()
            # Set by the executor thread without the lock: one attribute holding an immutable tuple.
            current = server.executor.current_node
            running = server.running
        # Frames the executor delivers from now on queue behind these: ``deliver`` goes through the loop.
        status = {"status": {"exec_info": {"queue_remaining": remaining}}, "sid": client_id}
        socket.outbox.put_nowait(json.dumps({"type": "status", "data": status}))
        if running is not None and current is not None and running[3].get("client_id") == client_id:
            socket.outbox.put_nowait(json.dumps({"type": "executing", "data": {"node": current[1]}}))
        writer = asyncio.create_task(_write(socket, server.frame_log))
        dropper = asyncio.create_task(_drop_later(server, socket))
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    try:
                        frame = json.loads(message.data)
                    except ValueError:
                        continue
                    if isinstance(frame, dict) and frame.get("type") == "feature_flags":
                        flags = frame.get("data") or {}
                        socket.preview_metadata = bool(flags.get("supports_preview_metadata"))
                        socket.outbox.put_nowait(json.dumps({"type": "feature_flags", "data": server_features(server)}))
                elif message.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            dropper.cancel()
            socket.outbox.put_nowait(None)
            await writer
            with server.lock:
                if server.sockets.get(client_id) is socket:
                    del server.sockets[client_id]
                if socket in server.all_sockets:
                    server.all_sockets.remove(socket)
        return ws


async def _write(socket: Socket, frame_log: FrameLog) -> None:
    while True:
        payload = await socket.outbox.get()
        if payload is None:
            break
        frame_log.record(payload, socket.client_id)
        try:
            if isinstance(payload, bytes):
                await socket.ws.send_bytes(payload)
            else:
                await socket.ws.send_str(payload)
        except (ConnectionError, RuntimeError):
            break
    await socket.ws.close()


async def _drop_later(server: SimServer, socket: Socket) -> None:
    while True:
        await asyncio.sleep(0.02)
        after = server.knobs.drop_websocket_after
        if after is not None and time.monotonic() - socket.opened >= after:
            socket.outbox.put_nowait(None)
            return
