"""Fixtures for the batch tests: simulators of both recorded versions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from comfykit.testing import ComfyUISimulator


@pytest.fixture(params=["0.3.64", "0.33.0"])
def sim(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ComfyUISimulator]:
    with ComfyUISimulator(port=0, comfyui_version=request.param, root=tmp_path / "sim") as simulator:
        yield simulator


@pytest.fixture
def new_sim(tmp_path: Path) -> Iterator[ComfyUISimulator]:
    with ComfyUISimulator(port=0, root=tmp_path / "sim-new") as simulator:
        yield simulator
