"""``SimServer``: the state of one simulated ComfyUI process, and the executor thread that runs its queue.

It holds the prompt counter, the pending heap, the running job, the in-memory history and
the sockets, and routes each job's events to the right sockets.  The aiohttp application
that serves it is built in ``app.py`` from the route groups (``routes_*.py``,
``jobs_api.py``, ``websocket.py``).

Threads: the event loop (every route handler) and the executor thread both touch this
state, always under ``lock``; the executor hands frames to the loop through ``deliver``.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from comfykit.testing.catalog import load_object_info
from comfykit.testing.executor import ExecJob, Executor
from comfykit.testing.files import SimFiles
from comfykit.testing.frame_log import FrameLog
from comfykit.testing.knobs import Knobs

if TYPE_CHECKING:
    from comfykit.testing.websocket import Socket

__all__ = ["SECRET_KEYS", "SimServer"]

log = logging.getLogger("comfykit.testing")

MAX_HISTORY = 10000
#: the comfy.org credentials a client may put in ``extra_data``: kept out of the history (and, on 0.33, the queue)
SECRET_KEYS = ("api_key_comfy_org", "auth_token_comfy_org")
#: events a job without client_id still broadcasts to every socket (recorded quirk)
BROADCAST_WITHOUT_CLIENT = {"progress_state", "progress", "execution_interrupted"}


class _JobSink:
    """Routes one job's events to the right sockets (see the reference README, 'Who receives what')."""

    def __init__(self, server: SimServer, prompt_id: str, client_id: str | None) -> None:
        self.server = server
        self.prompt_id = prompt_id
        self.client_id = client_id
        self._legacy: list[bytes] = []

    def _targets(self, event_type: str) -> list[Socket]:
        # Runs on the executor thread while the event loop opens and closes sockets: read them under the lock.
        with self.server.lock:
            if self.client_id:
                socket = self.server.sockets.get(self.client_id)
                return [socket] if socket is not None else []
            if event_type in BROADCAST_WITHOUT_CLIENT:
                return list(self.server.sockets.values())
            return []

    def send(self, event_type: str, data: dict[str, Any]) -> None:
        frame = json.dumps({"type": event_type, "data": data})
        for socket in self._targets(event_type):
            self.server.deliver(socket, frame)
        if event_type == "progress" and self._legacy:
            # Legacy previews (type 1) follow their progress event; type 4 precedes it.
            for socket in self._targets("progress"):
                if not socket.preview_metadata:
                    for payload in self._legacy:
                        self.server.deliver(socket, payload)
            self._legacy.clear()

    def send_preview(self, image: bytes, image_format: str, metadata: dict[str, Any]) -> None:
        fmt = 2 if image_format == "PNG" else 1
        legacy = (1).to_bytes(4, "big") + fmt.to_bytes(4, "big") + image
        meta = json.dumps(metadata).encode()
        with_metadata = (4).to_bytes(4, "big") + len(meta).to_bytes(4, "big") + meta + image
        for socket in self._targets("progress"):
            if socket.preview_metadata:
                self.server.deliver(socket, with_metadata)
        self._legacy.append(legacy)

    def interrupted(self) -> bool:
        with self.server.lock:
            return self.prompt_id in self.server.interrupts


class SimServer:
    """The state and behaviour of one simulated ComfyUI server."""

    def __init__(self, *, version: str, files: SimFiles, knobs: Knobs, models: dict[str, list[str]] | None) -> None:
        self.version = version
        self.files = files
        self.knobs = knobs
        self.object_info = load_object_info(version, models=models)
        self.executor = Executor(self.object_info, files, knobs, version)
        self.loop: asyncio.AbstractEventLoop | None = None
        #: the ``frame_log`` knob's file, written by the event loop's socket writers
        self.frame_log = FrameLog(knobs)
        #: guards every field below; reentrant (a Condition over an RLock), so helpers may take it again
        self.lock = threading.Condition(threading.RLock())
        self.counter = 0
        self.pending: list[list[Any]] = []
        self.running: list[Any] | None = None
        self.history: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.create_times: dict[str, int] = {}
        self.interrupts: set[str] = set()
        #: the current socket of each client id (what events are routed to)
        self.sockets: dict[str, Socket] = {}
        #: every open socket, replaced ones included (what a restart or a drop closes)
        self.all_sockets: list[Socket] = []
        self.execution_counts: dict[str, int] = {}
        self.posted: list[str] = []
        self._stop = False
        self._worker = threading.Thread(target=self._work, name="comfykit-sim-executor", daemon=True)
        self._worker.start()

    @property
    def is_new(self) -> bool:
        return self.version != "0.3.64"

    # -- socket delivery (thread-safe) ----------------------------------

    def deliver(self, socket: Socket, payload: str | bytes | None) -> None:
        """Queue ``payload`` for ``socket`` from any thread; ``None`` closes the socket."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(socket.outbox.put_nowait, payload)

    def queue_remaining(self) -> int:
        with self.lock:
            return len(self.pending) + (1 if self.running is not None else 0)

    def broadcast_status(self) -> None:
        """Send the queue count to every client (callers that just changed the queue hold ``lock`` already)."""
        with self.lock:
            frame = json.dumps({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": self.queue_remaining()}}}})
            # Like ComfyUI, broadcasts go to the current socket of each client id: a socket replaced by a newer
            # one with the same clientId stays open but hears nothing (reconnect_same_client_id.json).
            for socket in self.sockets.values():
                self.deliver(socket, frame)

    # -- the executor thread --------------------------------------------

    def _work(self) -> None:
        while True:
            with self.lock:
                while not self.pending and not self._stop:
                    self.lock.wait()
                if self._stop:
                    return
                item = heapq.heappop(self.pending)
                self.running = item
                self.execution_counts[item[1]] = self.execution_counts.get(item[1], 0) + 1
                self.broadcast_status()
            number, prompt_id, prompt, extra_data, outputs = item
            sink = _JobSink(self, prompt_id, extra_data.get("client_id"))
            try:
                outcome = self.executor.run(ExecJob(prompt_id, number, prompt, extra_data, outputs), sink)
            except Exception:  # the simulator must keep serving; report like a crashed node would be
                log.exception("simulator executor failed on %s", prompt_id)
                with self.lock:
                    self.running = None
                    self.broadcast_status()
                continue
            if self.knobs.history_delay:
                time.sleep(self.knobs.history_delay)
            with self.lock:
                if self.running is not item:
                    continue  # a restart happened meanwhile: this job is forgotten
                history_extra = {k: v for k, v in extra_data.items() if k not in SECRET_KEYS}
                # A reused prompt id overwrites its entry in place: it keeps its old position (as recorded).
                self.history[prompt_id] = {
                    "prompt": [number, prompt_id, prompt, history_extra, outputs],
                    "outputs": outcome.outputs,
                    "status": {"status_str": outcome.status_str, "completed": outcome.completed, "messages": outcome.messages},
                    "meta": outcome.meta,
                }
                while len(self.history) > MAX_HISTORY:
                    self.history.popitem(last=False)
                self.running = None
                self.interrupts.discard(prompt_id)
                self.broadcast_status()
            sink.send("executing", {"node": None, "prompt_id": prompt_id})

    def remove_pending(self, prompt_ids: list[str]) -> bool:
        """Drop pending items by prompt id (call with ``lock`` held); True when any was removed."""
        doomed = set(prompt_ids)
        before = len(self.pending)
        self.pending = [item for item in self.pending if item[1] not in doomed]
        heapq.heapify(self.pending)
        return len(self.pending) != before

    def shutdown(self) -> None:
        with self.lock:
            self._stop = True
            self.lock.notify_all()
        self.executor.pauses.release_all()

    def restart(self) -> None:
        """Forget everything a real restart forgets: queue, history, cache, temp files, sockets."""
        with self.lock:
            self.pending.clear()
            if self.running is not None:
                self.interrupts.add(self.running[1])
            self.running = None
            self.history.clear()
            self.create_times.clear()
            self.counter = 0
            sockets = list(self.all_sockets)
        self.executor.free_memory()
        self.files.clear_temp()
        for socket in sockets:
            self.deliver(socket, None)

