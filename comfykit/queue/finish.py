"""Finishing one prompt: read how it ended, then store its outputs, each step answering with a value.

:func:`collect` reads the end from the tracker (``Finished``, or why not);
:func:`store` runs the output sinks.  A sink that failed because the server
went away (a comfykit transport error, a timeout, a 5xx) is server trouble, as
a history read that failed is: the answer is :class:`ServerDown` and the job
waits for the server, it is not completed without its files.  Any other sink
error is a warning on a completed job.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from comfykit.errors import JobError, OutputsNotStored, RequestTimeout, ServerError, TransportError
from comfykit.jobs import Job
from comfykit.outputs import OutputFile, discover_outputs

if TYPE_CHECKING:
    from comfykit.client import ComfyUIClient
    from comfykit.plugins import PluginManager

__all__ = [
    "Completed", "Failed", "Finished", "Retry", "ServerDown", "collect", "durable_outputs", "is_server_trouble", "store",
]


@attrs.frozen
class Finished:
    """The prompt succeeded: what its history says (outputs still to be stored)."""

    entry: dict[str, Any]
    outputs: list[OutputFile]
    cached_nodes: list[str]
    started_at: float | None
    finished_at: float


@attrs.frozen
class Completed:
    """Its outputs are stored (``warnings``: what the sinks had to say)."""

    warnings: tuple[str, ...] = ()


@attrs.frozen
class Retry:
    """The execution did not succeed (an error, an interrupt, a lost job): a new attempt may help."""

    error: BaseException


@attrs.frozen
class ServerDown:
    """The server went away while its history or outputs (``storing``) were read: wait for it and finish again."""

    error: BaseException
    storing: bool = False


@attrs.frozen
class Failed:
    """Ends the job for good (outputs that could not be stored after every retry)."""

    error: BaseException


def collect(client: ComfyUIClient, prompt_id: str, *, include_temp: bool) -> Finished | Retry | ServerDown:
    """How ``prompt_id`` ended, from the tracker (events, else ``/history``)."""
    try:
        entry = client.tracker.result(prompt_id, from_events=True)
    except JobError as exc:
        return Retry(exc)
    except (TransportError, ServerError) as exc:
        return ServerDown(exc)
    started_at, cached, _ = client.tracker.details(prompt_id)
    return Finished(
        entry=entry,
        outputs=discover_outputs(entry.get("outputs") or {}, include_temp=include_temp),
        cached_nodes=list(cached) or _cached_from_history(entry),
        # Our clock only: the server's own stamps stay in the history entry, under their names.
        started_at=started_at,
        finished_at=time.time(),
    )


def store(
    plugins: PluginManager, job: Job, client: ComfyUIClient, *, sinks: Collection[str] | None, durable: bool
) -> Completed | ServerDown | Failed:
    """Run the output sinks for a job whose result fields are filled (they extend ``job.stored``).

    A job is complete only when every sink stored its part: a sink that failed because the
    server went away means waiting for the server (``ServerDown``); any other failure (a full
    or read-only disk, a sink's own bug) fails the job with :class:`OutputsNotStored`, its
    prompt id kept, so that resuming the journal fetches the outputs without running it again.
    ``durable`` (see :func:`durable_outputs`) is passed on to the sinks.
    """
    failures = []
    for result in plugins.store_outputs(job, job.outputs, client, sinks=sinks, durable=durable):
        if result.error is None:
            continue
        if is_server_trouble(result.error):
            return ServerDown(result.error, storing=True)
        failures.append(f"{result.plugin}: {result.error}")
    if failures:
        return Failed(OutputsNotStored(f"the outputs of job {job.job_id} could not be stored ({'; '.join(failures)})",
                                       hint="Fix the cause (disk space, permissions, the sink), then resume the "
                                            "journal: the outputs are fetched again, the job does not run again."))
    return Completed()


def durable_outputs(fsync: bool | None, *, journaled: bool) -> bool:
    """Whether stored outputs must survive a power loss: ``output.fsync`` when set, else whether a journal records them.

    A journal records a job complete once its outputs are stored, and a resume never stores
    them again: unflushed files lost with the power would be missing for good.  Without a
    journal nothing durable claims them (a batch run again stores what is missing or empty),
    so flushing, about 0.5 ms of CPU per job of two files, is left to ``output.fsync: true``.
    """
    return journaled if fsync is None else bool(fsync)


def is_server_trouble(error: BaseException) -> bool:
    """Whether ``error`` (or an error it wraps or collects) says the server could not be reached or failed.

    Transport errors, timeouts and 5xx answers are; a sink's own bug, a full disk or a 4xx are not.
    """
    return any(
        isinstance(found, (TransportError, RequestTimeout, TimeoutError))
        or (isinstance(found, ServerError) and found.status_code >= 500)
        for found in _causes(error, depth=4)
    )


def _causes(error: BaseException, depth: int) -> Iterator[BaseException]:
    yield error
    if depth == 0:
        return
    inner = [error.__cause__] if error.__cause__ is not None else []
    # Errors that collect others: comfykit_download's DownloadError (.errors), an ExceptionGroup (.exceptions).
    for name in ("errors", "exceptions"):
        collected = getattr(error, name, None)
        if isinstance(collected, (list, tuple)):
            inner += [e for e in collected if isinstance(e, BaseException)]
    for found in inner:
        yield from _causes(found, depth - 1)


def _history_messages(entry: Mapping[str, Any]) -> list[Any]:
    return list((entry.get("status") or {}).get("messages") or [])


def _cached_from_history(entry: Mapping[str, Any]) -> list[str]:
    for name, data in _history_messages(entry):
        if name == "execution_cached" and isinstance(data, Mapping):
            return [str(node) for node in data.get("nodes") or []]
    return []
