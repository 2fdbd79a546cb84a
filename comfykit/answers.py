"""The shapes of ComfyUI's answers, checked where they enter: a wrong shape is a ProtocolError naming the field.

Code further in reads ``queue["queue_running"][0][1]`` or ``entry["status"]["completed"]``
without guarding every step, so an answer of the wrong shape (``/queue`` as a list, a
string where a history entry's status belongs) must be refused at the boundary, once,
with the endpoint and the field named; otherwise it surfaces far away as a TypeError or
AttributeError, or as one traceback per poll.  Only what comfykit reads is checked: extra
fields and unknown keys are left alone, since servers add them with every release.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from comfykit.errors import ProtocolError

__all__ = [
    "check_history", "check_list", "check_mapping", "check_prompt_answer", "check_queue", "queue_prompt_ids", "queued_ids",
]

_HINT = "Is this URL a ComfyUI server (and not a proxy or another service)?"


def _describe(value: Any) -> str:
    # Numbers and null are shown; text and containers only by kind: a server's text is not echoed.
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    return f"a {type(value).__name__}"


def _refuse(where: str, field: str, expected: str, value: Any) -> ProtocolError:
    return ProtocolError(f"{where}: {field} should be {expected}, not {_describe(value)}",
                         url=where.split(" ", 1)[-1], hint=_HINT)


def check_mapping(data: Any, where: str) -> dict[str, Any]:
    """``data`` as a dict (``None``, an empty answer, is an empty dict); anything else is refused."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise _refuse(where, "the answer", "a JSON object", data)
    return dict(data)


def check_list(data: Any, where: str) -> list[Any]:
    """``data`` as a list (``None`` is empty); anything else is refused."""
    if data is None:
        return []
    if not isinstance(data, list):
        raise _refuse(where, "the answer", "a JSON array", data)
    return data


def check_queue(data: Any, where: str) -> dict[str, Any]:
    """A ``/queue`` answer: ``queue_running`` and ``queue_pending`` lists of ``[number, prompt_id, ...]`` items."""
    answer = check_mapping(data, where)
    for field in ("queue_running", "queue_pending"):
        items = answer.setdefault(field, [])
        if not isinstance(items, list):
            raise _refuse(where, field, "a list", items)
        for index, item in enumerate(items):
            if not isinstance(item, list) or len(item) < 2:
                raise _refuse(where, f"{field}[{index}]", "a [number, prompt_id, ...] list", item)
            if not isinstance(item[1], str):
                raise _refuse(where, f"{field}[{index}][1]", "a prompt id (text)", item[1])
    return answer


def queue_prompt_ids(queue: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The prompt ids a checked ``/queue`` answer lists as running and as pending, each in the server's order."""
    running, pending = ([item[1] for item in queue.get(key) or []] for key in ("queue_running", "queue_pending"))
    return running, pending


def queued_ids(queue: Mapping[str, Any], *, running_only: bool = False) -> set[str]:
    """The prompt ids a checked ``/queue`` answer lists as running (and pending, unless ``running_only``)."""
    running, pending = queue_prompt_ids(queue)
    return set(running) if running_only else {*running, *pending}


def _check_entry(entry: Any, where: str, field: str) -> None:
    if not isinstance(entry, Mapping):
        raise _refuse(where, field, "a history entry (an object)", entry)
    outputs = entry.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, Mapping):
            raise _refuse(where, f"{field}.outputs", "an object of node outputs", outputs)
        for node_id, ui in outputs.items():
            if not isinstance(ui, Mapping):
                raise _refuse(where, f"{field}.outputs[{node_id!r}]", "an object", ui)
    status = entry.get("status")
    if status is not None:
        if not isinstance(status, Mapping):
            raise _refuse(where, f"{field}.status", "an object", status)
        messages = status.get("messages")
        if messages is not None and not isinstance(messages, list):
            raise _refuse(where, f"{field}.status.messages", "a list", messages)


def check_history(data: Any, where: str) -> dict[str, Any]:
    """A ``/history`` answer: prompt id -> entry, each entry's ``outputs`` and ``status`` objects when present."""
    answer = check_mapping(data, where)
    for prompt_id, entry in answer.items():
        _check_entry(entry, where, f"[{prompt_id!r}]")
    return answer


def check_prompt_answer(data: Any, where: str) -> dict[str, Any]:
    """A ``POST /prompt`` answer: an object with the prompt id as text."""
    answer = check_mapping(data, where)
    if not isinstance(answer.get("prompt_id"), str):
        raise _refuse(where, "prompt_id", "text", answer.get("prompt_id"))
    return answer
