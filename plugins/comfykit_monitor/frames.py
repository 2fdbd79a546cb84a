"""A WebSocket that checks sizes before it reads and never follows a redirect.

websocket-client reads a frame's whole payload before anyone can look at its length, and
joins continuation frames without limit, so a server announcing a 500 MB frame (or sending
fragments forever) makes the client hold all of it.  It also follows handshake redirects,
sending the client's ``Authorization`` and custom headers to whatever host the ``Location``
names.  :class:`BoundedWebSocket` checks the announced length right after the frame header,
bounds fragment assembly, and refuses redirects outright: ComfyUI never redirects ``/ws``.
"""

from __future__ import annotations

from typing import Any

import websocket

__all__ = ["BoundedWebSocket", "MessageTooLarge", "RedirectRefused"]


class MessageTooLarge(websocket.WebSocketPayloadException):
    """A frame, or a message assembled from fragments, is larger than the limit."""


class RedirectRefused(websocket.WebSocketException):
    """The handshake was answered with a redirect, which is not followed with credentials."""


class _LengthCheckedFrames(websocket.frame_buffer):
    def __init__(self, recv: Any, skip_utf8_validation: bool, limit: int) -> None:
        super().__init__(recv, skip_utf8_validation)
        self.limit = limit

    def recv_length(self) -> None:
        super().recv_length()
        # Checked before a byte of the payload is read; the connection is dropped afterwards,
        # since the unread payload still sits in the stream.
        if self.length is not None and self.length > self.limit:
            announced, self.length = self.length, None
            raise MessageTooLarge(f"the server announced a {announced:,}-byte frame (limit {self.limit:,})")


class _SizeCheckedMessages(websocket.continuous_frame):
    def __init__(self, skip_utf8_validation: bool, limit: int) -> None:
        super().__init__(False, skip_utf8_validation)
        self.limit = limit

    def add(self, frame: websocket.ABNF) -> None:
        held = len(self.cont_data[1]) if self.cont_data else 0
        if held + len(frame.data) > self.limit:
            self.cont_data, self.recving_frames = None, None
            raise MessageTooLarge(f"a fragmented message grew past {self.limit:,} bytes")
        super().add(frame)


class BoundedWebSocket(websocket.WebSocket):
    """``websocket.WebSocket`` with a size limit per message and no redirects."""

    def __init__(self, *, max_message_bytes: int, skip_utf8_validation: bool = False, **options: Any) -> None:
        super().__init__(skip_utf8_validation=skip_utf8_validation, **options)
        self.frame_buffer = _LengthCheckedFrames(self._recv, skip_utf8_validation, max_message_bytes)
        self.cont_frame = _SizeCheckedMessages(skip_utf8_validation, max_message_bytes)

    def connect(self, url: str, **options: Any) -> None:
        options["redirect_limit"] = 0
        try:
            super().connect(url, **options)
        except websocket.WebSocketException:
            response = self.handshake_response
            if response is not None and 300 <= response.status < 400:
                location = response.headers.get("location", "?")
                raise RedirectRefused(
                    f"the WebSocket handshake was redirected ({response.status}) to {location}; comfykit does not "
                    "follow redirects, so that credentials never reach another address"
                ) from None
            raise
