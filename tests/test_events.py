"""The event parser: every recorded frame parses to its typed record; nothing ever raises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comfykit.events import (
    ExecutedEvent,
    ExecutingEvent,
    ExecutionErrorEvent,
    PreviewImageEvent,
    ProgressEvent,
    ProgressStateEvent,
    StatusEvent,
    UnknownEvent,
    parse_message,
)

RECORDINGS = Path(__file__).resolve().parent / "fixtures" / "recordings"
TRANSCRIPTS = sorted(RECORDINGS.glob("*/ws/*.json"))
KNOWN = {
    "status", "execution_start", "execution_cached", "executing", "progress", "progress_state", "executed",
    "execution_success", "execution_error", "execution_interrupted", "feature_flags",
}


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: f"{p.parent.parent.name}-{p.stem}")
def test_every_recorded_text_frame_parses_to_its_type(path: Path) -> None:
    transcript = json.loads(path.read_text())
    for socket in transcript["sockets"].values():
        for frame in socket["frames"]:
            if frame["kind"] != "text":
                continue
            event = parse_message(json.dumps(frame["msg"]))
            assert event.type == frame["msg"]["type"]
            if event.type in KNOWN:
                assert not isinstance(event, UnknownEvent), frame["msg"]
            else:
                assert isinstance(event, UnknownEvent)  # e.g. 0.33's dotted assets.* events are kept, not dropped


def test_typed_fields() -> None:
    done = parse_message('{"type": "executing", "data": {"node": null, "prompt_id": "p"}}')
    assert isinstance(done, ExecutingEvent) and done.is_done and done.prompt_id == "p"
    progress = parse_message('{"type": "progress", "data": {"value": 3, "max": 20, "prompt_id": "p", "node": "3"}}')
    assert isinstance(progress, ProgressEvent) and (progress.value, progress.max, progress.node) == (3, 20, "3")
    status = parse_message('{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 2}}, "sid": "s"}}')
    assert isinstance(status, StatusEvent) and status.queue_remaining == 2 and status.sid == "s"
    state = parse_message(
        '{"type": "progress_state", "data": {"prompt_id": "p", "nodes": {"1": {"value": 1, "max": 1, "state": "finished"}}}}'
    )
    assert isinstance(state, ProgressStateEvent) and state.nodes["1"].state == "finished"
    executed = parse_message('{"type": "executed", "data": {"node": "9", "output": {"text": ["hi"]}, "prompt_id": "p"}}')
    assert isinstance(executed, ExecutedEvent) and executed.output == {"text": ["hi"]}
    error = parse_message(
        '{"type": "execution_error", "data": {"prompt_id": "p", "node_id": "2", "node_type": "Canny",'
        ' "exception_message": "bad\\n", "exception_type": "E", "traceback": ["a"], "executed": ["1"]}}'
    )
    assert isinstance(error, ExecutionErrorEvent) and error.node_type == "Canny" and error.executed == ("1",)


def test_binary_previews_type_1_and_4() -> None:
    png = b"\x89PNG\r\n\x1a\nrest"
    legacy = parse_message((1).to_bytes(4, "big") + (2).to_bytes(4, "big") + png)
    assert isinstance(legacy, PreviewImageEvent) and legacy.image_format == "PNG" and legacy.image == png
    meta = json.dumps({"node_id": "3", "prompt_id": "p", "image_type": "image/jpeg"}).encode()
    with_meta = parse_message((4).to_bytes(4, "big") + len(meta).to_bytes(4, "big") + meta + b"\xff\xd8jpeg")
    assert isinstance(with_meta, PreviewImageEvent)
    assert with_meta.prompt_id == "p" and with_meta.node_id == "3" and with_meta.image_format == "JPEG"
    text = parse_message((3).to_bytes(4, "big") + (1).to_bytes(4, "big") + b"7hello")
    assert text.type == "text"


def test_malformed_frames_are_kept_as_unknown() -> None:
    assert isinstance(parse_message("not json"), UnknownEvent)
    assert isinstance(parse_message("[1, 2]"), UnknownEvent)
    assert isinstance(parse_message('{"type": "progress", "data": {"value": "x"}}'), UnknownEvent)
    assert isinstance(parse_message(b"\x00\x00\x00\x04\xff\xff\xff\xff"), UnknownEvent)
    assert parse_message('{"type": "assets.seed.started", "data": {}}').type == "assets.seed.started"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from([*sorted(KNOWN), "other"]), data=json_values)
def test_any_json_frame_parses_without_raising(kind: str, data: object) -> None:
    event = parse_message(json.dumps({"type": kind, "data": data}))
    assert event.type == kind


@settings(max_examples=300, deadline=None)
@given(frame=st.binary(max_size=200) | st.text(max_size=200))
def test_any_frame_parses_without_raising(frame: bytes | str) -> None:
    parse_message(frame)
