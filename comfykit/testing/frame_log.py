"""The ``frame_log`` knob's file: one JSON line per WebSocket frame, with the wall time it went to the socket.

ComfyUI's ``timestamp`` fields are whole milliseconds, taken when the executor made the
event, before the event loop got round to sending it.  A client's delay in noticing an
event measured from them includes the server's own delay and up to a millisecond of
rounding; this log says when each frame was really written, so the two can be told apart.

Lines: ``{"sent": <time.time()>, "client_id": ..., "frame": <the frame as sent>}`` for a
text frame, ``{"sent": ..., "client_id": ..., "binary_bytes": <length>}`` for a binary one
(previews).
"""

from __future__ import annotations

import json
import time
from typing import IO

from comfykit.testing.knobs import Knobs

__all__ = ["FrameLog"]


#: bytes of log kept in memory between writes to the file: a write per frame would slow the event loop it measures
BUFFER_SIZE = 1024 * 1024


class FrameLog:
    """Appends each frame written to the file the ``frame_log`` knob names (nothing while it is None).

    Used by the event loop's socket writers only (one thread).  The file is opened when the knob
    first names it and written through a buffer: it is complete once the simulator has stopped,
    or once a frame was sent after the knob was set to None or to another file.
    """

    def __init__(self, knobs: Knobs) -> None:
        self._knobs = knobs
        self._file: IO[str] | None = None

    def record(self, payload: str | bytes, client_id: str) -> None:
        """Log ``payload``, about to be written to the socket of ``client_id``."""
        path = self._knobs.frame_log
        if path is None:
            self.close()
            return
        sent = time.time()
        if self._file is None or self._file.name != path:
            self.close()
            self._file = open(path, "a", encoding="utf-8", buffering=BUFFER_SIZE)  # noqa: SIM115 (open across frames)
        head = f'{{"sent": {sent!r}, "client_id": {json.dumps(client_id)}'
        # A text frame is already JSON (the simulator sends no other): it goes in as it is, not parsed and encoded again.
        if isinstance(payload, bytes):
            self._file.write(f'{head}, "binary_bytes": {len(payload)}}}\n')
        else:
            self._file.write(f'{head}, "frame": {payload}}}\n')

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
