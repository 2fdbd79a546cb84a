"""Fault and timing knobs of the simulator, changeable while it runs.

One ``Knobs`` object is shared by the HTTP handlers, the WebSocket handlers
and the executor thread; tests flip its fields at any moment
(``sim.knobs.fail_next = 3``) and the next request or node sees the change.
"""

from __future__ import annotations

import threading

import attrs

__all__ = ["Knobs"]


@attrs.define
class Knobs:
    """What the simulator does besides behaving like ComfyUI."""

    #: seconds each executed (non-cached) node takes
    node_seconds: float = 0.0
    #: seconds each sampler step takes (KSampler and friends report one progress event per step)
    step_seconds: float = 0.0
    #: close every WebSocket this many seconds after it opened (None: never)
    drop_websocket_after: float | None = None
    #: seconds between ``execution_success`` and writing the history entry
    history_delay: float = 0.0
    #: answer the next N HTTP requests with a 5xx (``fail_status``)
    fail_next: int = 0
    fail_status: int = 500
    #: seconds to wait before answering each HTTP request
    response_delay: float = 0.0
    #: seconds to wait after handling each HTTP request before answering (lost-answer faults)
    answer_delay: float = 0.0
    #: refuse new connections (the listening socket is closed while True)
    refuse_connections: bool = False
    #: output filename (may be hostile: "../x.png", "/etc/x") reported for saved files, instead of the real one
    output_filename: str | None = None
    #: output subfolder reported for saved files, instead of the real one
    output_subfolder: str | None = None
    #: serve the newest output file for ANY ``/view`` filename/subfolder, even escaping ones (a hostile
    #: server: pair it with ``output_filename``/``output_subfolder`` so the hostile names download)
    view_any_name: bool = False
    #: cut the next N ``/view`` transfers (the connection closes mid-body) ...
    break_views: int = 0
    #: ... after this many body bytes
    break_view_after: int = 1024
    #: answer Range requests on ``/view`` with 200 and the whole file (a proxy that drops ranges)
    view_ignore_range: bool = False
    #: the next N executed nodes raise ``node_failure_message`` (a transient GPU error by default)
    fail_nodes_next: int = 0
    node_failure_message: str = "CUDA error: out of memory"
    node_failure_type: str = "torch.OutOfMemoryError"
    #: preview method for samplers: "none" (no previews) or "latent2rgb" (JPEG previews)
    preview_method: str = "none"
    #: sampler preview image longest side
    preview_size: int = 512

    #: answer GET requests under ``hostile_paths`` with a hostile body instead: "huge" (``hostile_bytes`` of valid
    #: JSON, Content-Length given), "huge_chunked" (the same, chunked, no length), "short" (a Content-Length larger
    #: than what is sent, then silence), "trickle" (chunked, one byte every 20 ms, never ending), "flood" (chunked,
    #: never ending, as fast as the client reads); None: behave
    hostile_body: str | None = None
    hostile_bytes: int = 100 * 1024 * 1024
    #: the paths (without the ``/api`` prefix; a path matches itself and everything below it) that get ``hostile_body``;
    #: a text is read as a comma-separated list (what ``comfykit serve --hostile-paths`` passes)
    hostile_paths: tuple[str, ...] | str = ("/history", "/object_info")

    _lock: threading.Lock = attrs.field(factory=threading.Lock, repr=False, eq=False, alias="_lock")

    def take_node_failure(self) -> tuple[str, str] | None:
        """Consume one pending forced node failure; return (message, exception type), or None."""
        with self._lock:
            if self.fail_nodes_next > 0:
                self.fail_nodes_next -= 1
                return self.node_failure_message, self.node_failure_type
        return None

    def take_failure(self) -> int | None:
        """Consume one pending forced failure; return its status, or None when none is pending."""
        with self._lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                return self.fail_status
        return None

    def take_view_break(self) -> int | None:
        """Consume one pending ``/view`` cut; return after how many bytes, or None when none is pending."""
        with self._lock:
            if self.break_views > 0:
                self.break_views -= 1
                return self.break_view_after
        return None
