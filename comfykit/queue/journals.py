"""What a batch journal is to the queue, and which one a ``journal`` argument names.

A journal is either an SQLite file (:class:`comfykit.queue.journal.Journal`, the embedded
default for one machine) or a batch in a PostgreSQL database
(:class:`comfykit.queue.pgjournal.PostgresJournal`), named by a URL such as
``postgresql://user@host/db?batch=NAME``.  Both keep the same promise, the write-ahead
rule: :meth:`BatchJournal.update` returns only once the new state is durable, so the queue
records a prompt id before it posts the prompt.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from comfykit.errors import JournalError
from comfykit.jobs import Job
from comfykit.secrets import redact_url

__all__ = [
    "DATABASE_SCHEMES", "BatchJournal", "ClaimingJournal", "LeaseLost", "is_database_url", "journal_location",
    "open_journal",
]

#: URL schemes that name a PostgreSQL journal rather than a file
DATABASE_SCHEMES = ("postgresql://", "postgres://")


@runtime_checkable
class BatchJournal(Protocol):
    """The durable record of one batch: every job and its latest state, owned by one process while open."""

    @property
    def location(self) -> str:
        """Where the journal is, safe to show (a path, or a URL without its password)."""

    @property
    def servers(self) -> list[str]:
        """The server URLs the batch ran on, without credentials."""

    def remember_servers(self, urls: list[str]) -> None:
        """Record where the batch runs (user names and passwords left out)."""

    def add(self, job: Job) -> None:
        """Record a new job; a job id already journaled is ignored."""

    def update(self, job: Job) -> None:
        """Record the job's current state; durable when this returns."""

    def __contains__(self, job_id: object) -> bool: ...

    def __len__(self) -> int: ...

    def jobs(self) -> Iterator[Job]:
        """Every journaled job in the order it was added; a damaged record is a :class:`~comfykit.errors.JournalError`."""

    def close(self) -> None:
        """Give the journal up (another process may open it, or take its jobs, from now on)."""


class LeaseLost(JournalError):
    """Another coordinator holds the job now: this one must leave it alone (not post it, not store its outputs)."""


@runtime_checkable
class ClaimingJournal(BatchJournal, Protocol):
    """A journal shared by several coordinators: each runs only the jobs it claimed, under a lease."""

    claims: bool
    coordinator: str
    host: str
    lease_seconds: float

    def claim(self, limit: int) -> list[Job]:
        """Claim up to ``limit`` unfinished jobs that nobody holds (or whose holder's lease ran out)."""

    def renew(self) -> set[str]:
        """Extend this coordinator's leases; the ids of the unfinished jobs it still holds."""

    def holds(self, job_id: str) -> bool:
        """Whether this coordinator still holds ``job_id``, renewing the lease if so."""

    def fence(self, job_id: str) -> bool:
        """Make sure nobody claims ``job_id`` until :meth:`unfence`; ``False`` when another coordinator holds it now.

        A coordinator fences a job while it journals a prompt id and posts it, and while it stores the
        job's outputs and journals it complete: frozen inside a fence, it keeps the job, so no other
        coordinator posts it again or stores its outputs a second time.  A claim may have got in just
        before the fence: the caller checks it still holds the job after fencing (a conditional write
        of its state, or :meth:`holds`).
        """

    def unfence(self, job_id: str) -> None:
        """The step :meth:`fence` guarded is over (answered, stored, or failed)."""

    def release(self, job_id: str) -> None:
        """Give the claim on ``job_id`` back, so any coordinator may claim it at once."""

    def reopen_failed(self) -> int:
        """Make the batch's failed jobs pending and unclaimed again; return how many."""

    def unfinished(self) -> int:
        """How many jobs of the batch have not ended, whoever holds them."""

    def summary(self) -> dict[str, Any]:
        """Counts per status, per coordinator and per server, and the oldest lease."""


def is_database_url(target: str | Path) -> bool:
    """Whether ``target`` names a PostgreSQL journal rather than an SQLite file."""
    return isinstance(target, str) and target.lower().startswith(DATABASE_SCHEMES)


def journal_location(target: str | Path) -> str:
    """``target`` as it may be shown in logs, errors and output: a database URL loses its password."""
    return redact_url(str(target)) if is_database_url(target) else str(target)


def open_journal(target: str | Path, *, lease_seconds: float = 30.0, create: bool = True) -> BatchJournal:
    """Open the journal ``target`` names: a PostgreSQL URL, else an SQLite file path.

    :param lease_seconds: how long a PostgreSQL claim on a job lasts without a heartbeat.
    :param create: create the journal (the file, or the batch) when it does not exist; with ``False`` a
        missing one is a :class:`~comfykit.errors.JournalError` (what a look at a batch wants: it writes nothing).
    """
    if is_database_url(target):
        from comfykit.queue.pgjournal import PostgresJournal

        return PostgresJournal(str(target), lease_seconds=lease_seconds, create=create)
    from comfykit.queue.journal import Journal

    if not create and not Path(target).is_file():
        raise JournalError("there is no journal file here", path=str(target),
                           hint="Give the journal of an existing batch.")
    return Journal(target)
