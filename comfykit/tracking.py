"""``JobTracker``: the completion of each submitted prompt, from live events, checked against the server.

A prompt is watched before it is posted, so no event can arrive before the tracker
knows it.  It completes on ``executing {node: null}`` for that prompt (the history
entry exists by then).  Events sent while the socket was down are never replayed,
so after every reconnect — and periodically while waiting — each watched prompt is
reconciled against ``/api/jobs/{id}`` or ``/history/{id}`` + ``/queue``: a prompt
that finished in the gap completes with its outputs, one the server no longer knows
(it restarted) is reported as lost instead of being waited on forever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from comfykit.answers import queued_ids
from comfykit.errors import ComfyKitError, ExecutionError, ExecutionInterrupted, JobLost, WaitTimeout
from comfykit.events import (
    Event,
    ExecutedEvent,
    ExecutingEvent,
    ExecutionCachedEvent,
    ExecutionErrorEvent,
    ExecutionInterruptedEvent,
    ExecutionStartEvent,
    ExecutionSuccessEvent,
    ProgressEvent,
    ProgressStateEvent,
)
from comfykit.protocols import WatchListener

if TYPE_CHECKING:
    from comfykit.protocols import Client

__all__ = ["JobProgress", "JobTracker", "WatchListener", "raise_for_outcome"]

log = logging.getLogger("comfykit.tracking")


@attrs.frozen
class JobProgress:
    """Where a job is: the running node, node i of n, sampler step k of m, and an overall fraction."""

    prompt_id: str
    started: bool = False
    done: bool = False
    node: str | None = None
    node_class: str | None = None
    nodes_done: int = 0
    nodes_total: int = 0
    step: float | None = None
    steps: float | None = None
    fraction: float = 0.0


#: Distinct node ids one job's tracking keeps (outputs, node states).  Real prompts have tens or
#: hundreds of nodes, a few thousand with node expansion; a server inventing new ids without end
#: would otherwise grow the client's memory without end.  Past it, the job's result comes from
#: its history entry (read once, under the answer caps) instead of from the events.
MAX_TRACKED_NODES = 10_000


def _room_for(watch: _Watch, table: dict[str, Any], node_id: str) -> bool:
    if node_id in table or len(table) < MAX_TRACKED_NODES:
        return True
    if not watch.gap:
        log.warning("prompt %s: events name more than %d nodes; its result is read from the history instead",
                    watch.prompt_id, MAX_TRACKED_NODES)
        watch.gap = True
    return False


class _Watch:
    def __init__(self, prompt_id: str, nodes_total: int) -> None:
        self.prompt_id = prompt_id
        self.finished = threading.Event()
        self.listener: WatchListener | None = None
        self.started = False
        self.started_at: float | None = None
        self.succeeded = False
        self.error: ExecutionErrorEvent | None = None
        self.interrupted: ExecutionInterruptedEvent | None = None
        self.lost = False
        self.gap = False  # events may have been missed (the socket reconnected while it ran)
        self.messages: list[tuple[str, dict[str, Any]]] = []  # status messages, as history records them
        self.entry: dict[str, Any] | None = None
        self.outputs: dict[str, Any] = {}
        self.cached: tuple[str, ...] = ()
        self.node: str | None = None
        self.node_states: dict[str, str] = {}
        self.step: float | None = None
        self.steps: float | None = None
        self.nodes_total = nodes_total


class JobTracker:
    """Follows the prompts a client submitted until each one ends."""

    #: seconds between server checks while waiting with a connected event source
    RECONCILE_INTERVAL = 2.0

    def __init__(self, client: Client) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._watches: dict[str, _Watch] = {}
        self._prompts: dict[str, dict[str, Any]] = {}

    def watch(
        self, prompt_id: str, prompt: dict[str, Any] | None = None, listener: WatchListener | None = None
    ) -> None:
        """Start following ``prompt_id`` (before it is posted); ``listener`` hears when it starts and ends."""
        with self._lock:
            watch = self._watches.get(prompt_id)
            if watch is None:
                watch = self._watches[prompt_id] = _Watch(prompt_id, len(prompt or {}))
            if prompt is not None:
                watch.nodes_total = len(prompt)
                self._prompts[prompt_id] = prompt
            if listener is not None:
                watch.listener = listener

    def forget(self, prompt_id: str) -> None:
        with self._lock:
            self._watches.pop(prompt_id, None)
            self._prompts.pop(prompt_id, None)

    def watched(self) -> list[str]:
        return [p for p, w in list(self._watches.items()) if not w.finished.is_set()]

    def mark_gap(self) -> None:
        """Events may have been missed (a frame that could not be read): results come from history, not events."""
        with self._lock:
            self._mark_gap(list(self._watches.values()))

    @staticmethod
    def _mark_gap(watches: list[_Watch]) -> None:
        for watch in watches:
            watch.gap = True

    def reopen(self, prompt_id: str) -> None:
        """Follow a prompt again whose end could not be read (the server vanished right then)."""
        with self._lock:
            watch = self._watches.get(prompt_id)
            if watch is not None:
                watch.finished.clear()
                watch.entry, watch.lost = None, False

    def is_finished(self, prompt_id: str) -> bool:
        with self._lock:
            watch = self._watches.get(prompt_id)
        return watch is not None and watch.finished.is_set()

    def is_watched(self, prompt_id: str) -> bool:
        with self._lock:
            return prompt_id in self._watches

    def _finish(self, watch: _Watch) -> None:
        if watch.finished.is_set():
            return
        watch.finished.set()
        if watch.listener is not None:
            watch.listener.prompt_finished(watch.prompt_id)

    # -- events -------------------------------------------------------------------

    def feed(self, event: Event) -> None:
        prompt_id = event.prompt_id
        if prompt_id is None:
            return
        # The watch is changed under the lock (the supervisor and the finishers read it);
        # the listener is called after it is released, as it takes the queue's lock.
        with self._lock:
            watch = self._watches.get(prompt_id)
            if watch is None or watch.finished.is_set():
                return
            started, finished = self._record(watch, event)
            listener = watch.listener
        if started and listener is not None:
            listener.prompt_started(prompt_id)
        if finished:
            self._finish(watch)

    @staticmethod
    def _record(watch: _Watch, event: Event) -> tuple[bool, bool]:
        """Fold one event into ``watch``; return (it started now, it ended now)."""
        # Looked up by class, not by a chain of isinstance checks: events are Mappings, so each
        # isinstance went through the ABC machinery, for fourteen events per job.
        kind = type(event)
        fold = _FOLDS.get(kind)
        if fold is None:
            fold = next((_FOLDS[base] for base in kind.__mro__ if base in _FOLDS), _ignore)
        return fold(watch, event)

    # -- reconciliation -------------------------------------------------------------

    def reconcile(self, prompt_ids: list[str] | None = None, *, raise_errors: bool = False) -> None:
        """Ask the server about watched prompts; complete the finished ones, mark the vanished ones lost.

        One ``/queue`` request covers every prompt; only the ones not queued or
        running cost a ``/history/{id}`` request each.  Unless ``raise_errors``,
        a server that cannot be asked is logged and the prompts stay watched.
        """
        with self._lock:
            ids = self.watched() if prompt_ids is None else prompt_ids
            watches = [w for w in (self._watches.get(p) for p in ids) if w is not None and not w.finished.is_set()]
            if prompt_ids is None:  # called after a gap in the events: what was collected may be partial
                self._mark_gap(watches)
        if not watches:
            return
        try:
            queued = queued_ids(self.client.get_queue())
            for watch in watches:
                if watch.prompt_id not in queued:
                    self._reconcile_one(watch)
        except ComfyKitError as exc:
            if raise_errors:
                raise
            log.warning("could not reconcile %d job(s) with %s: %s", len(watches), self.client.base_url, exc)

    def _reconcile_one(self, watch: _Watch) -> None:
        entry = self.client.get_history(watch.prompt_id).get(watch.prompt_id)
        if entry is None:
            # Not queued and no history: it may be finishing right now (history is written just
            # before the final event), so look at the queue and history once more before calling it lost.
            if watch.prompt_id in queued_ids(self.client.get_queue()):
                return
            entry = self.client.get_history(watch.prompt_id).get(watch.prompt_id)
        with self._lock:
            if entry is not None:
                watch.entry = entry
            else:
                watch.lost = True
        self._finish(watch)

    # -- waiting --------------------------------------------------------------------

    def wait(self, prompt_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until ``prompt_id`` ends; return its history entry or raise what ended it.

        A prompt not watched before (posted without :meth:`watch`) is checked against the
        server at once: it may have ended before this call.
        """
        with self._lock:
            known = prompt_id in self._watches
        self.watch(prompt_id)
        with self._lock:
            watch = self._watches[prompt_id]
        if not known:
            self.reconcile([prompt_id])
        deadline = None if timeout is None else time.monotonic() + timeout
        source = self.client.event_source
        poll_interval = float(self.client.config["websocket.poll_interval"])
        while not watch.finished.is_set():
            connected = source is not None and source.connected
            # Without live events the server is polled, less often the longer the job takes.
            slice_ = self.RECONCILE_INTERVAL if connected else poll_interval
            poll_interval = min(1.0, poll_interval * 1.3)
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WaitTimeout(
                        f"job {prompt_id} did not finish within {timeout} s",
                        prompt_id=prompt_id,
                        hint="Raise the timeout, or look at the server queue (`comfykit queue`).",
                    )
                slice_ = min(slice_, remaining)
            if watch.finished.wait(slice_):
                break
            self.reconcile([prompt_id])
        return self._result(watch)

    def result(self, prompt_id: str, *, from_events: bool = False) -> dict[str, Any]:
        """The history entry of a finished prompt, or raise what ended it (see :meth:`wait`).

        With ``from_events``, a prompt whose every event was seen (start, cached nodes,
        outputs, success, no reconnect in between) gets an entry built from those events
        instead of a ``/history`` request: ``prompt`` then holds ``[None, prompt_id, graph,
        {}, []]`` and there is no ``meta``.  A batch saves one request per job this way.
        """
        with self._lock:
            watch = self._watches[prompt_id]
            prompt = self._prompts.get(prompt_id)
        if (
            from_events and watch.entry is None and watch.succeeded and watch.started and not watch.gap
            and not watch.lost and prompt is not None and any(m[0] == "execution_success" for m in watch.messages)
        ):
            return {
                "prompt": [None, prompt_id, prompt, {}, []],
                "outputs": dict(watch.outputs),
                "status": {"status_str": "success", "completed": True, "messages": [list(m) for m in watch.messages]},
            }
        return self._result(watch)

    def details(self, prompt_id: str) -> tuple[float | None, tuple[str, ...], dict[str, Any]]:
        """(execution start time, cached node ids, outputs from ``executed`` events) of a watched prompt."""
        with self._lock:
            watch = self._watches.get(prompt_id)
        if watch is None:
            return None, (), {}
        return watch.started_at, watch.cached, dict(watch.outputs)

    def _result(self, watch: _Watch) -> dict[str, Any]:
        prompt_id = watch.prompt_id
        if watch.lost:
            raise JobLost(
                f"the server no longer knows job {prompt_id} (it restarted, or its history was cleared)",
                prompt_id=prompt_id,
                hint="Submit it again; comfykit's QueueManager does this for you.",
            )
        entry = watch.entry
        if entry is None:
            entry = self._history_with_retry(prompt_id)
        return raise_for_outcome(prompt_id, entry)

    def _history_with_retry(self, prompt_id: str) -> dict[str, Any]:
        # Some servers send success before writing history (a recorded race): retry briefly.
        delay = 0.01
        for _ in range(12):
            entry = self.client.get_history(prompt_id).get(prompt_id)
            if entry is not None:
                return dict(entry)
            time.sleep(delay)
            delay = min(0.5, delay * 2)
        raise JobLost(f"job {prompt_id} finished but the server has no history for it", prompt_id=prompt_id)

    def progress(self, prompt_id: str) -> JobProgress:
        with self._lock:
            watch = self._watches.get(prompt_id)
            prompt = self._prompts.get(prompt_id, {})
        if watch is None:
            return JobProgress(prompt_id)
        done_nodes = sum(1 for s in watch.node_states.values() if s == "finished")
        total = max(watch.nodes_total, len(watch.node_states))
        fraction = 1.0 if watch.finished.is_set() and watch.succeeded else (done_nodes / total if total else 0.0)
        node_class = (prompt.get(watch.node) or {}).get("class_type") if watch.node else None
        return JobProgress(
            prompt_id=prompt_id, started=watch.started, done=watch.finished.is_set(), node=watch.node,
            node_class=node_class, nodes_done=done_nodes, nodes_total=total, step=watch.step, steps=watch.steps,
            fraction=fraction,
        )



_NOTHING = (False, False)


def _ignore(watch: _Watch, event: Event) -> tuple[bool, bool]:
    return _NOTHING


def _started(watch: _Watch, event: ExecutionStartEvent) -> tuple[bool, bool]:
    watch.started = True
    watch.started_at = time.time()
    watch.messages.append(("execution_start", {"prompt_id": watch.prompt_id, "timestamp": event.timestamp}))
    return True, False


def _cached(watch: _Watch, event: ExecutionCachedEvent) -> tuple[bool, bool]:
    if watch.cached:
        return _NOTHING  # a server sends it once per job: a repeat adds nothing (and must not grow)
    watch.cached = tuple(event.nodes[:MAX_TRACKED_NODES])
    watch.messages.append(("execution_cached", {"nodes": list(watch.cached), "prompt_id": watch.prompt_id}))
    for node in watch.cached:
        watch.node_states[node] = "finished"
    return _NOTHING


def _executing(watch: _Watch, event: ExecutingEvent) -> tuple[bool, bool]:
    if event.is_done:
        watch.succeeded = watch.error is None and watch.interrupted is None
        return False, True
    watch.node = event.node
    watch.step = watch.steps = None
    return _NOTHING


def _progress(watch: _Watch, event: ProgressEvent) -> tuple[bool, bool]:
    watch.step, watch.steps = event.value, event.max
    return _NOTHING


def _progress_state(watch: _Watch, event: ProgressStateEvent) -> tuple[bool, bool]:
    for node_id, state in event.nodes.items():
        if _room_for(watch, watch.node_states, node_id):
            watch.node_states[node_id] = state.state
    return _NOTHING


def _executed(watch: _Watch, event: ExecutedEvent) -> tuple[bool, bool]:
    if event.node is not None and _room_for(watch, watch.outputs, event.node):
        watch.outputs[event.node] = dict(event.output)
    return _NOTHING


def _failed(watch: _Watch, event: ExecutionErrorEvent) -> tuple[bool, bool]:
    watch.error = event
    return _NOTHING


def _interrupted(watch: _Watch, event: ExecutionInterruptedEvent) -> tuple[bool, bool]:
    watch.interrupted = event
    return _NOTHING


def _succeeded(watch: _Watch, event: ExecutionSuccessEvent) -> tuple[bool, bool]:
    watch.succeeded = True
    watch.messages.append(("execution_success", {"prompt_id": watch.prompt_id, "timestamp": event.timestamp}))
    return _NOTHING


#: how each kind of event changes a watch (a subclass of one of these is folded as its base)
_FOLDS: dict[type[Event], Callable[[_Watch, Any], tuple[bool, bool]]] = {
    ExecutionStartEvent: _started,
    ExecutionCachedEvent: _cached,
    ExecutingEvent: _executing,
    ProgressEvent: _progress,
    ProgressStateEvent: _progress_state,
    ExecutedEvent: _executed,
    ExecutionErrorEvent: _failed,
    ExecutionInterruptedEvent: _interrupted,
    ExecutionSuccessEvent: _succeeded,
}


def raise_for_outcome(prompt_id: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Return a finished history entry, or raise the error or interrupt it records."""
    status = entry.get("status") or {}
    if status.get("status_str") == "success":
        return entry
    for event, data in reversed(status.get("messages") or []):
        if event == "execution_error":
            raise ExecutionError(
                prompt_id=prompt_id,
                node_id=data.get("node_id"),
                node_type=data.get("node_type"),
                exception_message=str(data.get("exception_message", "")),
                exception_type=data.get("exception_type"),
                data=data,
            )
        if event == "execution_interrupted":
            raise ExecutionInterrupted(prompt_id=prompt_id, node_id=data.get("node_id"), node_type=data.get("node_type"))
    return entry
