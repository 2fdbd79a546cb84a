"""Answers of the wrong shape are ProtocolErrors naming the endpoint and the field, never a TypeError later."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comfykit import ComfyUIClient
from comfykit.errors import ProtocolError


def _client(answer: Any) -> ComfyUIClient:
    body = json.dumps(answer).encode()
    return ComfyUIClient(url="http://comfy.test", transport=httpx.MockTransport(lambda r: httpx.Response(200, content=body)))


@pytest.mark.parametrize(
    ("call", "answer", "named"),
    [
        (lambda c: c.get_queue(), [], "GET /queue: the answer should be a JSON object, not a list"),
        (lambda c: c.get_queue(), {"queue_running": {}, "queue_pending": []}, "queue_running should be a list"),
        (lambda c: c.get_queue(), {"queue_running": [5], "queue_pending": []}, "queue_running[0] should be"),
        (lambda c: c.get_queue(), {"queue_running": [], "queue_pending": [[1, 2]]}, "queue_pending[0][1] should be"),
        (lambda c: c.get_history(), {"p": "done"}, "GET /history: ['p'] should be a history entry"),
        (lambda c: c.get_history("p"), {"p": {"status": "ok"}}, "['p'].status should be an object, not a str"),
        (lambda c: c.get_history("p"), {"p": {"outputs": []}}, "['p'].outputs should be an object"),
        (lambda c: c.get_history("p"), {"p": {"outputs": {"9": 3}}}, "['p'].outputs['9'] should be an object, not 3"),
        (lambda c: c.get_history("p"), {"p": {"status": {"messages": {}}}}, "status.messages should be a list"),
        (lambda c: c.get_system_stats(), [1, 2], "GET /system_stats: the answer should be a JSON object"),
        (lambda c: c.get_object_info(), [], "GET /object_info: the answer should be a JSON object"),
        (lambda c: c.get_embeddings(), {"a": 1}, "GET /embeddings: the answer should be a JSON array"),
        (lambda c: c.queue_prompt({"1": {"class_type": "X", "inputs": {}}}), {"prompt_id": 7}, "prompt_id should be text"),
    ],
)
def test_a_wrong_shape_names_the_endpoint_and_field(call, answer: Any, named: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        call(_client(answer))
    assert named in str(caught.value)
    assert "ComfyUI server" in (caught.value.hint or "")


def test_server_text_is_not_echoed_in_the_error() -> None:
    with pytest.raises(ProtocolError) as caught:
        _client({"p": {"status": "\x1b[31mowned"}}).get_history("p")
    assert "owned" not in str(caught.value)


def test_the_right_shapes_pass_through() -> None:
    queue = {"queue_running": [[1, "a", {}, {}, []]], "queue_pending": [], "extra": True}
    assert _client(queue).get_queue() == queue
    assert _client({}).get_queue() == {"queue_running": [], "queue_pending": []}
    history = {"p": {"outputs": {"9": {"images": []}}, "status": {"completed": True, "messages": []}, "meta": {}}}
    assert _client(history).get_history("p") == history


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_any_json_answer_either_passes_or_is_a_protocol_error(answer: Any) -> None:
    client = _client(answer)
    for call in (client.get_queue, client.get_history, client.get_system_stats, client.get_embeddings,
                 lambda: client.get_history("p"), client.server_info):
        try:
            call()
        except ProtocolError:
            pass
