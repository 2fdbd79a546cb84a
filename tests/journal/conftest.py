"""Fixtures for the journal tests: a real PostgreSQL (the one ``.ci/run`` started, else a throw-away one)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import pgcluster

#: set by ``.ci/run`` to the DSN of the cluster it started for the whole run, and to its folder
DSN_VARIABLE = "COMFYKIT_TEST_POSTGRES_DSN"
FOLDER_VARIABLE = "COMFYKIT_TEST_POSTGRES_FOLDER"


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[tuple[Path | None, str]]:
    """``(folder, DSN)`` of a running PostgreSQL (the folder is ``None`` for a server we did not start)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed: pip install -e '.[test]' (it brings comfykit[postgres])")
    given = os.environ.get(DSN_VARIABLE)
    if given:
        folder = os.environ.get(FOLDER_VARIABLE)
        yield (Path(folder) if folder else None), given
        return
    if pgcluster.find_binaries() is None:
        pytest.skip(f"no PostgreSQL binaries (initdb, pg_ctl) on PATH or under /usr/lib/postgresql, and no {DSN_VARIABLE}")
    folder, dsn = pgcluster.start(owner=os.getpid())  # stopped even if this run is killed before the finally
    try:
        yield folder, dsn
    finally:
        pgcluster.stop(folder)


@pytest.fixture(scope="session")
def postgres_dsn(postgres_cluster: tuple[Path | None, str]) -> str:
    """A DSN (without ``batch``) of a running PostgreSQL; skips only where no PostgreSQL can be had."""
    return postgres_cluster[1]


@pytest.fixture
def pg_journal_url(postgres_dsn: str) -> str:
    """A journal URL naming a batch no other test uses."""
    return f"{postgres_dsn}?batch=test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["sqlite", "postgresql"])
def journal_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each journal kind in turn: an SQLite file path, then a fresh PostgreSQL batch."""
    if request.param == "sqlite":
        return str(tmp_path / "run.sqlite")
    return str(request.getfixturevalue("pg_journal_url"))
