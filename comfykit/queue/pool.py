"""The servers a queue runs on: reading their specs, building their clients, picking one, judging their health.

The functions here decide; the :class:`~comfykit.queue.QueueManager` holds the
lock and applies what they decide.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from comfykit.errors import ConfigError, TransportError
from comfykit.queue.state import ServerState

if TYPE_CHECKING:
    from comfykit.client import ComfyUIClient
    from comfykit.config import Config
    from comfykit.plugins import PluginManager

__all__ = ["ServerSpec", "build_servers", "goes_down", "pick"]


@attrs.frozen
class ServerSpec:
    """One server of a pool: its URL, its share of the work, and its in-flight window."""

    url: str
    weight: float = 1.0
    max_concurrent: int | None = None

    @classmethod
    def parse(cls, value: str | Mapping[str, Any] | ServerSpec) -> ServerSpec:
        if isinstance(value, ServerSpec):
            return value
        if isinstance(value, str):
            return cls(url=value.rstrip("/"))
        if isinstance(value, Mapping) and isinstance(value.get("url"), str):
            try:
                weight = float(value.get("weight", 1.0))
                window = None if value.get("max_concurrent") is None else int(value["max_concurrent"])
            except (TypeError, ValueError):
                raise ConfigError(f"server {value['url']}: weight and max_concurrent must be numbers") from None
            if weight <= 0 or (window is not None and window < 1):
                raise ConfigError(f"server {value['url']}: weight must be > 0 and max_concurrent >= 1")
            return cls(url=value["url"].rstrip("/"), weight=weight, max_concurrent=window)
        raise ConfigError(
            f"cannot read server entry {value!r}",
            hint="Give a URL, or a mapping with url and optional weight and max_concurrent.",
        )


def build_servers(
    client: ComfyUIClient | None,
    servers: Iterable[str | Mapping[str, Any] | ServerSpec] | None,
    *,
    config: Config,
    plugin_manager: PluginManager,
    window: int,
) -> tuple[list[ServerState], list[ComfyUIClient]]:
    """The pool's servers, and the clients built for it (the queue closes those)."""
    from comfykit.client import ComfyUIClient  # the client module is above the queue's parts

    if client is not None and servers is not None:
        raise ConfigError("give QueueManager a client or a list of servers, not both")
    if client is not None:
        return [ServerState(ServerSpec(client.base_url), client, window)], []
    specs = [ServerSpec.parse(s) for s in (servers if servers is not None else config["servers"] or [])]
    if not specs:
        lone = ComfyUIClient(config=config, plugin_manager=plugin_manager)
        return [ServerState(ServerSpec(lone.base_url), lone, window)], [lone]
    urls = [spec.url for spec in specs]
    if len(set(urls)) != len(urls):
        raise ConfigError(f"the server pool lists a server twice: {urls}", hint="Give each URL once; use weight instead.")
    built = [ComfyUIClient(url=spec.url, config=config, plugin_manager=plugin_manager) for spec in specs]
    pool = [
        ServerState(spec, member, spec.max_concurrent or window) for spec, member in zip(specs, built, strict=True)
    ]
    return pool, built


def pick(servers: Sequence[ServerState]) -> ServerState | None:
    """The least-loaded healthy server with a free slot, by weight; ``None`` when all are full or down."""
    candidates = [server for server in servers if server.has_room]
    return min(candidates, key=lambda s: s.load) if candidates else None


def goes_down(server: ServerState, error: BaseException, health_interval: float) -> bool:
    """Mark ``server`` down when ``error`` says it cannot be reached; ``True`` when it was up until now.

    A 5xx alone does not take a server out of the pool.  The caller holds the queue's lock.
    """
    if not isinstance(error, TransportError) or not server.healthy:
        return False
    server.healthy = False
    server.down_since = time.monotonic()
    server.next_check = server.down_since + min(health_interval, 0.5)
    return True
