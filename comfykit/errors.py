"""Every exception comfykit raises, rooted in one base class.

Callers catch ``ComfyKitError`` to handle anything comfykit reports, or a
narrower class below it.  Each exception carries the context that caused it
(the URL, the HTTP status, the node errors, the file and line) and a ``hint``
telling the user what to do about it.

    ComfyKitError
    ├── ConfigError                 bad config file, key or value
    ├── PluginError                 a plugin failed to load or misbehaved
    ├── JournalError                a batch journal is damaged, full, or in use by another process
    ├── WorkflowError               a workflow could not be used
    │   ├── WorkflowLoadError       unreadable or unrecognised file
    │   ├── ConversionError         UI-format workflow could not be converted
    │   ├── TemplateError           bad template or template parameters
    │   └── WorkflowValidationError the workflow has validation problems
    ├── TransportError              the server could not be talked to
    │   ├── ServerUnreachable       connection refused, DNS failure, TLS failure
    │   ├── RequestTimeout          the server did not answer in time (also a TimeoutError)
    │   └── ProtocolError           the server answered something we cannot read
    ├── ServerError                 the server answered with an error status
    │   ├── NotFound                404
    │   ├── PromptRejected          400 from POST /prompt, with the node errors
    │   └── FeatureUnavailable      the server lacks an endpoint (e.g. the jobs API)
    ├── JobError                    a submitted job did not succeed
    │   ├── ExecutionError          the server raised while running a node
    │   ├── ExecutionInterrupted    the job was interrupted or cancelled
    │   ├── JobLost                 the server forgot the job (restart)
    │   └── WaitTimeout             waiting for the job took too long (also a TimeoutError)
    └── OutputError                 an output could not be stored
        ├── OutputsNotStored        a finished job's outputs could not all be stored (resume fetches them)
        └── UnsafePathError         a server-sent name would escape the output folder
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "ComfyKitError",
    "ConfigError",
    "ConversionError",
    "ExecutionError",
    "ExecutionInterrupted",
    "FeatureUnavailable",
    "JobError",
    "JobLost",
    "JournalError",
    "NotFound",
    "OutputError",
    "OutputsNotStored",
    "PluginError",
    "PromptRejected",
    "ProtocolError",
    "RequestTimeout",
    "ServerError",
    "ServerUnreachable",
    "TemplateError",
    "TransportError",
    "UnsafePathError",
    "WaitTimeout",
    "WorkflowError",
    "WorkflowLoadError",
    "WorkflowValidationError",
]


class ComfyKitError(Exception):
    """Base of everything comfykit raises on purpose.

    ``hint`` is a sentence telling the user how to fix the problem; it is
    appended to ``str(exc)`` so it shows up wherever the error is printed.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\nHint: {self.hint}"
        return self.message


class ConfigError(ComfyKitError):
    """A configuration file, key or value is wrong."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        key: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        where = ""
        if path:
            where = f"{path}:{line}: " if line else f"{path}: "
        super().__init__(where + message, hint=hint)
        self.path = path
        self.key = key
        self.line = line


class PluginError(ComfyKitError):
    """A plugin could not be loaded, or it broke a hook's contract."""

    def __init__(self, message: str, *, plugin: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.plugin = plugin


# --------------------------------------------------------------------------- workflows


class JournalError(ComfyKitError):
    """A batch journal cannot be used: damaged, of another program, out of disk, or owned by a live process."""

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None) -> None:
        super().__init__(f"{path}: {message}" if path else message, hint=hint)
        self.path = path


class WorkflowError(ComfyKitError):
    """A workflow could not be loaded, converted, templated or validated."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        node_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        prefix = f"{path}: " if path else ""
        super().__init__(prefix + message, hint=hint)
        self.path = path
        self.node_id = node_id


class WorkflowLoadError(WorkflowError):
    """The workflow file is unreadable or in no format comfykit knows."""


class ConversionError(WorkflowError):
    """A UI-format (editor) workflow could not be turned into an API graph."""


class TemplateError(WorkflowError):
    """A template is malformed, or the values given for it do not fit."""


class WorkflowValidationError(WorkflowError):
    """Validation found errors; ``problems`` lists them all."""

    def __init__(self, message: str, *, problems: list[Any], path: str | None = None) -> None:
        lines = [message, *(f"  - {p}" for p in problems)]
        super().__init__("\n".join(lines), path=path)
        self.problems = problems


# --------------------------------------------------------------------------- transport


class TransportError(ComfyKitError):
    """The server could not be talked to at all, or answered nonsense."""

    def __init__(self, message: str, *, url: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.url = url


class ServerUnreachable(TransportError):
    """Connection refused, DNS failure, TLS failure, or the connection dropped."""


class RequestTimeout(TransportError, TimeoutError):
    """The server did not answer within the configured timeout."""


class ProtocolError(TransportError):
    """The server's answer could not be understood (not JSON, wrong shape, too large)."""


# --------------------------------------------------------------------------- server errors


class ServerError(ComfyKitError):
    """The server answered with an error status.

    ``status_code`` is the HTTP status, ``body`` the decoded body (JSON value
    or text), ``url`` the request URL with any credentials removed.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        url: str | None = None,
        body: Any = None,
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status_code = status_code
        self.url = url
        self.body = body
        self.retry_after = retry_after


class NotFound(ServerError):
    """The server answered 404 for a resource."""


class FeatureUnavailable(ServerError):
    """The server does not offer what was asked (an endpoint newer than the server)."""


def _format_node_errors(node_errors: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    for node_id, entry in node_errors.items():
        if not isinstance(entry, Mapping):
            lines.append(f"  node {node_id}: {entry!r}")
            continue
        class_type = entry.get("class_type", "?")
        for err in entry.get("errors") or []:
            if not isinstance(err, Mapping):
                lines.append(f"  node {node_id} ({class_type}): {err!r}")
                continue
            extra = err.get("extra_info") if isinstance(err.get("extra_info"), Mapping) else {}
            input_name = extra.get("input_name") if extra else None
            where = f"node {node_id} ({class_type})" + (f" input {input_name!r}" if input_name else "")
            text = err.get("message", "")
            details = err.get("details")
            if details:
                text = f"{text}: {details}"
            lines.append(f"  {where}: {text}")
    return lines


class PromptRejected(ServerError):
    """``POST /prompt`` refused the workflow.

    ``error`` is the server's ``error`` object (``type``, ``message``,
    ``details``, ``extra_info``) and ``node_errors`` maps node ids to their
    problems, exactly as the server sent them.
    """

    def __init__(
        self,
        *,
        status_code: int,
        error: Mapping[str, Any] | None,
        node_errors: Mapping[str, Any] | None,
        url: str | None = None,
        body: Any = None,
    ) -> None:
        self.error = dict(error or {})
        self.node_errors = dict(node_errors or {})
        self.error_type = str(self.error.get("type", "")) or None
        head = self.error.get("message") or "The server rejected the prompt"
        details = self.error.get("details")
        message = f"{head}: {details}" if details else str(head)
        lines = [message, *_format_node_errors(self.node_errors)]
        super().__init__(
            "\n".join(lines),
            status_code=status_code,
            url=url,
            body=body,
            hint="Run `comfykit validate` on the workflow to see every problem with hints.",
        )


# --------------------------------------------------------------------------- jobs


class JobError(ComfyKitError):
    """A submitted job did not finish successfully."""

    def __init__(self, message: str, *, prompt_id: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.prompt_id = prompt_id


class ExecutionError(JobError):
    """The server raised while executing a node (``execution_error``).

    ``data`` is the event's full payload (traceback, inputs) for those who want it.
    """

    def __init__(
        self,
        *,
        prompt_id: str | None,
        node_id: str | None,
        node_type: str | None,
        exception_message: str,
        exception_type: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        self.node_id = node_id
        self.node_type = node_type
        self.exception_message = exception_message.rstrip("\n")
        self.exception_type = exception_type
        self.data = dict(data or {})
        kind = f"{exception_type}: " if exception_type else ""
        super().__init__(
            f"Job {prompt_id} failed in node {node_id} ({node_type}): {kind}{self.exception_message}",
            prompt_id=prompt_id,
        )


class ExecutionInterrupted(JobError):
    """The job was interrupted (``/interrupt``) or cancelled before it finished."""

    def __init__(
        self, *, prompt_id: str | None, node_id: str | None = None, node_type: str | None = None
    ) -> None:
        self.node_id = node_id
        self.node_type = node_type
        where = f" at node {node_id} ({node_type})" if node_id else ""
        super().__init__(f"Job {prompt_id} was interrupted{where}", prompt_id=prompt_id)


class JobLost(JobError):
    """The server no longer knows the job (it restarted, or its history was cleared)."""


class WaitTimeout(JobError, TimeoutError):
    """The job did not finish within the time the caller allowed."""


# --------------------------------------------------------------------------- outputs


class OutputError(ComfyKitError):
    """An output could not be downloaded or stored."""


class OutputsNotStored(OutputError):
    """The server ran the job, but its outputs could not all be stored (a full or read-only disk, a failing sink).

    The job is not complete; its prompt id stays journaled, so resuming the journal fetches the
    outputs again from the server's history without running the job again.
    """


class UnsafePathError(OutputError):
    """A filename or subfolder sent by the server would land outside the output folder."""
