"""The command line of a shared batch: a producer enqueues, `comfykit work` runs, `comfykit jobs` shows; no password shown."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

from comfykit.queue.journals import open_journal
from comfykit.testing import ComfyUISimulator
from comfykit_cli import build_cli

RECORDINGS = Path(__file__).resolve().parent.parent / "fixtures" / "recordings" / "0.33.0" / "workflows"
INVERT = str(RECORDINGS / "invert_save.json")
PASSWORD = "not-a-real-secret"


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[ComfyUISimulator]:
    with ComfyUISimulator(port=0, root=tmp_path / "sim") as simulator:
        yield simulator


def run(*args: str) -> Result:
    result = CliRunner().invoke(build_cli(), list(args), prog_name="comfykit")
    assert PASSWORD not in result.stdout + result.stderr
    return result


def events(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_a_producer_enqueues_and_a_worker_runs_the_batch(pg_journal_url: str, sim: ComfyUISimulator,
                                                         tmp_path: Path) -> None:
    assert PASSWORD in pg_journal_url
    enqueued = run("--server", sim.url, "batch", INVERT, "--sweep", "color=1..5", "--journal", pg_journal_url,
                   "--enqueue-only", "--json")
    assert enqueued.exit_code == 0, enqueued.output
    assert json.loads(enqueued.stdout) | {"journal": None} == {"event": "enqueued", "journal": None, "total": 5,
                                                               "unfinished": 5}
    assert sim.execution_counts == {}  # nothing ran yet

    status = json.loads(run("jobs", "--journal", pg_journal_url, "--json").stdout)
    assert status["statuses"] == {"pending": 5} and status["oldest_lease"] is None

    # The batch's servers; with every log line (-vv): none of them, and no sidecar, shows the password.
    worked = run("-vv", "work", "--journal", pg_journal_url, "--output-dir", str(tmp_path / "out"), "--json")
    assert worked.exit_code == 0, worked.output
    assert "INFO comfykit" in worked.stderr
    sidecars = sorted((tmp_path / "out").glob("*.json"))
    assert len(sidecars) == 5 and not [p for p in sidecars if PASSWORD in p.read_text()]
    stream = events(worked)
    assert stream[0]["event"] == "work_started" and stream[0]["servers"] == [sim.url]
    assert stream[-1]["event"] == "summary" and stream[-1]["completed"] == 5
    assert sorted(event["job_id"] for event in stream if event["event"] == "job_completed") == sorted(
        event["job_id"] for event in stream if event["event"] == "job_submitted") and len(stream) == 2 + 3 * 5
    assert "Traceback" not in worked.stderr
    assert sorted(sim.execution_counts.values()) == [1] * 5

    done = run("jobs", "--journal", pg_journal_url)
    assert done.exit_code == 0 and "5 completed" in done.stdout and "***" in done.stdout
    assert f"server {sim.url}: 5 completed" in done.stdout


def test_usage_errors_and_the_config_listing(pg_journal_url: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("work", "--journal", str(tmp_path / "run.sqlite")).exit_code == 2
    assert run("batch", INVERT, "--journal", str(tmp_path / "run.sqlite"), "--enqueue-only").exit_code == 2
    monkeypatch.setenv("COMFYKIT_BATCH_JOURNAL", pg_journal_url)
    listing = run("config")
    assert listing.exit_code == 0 and "comfykit:***@" in listing.stdout


def test_an_unknown_batch_is_an_error_naming_the_batches_and_creates_nothing(pg_journal_url: str,
                                                                             postgres_dsn: str) -> None:
    known = f"{postgres_dsn}?batch=known-{uuid.uuid4().hex[:8]}"
    open_journal(known).close()
    missing = pg_journal_url.rpartition("batch=")[2]
    for command in ("jobs", "work"):
        result = run(command, "--journal", pg_journal_url)
        assert result.exit_code == 1, result.output
        assert f"no batch {missing!r}" in result.stderr and known.rpartition("=")[2] in result.stderr
    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        assert db.execute("SELECT 1 FROM comfykit_batches WHERE batch=%s", (missing,)).fetchall() == []

