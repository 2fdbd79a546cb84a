"""A journal is owned by one live process; a dead owner's lock is taken over with a message."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from comfykit.errors import JournalError
from comfykit.queue.lock import JournalLock

_HOLDER = """
import sys, time
from comfykit.queue.lock import JournalLock
lock = JournalLock(sys.argv[1])
lock.acquire()
print("locked", flush=True)
sys.stdin.read()  # hold the lock until the parent closes our stdin, or kills us
"""


def _hold(journal: Path) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", _HOLDER, str(journal)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "locked"  # waits for the child, whatever the load
    return child


def test_a_second_process_is_refused_with_the_owner_named(tmp_path: Path) -> None:
    journal = tmp_path / "run.sqlite"
    child = _hold(journal)
    try:
        with pytest.raises(JournalError, match=f"in use by pid {child.pid} on ") as caught:
            JournalLock(journal).acquire()
        assert str(journal) in str(caught.value)
        assert "twice" in (caught.value.hint or "")
    finally:
        child.communicate("")
    # Once the owner has ended, the journal is free again.
    with JournalLock(journal) as lock:
        assert lock.held


def test_the_lock_of_a_killed_owner_is_taken_over_with_a_warning(tmp_path: Path, caplog) -> None:
    journal = tmp_path / "run.sqlite"
    child = _hold(journal)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with caplog.at_level(logging.WARNING, logger="comfykit.journal"), JournalLock(journal):
        pass
    assert f"taking over the journal lock of pid {child.pid}" in caplog.text


def test_one_process_may_acquire_twice_and_release_twice(tmp_path: Path) -> None:
    lock = JournalLock(tmp_path / "j.sqlite")
    lock.acquire()
    lock.acquire()
    lock.release()
    lock.release()
    assert not lock.held
    with JournalLock(tmp_path / "j.sqlite"):
        pass


def test_an_unwritable_folder_is_a_journal_error(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="cannot create the lock file"):
        JournalLock(tmp_path / "missing" / "run.sqlite").acquire()


def test_a_journal_open_in_another_process_cannot_be_resumed(tmp_path: Path) -> None:
    from comfykit import QueueManager
    from comfykit.queue.journal import Journal

    journal = tmp_path / "run.sqlite"
    Journal(journal).close()
    child = _hold(journal)
    try:
        with pytest.raises(JournalError, match=f"in use by pid {child.pid}"):
            QueueManager(servers=["http://127.0.0.1:9"], journal=journal)
    finally:
        child.communicate("")
    with QueueManager(servers=["http://127.0.0.1:9"], journal=journal) as queue:
        assert queue.journal is not None
