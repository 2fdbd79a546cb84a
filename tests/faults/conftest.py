"""Fixtures of the fault-injection tests: a fresh simulator per test, helpers that act on its sockets, a garbage probe."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comfykit.events import Event, StatusEvent
from comfykit.testing import ComfyUISimulator


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[ComfyUISimulator]:
    with ComfyUISimulator(port=0, root=tmp_path / "sim") as simulator:
        yield simulator


def send_to_sockets(sim: ComfyUISimulator, payload: str | bytes | None) -> int:
    """Queue one frame (``None``: close) on every open WebSocket of ``sim``; return how many got it."""
    sockets = list(sim.server.all_sockets)
    for socket in sockets:
        sim.server.deliver(socket, payload)
    return len(sockets)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=15,
)
_kinds = st.sampled_from(["status", "executing", "progress", "progress_state", "executed", "execution_start",
                          "execution_cached", "execution_success", "execution_error", "execution_interrupted",
                          "feature_flags", "other"])
#: what a broken or hostile server may send over the WebSocket: bytes, text, JSON of every shape, fake binary headers
garbage_frames = st.one_of(
    st.binary(max_size=300),
    st.tuples(st.sampled_from([1, 2, 3, 4]), st.integers(0, 2**32 - 1), st.binary(max_size=200)).map(
        lambda t: t[0].to_bytes(4, "big") + t[1].to_bytes(4, "big") + t[2]),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=300),
    st.builds(lambda kind, data: json.dumps({"type": kind, "data": data}), _kinds, _json_values),
    _json_values.map(json.dumps),
)


class GarbageProbe:
    """Sends garbage frames to a simulator's one socket, each batch followed by a marker that must still arrive.

    Register :meth:`on_status` as the client's ``status`` callback, then :meth:`run` (from a thread
    that is not the one reading the socket): a reader that stopped or fell behind fails it.
    """

    def __init__(self, sim: ComfyUISimulator) -> None:
        self.sim = sim
        self._markers: dict[str, threading.Event] = {}

    def on_status(self, event: Event) -> None:
        if isinstance(event, StatusEvent) and event.sid in self._markers:
            self._markers[event.sid].set()

    def run(self) -> None:
        @settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
        @given(frames=st.lists(garbage_frames, min_size=1, max_size=8))
        def garbage_then_marker(frames: list[str | bytes]) -> None:
            for frame in frames:
                assert send_to_sockets(self.sim, frame) == 1
            marker = str(uuid.uuid4())
            self._markers[marker] = threading.Event()
            status = {"status": {"exec_info": {"queue_remaining": 0}}, "sid": marker}
            send_to_sockets(self.sim, json.dumps({"type": "status", "data": status}))
            assert self._markers[marker].wait(10), "an event sent after the garbage never arrived"

        garbage_then_marker()
