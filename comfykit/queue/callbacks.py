"""The ``QueueManager.on()`` callbacks: which events there are, who listens to each, and calling them safely.

A callback is the user's code, run on a queue thread right after the plugin hook
for the same event; one that raises is logged with its name and never changes
what happens to a job (the job already moved and was journaled before).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

__all__ = ["QUEUE_EVENTS", "Callbacks"]

log = logging.getLogger("comfykit.queue")

#: names accepted by :meth:`QueueManager.on`; job events call ``callback(job)``, ``queue_empty`` calls ``callback()``
QUEUE_EVENTS = (
    "job_submitted", "job_started", "job_completed", "job_failed", "job_cancelled", "job_retrying", "queue_empty",
)


class Callbacks:
    """The callbacks registered for each of :data:`QUEUE_EVENTS`, in the order they were added."""

    def __init__(self) -> None:
        self._by_event: dict[str, list[Callable[..., None]]] = {name: [] for name in QUEUE_EVENTS}

    def add(self, event: str, callback: Callable[..., None]) -> None:
        """Call ``callback`` on ``event`` from now on; an unknown event name is a :class:`ValueError`."""
        if event not in self._by_event:
            raise ValueError(f"unknown queue event {event!r}; known: {', '.join(QUEUE_EVENTS)}")
        self._by_event[event].append(callback)

    def call(self, event: str, *args: Any) -> None:
        """Call every callback of ``event`` with ``args``; one that raises is logged and the others still run."""
        for callback in list(self._by_event[event]):  # a copy: a callback may add another one
            try:
                callback(*args)
            except Exception:
                log.exception("the QueueManager.on(%r) callback %s failed", event, getattr(callback, "__qualname__", callback))
