"""Pauses: a test holds the simulator's executor at an exact point of a job, instead of racing a timer.

A test that must act while a job runs (interrupt it, queue more behind it, open a second
socket) asks for a pause *before* posting the job, waits until the executor reached it, acts,
then releases it::

    with sim.pause(node="3") as held:
        post(prompt)
        held.wait()           # node 3 is running now, and stays running
        post("/interrupt")
    # released: the interrupt lands where it would on a real server

Where the executor holds:

- ``node`` (or any node when None) has just started: its ``executing`` frame was sent and
  the interrupt check at the start of a node passed, so an interrupt posted while held lands
  at the node's next step, or else at the start of the next node;
- with ``step``: right after that node reported sampler step ``step`` (its frames, if the
  0.33 throttle let any through, were sent), before the next step checks for an interrupt.

Each pause holds once, for the first job (or ``prompt_id``) that reaches it.
"""

from __future__ import annotations

import threading

__all__ = ["Pause", "Pauses"]


class Pause:
    """One point where the executor thread waits until the test lets it go."""

    def __init__(self, *, node: str | None = None, step: int | None = None, prompt_id: str | None = None) -> None:
        self.node = node
        self.step = step
        self.prompt_id = prompt_id
        self._reached = threading.Event()
        self._released = threading.Event()
        #: where the executor actually held: (prompt id, node id, step or None)
        self.where: tuple[str, str, int | None] | None = None

    def __repr__(self) -> str:
        wanted = {"node": self.node, "step": self.step, "prompt_id": self.prompt_id}
        return "Pause(" + ", ".join(f"{k}={v!r}" for k, v in wanted.items() if v is not None) + ")"

    @property
    def reached(self) -> bool:
        return self._reached.is_set()

    def matches(self, prompt_id: str, node_id: str, step: int | None) -> bool:
        return (
            (self.prompt_id is None or self.prompt_id == prompt_id)
            and (self.node is None or self.node == node_id)
            and self.step == step
        )

    def wait(self, timeout: float = 60.0) -> Pause:
        """Block until the executor holds here; raise ``TimeoutError`` if it never gets here within ``timeout``."""
        if not self._reached.wait(timeout):
            raise TimeoutError(f"the simulator's executor never reached {self!r} within {timeout} s")
        return self

    def release(self) -> None:
        """Let the executor go on (also when it has not got here yet: then it will not hold)."""
        self._released.set()

    def hold(self, where: tuple[str, str, int | None]) -> None:
        """Called on the executor thread: mark the pause reached, then wait for the release."""
        self.where = where
        self._reached.set()
        self._released.wait()

    def __enter__(self) -> Pause:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Pauses:
    """The pauses of one executor, checked at every node start and sampler step (a no-op when there are none)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: list[Pause] = []
        self._spent: list[Pause] = []

    def add(self, pause: Pause) -> Pause:
        with self._lock:
            self._waiting.append(pause)
        return pause

    def reach(self, prompt_id: str, node_id: str, step: int | None = None) -> None:
        """Hold the calling (executor) thread if a pause waits for this point; each pause holds once."""
        with self._lock:
            if not self._waiting:
                return
            pause = next((p for p in self._waiting if p.matches(prompt_id, node_id, step)), None)
            if pause is None:
                return
            self._waiting.remove(pause)
            self._spent.append(pause)
        pause.hold((prompt_id, node_id, step))

    def release_all(self) -> None:
        """Free a held executor and drop every pause (the server is stopping)."""
        with self._lock:
            pauses, self._waiting, self._spent = self._waiting + self._spent, [], []
        for pause in pauses:
            pause.release()
