"""The 0.33.0 jobs API recordings, replayed in the recorded scenario: the same jobs are run, queued and cancelled first."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websocket

from comfykit.testing import ComfyUISimulator

from .test_ws_transcripts import _shape

RECORDINGS = Path(__file__).resolve().parent.parent / "fixtures" / "recordings" / "0.33.0"
TRANSCRIPT = json.loads((RECORDINGS / "ws" / "jobs_lifecycle_and_cancel.json").read_text())
#: the recorded prompt ids are canonical UUIDs, so the scenario reuses them and the recorded paths apply verbatim
IDS: dict[str, str] = TRANSCRIPT["job_ids"]
LABEL = {prompt_id: label for label, prompt_id in IDS.items()}
CLIENT = "jobs-scenario"

#: exchanges recorded while one job ran and five waited, in recording order
BUSY = [
    "jobs_list_all_busy", "jobs_get_running", "jobs_get_pending", "jobs_get_pending_sensitive", "queue_with_sensitive_pending",
    "jobs_get_completed_image", "jobs_get_completed_text", "jobs_get_completed_temp_preview", "jobs_get_completed_batch_4",
    "jobs_get_completed_two_outputs", "jobs_get_failed", "jobs_get_unknown_uuid", "jobs_get_unknown_free_text",
    "jobs_list_status_pending", "jobs_list_status_in_progress", "jobs_list_status_completed", "jobs_list_status_failed",
    "jobs_list_status_cancelled", "jobs_list_status_pending_in_progress", "jobs_list_status_uppercase_spaces",
    "jobs_list_status_invalid", "jobs_list_status_empty", "jobs_list_sort_created_asc", "jobs_list_sort_execution_duration_desc",
    "jobs_list_sort_execution_duration_asc", "jobs_list_sort_by_invalid", "jobs_list_sort_order_invalid", "jobs_list_limit_2",
    "jobs_list_limit_2_offset_2", "jobs_list_limit_2_offset_10", "jobs_list_offset_100", "jobs_list_offset_negative",
    "jobs_list_offset_invalid", "jobs_list_limit_0", "jobs_list_limit_negative", "jobs_list_limit_invalid",
    "jobs_list_workflow_id_A", "jobs_list_workflow_id_unknown", "jobs_list_combined",
]
CANCELS = [
    "jobs_cancel_pending", "jobs_get_after_cancel_pending", "jobs_cancel_pending_again", "jobs_cancel_completed",
    "jobs_cancel_batch", "jobs_cancel_batch_all_noop", "jobs_cancel_batch_empty", "jobs_list_after_pending_cancels",
]
FINAL = [
    "jobs_get_interrupted", "history_interrupted", "jobs_get_pending_sensitive_done", "jobs_list_final",
    "jobs_list_final_status_cancelled", "jobs_list_final_sort_duration_desc",
]


def _load(name: str) -> dict[str, Any]:
    return dict(json.loads((RECORDINGS / "http" / f"{name}.json").read_text()))


def _workflow(name: str, *, unique: bool = False) -> dict[str, Any]:
    prompt = dict(json.loads((RECORDINGS / "workflows" / f"{name}.json").read_text()))
    if unique:  # a fresh colour, so the node cache does not answer
        prompt["1"]["inputs"]["color"] = random.randint(0, 0xFFFFFF)
    return prompt


def _with_workflow_id(workflow_id: str) -> dict[str, Any]:
    return {"extra_pnginfo": {"workflow": {"id": workflow_id, "note": "ui graph would go here"}}}


def _keys(value: Any) -> Any:
    """Nested key sets (lists by their first item), to compare bodies whose values are run-specific."""
    if isinstance(value, dict):
        return {key: _keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_keys(value[0])] if value and isinstance(value[0], (dict, list)) else "list"
    return type(value).__name__ if not isinstance(value, (int, float)) or isinstance(value, bool) else "number"


def _job_view(job: dict[str, Any]) -> tuple[str, str, list[str]]:
    return LABEL.get(job["id"], job["id"]), job["status"], sorted(job)


def _compare(sim: ComfyUISimulator, name: str) -> None:
    recording = _load(name)
    request = recording["request"]
    body = json.dumps(request["json"]).encode() if "json" in request else None
    response = httpx.request(request["method"], sim.url + request["path"], content=body,
                             headers={"Content-Type": "application/json"} if body else {})
    assert response.status_code == recording["status"], (name, response.text)
    expected = (recording.get("body") or {}).get("json")
    if expected is None:
        assert response.content == b"", name
        return
    actual = response.json()
    if isinstance(expected, dict) and "jobs" in expected:
        assert actual["pagination"] == expected["pagination"], name
        got, want = [_job_view(job) for job in actual["jobs"]], [_job_view(job) for job in expected["jobs"]]
        if expected["pagination"]["limit"] is None:
            # Whole lists: the order among equal or timing-made keys (same ms, durations) is not reproducible,
            # so check the order by its rule and the content as a set.
            assert sorted(got) == sorted(want), name
            _assert_sorted(actual["jobs"], request["path"])
        else:
            assert got == want, name
        by_id = {job["id"]: job for job in actual["jobs"]}
        for want_job in expected["jobs"]:
            assert _keys(by_id[want_job["id"]]) == _keys(want_job), (name, LABEL.get(want_job["id"]))
    elif isinstance(expected, dict) and "queue_running" in expected:
        assert [item[1] for item in actual["queue_running"]] == [item[1] for item in expected["queue_running"]]
        assert sorted(item[1] for item in actual["queue_pending"]) == sorted(item[1] for item in expected["queue_pending"])
        assert {i[1]: sorted(i[3]) for i in actual["queue_pending"]} == {i[1]: sorted(i[3]) for i in expected["queue_pending"]}
    else:
        assert _keys(actual) == _keys(expected), name
        if "error" in expected and name != "jobs_list_status_invalid":
            assert actual["error"] == expected["error"], name


def _assert_sorted(jobs: list[dict[str, Any]], path: str) -> None:
    def key(job: dict[str, Any]) -> int:
        if "execution_duration" in path:
            return int(job.get("execution_end_time", 0) - job.get("execution_start_time", 0))
        return int(job["create_time"])

    keys = [key(job) for job in jobs]
    assert keys == sorted(keys, reverse="sort_order=asc" not in path), path


def _post(sim: ComfyUISimulator, label: str, prompt: dict[str, Any], **extra: Any) -> None:
    body = {"prompt": prompt, "client_id": CLIENT, "prompt_id": IDS[label], **extra}
    response = httpx.post(sim.url + "/prompt", json=body)
    assert response.status_code == 200, response.text


def _wait(sim: ComfyUISimulator, ready: Any) -> None:
    for _ in range(3000):
        if ready(httpx.get(sim.url + "/queue").json()):
            return
        time.sleep(0.01)
    raise AssertionError("the simulator's queue never reached the awaited state")


def _idle(queue: dict[str, Any]) -> bool:
    return not queue["queue_running"] and not queue["queue_pending"]


def _events(frames: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    """Job events (not ``status``) as (type, job label, data shape); ``executing`` per node is dropped: only the end counts."""
    seen = []
    for frame in frames:
        message = frame.get("msg") if frame.get("kind") == "text" else None
        if not message or message["type"] in ("status", "progress_state", "executed"):
            continue
        data = message["data"]
        if message["type"] == "executing" and data.get("node") is not None:
            continue
        seen.append((message["type"], LABEL.get(data.get("prompt_id", ""), "?"), _shape(data)))
    return seen


def test_jobs_api_replays_the_recorded_lifecycle(tmp_path: Path) -> None:
    with ComfyUISimulator(port=0, comfyui_version="0.33.0", root=tmp_path) as sim:
        ws = websocket.create_connection(sim.url.replace("http://", "ws://") + f"/ws?clientId={CLIENT}", timeout=30)
        frames: list[dict[str, Any]] = []
        for name in ("jobs_list_empty", "jobs_list_no_api_prefix", "jobs_list_double_api_prefix"):
            _compare(sim, name)
        _post(sim, "completed_image", _workflow("invert_save", unique=True), extra_data=_with_workflow_id("wf-A"))
        _post(sim, "completed_text", _workflow("string_preview"), extra_data=_with_workflow_id("wf-B"))
        _post(sim, "completed_temp_preview", _workflow("preview_image", unique=True))
        _post(sim, "completed_batch_4", _workflow("batch_save", unique=True))
        _post(sim, "failed", _workflow("exec_error_canny"), extra_data=_with_workflow_id("wf-A"))
        _post(sim, "completed_two_outputs", _workflow("two_outputs"))
        _wait(sim, _idle)

        # The running job holds at its first node through the whole busy snapshot, until it is cancelled.
        running = sim.pause(prompt_id=IDS["running"])
        _post(sim, "running", _workflow("interruptible_chain", unique=True), extra_data=_with_workflow_id("wf-A"))
        running.wait()
        _post(sim, "pending_1", _workflow("preview_image", unique=True), extra_data=_with_workflow_id("wf-A"))
        _post(sim, "pending_2", _workflow("preview_image", unique=True))
        _post(sim, "pending_front", _workflow("preview_image", unique=True), front=True)
        _post(sim, "pending_number_-5", _workflow("preview_image", unique=True), number=-5)
        _post(sim, "pending_sensitive", _workflow("preview_image", unique=True),
              extra_data={"api_key_comfy_org": "secret", "auth_token_comfy_org": "token", "comfykit": 1})
        for name in BUSY + CANCELS:
            _compare(sim, name)
        _compare(sim, "jobs_cancel_running")
        running.release()
        _wait(sim, lambda queue: IDS["running"] not in [item[1] for item in queue["queue_running"]])
        _wait(sim, _idle)
        _compare(sim, "jobs_get_cancelled_via_cancel")

        with sim.pause(prompt_id=IDS["interrupted"]) as interrupted_running:
            _post(sim, "interrupted", _workflow("interruptible_chain", unique=True))
            interrupted_running.wait()
            httpx.post(sim.url + "/interrupt", json={"prompt_id": IDS["interrupted"]})
        _wait(sim, _idle)
        for name in FINAL:
            _compare(sim, name)
        httpx.post(sim.url + "/history", json={"delete": [IDS["completed_two_outputs"]]})
        _compare(sim, "jobs_get_after_history_delete")

        # Every job has ended: the socket's frames end with the last one's ``executing {node: null}``.
        last_end = {"node": None, "prompt_id": IDS["interrupted"]}
        while not frames or frames[-1]["msg"] != {"type": "executing", "data": last_end}:
            payload = ws.recv()
            if isinstance(payload, str):
                frames.append({"kind": "text", "msg": json.loads(payload)})
        ws.close()
    [socket] = TRANSCRIPT["sockets"].values()
    assert _events(frames) == _events(socket["frames"])


@pytest.mark.parametrize("name", ["jobs_cancel_unknown_uuid", "jobs_cancel_free_text_id"])
def test_cancelling_what_is_not_queued_answers_false(name: str, tmp_path: Path) -> None:
    with ComfyUISimulator(port=0, comfyui_version="0.33.0", root=tmp_path) as sim:
        _compare(sim, name)
