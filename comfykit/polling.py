"""The polling fallback, used when no plugin provides live events (``-p no:monitor``, ``websocket.enable: false``).

This core plugin answers ``comfykit_event_source`` last and with a source that is
never "connected": the client's :class:`comfykit.tracking.JobTracker` then asks
the server about each watched prompt itself (``/history/{id}`` + ``/queue``), with
an interval that starts at ``websocket.poll_interval`` and grows while a job runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from comfykit.hookspecs import hookimpl

if TYPE_CHECKING:
    from comfykit.client import ComfyUIClient

__all__ = ["PollingEventSource"]


class PollingEventSource:
    """An event source with no live channel: completion is found by polling."""

    name = "polling"
    connected = False

    def __init__(self, client: ComfyUIClient) -> None:
        self.client = client

    def start(self) -> None:
        """Nothing to open: the tracker polls while someone waits."""

    def stop(self) -> None:
        """Nothing to close."""

    def watch(self, prompt_id: str) -> None:
        """Prompts are watched by the tracker."""

    def unwatch(self, prompt_id: str) -> None:
        """Prompts are watched by the tracker."""


@hookimpl(trylast=True)
def comfykit_event_source(client: ComfyUIClient) -> PollingEventSource:
    return PollingEventSource(client)
