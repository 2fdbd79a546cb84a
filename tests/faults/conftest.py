"""Fixtures of the fault-injection tests: a fresh simulator per test and helpers that act on its sockets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
