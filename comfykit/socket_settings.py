"""What every reader of ComfyUI's WebSocket shares: its settings, its first message and its reconnect policy.

Two readers exist: the ``monitor`` plugin's thread for :class:`comfykit.ComfyUIClient`, and
the task of :mod:`comfykit.aio` for :class:`comfykit.AsyncComfyUIClient`.  They use different
libraries, but they read the same ``websocket.*`` keys (declared by the monitor plugin),
greet the server the same way and wait the same time before each reconnect; that lives here.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from comfykit.config import Config

__all__ = ["GREETING", "MAX_RECONNECT_DELAY", "SocketSettings"]

#: the client's first message: it reads preview metadata frames (ComfyUI 0.3.40+ then sends them)
GREETING = json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}})

#: the longest wait between two reconnect attempts, in seconds
MAX_RECONNECT_DELAY = 30.0


@attrs.frozen
class SocketSettings:
    """The ``websocket.*`` settings of one client, read once when its socket is built."""

    #: failed opens in a row before the reader gives up (waits poll the server then)
    reconnect_attempts: int
    #: seconds before the first reconnect attempt; doubled after each failure
    reconnect_delay: float
    #: largest frame accepted, in bytes; a larger one is refused before its payload is read
    max_frame_size: int
    #: seconds between keep-alive pings
    ping_interval: float
    #: seconds to wait for the connection and its handshake
    connect_timeout: float

    @classmethod
    def from_config(cls, config: Config) -> SocketSettings:
        return cls(
            reconnect_attempts=int(config["websocket.reconnect_attempts"]),
            reconnect_delay=float(config["websocket.reconnect_delay"]),
            max_frame_size=int(config["websocket.max_frame_size"]),
            ping_interval=float(config["websocket.ping_interval"]),
            connect_timeout=float(config["comfyui.connect_timeout"]),
        )

    def gives_up(self, failures: int) -> bool:
        """Whether ``failures`` failed opens in a row are too many to try again."""
        return failures > self.reconnect_attempts

    def delay(self, failures: int) -> float:
        """Seconds to wait before the next open after ``failures`` failed ones in a row (none: at once)."""
        if failures <= 0:
            return 0.0
        return min(MAX_RECONNECT_DELAY, self.reconnect_delay * 2 ** (failures - 1))
