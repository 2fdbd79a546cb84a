"""What the contract and the lower floors type against, instead of naming the concrete client and queue.

``hookspecs``, ``tracking`` and ``queue.inputs`` need "something that talks to a
ComfyUI server", "a batch" and "something that delivers live events"; the
protocols here say exactly which members they use, so none of those modules
imports :mod:`comfykit.client` or :mod:`comfykit.queue` at run time.
:class:`comfykit.ComfyUIClient` and :class:`comfykit.QueueManager` satisfy them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from comfykit.config import Config
    from comfykit.jobs import Job

__all__ = ["Client", "EventSource", "Queue", "WatchListener"]


@runtime_checkable
class EventSource(Protocol):
    """Delivers a client's live events to ``client.dispatch_event``, on a thread of its own."""

    name: str

    @property
    def connected(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class WatchListener(Protocol):
    """Hears when a watched prompt starts and ends.

    Called from the event source's thread (or the thread reconciling with the
    server), so it must be quick and must not block on the network.
    """

    def prompt_started(self, prompt_id: str) -> None: ...

    def prompt_finished(self, prompt_id: str) -> None: ...


class Client(Protocol):
    """The part of :class:`comfykit.ComfyUIClient` the tracker, the input uploads and the hooks rely on."""

    @property
    def base_url(self) -> str: ...

    @property
    def config(self) -> Config: ...

    @property
    def event_source(self) -> EventSource | None: ...

    def get_queue(self) -> dict[str, Any]: ...

    def get_history(
        self, prompt_id: str | None = None, max_items: int | None = None, offset: int | None = None
    ) -> dict[str, Any]: ...

    def get_image(self, filename: str, subfolder: str = "", folder_type: str = "output") -> bytes: ...

    def upload_image(
        self, path_or_bytes: Any, subfolder: str = "", overwrite: bool = False, type: str = "input", *,
        filename: str | None = None,
    ) -> dict[str, Any]: ...


class Queue(Protocol):
    """The part of :class:`comfykit.QueueManager` the ``comfykit_queue_empty`` hook may use."""

    def get_all_jobs(self) -> list[Job]: ...

    def get_statistics(self) -> dict[str, Any]: ...

    @property
    def servers(self) -> list[str]: ...

