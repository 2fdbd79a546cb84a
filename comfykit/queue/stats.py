"""A batch in numbers: counts per state, throughput, duration percentiles, and each server's share."""

from __future__ import annotations

import collections
import statistics
import time
from collections.abc import Sequence
from typing import Any

from comfykit.jobs import Job, JobStatus
from comfykit.queue.state import ServerState

__all__ = ["summarize"]


def summarize(
    jobs: Sequence[Job], servers: Sequence[ServerState], first_submit: float | None, last_finish: float | None
) -> dict[str, Any]:
    """The statistics of ``jobs`` (the caller holds the queue's lock, so they do not move meanwhile)."""
    per_server = {
        server.url: {
            "healthy": server.healthy, "in_flight": len(server.in_flight()), "weight": server.weight,
            "window": server.window, **{k: server.counts[k] for k in ("submitted", "completed", "failed")},
        }
        for server in servers
    }
    counts = collections.Counter(job.status.value for job in jobs)
    durations = [d for d in (job.duration for job in jobs if job.status is JobStatus.COMPLETED) if d is not None]
    finished = counts[JobStatus.COMPLETED.value]
    end = last_finish if (last_finish is not None and all(job.done for job in jobs)) else time.time()
    elapsed = (end - first_submit) if first_submit is not None else 0.0
    return {
        "total": len(jobs),
        **{status.value: counts[status.value] for status in JobStatus},
        "retries": sum(max(0, job.attempts - 1) for job in jobs),
        "elapsed": elapsed,
        "throughput": finished / elapsed if elapsed > 0 else 0.0,
        "mean_duration": statistics.fmean(durations) if durations else None,
        "p50_duration": _percentile(durations, 0.5),
        "p90_duration": _percentile(durations, 0.9),
        "p99_duration": _percentile(durations, 0.99),
        "servers": per_server,
    }


def _percentile(values: Sequence[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]
