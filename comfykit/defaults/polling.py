"""The polling fallback, used when no plugin provides live events (``-p no:monitor``, ``websocket.enable: false``).

This core plugin answers ``comfykit_event_source`` last.  Its thread polls the
server for the prompts the client's tracker watches and synthesizes the events
a WebSocket would have carried, so hooks, ``client.on(...)`` callbacks and the
queue see the same story either way: ``execution_start`` when a prompt is
running (``/queue``), and from its ``/history`` entry, once it ended, the
cached nodes, each output node's ``executed``, then ``execution_success``,
``execution_error`` or ``execution_interrupted``, and ``executing {node: null}``.
The interval starts at ``websocket.poll_interval`` and grows while nothing
changes; a prompt the server no longer knows is left to the tracker's
reconciliation, which reports it lost.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from comfykit.answers import queued_ids
from comfykit.errors import ComfyKitError
from comfykit.events import parse_message
from comfykit.hookspecs import hookimpl

if TYPE_CHECKING:
    from comfykit.client import ComfyUIClient

__all__ = ["PollingEventSource"]

log = logging.getLogger("comfykit.polling")

#: the longest wait between two polls while prompts are watched
MAX_INTERVAL = 1.0


class PollingEventSource:
    """An event source without a live channel: it asks the server and replays what it learns as events."""

    name = "polling"

    def __init__(self, client: ComfyUIClient) -> None:
        self.client = client
        self.first_interval = float(client.config["websocket.poll_interval"])
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._started: set[str] = set()  # prompts whose execution_start was sent

    @property
    def connected(self) -> bool:
        """True while the polling thread runs: waiters can rely on its events."""
        return self._thread is not None and self._thread.is_alive() and not self._stopping.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="comfykit-polling", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        interval = self.first_interval
        while not self._stopping.wait(interval):
            watched = self.client.tracker.watched()
            if not watched:
                interval = max(self.first_interval, 0.1)
                continue
            try:
                changed = self.poll(watched)
            except ComfyKitError as exc:
                log.info("polling %s failed: %s", self.client.base_url, exc)
                changed = False
            interval = self.first_interval if changed else min(MAX_INTERVAL, interval * 1.3)

    def poll(self, watched: list[str]) -> bool:
        """Ask the server about ``watched`` prompts once; dispatch what changed.  True when something did."""
        queue = self.client.get_queue()
        running, pending = queued_ids(queue, running_only=True), queued_ids(queue)
        changed = False
        for prompt_id in watched:
            if prompt_id in running:
                if prompt_id not in self._started:
                    self._started.add(prompt_id)
                    self._dispatch("execution_start", {"prompt_id": prompt_id, "timestamp": None})
                    changed = True
            elif prompt_id not in pending:
                entry = self.client.get_history(prompt_id).get(prompt_id)
                if isinstance(entry, Mapping) and (entry.get("status") or {}).get("completed") is not None:
                    self._replay(prompt_id, entry)
                    changed = True
        return changed

    def _replay(self, prompt_id: str, entry: Mapping[str, Any]) -> None:
        status = entry.get("status") or {}
        messages = [m for m in status.get("messages") or [] if isinstance(m, list) and len(m) == 2]
        for event, data in messages:
            if event == "execution_start" and prompt_id in self._started:
                continue
            if event in ("execution_success", "execution_error", "execution_interrupted"):
                for node_id, output in (entry.get("outputs") or {}).items():
                    self._dispatch("executed", {"node": node_id, "display_node": node_id, "output": output,
                                                "prompt_id": prompt_id})
            self._dispatch(event, {**data, "prompt_id": prompt_id})
        self._started.discard(prompt_id)
        self._dispatch("executing", {"node": None, "prompt_id": prompt_id})

    def _dispatch(self, event_type: str, data: Mapping[str, Any]) -> None:
        self.client.dispatch_event(parse_message(json.dumps({"type": event_type, "data": dict(data)}, default=str)))


@hookimpl(trylast=True)
def comfykit_event_source(client: ComfyUIClient) -> PollingEventSource:
    return PollingEventSource(client)
