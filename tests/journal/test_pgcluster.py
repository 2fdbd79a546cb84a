"""The test cluster's watchdog: a run killed before its teardown leaves no PostgreSQL running."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from . import pgcluster


def _owner() -> subprocess.Popen[bytes]:
    """A process that lives until it is killed (it waits for input that never comes)."""
    return subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)


def test_a_cluster_is_stopped_and_removed_once_its_owner_is_killed() -> None:
    psycopg = pytest.importorskip("psycopg")
    if pgcluster.find_binaries() is None:
        pytest.skip("no PostgreSQL binaries (initdb, pg_ctl) on PATH or under /usr/lib/postgresql")
    owner = _owner()
    folder, dsn = pgcluster.start()
    watcher = pgcluster.watch(owner.pid, folder)
    try:
        with psycopg.connect(dsn, connect_timeout=10) as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
        owner.kill()  # as a killed test run: no teardown
        owner.wait()
        assert watcher.wait(timeout=120) == 0
        assert not folder.exists()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(dsn, connect_timeout=10)
    finally:
        owner.kill()
        watcher.kill()
        pgcluster.stop(folder)


def test_the_watchdog_of_a_cluster_stopped_already_just_exits(tmp_path: Path) -> None:
    owner = _owner()
    gone = tmp_path / "stopped-cluster"
    watcher = pgcluster.watch(owner.pid, gone)
    owner.kill()
    owner.wait()
    assert watcher.wait(timeout=120) == 0
    assert not gone.exists()
