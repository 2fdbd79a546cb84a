"""Recorded /history and /queue answers, replayed after the recorded jobs were run or queued again on the simulator."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from comfykit.testing import ComfyUISimulator
from comfykit.testing.pauses import Pause
from testing.recordings import RECORDINGS, load_http, shape

VERSIONS = ["0.3.64", "0.33.0"]
SERVER_KEYS = ("client_id", "create_time", "comfy_usage_source")


def _quiet(sim: ComfyUISimulator) -> None:
    for _ in range(3000):
        queue = httpx.get(sim.url + "/queue").json()
        if not queue["queue_running"] and not queue["queue_pending"]:
            return
        time.sleep(0.01)
    raise AssertionError("the simulator never became idle")


def _submit(sim: ComfyUISimulator, item: list[Any], *, number: bool = False) -> None:
    """Queue a recorded 5-array item again: same prompt id, prompt, client and extra data."""
    recorded_number, prompt_id, prompt, extra_data, _outputs = item
    body: dict[str, Any] = {"prompt": prompt, "prompt_id": prompt_id,
                            "extra_data": {k: v for k, v in extra_data.items() if k not in SERVER_KEYS}}
    if "client_id" in extra_data:
        body["client_id"] = extra_data["client_id"]
    if number:
        body["number"] = recorded_number
    response = httpx.post(sim.url + "/prompt", json=body)
    assert response.status_code == 200, response.text


def _filler(sim: ComfyUISimulator, tag: str, prompt_id: str | None = None) -> None:
    prompt = {"1": {"class_type": "StringConcatenate", "inputs": {"string_a": "filler", "string_b": tag, "delimiter": "_"}},
              "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    assert httpx.post(sim.url + "/prompt", json={"prompt": prompt, "prompt_id": prompt_id}).status_code == 200
    _quiet(sim)


def _started(entry: dict[str, Any]) -> int:
    return int(entry["status"]["messages"][0][1]["timestamp"])


def _run_history(sim: ComfyUISimulator, entries: dict[str, Any]) -> None:
    """Run the recorded entries again so that history ends up in the recorded order.

    History keeps a reused prompt id at its first position, so an entry that ran later than
    entries listed after it first gets a placeholder run at its position.
    """
    ordered = list(entries.values())
    late = [entry for i, entry in enumerate(ordered) if any(_started(other) < _started(entry) for other in ordered[i + 1:])]
    waiting = sorted(late, key=_started)
    for entry in ordered:
        if any(entry is other for other in late):
            _filler(sim, "placeholder", prompt_id=entry["prompt"][1])
            continue
        while waiting and _started(waiting[0]) < _started(entry):
            _run_entry(sim, waiting.pop(0))
        _run_entry(sim, entry)
    for entry in waiting:
        _run_entry(sim, entry)


def _run_entry(sim: ComfyUISimulator, entry: dict[str, Any]) -> None:
    if entry["status"]["messages"][-1][0] == "execution_interrupted":
        with sim.pause(prompt_id=entry["prompt"][1]) as running:  # interrupted while its first node runs
            _submit(sim, entry["prompt"])
            running.wait()
            httpx.post(sim.url + "/interrupt", json={"prompt_id": entry["prompt"][1]})
    else:
        _submit(sim, entry["prompt"])
    _quiet(sim)


HISTORY = ["get_history_all", "get_history_by_id", "get_history_max_items_1", "get_history_max_items_2_offset_0",
           "get_history_after_reused_prompt_id"]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", HISTORY)
def test_history_answers_like_the_recording(version: str, name: str, tmp_path: Path) -> None:
    recording = load_http(version, name)
    expected = recording["body"]["json"]
    query = parse_qs(urlsplit(recording["request"]["path"]).query)
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as sim:
        # Older entries (which paging must skip) before, newer ones after the recorded window.
        before = int(query["offset"][0]) if "offset" in query else (2 if "max_items" in query else 0)
        for index in range(before):
            _filler(sim, f"before{index}")
        if name == "get_history_after_reused_prompt_id":
            [prompt_id] = expected
            _filler(sim, "x")
            first = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 1}},
                     "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
            httpx.post(sim.url + "/prompt", json={"prompt": first, "prompt_id": prompt_id})
            _quiet(sim)
        _run_history(sim, expected)
        for index in range(2 if "offset" in query else 0):
            _filler(sim, f"after{index}")
        response = httpx.get(sim.url + recording["request"]["path"])
    assert response.status_code == recording["status"]
    actual = response.json()
    assert list(actual) == list(expected)
    assert shape(actual) == shape(expected)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", ["get_history_after_delete", "get_history_after_clear"])
def test_deleted_history_answers_like_the_recording(version: str, name: str, tmp_path: Path) -> None:
    recording = load_http(version, name)
    state = load_http(version, "get_history_by_id")["body"]["json"]
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as sim:
        _run_history(sim, state)
        change = {"delete": list(state)} if name.endswith("delete") else {"clear": True}
        assert httpx.post(sim.url + "/history", json=change).status_code == 200
        response = httpx.get(sim.url + recording["request"]["path"])
    assert response.status_code == recording["status"] and response.json() == recording["body"]["json"] == {}


def _busy(sim: ComfyUISimulator, queue: dict[str, Any]) -> Pause:
    """The recorded running job held at its first node, and the recorded pending items queued behind it.

    Returns the pause holding the running job: release it to let the queue run.
    """
    [item] = queue["queue_running"]
    running = sim.pause(prompt_id=item[1])
    _submit(sim, item, number=True)
    running.wait()
    for item in queue["queue_pending"]:
        _submit(sim, item, number=True)
    return running


def _assert_queue_like(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    assert [item[1] for item in actual["queue_running"]] == [item[1] for item in expected["queue_running"]]
    assert sorted(item[1] for item in actual["queue_pending"]) == sorted(item[1] for item in expected["queue_pending"])
    for key in ("queue_running", "queue_pending"):
        assert [shape(item[3]) for item in actual[key]] == [shape(item[3]) for item in expected[key]] or key == "queue_pending"
        assert {item[1]: item[0] for item in actual[key]} == {item[1]: item[0] for item in expected[key]}
        assert {item[1]: shape(item[3]) for item in actual[key]} == {item[1]: shape(item[3]) for item in expected[key]}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", ["get_queue_running_and_pending", "get_api_queue_running_and_pending"])
def test_busy_queue_answers_like_the_recording(version: str, name: str, tmp_path: Path) -> None:
    recording = load_http(version, name)
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as sim, _busy(sim, recording["body"]["json"]):
        response = httpx.get(sim.url + recording["request"]["path"])
        busy = httpx.get(sim.url + "/prompt").json()
        httpx.post(sim.url + "/queue", json={"clear": True})
        httpx.post(sim.url + "/interrupt")
    assert response.status_code == recording["status"]
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    _assert_queue_like(response.json(), recording["body"]["json"])
    if name == "get_queue_running_and_pending":
        expected = load_http(version, "get_prompt_busy")
        assert busy == expected["body"]["json"]  # the same state: 1 running + 5 pending


@pytest.mark.parametrize("version", VERSIONS)
def test_queue_delete_clear_and_interrupt_act_like_the_recording(version: str, tmp_path: Path) -> None:
    after_delete = load_http(version, "get_queue_after_delete")["body"]["json"]
    after_clear = load_http(version, "get_queue_after_clear")["body"]["json"]
    delete_running = load_http(version, "post_queue_delete_running_item")
    interrupt = load_http(version, "post_interrupt_running_prompt_id")
    interrupted_entry = json.loads((RECORDINGS / version / "http" / "get_history_interrupted_entry.json").read_text())
    [running] = after_delete["queue_running"]
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as sim:
        # The recorded queue before the delete: the survivors plus one more pending job (which was deleted).
        doomed = [1, "comfykit-deleted", after_delete["queue_pending"][0][2], {}, after_delete["queue_pending"][0][4]]
        if version != "0.3.64":
            doomed[1] = "00000000-0000-4000-8000-000000000001"
        held = _busy(sim, {"queue_running": [running], "queue_pending": [*after_delete["queue_pending"], doomed]})
        httpx.post(sim.url + "/queue", json={"delete": [doomed[1]]})
        _assert_queue_like(httpx.get(sim.url + "/queue").json(), after_delete)
        response = httpx.request("POST", sim.url + delete_running["request"]["path"], json=delete_running["request"]["json"])
        assert response.status_code == delete_running["status"] and response.content == b""
        httpx.post(sim.url + "/queue", json={"clear": True})
        _assert_queue_like(httpx.get(sim.url + "/queue").json(), after_clear)  # the running job survives both
        response = httpx.request("POST", sim.url + interrupt["request"]["path"], json=interrupt["request"]["json"])
        assert response.status_code == interrupt["status"] and response.content == b""
        held.release()
        _quiet(sim)
        history = httpx.get(f"{sim.url}/history/{running[1]}").json()
    expected = interrupted_entry["history_entry_after_interrupt"]
    assert list(history) == list(expected) == [running[1]]
    assert shape(history) == shape(expected)
    assert history[running[1]]["status"]["messages"][-1][0] == "execution_interrupted"


@pytest.mark.parametrize("version", VERSIONS)
def test_an_interrupt_while_idle_does_not_stop_the_next_job(version: str, tmp_path: Path) -> None:
    recorded = json.loads((RECORDINGS / version / "http" / "interrupt_while_idle_effect.json").read_text())["next_job_status"]
    prompt = json.loads((RECORDINGS / version / "workflows" / "invert_save.json").read_text())
    with ComfyUISimulator(port=0, comfyui_version=version, root=tmp_path) as sim:
        assert httpx.post(sim.url + "/interrupt").status_code == 200
        prompt_id = httpx.post(sim.url + "/prompt", json={"prompt": prompt}).json()["prompt_id"]
        _quiet(sim)
        status = httpx.get(f"{sim.url}/history/{prompt_id}").json()[prompt_id]["status"]
    assert [m[0] for m in status["messages"]] == [m[0] for m in recorded["messages"]]
    assert {k: v for k, v in status.items() if k != "messages"} == {k: v for k, v in recorded.items() if k != "messages"}
