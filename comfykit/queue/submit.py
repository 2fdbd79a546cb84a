"""Sending one attempt: prepare the prompt, post it, and ask the server when the answer is in doubt.

Each step returns what happened as a value (:data:`SubmitOutcome`); the
:class:`~comfykit.queue.QueueManager` turns it into the job's next state.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import attrs

from comfykit.answers import queued_ids
from comfykit.errors import ComfyKitError, NotFound, PromptRejected, ServerError, TransportError, WorkflowError
from comfykit.jobs import Job
from comfykit.queue.inputs import UploadCache, apply_inputs
from comfykit.workflow.api import validate_before_send
from comfykit.workflow.templates import randomize_seeds

if TYPE_CHECKING:
    from comfykit.client import ComfyUIClient
    from comfykit.config import Config
    from comfykit.plugins import PluginManager

__all__ = [
    "Invalid", "Posted", "Rejected", "SubmitOutcome", "Unknown", "ask", "copy_graph", "post", "prepare", "prepare_error",
]

log = logging.getLogger("comfykit.queue")


@attrs.frozen
class Posted:
    """The server has the prompt (the POST answered, or the server said so after a lost answer)."""


@attrs.frozen
class Rejected:
    """The server does not have the prompt (an upload or the POST failed): the attempt may be retried."""

    error: BaseException


@attrs.frozen
class Unknown:
    """The POST failed and the server cannot be asked now: the attempt stays in flight, polled."""

    error: BaseException


@attrs.frozen
class Invalid:
    """The same input would fail again (a bad workflow, or the server refused it with 400): no retry."""

    error: BaseException


SubmitOutcome = Posted | Rejected | Unknown | Invalid


def prepare(
    job: Job, client: ComfyUIClient, uploads: UploadCache, *, plugins: PluginManager, config: Config, vary_seeds: bool
) -> dict[str, Any]:
    """The prompt to post for ``job``: fresh seeds (``vary_seeds``), uploaded inputs, the hooks' changes, validated."""
    prompt = randomize_seeds(job.workflow) if vary_seeds else copy_graph(job.workflow)
    if job.inputs:
        apply_inputs(prompt, job.inputs, client, uploads)
    plugins.prepare_prompt(prompt, job, client)
    # After the hooks: what is checked is what is sent.  Raises WorkflowValidationError (no retry).
    validate_before_send(prompt, client=client, config=config)
    return prompt


def copy_graph(graph: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a JSON-like workflow, several times faster than ``copy.deepcopy``.

    Dicts and lists are copied, strings, numbers, booleans and ``None`` shared (they
    cannot change); any other value is handed to ``copy.deepcopy``.
    """
    return {key: _copy_value(value) for key, value in graph.items()}


def _copy_value(value: Any) -> Any:
    # What json.loads makes first, by exact type (an isinstance chain per leaf was most of the cost).
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is dict or isinstance(value, dict):
        return {key: _copy_value(item) for key, item in value.items()}
    if kind is list or isinstance(value, list):
        return [_copy_value(item) for item in value]
    if isinstance(value, (str, int, float)):
        return value
    return copy.deepcopy(value)


def prepare_error(error: Exception) -> SubmitOutcome:
    """What an exception raised by :func:`prepare` means for the attempt."""
    if isinstance(error, (WorkflowError, PromptRejected)):
        return Invalid(error)
    # An upload that failed (server trouble), or a hook's bug: retried if the retry hook agrees.
    return Rejected(error)


def post(
    client: ComfyUIClient, prompt: dict[str, Any], prompt_id: str, extra_data: dict[str, Any], stop: threading.Event
) -> SubmitOutcome:
    """POST the prompt under ``prompt_id``; after a failure whose answer was lost, ask the server."""
    try:
        client.post_prompt(prompt, prompt_id=prompt_id, extra_data=extra_data or None)
    except PromptRejected as exc:
        return Invalid(exc)
    except (TransportError, ServerError) as exc:
        # The server may have queued it and only the answer was lost: ask before resubmitting.
        known = ask(client, prompt_id, stop)
        if known is None:
            return Unknown(exc)
        if not known:
            return Rejected(exc)
        log.info("POST /prompt for %s failed (%s) but the server has it: not resubmitted", prompt_id, exc)
    return Posted()


def ask(client: ComfyUIClient, prompt_id: str, stop: threading.Event) -> bool | None:
    """Whether the server has ``prompt_id`` queued, running or in its history; ``None`` when it cannot be asked.

    A server that answered the POST with a 5xx is usually answering again a moment later,
    so it is asked up to three times (0.05 s, 0.2 s apart) before the question is left
    to the supervisor's polling.
    """
    for delay in (0.05, 0.2, None):
        known = _ask_once(client, prompt_id)
        if known is not None or delay is None or stop.is_set():
            return known
        time.sleep(delay)
    return None


def _ask_once(client: ComfyUIClient, prompt_id: str) -> bool | None:
    try:
        if client.server_info().has_jobs_api:
            try:
                client.get_job(prompt_id)
                return True
            except NotFound:
                return False
        if prompt_id in queued_ids(client.get_queue()):
            return True
        return prompt_id in client.get_history(prompt_id)
    except ComfyKitError as exc:
        log.info("cannot ask %s about %s: %s", client.base_url, prompt_id, exc)
        return None
