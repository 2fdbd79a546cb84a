"""The bundled ``monitor`` plugin: live events over the server's WebSocket.

One socket per client, opened before the first submission with the client's id (so
the server routes that client's job events to it), with the same base path and
credentials as HTTP.  A reader thread parses every frame and hands it to
``client.dispatch_event``.  When the socket drops it reconnects with backoff and
asks the tracker to reconcile every watched job, because a server never replays
what it sent during the gap; with ``client.auto_reconnect`` off
(``connect_websocket(auto_reconnect=False)``) it stays closed and waits poll.
Disable it with ``-p no:monitor`` or ``websocket.enable: false``; comfykit then polls.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

import websocket

from comfykit import hookimpl
from comfykit.events import parse_message
from comfykit.socket_settings import GREETING, SocketSettings
from comfykit_monitor.frames import BoundedWebSocket, MessageTooLarge

if TYPE_CHECKING:
    from comfykit.client import ComfyUIClient
    from comfykit.config import ConfigRegistry

__all__ = ["WebSocketEventSource"]

log = logging.getLogger("comfykit.monitor")


class WebSocketEventSource:
    """Reads a client's WebSocket in a thread and dispatches typed events."""

    name = "websocket"

    def __init__(self, client: ComfyUIClient) -> None:
        self.client = client
        self.settings = SocketSettings.from_config(client.config)
        self._ws: websocket.WebSocket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _open(self) -> websocket.WebSocket:
        headers = [f"{k}: {v}" for k, v in self.client.ws_headers().items()]
        # Bounded: a frame's announced length is checked before its payload is read, fragments are
        # capped, and a redirect (which would carry the credentials elsewhere) is refused.  Text is
        # decoded with errors='replace' below, so websocket-client's pure-Python UTF-8 check is skipped.
        settings = self.settings
        ws = BoundedWebSocket(max_message_bytes=settings.max_frame_size, enable_multithread=True,
                              skip_utf8_validation=True)
        ws.connect(self.client.ws_url, header=headers, timeout=settings.connect_timeout)
        ws.settimeout(settings.ping_interval)
        ws.send(GREETING)
        return ws

    def start(self) -> None:
        """Connect now (before the first POST) and start the reader thread; falls back to reconnecting."""
        try:
            self._ws = self._open()
            self._connected.set()
        except (OSError, websocket.WebSocketException) as exc:
            log.warning("WebSocket to %s failed (%s); will retry in the background", self.client.base_url, exc)
        self._thread = threading.Thread(target=self._run, name="comfykit-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        ws = self._ws
        if ws is not None:
            try:
                ws.close(timeout=1)
            except (OSError, websocket.WebSocketException) as exc:
                log.debug("closing the WebSocket: %s", exc)
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            if self._ws is None:
                if not self.client.auto_reconnect:
                    log.info("the WebSocket is closed and auto_reconnect is off; waits poll the server instead")
                    self.client.tracker.mark_gap()  # whatever was sent from now on is lost: results come from history
                    return
                if self.settings.gives_up(failures):
                    log.error("giving up on the WebSocket after %d attempts; polling instead", failures)
                    return
                if self._stopping.wait(self.settings.delay(failures)):
                    return
                try:
                    self._ws = self._open()
                except (OSError, websocket.WebSocketException) as exc:
                    failures += 1
                    log.info("WebSocket reconnect %d failed: %s", failures, exc)
                    continue
                failures = 0
                self.reconnects += 1
                self._connected.set()
                # Events sent while we were away are lost: ask the server about every watched job.
                self.client.tracker.reconcile()
            self._read(self._ws)
            self._connected.clear()
            self._ws = None

    def _read(self, ws: websocket.WebSocket) -> None:
        while not self._stopping.is_set():
            try:
                opcode, payload = ws.recv_data()
            except websocket.WebSocketTimeoutException:
                try:
                    ws.ping()
                except (OSError, websocket.WebSocketException):
                    return
                continue
            except MessageTooLarge as exc:
                # The rest of that frame is still in the stream: drop the connection and reconnect.
                log.warning("WebSocket %s (websocket.max_frame_size); reconnecting", exc)
                self.client.tracker.mark_gap()  # it may have carried a job's outputs: read them from history
                try:
                    ws.shutdown()
                except (OSError, websocket.WebSocketException) as close_error:
                    log.debug("closing the WebSocket: %s", close_error)
                return
            except (OSError, websocket.WebSocketException) as exc:
                if not self._stopping.is_set():
                    log.info("WebSocket dropped: %s", exc)
                return
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return
            message = payload if opcode == websocket.ABNF.OPCODE_BINARY else payload.decode("utf-8", "replace")
            try:
                self.client.dispatch_event(parse_message(message))
            except Exception:
                log.exception("handling a WebSocket event failed")


@hookimpl
def comfykit_add_config(registry: ConfigRegistry) -> None:
    # websocket.poll_interval is core's: the polling source reads it when this plugin is off.
    registry.add("websocket", "enable", True, help="Use the WebSocket for live events (else poll).")
    registry.add("websocket", "reconnect_attempts", 5, help="Reconnect attempts in a row before giving up.")
    registry.add("websocket", "reconnect_delay", 2.0, type="float", help="First reconnect delay in seconds.")
    registry.add(
        "websocket", "max_frame_size", 64 * 1024 * 1024,
        help="Largest WebSocket frame accepted, in bytes (real previews reach 5 MB).",
    )
    registry.add("websocket", "ping_interval", 20.0, type="float", help="Seconds between keep-alive pings.")


@hookimpl
def comfykit_event_source(client: ComfyUIClient) -> WebSocketEventSource | None:
    if not client.config["websocket.enable"]:
        return None
    return WebSocketEventSource(client)
