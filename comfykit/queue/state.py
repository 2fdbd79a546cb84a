"""The queue's records: one :class:`Attempt` per prompt, one :class:`ServerState` per server, and its own outcomes.

An attempt is born when a submitter reserves a slot on a server (its prompt id
is chosen then, but the job learns it only once it is journaled, just before the
POST) and ends with one ``pop`` from its server's ``attempts``.  Everything here
is read and written under the :class:`~comfykit.queue.QueueManager`'s lock.
"""

from __future__ import annotations

import collections
import enum
from typing import TYPE_CHECKING, Any

import attrs

from comfykit.jobs import Job
from comfykit.queue.inputs import UploadCache

if TYPE_CHECKING:
    from comfykit.client import ComfyUIClient
    from comfykit.queue.pool import ServerSpec

__all__ = [
    "Attempt", "Cancelled", "Change", "GiveUp", "Moved", "Phase", "RetryLater", "Seen", "Sending", "ServerState",
    "Started",
]


class Phase(enum.Enum):
    """Where one attempt is."""

    PREPARING = "preparing"  # a slot is taken; seeds, uploads and hooks run; nothing is on the server
    POSTING = "posting"  # the prompt id is journaled and the POST is on its way; events are held back
    WAITING = "waiting"  # on the server (or possibly: see ``polled``); its end comes from the tracker
    FINISHING = "finishing"  # handed to a finisher thread


class Seen(enum.Enum):
    """What the tracker saw of a prompt."""

    STARTED = "started"
    FINISHED = "finished"


@attrs.define(eq=False)
class Attempt:
    """One try of one job on one server, under one prompt id."""

    prompt_id: str
    server: ServerState
    job: Job
    phase: Phase = Phase.PREPARING
    #: what the tracker saw before the POST answered, replayed after it
    early_events: list[Seen] = attrs.field(factory=list)
    #: polled rather than waited on: resumed from a journal (its events went to the old
    #: process's socket), or posted with an answer that was lost and could not be checked
    polled: bool = False
    #: times its outputs could not be stored because the server went away
    store_failures: int = 0
    #: the server has run it to the end (its result was read): from then on only storing is left,
    #: which the job timeout does not judge (a slow sink must never make a finished job run again)
    ran: bool = False

    @property
    def current(self) -> bool:
        """Whether this is still its server's attempt for its prompt id (not released, not moved)."""
        return self.server.attempts.get(self.prompt_id) is self

    @property
    def on_server(self) -> bool:
        return self.phase in (Phase.WAITING, Phase.FINISHING)


#: attempts whose prompt the server has run and whose outputs are still being stored, per slot of the
#: window: they no longer hold a slot (the server can run the next job meanwhile), but their number
#: is bounded so that slow sinks cannot pile up finished jobs without end
STORING_PER_SLOT = 1


class ServerState:
    """The queue's view of one server: its client, in-flight window, attempts and health.

    The window counts the attempts the server has not run to the end yet; one whose
    outputs are being stored has given its slot back (see :data:`STORING_PER_SLOT`).
    """

    def __init__(self, spec: ServerSpec, client: ComfyUIClient, window: int) -> None:
        self.url = spec.url
        self.client = client
        self.weight = spec.weight
        self.window = window
        self.attempts: dict[str, Attempt] = {}  # prompt id -> attempt, preparing ones included
        self.healthy = True
        self.down_since: float | None = None
        self.next_check = 0.0
        self.last_reconcile = 0.0
        #: prompts the supervisor saw ended but not yet finished on its last look (see Workers._supervise)
        self.ended_unclaimed: set[str] = set()
        self.uploads = UploadCache()
        self.counts: collections.Counter[str] = collections.Counter()

    @property
    def unfinished(self) -> int:
        """Attempts that hold a slot of the window: not yet run to the end by the server."""
        return sum(1 for attempt in self.attempts.values() if not attempt.ran)

    @property
    def load(self) -> float:
        return self.unfinished / self.weight

    @property
    def has_room(self) -> bool:
        return (
            self.healthy and self.unfinished < self.window
            and len(self.attempts) < self.window * (1 + STORING_PER_SLOT)
        )

    def release(self, attempt: Attempt) -> None:
        """End ``attempt``: drop it and stop tracking its prompt."""
        if attempt.current:
            del self.attempts[attempt.prompt_id]
        self.client.tracker.forget(attempt.prompt_id)

    def in_flight(self) -> list[Attempt]:
        """Attempts that are (or may be) on the server: posted, waiting or finishing."""
        return [a for a in self.attempts.values() if a.phase is not Phase.PREPARING]


# -- what the queue itself decides (the parts' outcomes are in submit.py and finish.py) ----------------


@attrs.frozen
class Sending:
    """The prompt id is about to be posted: journal it first."""


@attrs.frozen
class Started:
    """The server began executing it."""


@attrs.frozen
class Cancelled:
    """The user cancelled it."""


@attrs.frozen
class Moved:
    """Its server was gone too long: back to the pending queue (it may have run there: at-least-once)."""

    reason: str


@attrs.frozen
class RetryLater:
    """Tried again after ``delay`` seconds."""

    error: BaseException
    delay: float


@attrs.frozen
class GiveUp:
    """Failed for good."""

    error: BaseException


@attrs.frozen
class Change:
    """What the queue announces after a move: event, further hook arguments, whether it ended."""

    event: str | None
    args: tuple[Any, ...] = ()
    final: bool = False
    journal: bool = True
