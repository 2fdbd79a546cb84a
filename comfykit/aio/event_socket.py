"""The live events of an :class:`~comfykit.AsyncComfyUIClient`: one WebSocket per client, read by one task.

It behaves as the monitor plugin's socket does for the sync client, with the same
settings (:class:`~comfykit.socket_settings.SocketSettings`, the ``websocket.*`` keys the
monitor declares; without the monitor the async client polls): it connects with the
client's id and credentials, hands every parsed frame to the client, reconnects with
backoff after a drop and then has every watched job reconciled with the server,
because a server never replays what it sent while the socket was down.  A frame larger than ``websocket.max_frame_size`` is
refused before its payload is read (``websockets`` checks the announced length), and
a redirected handshake is refused outright, so the credentials never reach another
address.

``websockets`` (the ``aio`` extra) was chosen over ``httpx-ws``: it is asyncio-native
and widely deployed, bounds frames and messages itself, answers pings, and lets a
subclass refuse redirects; ``httpx-ws`` would share httpx's transport but brings
``wsproto`` and a younger code base for what is one long-lived connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from comfykit.errors import ComfyKitError
from comfykit.events import Event, parse_message
from comfykit.socket_settings import GREETING, SocketSettings

__all__ = ["AsyncEventSocket", "RedirectRefused"]

log = logging.getLogger("comfykit.aio")

#: the close code a peer sends for a message above its size limit (RFC 6455)
_MESSAGE_TOO_BIG = 1009


class RedirectRefused(ComfyKitError):
    """The WebSocket handshake was answered with a redirect, which comfykit does not follow."""


def _websockets() -> Any:
    try:
        from websockets.asyncio import client
    except ImportError:
        raise ComfyKitError(
            "the async client's live events need the 'websockets' package (13 or newer)",
            hint="Install it with `pip install 'comfykit[aio]'`, or set websocket.enable: false to poll instead.",
        ) from None
    return client


def _refusing_connect() -> Any:
    client = _websockets()

    class RefusingConnect(client.connect):  # type: ignore[name-defined]
        """``websockets``' connect with every redirect refused instead of followed."""

        def process_redirect(self, exc: Exception) -> Exception | str:
            response = getattr(exc, "response", None)
            status = getattr(response, "status_code", 0)
            if response is not None and 300 <= status < 400:
                location = response.headers.get("Location", "?")
                return RedirectRefused(
                    f"the WebSocket handshake was redirected ({status}) to {location}; comfykit does not follow "
                    "redirects, so that credentials never reach another address",
                    hint="Point the client at the server's real address.",
                )
            return exc

    return RefusingConnect


class AsyncEventSocket:
    """Reads one client's WebSocket in a task; ``deliver`` gets each event, ``resync`` runs after each reconnect."""

    name = "websocket"

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        settings: SocketSettings,
        *,
        deliver: Callable[[Event], None],
        resync: Callable[[], Awaitable[None]],
        gap: Callable[[], None],
        auto_reconnect: Callable[[], bool],
    ) -> None:
        self.url = url
        self.headers = headers
        self.settings = settings
        self._deliver = deliver
        self._resync = resync
        self._gap = gap
        self._auto_reconnect = auto_reconnect
        self._connect = _refusing_connect()
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._first_attempt = asyncio.Event()
        #: how many times the socket was opened again after a drop
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        """Start the reader task and wait for its first connection attempt (a failed one is retried behind)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="comfykit-aio-websocket")
        await self._first_attempt.wait()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        settings = self.settings
        failures = 0  # failed opens in a row; a drop after a good open is reconnected at once
        opened_before = False
        while True:
            opened = False
            try:
                async with self._connect(
                    self.url, additional_headers=self.headers, max_size=settings.max_frame_size,
                    open_timeout=settings.connect_timeout, ping_interval=settings.ping_interval,
                    ping_timeout=settings.ping_interval, close_timeout=1.0, compression=None,
                ) as ws:
                    opened = True
                    await ws.send(GREETING)
                    self._connected.set()
                    self._first_attempt.set()
                    failures = 0
                    if opened_before:
                        self.reconnects += 1
                        # Events sent while we were away are lost: ask the server about every watched job.
                        await self._resync()
                    opened_before = True
                    await self._read(ws)
            except asyncio.CancelledError:
                raise
            except RedirectRefused as exc:
                log.error("%s; waits poll the server instead", exc)
                return self._give_up()
            except Exception as exc:
                if self._too_big(exc):
                    log.warning("WebSocket frame above %d bytes (websocket.max_frame_size); reconnecting",
                                settings.max_frame_size)
                    self._gap()  # it may have carried a job's outputs: read them from history
                elif not opened:
                    failures += 1
                    log.info("WebSocket to %s failed (%d in a row): %s", self.url.split("?", 1)[0], failures, exc)
                else:
                    log.info("WebSocket dropped: %s", exc)
            self._connected.clear()
            self._first_attempt.set()
            if not self._auto_reconnect():
                log.info("the WebSocket is closed and auto_reconnect is off; waits poll the server instead")
                return self._give_up()
            if settings.gives_up(failures):
                log.error("giving up on the WebSocket after %d attempts; polling instead", failures)
                return self._give_up()
            await asyncio.sleep(settings.delay(failures))

    def _give_up(self) -> None:
        self._connected.clear()
        self._first_attempt.set()
        self._gap()  # whatever is sent from now on is lost: results come from history

    async def _read(self, ws: Any) -> None:
        async for message in ws:
            try:
                self._deliver(parse_message(message))
            except Exception:
                log.exception("handling a WebSocket event failed")

    @staticmethod
    def _too_big(exc: BaseException) -> bool:
        sent = getattr(exc, "sent", None)
        received = getattr(exc, "rcvd", None)
        return any(getattr(frame, "code", None) == _MESSAGE_TOO_BIG for frame in (sent, received))
