"""``comfykit batch`` against simulators: sweeps, pools, failures, journals, resuming, and Ctrl-C in a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from comfykit.testing import ComfyUISimulator
from comfykit_cli import build_cli

RECORDINGS = Path(__file__).resolve().parent.parent / "fixtures" / "recordings" / "0.33.0" / "workflows"
INVERT = str(RECORDINGS / "invert_save.json")


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Outputs default to ./outputs: keep them out of the checkout.
    monkeypatch.chdir(tmp_path)


def run(*args: str) -> Result:
    return CliRunner().invoke(build_cli(), list(args), prog_name="comfykit")


def events(result: Result | str) -> list[dict[str, Any]]:
    text = result if isinstance(result, str) else result.stdout
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_a_folder_times_a_sweep_downloads_every_job(comfyui_simulator: ComfyUISimulator, tmp_path: Path) -> None:
    folder = tmp_path / "flows"
    folder.mkdir()
    for name in ("a.json", "b.json"):
        (folder / name).write_text(Path(INVERT).read_text())
    (folder / "notes.txt").write_text("not a workflow")
    out = tmp_path / "out"
    result = run("--json", "--server", comfyui_simulator.url, "batch", str(folder), "--sweep", "1.width=8..9",
                 "--sweep", "color=1,2", "--output-dir", str(out))
    assert result.exit_code == 0, result.output
    stream = events(result)
    assert stream[0] == {"event": "batch_started", "total": 8, "servers": [comfyui_simulator.url], "journal": None}
    done = [e for e in stream if e["event"] == "job_completed"]
    assert Counter((e["source"].rsplit("/", 1)[1], e["params"]["1.width"], e["params"]["color"]) for e in done) == \
        Counter((f, w, c) for f in ("a.json", "b.json") for w in (8, 9) for c in (1, 2))
    assert len(list(out.rglob("*.png"))) == 8
    assert all(Path(f).is_file() for e in done for f in e["files"])
    summary = stream[-1]
    assert summary["event"] == "summary" and summary["completed"] == 8 and summary["failed"] == 0


def test_plain_output_names_each_job_and_ends_with_a_count(comfyui_simulator: ComfyUISimulator, tmp_path: Path) -> None:
    result = run("--server", comfyui_simulator.url, "batch", INVERT, "--sweep", "color=1..3", "--no-download")
    assert result.exit_code == 0, result.output
    out = result.stdout.splitlines()
    assert sum(line.startswith("completed ") for line in out) == 3
    assert out[-1].startswith("3 completed, 0 failed, 0 cancelled of 3")


def test_a_pool_shares_the_work(tmp_path: Path) -> None:
    with ComfyUISimulator(port=0, root=tmp_path / "a") as first, ComfyUISimulator(port=0, root=tmp_path / "b") as second:
        for sim in (first, second):
            sim.knobs.node_seconds = 0.1
        result = run("--json", "batch", INVERT, "--sweep", "color=1..6", "--server", first.url, "--server", second.url,
                     "--concurrency", "1", "--no-download")
    assert result.exit_code == 0, result.output
    servers = events(result)[-1]["servers"]
    assert servers[first.url]["completed"] + servers[second.url]["completed"] == 6
    assert servers[first.url]["completed"] >= 1 and servers[second.url]["completed"] >= 1


def test_a_failed_job_exits_1_and_is_reported(comfyui_simulator: ComfyUISimulator) -> None:
    result = run("--json", "--server", comfyui_simulator.url, "batch", INVERT, str(RECORDINGS / "exec_error_canny.json"),
                 "--retries", "0", "--no-download")
    assert result.exit_code == 1
    failed = [e for e in events(result) if e["event"] == "job_failed"]
    assert len(failed) == 1 and failed[0]["source"].endswith("exec_error_canny.json") and failed[0]["error"]
    assert events(result)[-1]["completed"] == 1
    plain = run("--server", comfyui_simulator.url, "batch", str(RECORDINGS / "exec_error_canny.json"), "--retries", "0",
                "--no-download")
    assert plain.exit_code == 1 and "1 job(s) failed." in plain.stderr


def test_resume_does_not_run_journaled_jobs_again(comfyui_simulator: ComfyUISimulator, tmp_path: Path) -> None:
    journal = tmp_path / "run.sqlite"
    first = run("--json", "--server", comfyui_simulator.url, "batch", INVERT, "--sweep", "color=1..3", "--journal",
                str(journal), "--no-download")
    assert first.exit_code == 0, first.output
    again = run("--json", "--server", comfyui_simulator.url, "batch", "--resume", str(journal))
    assert again.exit_code == 0, again.output
    assert not [e for e in events(again) if e["event"] == "job_submitted"]
    assert events(again)[-1]["completed"] == 3
    same = run("--json", "--server", comfyui_simulator.url, "batch", INVERT, "--sweep", "color=1..3", "--resume",
               str(journal))
    assert events(same)[-1]["total"] == 3
    assert not [e for e in events(same) if e["event"] == "job_submitted"]


def test_batch_usage_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert run("batch", str(tmp_path / "empty")).exit_code == 2
    assert run("batch", INVERT, "--sweep", "seed=1..x").exit_code == 2
    other = tmp_path / "j.sqlite"
    other.write_text("")
    assert run("batch", INVERT, "--journal", str(tmp_path / "x.sqlite"), "--resume", str(other)).exit_code == 2
    assert run("batch", INVERT, "--retry-failed").exit_code == 2


def test_ctrl_c_posts_nothing_more_and_the_resume_runs_each_job_exactly_once(tmp_path: Path) -> None:
    journal = tmp_path / "run.sqlite"
    with ComfyUISimulator(port=0, root=tmp_path / "sim") as sim:
        sim.knobs.node_seconds = 0.3
        process = subprocess.Popen(
            [sys.executable, "-m", "comfykit", "--json", "--server", sim.url, "batch", INVERT, "--sweep", "color=1..6",
             "--concurrency", "2", "--journal", str(journal), "--no-download"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        seen: list[dict[str, Any]] = []
        try:
            assert process.stdout is not None
            for line in process.stdout:
                seen.append(json.loads(line))
                if seen[-1]["event"] == "job_started":
                    break
            process.send_signal(signal.SIGINT)
            rest, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        assert process.returncode == 130, err
        assert f"Resume with: comfykit batch --resume {journal}" in err
        interrupted = [e for e in events(rest) if e["event"] == "interrupted"]
        assert len(interrupted) == 1
        completed_before = interrupted[0]["completed"]
        assert completed_before < 6
        # The jobs already on the server were left there, to be collected by the resume.
        on_server = len(sim.execution_counts) + len(httpx.get(sim.url + "/queue", timeout=10).json()["queue_pending"])
        assert completed_before <= on_server <= 6

        sim.knobs.node_seconds = 0.0
        resumed = run("--json", "--server", sim.url, "batch", "--resume", str(journal))
        runs = sorted(sim.execution_counts.values())
    assert resumed.exit_code == 0, resumed.output
    stream = events(resumed)
    assert stream[-1]["completed"] == 6 and stream[-1]["failed"] == 0 and stream[-1]["cancelled"] == 0
    submitted = {e["job_id"] for e in stream if e["event"] == "job_submitted"}
    assert len(submitted) <= 6 - completed_before
    # Every job ran once on the server (one prompt each), across the interrupted run and the resume.
    assert runs == [1] * 6


def test_no_download_with_the_download_plugin_disabled(comfyui_simulator: ComfyUISimulator, tmp_path: Path) -> None:
    # output.download_results is the download plugin's key: with the plugin off, there is nothing to switch off.
    result = run("-p", "no:download", "--server", comfyui_simulator.url, "batch", INVERT, "--no-download")
    assert result.exit_code == 0, result.output
    assert not list(tmp_path.rglob("*.json"))  # --no-download still stops the metadata sink
