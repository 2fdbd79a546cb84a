"""Typed, frozen records for every live event a ComfyUI server sends, and the frame parser.

``parse_message`` turns one WebSocket frame (text or binary) into an :class:`Event`.
It never raises: a frame of an unknown type, or one whose data has an unexpected
shape, becomes an :class:`UnknownEvent` that keeps the raw content.

Every event also reads as the message the server sent, ``{"type": ..., "data": ...}``
(a read-only mapping), so callbacks written for raw frames (``event["data"]["value"]``,
``event.get("type")``) work unchanged beside the typed attributes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from comfykit.protocols import EventSource  # re-exported: it lived here before protocols.py

__all__ = [
    "BinaryTextEvent",
    "Event",
    "EventSource",
    "ExecutedEvent",
    "ExecutingEvent",
    "ExecutionCachedEvent",
    "ExecutionErrorEvent",
    "ExecutionInterruptedEvent",
    "ExecutionStartEvent",
    "ExecutionSuccessEvent",
    "FeatureFlagsEvent",
    "NodeProgress",
    "PreviewImageEvent",
    "ProgressEvent",
    "ProgressStateEvent",
    "StatusEvent",
    "UnknownEvent",
    "parse_message",
]


#: the keys of an event read as the raw message
MESSAGE_KEYS = ("type", "data")


@attrs.frozen
class Event(Mapping[str, Any]):
    """Base of all events: ``type`` is the server's event name, ``data`` its payload as sent.

    As a mapping an event is the frame's message: ``event["type"]`` and ``event["data"]``
    (the payload itself, shared by every consumer of the event: read it, do not change it).
    """

    type: str
    data: Any = attrs.field(default=None, eq=False, repr=False)

    @property
    def prompt_id(self) -> str | None:
        data = self.data
        # A dict is by far the common case: the Mapping check is an ABC's, slow on every event.
        return data.get("prompt_id") if type(data) is dict or isinstance(data, Mapping) else None

    def __getitem__(self, key: str) -> Any:
        if key == "type":
            return self.type
        if key == "data":
            return self.data
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(MESSAGE_KEYS)

    def __len__(self) -> int:
        return len(MESSAGE_KEYS)


@attrs.frozen
class StatusEvent(Event):
    queue_remaining: int | None = None
    sid: str | None = None


@attrs.frozen
class ExecutionStartEvent(Event):
    timestamp: int | None = None


@attrs.frozen
class ExecutionCachedEvent(Event):
    nodes: tuple[str, ...] = ()


@attrs.frozen
class ExecutingEvent(Event):
    """A node started; ``node is None`` means the whole prompt finished (history is written)."""

    node: str | None = None
    display_node: str | None = None

    @property
    def is_done(self) -> bool:
        return self.node is None


@attrs.frozen
class ProgressEvent(Event):
    node: str | None = None
    value: float = 0
    max: float = 0


@attrs.frozen
class NodeProgress:
    node_id: str
    state: str
    value: float
    max: float


@attrs.frozen
class ProgressStateEvent(Event):
    nodes: Mapping[str, NodeProgress] = attrs.field(factory=dict)


@attrs.frozen
class ExecutedEvent(Event):
    node: str | None = None
    display_node: str | None = None
    output: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class ExecutionSuccessEvent(Event):
    timestamp: int | None = None


@attrs.frozen
class ExecutionErrorEvent(Event):
    node_id: str | None = None
    node_type: str | None = None
    exception_message: str = ""
    exception_type: str | None = None
    traceback: tuple[str, ...] = ()
    executed: tuple[str, ...] = ()


@attrs.frozen
class ExecutionInterruptedEvent(Event):
    node_id: str | None = None
    node_type: str | None = None
    executed: tuple[str, ...] = ()


@attrs.frozen
class FeatureFlagsEvent(Event):
    flags: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class PreviewImageEvent(Event):
    """A binary preview (type 1, or type 4 with metadata): the image bytes and their format."""

    image_format: str = "JPEG"
    image: bytes = attrs.field(default=b"", repr=False)
    metadata: Mapping[str, Any] | None = None
    node_id: str | None = None

    @property
    def prompt_id(self) -> str | None:
        return self.metadata.get("prompt_id") if self.metadata else None


@attrs.frozen
class BinaryTextEvent(Event):
    """Binary type 3: text sent by a node."""

    node_id: str = ""
    text: str = ""


@attrs.frozen
class UnknownEvent(Event):
    """Anything else: kept, never dropped. ``raw`` holds the frame as received."""

    raw: str | bytes = attrs.field(default=b"", repr=False)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _text_event(kind: str, data: Mapping[str, Any]) -> Event:
    if kind == "status":
        exec_info = (data.get("status") or {}).get("exec_info") or {}
        return StatusEvent(kind, data, queue_remaining=exec_info.get("queue_remaining"), sid=_str(data.get("sid")))
    if kind == "execution_start":
        return ExecutionStartEvent(kind, data, timestamp=data.get("timestamp"))
    if kind == "execution_cached":
        return ExecutionCachedEvent(kind, data, nodes=_strings(data.get("nodes")))
    if kind == "executing":
        return ExecutingEvent(kind, data, node=_str(data.get("node")), display_node=_str(data.get("display_node")))
    if kind == "progress":
        return ProgressEvent(kind, data, node=_str(data.get("node")), value=float(data["value"]), max=float(data["max"]))
    if kind == "progress_state":
        nodes = {
            str(node_id): NodeProgress(str(node_id), str(state.get("state")), float(state["value"]), float(state["max"]))
            for node_id, state in (data.get("nodes") or {}).items()
        }
        return ProgressStateEvent(kind, data, nodes=nodes)
    if kind == "executed":
        output = data.get("output") or {}
        return ExecutedEvent(kind, data, node=_str(data.get("node")), display_node=_str(data.get("display_node")),
                             output=dict(output))
    if kind == "execution_success":
        return ExecutionSuccessEvent(kind, data, timestamp=data.get("timestamp"))
    if kind == "execution_error":
        return ExecutionErrorEvent(
            kind, data, node_id=_str(data.get("node_id")), node_type=_str(data.get("node_type")),
            exception_message=str(data.get("exception_message", "")), exception_type=_str(data.get("exception_type")),
            traceback=_strings(data.get("traceback")), executed=_strings(data.get("executed")),
        )
    if kind == "execution_interrupted":
        return ExecutionInterruptedEvent(kind, data, node_id=_str(data.get("node_id")),
                                         node_type=_str(data.get("node_type")), executed=_strings(data.get("executed")))
    if kind == "feature_flags":
        return FeatureFlagsEvent(kind, data, flags=dict(data))
    raise KeyError(kind)


_IMAGE_FORMATS = {1: "JPEG", 2: "PNG"}


def _binary_event(frame: bytes) -> Event:
    event_type = int.from_bytes(frame[:4], "big")
    body = frame[4:]
    if event_type == 1:
        return PreviewImageEvent("preview_image", None, image_format=_IMAGE_FORMATS.get(int.from_bytes(body[:4], "big"),
                                 "unknown"), image=body[4:])
    if event_type == 4:
        length = int.from_bytes(body[:4], "big")
        metadata = json.loads(body[4:4 + length])
        if not isinstance(metadata, dict):
            raise ValueError("preview metadata is not an object")
        image_type = str(metadata.get("image_type", ""))
        return PreviewImageEvent(
            "preview_image_with_metadata", metadata, image_format="PNG" if image_type.endswith("png") else "JPEG",
            image=body[4 + length:], metadata=metadata, node_id=_str(metadata.get("node_id")),
        )
    if event_type == 3:
        length = int.from_bytes(body[:4], "big")
        return BinaryTextEvent("text", None, node_id=body[4:4 + length].decode("utf-8"),
                               text=body[4 + length:].decode("utf-8"))
    raise KeyError(event_type)


def parse_message(message: str | bytes) -> Event:
    """Parse one WebSocket frame; never raises."""
    if isinstance(message, (bytes, bytearray)):
        frame = bytes(message)
        try:
            return _binary_event(frame)
        except (KeyError, ValueError, IndexError, UnicodeDecodeError):
            kind = f"binary:{int.from_bytes(frame[:4], 'big')}" if len(frame) >= 4 else "binary"
            return UnknownEvent(kind, None, raw=frame)
    try:
        decoded = json.loads(message)
    except ValueError:
        return UnknownEvent("invalid_json", None, raw=message)
    if not isinstance(decoded, dict):
        return UnknownEvent("invalid_frame", decoded, raw=message)
    kind = str(decoded.get("type", ""))
    data = decoded.get("data")
    if type(data) is not dict:  # what json.loads makes of an object
        return UnknownEvent(kind, data, raw=message)
    try:
        return _text_event(kind, data)
    except (KeyError, TypeError, ValueError, AttributeError):
        return UnknownEvent(kind, data, raw=message)
