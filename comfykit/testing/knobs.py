"""Fault and timing knobs of the simulator, changeable while it runs.

One ``Knobs`` object is shared by the HTTP handlers, the WebSocket handlers
and the executor thread; tests flip its fields at any moment
(``sim.knobs.fail_next = 3``) and the next request or node sees the change.
"""

from __future__ import annotations

import threading

import attrs

__all__ = ["Knobs"]


def _help(text: str) -> dict[str, str]:
    """Field metadata carrying the knob's help text (``comfykit serve`` shows it for the knob's option)."""
    return {"help": text}


@attrs.define
class Knobs:
    """What the simulator does besides behaving like ComfyUI.

    Each public field is a knob; its ``metadata["help"]`` says what it does.
    """

    node_seconds: float = attrs.field(default=0.0, metadata=_help("seconds each executed (non-cached) node takes"))
    step_seconds: float = attrs.field(
        default=0.0, metadata=_help("seconds each sampler step takes (KSampler and friends report one progress event per step)")
    )
    drop_websocket_after: float | None = attrs.field(
        default=None, metadata=_help("close every WebSocket this many seconds after it opened (None: never)")
    )
    history_delay: float = attrs.field(
        default=0.0, metadata=_help("seconds between ``execution_success`` and writing the history entry")
    )
    frame_log: str | None = attrs.field(
        default=None,
        metadata=_help(
            "append a JSON line per WebSocket frame to this file, with the wall time it was written (to tell a "
            "client's delay in noticing an event from the server's in sending it; None: off)"
        ),
    )
    fail_next: int = attrs.field(default=0, metadata=_help("answer the next N HTTP requests with a 5xx (``fail_status``)"))
    fail_status: int = attrs.field(default=500, metadata=_help("the status code of the failures ``fail_next`` forces"))
    response_delay: float = attrs.field(default=0.0, metadata=_help("seconds to wait before answering each HTTP request"))
    answer_delay: float = attrs.field(
        default=0.0, metadata=_help("seconds to wait after handling each HTTP request before answering (lost-answer faults)")
    )
    refuse_connections: bool = attrs.field(
        default=False, metadata=_help("refuse new connections (the listening socket is closed while True)")
    )
    output_filename: str | None = attrs.field(
        default=None,
        metadata=_help(
            "output filename (may be hostile: \"../x.png\", \"/etc/x\") reported for saved files, instead of the real"
            " one"
        ),
    )
    output_subfolder: str | None = attrs.field(
        default=None, metadata=_help("output subfolder reported for saved files, instead of the real one")
    )
    view_any_name: bool = attrs.field(
        default=False,
        metadata=_help(
            "serve the newest output file for ANY ``/view`` filename/subfolder, even escaping ones (a hostile "
            "server: pair it with ``output_filename``/``output_subfolder`` so the hostile names download)"
        ),
    )
    break_views: int = attrs.field(
        default=0, metadata=_help("cut the next N ``/view`` transfers (the connection closes mid-body) ...")
    )
    break_view_after: int = attrs.field(default=1024, metadata=_help("... after this many body bytes"))
    view_ignore_range: bool = attrs.field(
        default=False,
        metadata=_help(
            "answer Range requests on ``/view`` with 200 and the whole file (a proxy that drops ranges)"
        ),
    )
    fail_nodes_next: int = attrs.field(
        default=0, metadata=_help("the next N executed nodes raise ``node_failure_message`` (a transient GPU error by default)")
    )
    node_failure_message: str = attrs.field(
        default="CUDA error: out of memory", metadata=_help("the error message of the node failures ``fail_nodes_next`` forces")
    )
    node_failure_type: str = attrs.field(
        default="torch.OutOfMemoryError", metadata=_help("the exception type reported with those node failures")
    )
    preview_method: str = attrs.field(
        default="none", metadata=_help("preview method for samplers: \"none\" (no previews) or \"latent2rgb\" (JPEG previews)")
    )
    preview_size: int = attrs.field(default=512, metadata=_help("sampler preview image longest side"))

    hostile_body: str | None = attrs.field(
        default=None,
        metadata=_help(
            "answer GET requests under ``hostile_paths`` with a hostile body instead: \"huge\" (``hostile_bytes`` "
            "of valid JSON, Content-Length given), \"huge_chunked\" (the same, chunked, no length), \"short\" (a "
            "Content-Length larger than what is sent, then silence), \"trickle\" (chunked, one byte every 20 ms, "
            "never ending), \"flood\" (chunked, never ending, as fast as the client reads); None: behave"
        ),
    )
    hostile_bytes: int = attrs.field(
        default=100 * 1024 * 1024, metadata=_help("bytes of the ``huge`` and ``huge_chunked`` hostile bodies")
    )
    hostile_paths: tuple[str, ...] | str = attrs.field(
        default=("/history", "/object_info"),
        metadata=_help(
            "the paths (without the ``/api`` prefix; a path matches itself and everything below it) that get "
            "``hostile_body``; a text is read as a comma-separated list (what ``comfykit serve --hostile-paths`` "
            "passes)"
        ),
    )

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
