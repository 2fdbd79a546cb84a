"""``WaitingJobs``: the jobs one async client waits for, by prompt id, and how their lifecycle is announced.

The client owns it and gives it to each job's handle: it is all a handle knows of the
client besides the client's public endpoints.  A handle joins it before its prompt is
posted (so no event of it is missed), announces its lifecycle through it, and leaves
it when it ends; the client finds the handle of each event and the prompts to check
with the server through it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from comfykit.aio.handle import AsyncJob
    from comfykit.jobs import Job
    from comfykit.tracking import JobTracker

__all__ = ["WaitingJobs"]


class WaitingJobs:
    """The handles waiting on one server; ``announce(hook, job, *args)`` runs a ``comfykit_job_*`` hook off the loop."""

    def __init__(self, tracker: JobTracker, announce: Callable[..., None]) -> None:
        #: the tracker every handle's prompt is watched by (shared with the sync client)
        self.tracker = tracker
        self._announce = announce
        self._handles: dict[str, AsyncJob] = {}

    def __len__(self) -> int:
        return len(self._handles)

    def add(self, handle: AsyncJob, prompt: dict[str, Any] | None = None) -> None:
        """Wait for ``handle``'s prompt: watched from now on, its events and its end reach the handle."""
        self._handles[handle.prompt_id] = handle
        self.tracker.watch(handle.prompt_id, prompt, handle)

    def get(self, prompt_id: str | None) -> AsyncJob | None:
        return self._handles.get(prompt_id or "")

    def forget(self, prompt_id: str) -> None:
        """The handle is done with its prompt: nothing of it stays in the client."""
        self._handles.pop(prompt_id, None)
        self.tracker.forget(prompt_id)

    def posted(self) -> list[str]:
        """The prompts on the server the client still waits for (what reconciling asks about)."""
        return [prompt_id for prompt_id, handle in self._handles.items() if handle.posted and not handle.done]

    def announce(self, hook: str, job: Job, *args: Any) -> None:
        """Run the plugins' ``comfykit_<hook>`` for ``job`` (``job_submitted``, ``job_failed``...) on the event thread."""
        self._announce(hook, job, *args)
