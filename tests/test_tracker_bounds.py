"""A server that invents node ids without end cannot grow a job's tracking state without end."""

from __future__ import annotations

import json

import httpx

from comfykit import ComfyUIClient
from comfykit.events import parse_message
from comfykit.tracking import MAX_TRACKED_NODES


def _event(kind: str, **data: object) -> object:
    return parse_message(json.dumps({"type": kind, "data": data}))


def test_endless_new_node_ids_are_capped_and_the_result_comes_from_history() -> None:
    client = ComfyUIClient(url="http://comfy.test", transport=httpx.MockTransport(lambda r: httpx.Response(200, json={})),
                           plugin_options=["no:monitor"])
    tracker = client.tracker
    tracker.watch("p", {"1": {"class_type": "SaveImage", "inputs": {}}})
    tracker.feed(_event("execution_start", prompt_id="p", timestamp=1))
    for index in range(MAX_TRACKED_NODES + 5_000):
        tracker.feed(_event("executed", prompt_id="p", node=f"n{index}", display_node=f"n{index}",
                            output={"images": []}))
        tracker.feed(_event("execution_cached", prompt_id="p", nodes=[f"c{index}"]))
    watch = tracker._watches["p"]
    assert len(watch.outputs) == MAX_TRACKED_NODES
    assert len(watch.messages) <= 3  # start and one cached: repeats are not kept
    assert watch.gap  # so the outputs are read from the history entry, not from these events
