"""Outlasting a server's brief absence, as a ``QueueManager`` does: wait until it answers, ask what it has.

Both use the queue's limits: the server is pinged every ``batch.health_interval``
seconds for at most ``batch.down_timeout``; whether it holds a prompt whose POST
answer was lost is asked by :func:`comfykit.queue.submit.ask`, the queue's own question.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING

from comfykit.errors import ServerUnreachable
from comfykit.queue import submit

if TYPE_CHECKING:
    from comfykit.aio.client import AsyncComfyUIClient

__all__ = ["has_prompt", "wait_for_server"]


async def wait_for_server(client: AsyncComfyUIClient, error: BaseException) -> None:
    """Return once the server answers a ping; ServerUnreachable after ``batch.down_timeout`` seconds without one."""
    batch = client.config.section("batch")
    interval = float(batch["health_interval"])
    down_timeout = float(batch["down_timeout"])
    since = time.monotonic()
    await asyncio.sleep(min(interval, 0.5))  # the first look comes soon: most outages are a moment
    while not await client.ping(timeout=min(5.0, interval)):
        if time.monotonic() - since > down_timeout:
            raise ServerUnreachable(
                f"{client.base_url} did not answer for {down_timeout:.0f} s (batch.down_timeout): {error}",
                hint="Start the server again; a job that ran keeps its outputs there.",
            ) from error
        await asyncio.sleep(interval)


async def has_prompt(client: AsyncComfyUIClient, prompt_id: str) -> bool | None:
    """Whether the server has ``prompt_id`` queued, running or finished; ``None`` when it cannot be asked now."""
    return await asyncio.to_thread(submit.ask, client.sync_client, prompt_id, threading.Event())
