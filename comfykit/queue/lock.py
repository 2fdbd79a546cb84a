"""One live process per journal: an advisory lock beside the journal file, naming its owner.

Two processes resuming one journal would each post every pending job, so the journal is
owned by the process that opened it until that process ends.  The lock is ``flock`` on
``<journal>.lock``, which the kernel releases when its holder dies, even by SIGKILL: a
stale lock never blocks anyone, and the next owner says whose lock it took over.  The file
holds the owner's pid, host and start time, so the refusal can name who holds it.  ``flock``
is per host; two hosts sharing one journal over a network file system need the PostgreSQL
journal, whose claims are per job.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from comfykit.errors import JournalError

__all__ = ["JournalLock"]

log = logging.getLogger("comfykit.journal")


class JournalLock:
    """Held while a process uses a journal; :meth:`acquire` refuses when a live process holds it."""

    def __init__(self, journal_path: str | os.PathLike[str]) -> None:
        self.journal_path = Path(journal_path)
        self.path = self.journal_path.with_name(self.journal_path.name + ".lock")
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _owner(self, fd: int) -> dict[str, object]:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 4096)
        try:
            owner = json.loads(raw.decode("utf-8")) if raw else {}
        except ValueError:
            return {}
        return owner if isinstance(owner, dict) else {}

    def acquire(self) -> None:
        """Take the lock, or raise :class:`JournalError` naming the live process that holds it."""
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise JournalError(f"cannot create the lock file {self.path.name}: {exc.strerror or exc}",
                               path=str(self.journal_path),
                               hint="The journal's folder must be writable.") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = self._owner(fd)
            os.close(fd)
            who = f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}"
            raise JournalError(
                f"the journal is in use by {who}, since {owner.get('since', '?')}",
                path=str(self.journal_path),
                hint="Wait for that run to end (or stop it) before resuming; two runs of one journal would "
                     "post every pending job twice.",
            ) from None
        previous = self._owner(fd)
        if previous and previous.get("pid") != os.getpid():
            log.warning("%s: taking over the journal lock of pid %s on %s, which is no longer running",
                        self.journal_path, previous.get("pid", "?"), previous.get("host", "?"))
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(record).encode("utf-8"))
        self._fd = fd

    def release(self) -> None:
        """Give the lock up; the file stays (removing it would race with a process about to lock it)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> JournalLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
