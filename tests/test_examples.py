"""The examples in examples/ run: each one as a subprocess against simulators, checked for what it did."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from comfykit.testing import ComfyUISimulator

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PLUGIN_DIR = EXAMPLES / "plugin_forbid_nodes"


def run(
    args: list[str], cwd: Path, *, server: str | None = None, extra_path: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` with this checkout first on the path (and no COMFYKIT_* settings of the caller)."""
    paths = [str(ROOT), str(ROOT / "plugins"), *([str(extra_path)] if extra_path else [])]
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMFYKIT_")}
    env["PYTHONPATH"] = os.pathsep.join(paths)
    if server is not None:
        env["COMFYKIT_URL"] = server
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{args} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[ComfyUISimulator]:
    with ComfyUISimulator(port=0, root=tmp_path / "server") as simulator:
        yield simulator


def test_simple_script_sends_waits_and_saves(sim: ComfyUISimulator, tmp_path: Path) -> None:
    result = run([str(EXAMPLES / "simple_script.py"), "--output-dir", "out"], tmp_path, server=sim.url)
    saved = list((tmp_path / "out").glob("*.png"))
    assert len(saved) == 1 and saved[0].read_bytes().startswith(b"\x89PNG")
    assert f"saved {Path('out') / saved[0].name}" in result.stdout
    assert len(sim.execution_counts) == 1


def test_simple_script_sends_a_workflow_file(sim: ComfyUISimulator, tmp_path: Path) -> None:
    workflow = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 2, "color": 5}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "file"}},
    }
    (tmp_path / "workflow_api.json").write_text(json.dumps(workflow), encoding="utf-8")
    run([str(EXAMPLES / "simple_script.py"), "workflow_api.json", "--server", sim.url, "--output-dir", "out"], tmp_path)
    assert len(list((tmp_path / "out").glob("file_*.png"))) == 2


def test_the_tour_runs_every_step(sim: ComfyUISimulator, tmp_path: Path) -> None:
    result = run([str(EXAMPLES / "example_usage.py"), "--server", sim.url, "--output-dir", "out"], tmp_path)
    for step in ("1. server", "2. workflow of 3 nodes", "valid: True", "3. template 'solid'", "4. queued",
                 "executing node 3", "5. node 3 images: saved", "6. batch: 3 completed, 0 failed"):
        assert step in result.stdout
    assert len(list((tmp_path / "out").glob("*/3_tour_*.png"))) == 3  # stored by the download sink
    assert len(list((tmp_path / "out").glob("*.json"))) == 3  # metadata sidecars
    assert len(sim.execution_counts) == 4


def test_pool_batch_spreads_the_jobs_over_both_servers(tmp_path: Path) -> None:
    with ComfyUISimulator(port=0) as first, ComfyUISimulator(port=0) as second:
        result = run([str(EXAMPLES / "pool_batch.py"), "--server", first.url, "--server", second.url, "--jobs", "10",
                      "--output-dir", "out"], tmp_path)
        counts = [first.execution_counts, second.execution_counts]
    assert "10/10 completed" in result.stdout
    assert all(counts) and sum(len(c) for c in counts) == 10
    assert all(n == 1 for c in counts for n in c.values())
    assert len(list((tmp_path / "out").glob("pool-*/3_pool_*.png"))) == 10


def test_sweep_runs_every_point_once_and_resumes_from_its_journal(sim: ComfyUISimulator, tmp_path: Path) -> None:
    args = [str(EXAMPLES / "sweep.py"), "--sweep", "color=0..2", "--sweep", "size=8,16", "--journal", "sweep.sqlite",
            "--output-dir", "out"]
    first = run(args, tmp_path, server=sim.url)
    assert "6 sweep points, 0 already finished" in first.stdout and "ran 6 job(s)" in first.stdout
    names = {p.name.split("_sweep_")[0] for p in (tmp_path / "out" / "sweep").glob("*.png")}
    assert names == {f"color{c}_size{s}" for c in (0, 1, 2) for s in (8, 16)}
    second = run(args, tmp_path, server=sim.url)
    assert "6 already finished in the journal" in second.stdout and "ran 0 job(s)" in second.stdout
    assert len(sim.execution_counts) == 6


def test_the_plugin_example_passes_its_own_tests() -> None:
    result = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "test_forbid_nodes.py"], PLUGIN_DIR, extra_path=PLUGIN_DIR)
    assert "4 passed" in result.stdout


def test_the_plugin_example_works_from_the_command_line(sim: ComfyUISimulator, tmp_path: Path) -> None:
    workflow = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 5}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    (tmp_path / "preview.json").write_text(json.dumps(workflow), encoding="utf-8")
    paths = [str(ROOT), str(ROOT / "plugins"), str(PLUGIN_DIR)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMFYKIT_")}
    env["PYTHONPATH"] = os.pathsep.join(paths)
    result = subprocess.run(
        [sys.executable, "-m", "comfykit", "-p", "comfykit_forbid_nodes", "--server", sim.url, "validate", "preview.json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert "node 2 (PreviewImage): PreviewImage nodes are not allowed here" in result.stdout
