"""Fixtures of the output tests: a simulator, a client writing into a temporary folder, and a job runner."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from comfykit import ComfyUIClient
from comfykit.config import load_config
from comfykit.jobs import Job, JobStatus
from comfykit.outputs import discover_outputs
from comfykit.testing import ComfyUISimulator

WORKFLOWS = Path(__file__).resolve().parents[1] / "fixtures" / "recordings" / "0.33.0" / "workflows"


def workflow(name: str) -> dict[str, Any]:
    return dict(json.loads((WORKFLOWS / f"{name}.json").read_text()))


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[ComfyUISimulator]:
    with ComfyUISimulator(port=0, root=tmp_path / "sim") as simulator:
        yield simulator


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    return tmp_path / "area" / "out"


def make_client(sim: ComfyUISimulator, out_dir: Path, **settings: Any) -> ComfyUIClient:
    overrides = {"output.output_dir": str(out_dir), **settings}
    config = load_config(overrides=overrides, use_file=False)
    return ComfyUIClient(url=sim.url, config=config, plugin_options=["no:monitor"])


@pytest.fixture
def client(sim: ComfyUISimulator, out_dir: Path) -> Iterator[ComfyUIClient]:
    with make_client(sim, out_dir) as c:
        yield c


RunJob = Callable[..., Job]


@pytest.fixture
def run_job() -> RunJob:
    def run(client: ComfyUIClient, name: str, *, params: dict[str, Any] | None = None) -> Job:
        job = Job(workflow=workflow(name), params=dict(params or {}))
        job.submitted_at = time.time()
        answer = client.queue_prompt(job.workflow)
        job.prompt_id = answer["prompt_id"]
        job.server = client.base_url
        job.history = client.wait_for_completion(job.prompt_id, timeout=30)
        job.finished_at = time.time()
        job.status = JobStatus.COMPLETED
        job.outputs = discover_outputs(job.history["outputs"])
        return job

    return run
