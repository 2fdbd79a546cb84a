"""The download plugin's naming plan: the ``output.naming`` template fields of each output, and one path per output.

:func:`plan_output_paths` renders the template for every output through
:func:`comfykit.paths.safe_output_path` (which keeps each name inside the
output folder) and numbers outputs that would share a path.  Other sinks do
not re-plan these paths: they read the downloader's records in ``job.stored``.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from comfykit.errors import UnsafePathError
from comfykit.jobs import Job
from comfykit.outputs import OutputFile
from comfykit.paths import MAX_COMPONENT_BYTES, MAX_EXTENSION_BYTES, safe_output_path

__all__ = ["DEFAULT_NAMING", "job_time", "output_fields", "plan_output_paths"]

DEFAULT_NAMING = "{job_id}/{node_id}_{filename}"


def job_time(job: Job | None) -> datetime.datetime:
    """The moment ``{date}``/``{time}`` stand for: when the job finished (else was submitted, created).

    Taken from the job rather than the clock, so a second download of the same job finds the files of the first.
    """
    if job is not None:
        stamp = job.finished_at or job.started_at or job.submitted_at or job.created_at
        return datetime.datetime.fromtimestamp(stamp)
    return datetime.datetime.now()


def output_fields(
    output: OutputFile,
    *,
    job: Job | None = None,
    prompt_id: str | None = None,
    server: str | None = None,
    when: datetime.datetime | None = None,
    index: int | None = None,
) -> dict[str, Any]:
    """The naming-template fields of one output (``job_id``, ``node_id``, ``filename``, ``date``...)."""
    when = when or job_time(job)
    filename = output.filename if output.filename is not None else f"{output.kind}_{output.index}.txt"
    stem, dot, ext = filename.rpartition(".")
    if not dot or not stem:
        stem, ext = filename, ""
    prompt = prompt_id or (job.prompt_id if job is not None else None) or ""
    job_id = job.job_id if job is not None else (prompt or "job")
    host = urlsplit(server).hostname if server else None
    return {
        "job_id": job_id,
        "prompt_id": prompt,
        "node_id": output.node_id,
        "filename": filename,
        "stem": stem,
        "ext": ext,
        "subfolder": output.subfolder,
        "kind": output.kind,
        "type": output.folder_type,
        "index": output.index if index is None else index,
        "date": when.strftime("%Y-%m-%d"),
        "time": when.strftime("%H-%M-%S"),
        "host": host or "",
        "server": host or "",
        "params": dict(job.params) if job is not None else {},
    }


def plan_output_paths(
    root: Path | str,
    template: str,
    outputs: Sequence[OutputFile],
    *,
    job: Job | None = None,
    prompt_id: str | None = None,
    server: str | None = None,
    when: datetime.datetime | None = None,
) -> list[tuple[OutputFile, Path | UnsafePathError]]:
    """Each output with its target path, or the :class:`UnsafePathError` that refused it.

    Two outputs that would land on the same path (a template without
    ``{index}``, or a server reporting one name for everything) get ``_1``,
    ``_2``... before the extension, in output order, so downloading
    the same job again gives the same paths.
    """
    when = when or job_time(job)
    taken: set[Path] = set()
    plan: list[tuple[OutputFile, Path | UnsafePathError]] = []
    for output in outputs:
        fields = output_fields(output, job=job, prompt_id=prompt_id, server=server, when=when)
        try:
            path = safe_output_path(root, template, fields)
        except UnsafePathError as exc:
            plan.append((output, exc))
            continue
        path = _unique(path, taken)
        taken.add(path)
        plan.append((output, path))
    return plan


def _unique(path: Path, taken: Iterable[Path]) -> Path:
    used = set(taken)
    if path not in used:
        return path
    stem, dot, ext = path.name.rpartition(".")
    if not dot or not stem:
        stem, ext = path.name, ""
    suffix = f".{ext}" if ext and len(ext.encode("utf-8")) < MAX_EXTENSION_BYTES else ""
    if not suffix:
        stem = path.name
    counter = 1
    while True:
        tail = f"_{counter}{suffix}"
        room = MAX_COMPONENT_BYTES - len(tail.encode("utf-8"))
        candidate = path.with_name(stem.encode("utf-8")[:room].decode("utf-8", errors="ignore") + tail)
        if candidate not in used:
            return candidate
        counter += 1
