"""A WebSocket that reads frames in bulk, checks sizes before it reads, and never follows a redirect.

websocket-client reads a frame's whole payload before anyone can look at its length, and
joins continuation frames without limit, so a server announcing a 500 MB frame (or sending
fragments forever) makes the client hold all of it.  It also reads each frame with two or
three socket reads and several layers of Python (about 40 µs per frame here, fourteen
frames per job), and it follows handshake redirects, sending the client's ``Authorization``
and custom headers to whatever host the ``Location`` names.  :class:`BoundedWebSocket`
keeps websocket-client for the handshake and for sending, but reads frames itself: the
socket is read 64 KiB at a time into one buffer and frames are cut out of it, the
announced length is checked as soon as the frame header is in, fragment assembly is
bounded, and redirects are refused outright (ComfyUI never redirects ``/ws``).
"""

from __future__ import annotations

from typing import Any

import websocket

__all__ = ["BoundedWebSocket", "MessageTooLarge", "RedirectRefused"]


class MessageTooLarge(websocket.WebSocketPayloadException):
    """A frame, or a message assembled from fragments, is larger than the limit."""


class RedirectRefused(websocket.WebSocketException):
    """The handshake was answered with a redirect, which is not followed with credentials."""


#: bytes asked of the socket per read
READ_SIZE = 64 * 1024
_TEXT, _BINARY, _CONTINUATION = websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY, websocket.ABNF.OPCODE_CONT
_CLOSE, _PING, _PONG = websocket.ABNF.OPCODE_CLOSE, websocket.ABNF.OPCODE_PING, websocket.ABNF.OPCODE_PONG


class BoundedWebSocket(websocket.WebSocket):
    """``websocket.WebSocket`` with a size limit per message, frames read in bulk, and no redirects.

    Read it with :meth:`recv_data` (or ``recv``, which calls it); websocket-client's own
    frame methods (``recv_frame``) would miss what this buffer already took off the socket.
    """

    def __init__(self, *, max_message_bytes: int, skip_utf8_validation: bool = False, **options: Any) -> None:
        super().__init__(skip_utf8_validation=skip_utf8_validation, **options)
        self.limit = max_message_bytes
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0
        self._held = 0

    def recv_data(self, control_frame: bool = False) -> tuple[int, bytes]:
        """The next message as (opcode, payload); pings are answered, and returned only with ``control_frame``."""
        while True:
            fin, opcode, payload = self._next_frame()
            if opcode in (_TEXT, _BINARY):
                if self._fragment_opcode:
                    raise websocket.WebSocketProtocolException("a message began inside a fragmented one")
                if fin:
                    return opcode, payload
                self._fragment_opcode, self._fragments, self._held = opcode, [payload], len(payload)
            elif opcode == _CONTINUATION:
                if not self._fragment_opcode:
                    raise websocket.WebSocketProtocolException("a continuation frame without a message")
                self._held += len(payload)
                if self._held > self.limit:
                    self._fragment_opcode, self._fragments = 0, []
                    raise MessageTooLarge(f"a fragmented message grew past {self.limit:,} bytes")
                self._fragments.append(payload)
                if fin:
                    whole, first = b"".join(self._fragments), self._fragment_opcode
                    self._fragment_opcode, self._fragments = 0, []
                    return first, whole
            elif opcode == _CLOSE:
                self.send_close()
                return opcode, payload
            elif opcode == _PING:
                self.pong(payload)
                if control_frame:
                    return opcode, payload
            elif opcode == _PONG:
                if control_frame:
                    return opcode, payload
            else:
                raise websocket.WebSocketProtocolException(f"unknown frame opcode {opcode}")

    def _next_frame(self) -> tuple[bool, int, bytes]:
        while True:
            frame = self._cut_frame()
            if frame is not None:
                return frame
            self._fill()

    def _cut_frame(self) -> tuple[bool, int, bytes] | None:
        """The first whole frame in the buffer, taken out of it; ``None`` while it is incomplete.

        Nothing is taken before the whole frame is in, so a read that times out halfway
        (the keep-alive ping interval) loses nothing.
        """
        buffer = self._buffer
        size = len(buffer)
        if size < 2:
            return None
        first, second = buffer[0], buffer[1]
        if first & 0x70:
            raise websocket.WebSocketProtocolException("a frame with reserved bits set (no extension was agreed)")
        length, start = second & 0x7F, 2
        if length == 126:
            if size < 4:
                return None
            length, start = int.from_bytes(buffer[2:4], "big"), 4
        elif length == 127:
            if size < 10:
                return None
            length, start = int.from_bytes(buffer[2:10], "big"), 10
        opcode = first & 0x0F
        if opcode >= _CLOSE and (length > 125 or not first & 0x80):
            raise websocket.WebSocketProtocolException("a control frame longer than 125 bytes or fragmented")
        if length > self.limit:
            # Checked before a byte of the payload is read; the caller drops the connection,
            # since the unread payload still sits in the stream.
            buffer.clear()
            raise MessageTooLarge(f"the server announced a {length:,}-byte frame (limit {self.limit:,})")
        masked = second & 0x80
        end = start + (4 if masked else 0) + length
        if size < end:
            return None
        if masked:
            key, start = bytes(buffer[start:start + 4]), start + 4
            payload = websocket.ABNF.mask(key, bytes(buffer[start:end]))
        else:
            payload = bytes(buffer[start:end])
        del buffer[:end]
        return bool(first & 0x80), opcode, payload

    def _fill(self) -> None:
        sock = self.sock
        if sock is None:
            raise websocket.WebSocketConnectionClosedException("the socket is closed")
        try:
            chunk = sock.recv(READ_SIZE)
        except TimeoutError as exc:
            raise websocket.WebSocketTimeoutException(str(exc) or "timed out") from None
        if not chunk:
            raise websocket.WebSocketConnectionClosedException("the connection to the server was lost")
        self._buffer += chunk

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
