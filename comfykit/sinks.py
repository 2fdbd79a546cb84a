"""Running the output sinks of one finished job, each on its own, and what each of them did.

A sink is any plugin implementing ``comfykit_store_outputs`` (the download and
metadata plugins are two).  Sinks run in isolation, as pluggy's guidance asks for
hooks whose results are collected: one that raises becomes a :class:`SinkResult`
with its error, and the others still run.  Whether an error is worth retrying is
the caller's decision (:mod:`comfykit.queue.finish`), not this module's.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, cast

import attrs
import pluggy

from comfykit.hookcalls import call_impl, where

if TYPE_CHECKING:
    from comfykit.jobs import Job
    from comfykit.outputs import OutputFile, StoredOutput
    from comfykit.protocols import Client

__all__ = ["SinkResult", "run_sinks"]

log = logging.getLogger("comfykit.plugins")


@attrs.frozen
class SinkResult:
    """What one output sink did: what it stored, or the error it raised."""

    plugin: str
    stored: tuple[StoredOutput, ...] = ()
    error: BaseException | None = None


def run_sinks(
    hook: pluggy.HookCaller, job: Job, outputs: Sequence[OutputFile], client: Client, *,
    sinks: Collection[str] | None = None, durable: bool = False,
) -> list[SinkResult]:
    """Call every implementation of the sink ``hook`` in pluggy's order, one at a time.

    ``sinks`` names the plugins to run (the ``output.sinks`` config key); ``None`` runs all.
    ``durable``: what they store must be on disk before they return (see the hookspec).
    ``job.stored`` is extended as each sink returns, so a ``trylast`` sink sees the
    records of the others.
    """
    results: list[SinkResult] = []
    kwargs = {"job": job, "outputs": outputs, "client": client, "durable": durable}
    for impl in reversed(hook.get_hookimpls()):
        if sinks is not None and impl.plugin_name not in sinks:
            continue
        try:
            stored = call_impl(impl, **kwargs)
        except Exception as exc:
            log.error("output sink %r (%s) failed for job %s: %s", impl.plugin_name, where(impl), job.job_id, exc)
            results.append(SinkResult(plugin=impl.plugin_name, error=exc))
            continue
        records = tuple(cast("Sequence[StoredOutput]", stored or ()))
        job.stored.extend(records)
        results.append(SinkResult(plugin=impl.plugin_name, stored=records))
    return results
