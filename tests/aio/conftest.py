"""Fixtures of the async client's tests: the anyio backend, a simulator per test, workflows and a config with a tmp output dir."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from comfykit.config import Config, load_config
from comfykit.testing import ComfyUISimulator

RECORDINGS = Path(__file__).resolve().parent.parent / "fixtures" / "recordings"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["0.3.64", "0.33.0"])
def sim(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ComfyUISimulator]:
    with ComfyUISimulator(port=0, comfyui_version=request.param, root=tmp_path / "sim") as simulator:
        yield simulator


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    return tmp_path / "out"


@pytest.fixture
def config(out_dir: Path) -> Config:
    return load_config(overrides={"output.output_dir": str(out_dir)}, use_file=False)


def workflow(name: str, **inputs: Any) -> dict[str, Any]:
    """A recorded API workflow; ``inputs`` as ``{"NODE_INPUT": value}`` (``color_1=3``: node 1's color)."""
    graph = dict(json.loads((RECORDINGS / "0.33.0" / "workflows" / f"{name}.json").read_text()))
    for key, value in inputs.items():
        name_, _, node = key.rpartition("_")
        graph[node]["inputs"][name_] = value
    return graph
