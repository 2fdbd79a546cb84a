"""``run_queue``: a :class:`~comfykit.QueueManager` batch awaited from async code, without blocking the loop.

A batch with retries, several servers, a journal and a window is the queue's work, and the
queue already waits on its own threads (a fixed few, not one per job), so it is run as it
is, with the loop awaiting its end in the default executor.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from comfykit.queue import QueueManager

__all__ = ["run_queue"]


async def run_queue(queue: QueueManager, timeout: float | None = None) -> dict[str, Any]:
    """Run ``queue`` until its jobs are done (or ``timeout`` seconds passed); its statistics.

    Cancelling the awaiting task stops the queue at once: what is in flight is cancelled on the servers.
    """
    loop = asyncio.get_running_loop()
    batch = loop.run_in_executor(None, queue.run, timeout)
    try:
        return await asyncio.shield(batch)
    except asyncio.CancelledError:
        await asyncio.to_thread(queue.stop, False)
        raise
