"""Finishing one async job as a ``QueueManager`` finishes one: read how it ended, store its outputs, outlast the server's absence.

The steps are :mod:`comfykit.queue.finish`'s (``collect``, then ``store`` through the
sinks), run off the loop because they call the server synchronously.  When a step fails
because the server went away (refused, timed out, a 5xx: ``ServerDown``) the job waits for
the server to answer again (:func:`~comfykit.aio.outages.wait_for_server`) and the step is
taken again; storing is tried again at most ``batch.max_retries`` times.  The job is complete
only once its outputs are stored, else it fails with :class:`~comfykit.errors.OutputsNotStored`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from comfykit.aio.outages import wait_for_server
from comfykit.errors import OutputsNotStored, ServerUnreachable
from comfykit.jobs import Job, JobStatus
from comfykit.queue import finish

if TYPE_CHECKING:
    from comfykit.aio.client import AsyncComfyUIClient

__all__ = ["collect_and_store"]

log = logging.getLogger("comfykit.aio")


async def collect_and_store(client: AsyncComfyUIClient, job: Job, prompt_id: str) -> finish.Finished:
    """Fill ``job`` with how ``prompt_id`` ended and store its outputs; what was collected.

    Raises what ended the job (``ExecutionError``, ``JobLost``...), :class:`OutputsNotStored`
    when its outputs could not be stored, or :class:`ServerUnreachable` when the server
    stayed away longer than ``batch.down_timeout`` before its end could be read.
    """
    batch = client.config.section("batch")
    max_retries = int(batch["max_retries"])
    store_failures = 0
    while True:
        collected = await asyncio.to_thread(
            finish.collect, client.sync_client, prompt_id, include_temp=bool(client.config["output.include_temp"])
        )
        if isinstance(collected, finish.Retry):
            raise collected.error
        if isinstance(collected, finish.ServerDown):
            log.warning("job %s: its end could not be read (%s); trying again once %s answers", job.job_id,
                        collected.error, client.base_url)
            await wait_for_server(client, collected.error)
            continue
        if job.status is JobStatus.QUEUED:  # its start was not seen (a gap): it ran all the same
            job.move(JobStatus.RUNNING, started_at=collected.started_at or job.submitted_at)
        job.history, job.outputs, job.cached_nodes = collected.entry, collected.outputs, collected.cached_nodes
        job.stored = []  # a retry stores everything again
        if not client.store_outputs:
            return collected
        stored = await asyncio.to_thread(
            finish.store, client.plugin_manager, job, client.sync_client, sinks=client.config.get("output.sinks"),
            durable=finish.durable_outputs(client.config.get("output.fsync"), journaled=False),
        )
        if isinstance(stored, finish.Completed):
            job.warnings.extend(stored.warnings)
            return collected
        if isinstance(stored, finish.Failed):  # a full disk, a sink's bug: waiting would not help
            raise stored.error
        store_failures += 1
        if store_failures > max_retries:
            raise OutputsNotStored(f"the outputs of job {job.job_id} could not be stored: {stored.error}",
                                   hint="The server kept failing while they were fetched; fetch them later with "
                                        f"`comfykit download {prompt_id}`.") from stored.error
        log.warning("job %s: storing its outputs failed (%s); trying again once %s answers", job.job_id,
                    stored.error, client.base_url)
        try:
            await wait_for_server(client, stored.error)
        except ServerUnreachable as exc:
            raise OutputsNotStored(f"the outputs of job {job.job_id} could not be stored: {exc}",
                                   hint=f"Fetch them once the server is back: `comfykit download {prompt_id}`.") from exc

