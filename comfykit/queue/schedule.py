"""When a job runs again: the retry decision, the backoff, the heap of delayed retries, and timeouts.

The retry count starts from ``job.attempts`` (the posted attempts), which is
journaled: a resumed batch does not grant a job its retries a second time.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections.abc import Iterable

from comfykit.jobs import Job
from comfykit.plugins import PluginManager
from comfykit.queue.state import Attempt, Phase, ServerState

__all__ = ["Delayed", "backoff", "should_retry", "timed_out"]


def should_retry(
    job: Job, error: BaseException, failures: int, *, enabled: bool, max_retries: int, plugins: PluginManager
) -> bool:
    """Whether a job whose attempts failed ``failures`` times is tried again.

    ``max_retries`` caps it; within the cap the ``comfykit_should_retry`` hook decides.
    """
    failures = max(1, failures)
    return enabled and failures <= max_retries and plugins.should_retry(job, error, failures)


def backoff(failures: int, error: BaseException, *, base: float, cap: float) -> float:
    """Seconds before the next attempt: exponential with jitter, never sooner than a ``Retry-After``, never past ``cap``.

    A server's ``Retry-After`` is honoured up to ``cap`` (``batch.retry_delay_max``): a
    server asking for a day (or for ``inf``) must not stall the batch past what the user allowed.
    """
    delay = min(cap, base * (2 ** max(0, failures - 1)))
    delay *= random.uniform(0.5, 1.0)  # jitter: a pool's retries do not hit a server at once
    retry_after = getattr(error, "retry_after", None)
    if isinstance(retry_after, (int, float)) and math.isfinite(retry_after) and retry_after > 0:
        delay = max(delay, min(float(retry_after), cap))
    return delay


class Delayed:
    """Job ids waiting out their backoff, by due time (monotonic)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str]] = []
        self._tiebreak = 0

    def push(self, job_id: str, delay: float) -> None:
        self._tiebreak += 1
        heapq.heappush(self._heap, (time.monotonic() + delay, self._tiebreak, job_id))

    def due(self, now: float) -> list[str]:
        """Take out and return the job ids whose time has come."""
        ready = []
        while self._heap and self._heap[0][0] <= now:
            ready.append(heapq.heappop(self._heap)[2])
        return ready

    def discard(self, job_id: str) -> None:
        self._heap = [item for item in self._heap if item[2] != job_id]
        heapq.heapify(self._heap)

    def drain(self) -> list[str]:
        """Take out every job id."""
        ids = [item[2] for item in self._heap]
        self._heap.clear()
        return ids


def timed_out(servers: Iterable[ServerState], limit: float, now: float) -> list[Attempt]:
    """Attempts on a server for longer than ``limit`` seconds, still waiting for it to run them.

    Posting attempts are not judged (the POST has not answered), nor those the server has
    finished: the timeout bounds time on the server, not the time our own sinks take.
    """
    return [
        attempt for server in servers for attempt in server.attempts.values()
        if attempt.phase is Phase.WAITING and not attempt.ran and attempt.job.submitted_at is not None
        and now - attempt.job.submitted_at > limit
    ]
