"""How ``send --wait`` and ``batch`` show progress: rich bars, plain lines, or NDJSON events.

Three renderers share one small interface so the commands do not care which is
active: rich bars when stdout is a terminal, one plain line per change when it
is not (a log file, a CI job), and one JSON object per line with an ``event``
key under ``--json``.  rich is imported only when bars are really drawn.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import click

from comfykit_cli.state import CliState, get_state

if TYPE_CHECKING:
    from comfykit.jobs import Job
    from comfykit.tracking import JobProgress

__all__ = ["BatchReporter", "JobView", "emit_event", "job_mode", "job_record", "make_batch_reporter", "stdout_is_tty"]


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()


def emit_event(event: str, **data: Any) -> None:
    """Print one NDJSON event line (flushed at once, so a reading process sees it now), credentials masked.

    JSON escapes control characters itself, so only the masking is needed here.
    """
    _write_event(get_state(), event, data)


def _write_event(state: CliState, event: str, data: dict[str, Any]) -> None:
    click.echo(json.dumps(state.secret_mask().data({"event": event, **data}), default=str))
    sys.stdout.flush()


def job_record(job: Job) -> dict[str, Any]:
    """The JSON view of one batch job, as NDJSON events and summaries print it."""
    return {
        "job_id": job.job_id, "status": job.status.value, "prompt_id": job.prompt_id, "server": job.server,
        "attempts": job.attempts, "params": job.params, "source": job.metadata.get("source"),
        "duration": job.duration, "error": job.error, "error_type": job.error_type,
        "files": [stored.location for stored in job.stored], "warnings": list(job.warnings),
    }


# --------------------------------------------------------------------------- one job


def _describe(progress: JobProgress) -> str:
    if progress.node is None:
        return "running" if progress.started else "queued"
    text = f"node {progress.node}" + (f" {progress.node_class}" if progress.node_class else "")
    if progress.steps:
        text += f" step {int(progress.step or 0)}/{int(progress.steps)}"
    return text


class JobView:
    """Shows one job's progress; ``update`` is called a few times a second."""

    def __init__(self, prompt_id: str, mode: str) -> None:
        self.prompt_id = prompt_id
        self.mode = mode
        self._last: tuple[Any, ...] | None = None
        self._bar: Any = None
        self._task: Any = None
        if mode == "rich":
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                                 transient=True)
            self._bar.start()
            self._task = self._bar.add_task(f"{prompt_id[:8]} queued", total=1.0)

    def update(self, progress: JobProgress) -> None:
        key = (progress.started, progress.node, progress.step, progress.steps, progress.nodes_done)
        if key == self._last:
            return
        self._last = key
        if self.mode == "rich":
            self._bar.update(self._task, description=f"{self.prompt_id[:8]} {_describe(progress)}",
                             completed=progress.fraction)
        elif self.mode == "json":
            emit_event("progress", prompt_id=self.prompt_id, node=progress.node, node_class=progress.node_class,
                       step=progress.step, steps=progress.steps, nodes_done=progress.nodes_done,
                       nodes_total=progress.nodes_total, fraction=round(progress.fraction, 4))
        elif progress.started:
            click.echo(f"{self.prompt_id}: {_describe(progress)}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


# --------------------------------------------------------------------------- batches


class BatchReporter:
    """Shows a batch: called on every queue event and a few times a second with the statistics."""

    def __init__(self, total: int, mode: str) -> None:
        self.total = total
        self.mode = mode
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._bar: Any = None
        self._task: Any = None
        self._job_tasks: dict[str, Any] = {}
        # Taken now, on the command's thread: queue events arrive on threads without a click context.
        self._state = get_state()
        if mode == "rich":
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), TimeRemainingColumn())
            self._bar.start()
            self._task = self._bar.add_task("batch", total=total, counts="")

    def job_event(self, event: str, job: Job) -> None:
        with self._lock:
            if self.mode == "json":
                _write_event(self._state, event, job_record(job))
            elif self.mode == "plain" and event in ("job_completed", "job_failed", "job_cancelled", "job_retrying"):
                word = event.removeprefix("job_")
                detail = job.error if event in ("job_failed", "job_retrying") else ", ".join(s.location for s in job.stored)
                params = " ".join(f"{k}={v}" for k, v in job.params.items())
                line = f"{word} {job.job_id}" + (f" [{params}]" if params else "") + (f": {detail}" if detail else "")
                click.echo(self._state.shown(line))
            elif self.mode == "rich" and event == "job_failed":
                from rich.markup import escape

                # escape(): a server's message must not be read as rich markup either.
                self._bar.console.print(f"[red]failed[/red] {escape(self._state.shown(f'{job.job_id}: {job.error}'))}")

    def tick(self, stats: dict[str, Any], running: dict[str, JobProgress] | None = None) -> None:
        """Redraw the overall bar, and one line per running job (``job_id -> progress``) when given."""
        if self.mode != "rich":
            return
        done = stats["completed"] + stats["failed"] + stats["cancelled"]
        counts = f"ok {stats['completed']}  failed {stats['failed']}  running {stats['running']}"
        self._bar.update(self._task, completed=done, counts=counts)
        running = running or {}
        for job_id in [j for j in self._job_tasks if j not in running]:
            self._bar.remove_task(self._job_tasks.pop(job_id))
        for job_id, progress in running.items():
            text = f"  {job_id[:8]} {_describe(progress)}"
            if job_id not in self._job_tasks:
                self._job_tasks[job_id] = self._bar.add_task(text, total=1.0, counts="")
            self._bar.update(self._job_tasks[job_id], description=text, completed=progress.fraction)

    def close(self, stats: dict[str, Any]) -> None:
        if self._bar is not None:
            self.tick(stats, {})
            self._bar.stop()


def make_batch_reporter(total: int, as_json: bool) -> BatchReporter:
    return BatchReporter(total, "json" if as_json else ("rich" if stdout_is_tty() else "plain"))


def job_mode(as_json: bool) -> str:
    return "json" if as_json else ("rich" if stdout_is_tty() else "plain")

