"""Core default for the ``comfykit_should_retry`` hook: which failed attempts deserve another try.

Registered ``trylast``, so any plugin that answers wins.  Transient trouble
(connection, timeout, 5xx, 429, a lost job, an execution error that looks
like a resource problem) is retried; anything the same input would fail
again (validation, 4xx, interrupts) is not.
"""

from __future__ import annotations

from comfykit.errors import (
    ExecutionError,
    ExecutionInterrupted,
    JobLost,
    PromptRejected,
    ServerError,
    TransportError,
    WaitTimeout,
)
from comfykit.hookspecs import hookimpl
from comfykit.jobs import Job

#: substrings of exception messages/types that suggest a retry may succeed
TRANSIENT_MARKERS = (
    "out of memory",
    "outofmemory",
    "cuda error",
    "connection",
    "timed out",
    "timeout",
    "temporarily",
    "resource exhausted",
)


def is_transient(error: BaseException) -> bool:
    """True when trying the same job again may succeed."""
    if isinstance(error, (PromptRejected, ExecutionInterrupted)):
        return False
    if isinstance(error, (TransportError, JobLost, WaitTimeout)):
        return True
    if isinstance(error, ServerError):
        return error.status_code >= 500 or error.status_code in (408, 429)
    if isinstance(error, ExecutionError):
        text = f"{error.exception_type or ''} {error.exception_message}".lower()
        return any(marker in text for marker in TRANSIENT_MARKERS)
    return False


@hookimpl(trylast=True)
def comfykit_should_retry(job: Job, error: BaseException, attempt: int) -> bool:
    return is_transient(error)
