"""The original tool's call forms one by one (its API reference), including the edges its README does not show."""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from comfykit import ComfyUIClient, QueueManager, WorkflowManager
from comfykit.errors import TemplateError, WorkflowError
from comfykit.events import parse_message
from comfykit.jobs import JobStatus
from comfykit.testing import ComfyUISimulator
from comfykit.testing.catalog import load_object_info

# The API reference of the original README: method name -> the parameters it documents.
REFERENCE: dict[type, dict[str, tuple[str, ...]]] = {
    ComfyUIClient: {
        "queue_prompt": ("workflow",), "get_queue": (), "get_history": ("prompt_id",), "get_system_stats": (),
        "interrupt_execution": (), "clear_queue": (), "upload_image": ("image_path", "subfolder", "overwrite"),
        "get_image": ("filename", "subfolder", "folder_type"), "connect_websocket": ("auto_reconnect",),
        "disconnect_websocket": (), "on": ("event_type", "callback"), "wait_for_completion": ("prompt_id", "timeout"),
    },
    WorkflowManager: {
        "load_workflow": ("workflow_path",), "save_workflow": ("workflow", "output_path"),
        "validate_workflow": ("workflow",), "register_workflow": ("name", "workflow"), "get_workflow": ("name",),
        "update_node_input": ("workflow", "node_id", "input_name", "value"),
        "find_nodes_by_type": ("workflow", "class_type"), "create_template": ("name", "workflow", "parameters"),
        "instantiate_template": ("name", "values"), "get_workflow_info": ("workflow",),
        "merge_workflows": ("workflow1", "workflow2", "node_id_prefix"),
    },
    QueueManager: {
        "add_job": ("job_id", "workflow", "metadata"), "add_jobs_from_list": ("workflows", "job_prefix"),
        "get_job": ("job_id",), "get_job_status": ("job_id",), "get_all_jobs": (), "get_jobs_by_status": ("status",),
        "cancel_job": ("job_id",), "start": ("num_workers",), "stop": ("wait",), "pause": (), "resume": (),
        "wait_for_completion": ("timeout",), "get_statistics": (), "on": ("event_type", "callback"),
        "clear_completed": (),
    },
}


@pytest.mark.parametrize("cls", list(REFERENCE), ids=lambda cls: cls.__name__)
def test_every_documented_method_takes_its_documented_positional_arguments(cls: type) -> None:
    for name, parameters in REFERENCE[cls].items():
        signature = inspect.signature(getattr(cls, name))
        signature.bind(None, *(object() for _ in parameters))  # raises TypeError when the arity is wrong


# -- the client's WebSocket -------------------------------------------------------------------------


def test_connect_and_disconnect_are_safe_twice_and_reconnectable(comfyui_simulator: ComfyUISimulator) -> None:
    with ComfyUIClient(url=comfyui_simulator.url) as client:
        first = client.connect_websocket()
        assert first is not None and first.connected
        assert client.connect_websocket() is first  # already open: the same socket
        client.disconnect_websocket()
        client.disconnect_websocket()
        assert not first.connected and client.event_source is None
        again = client.connect_websocket()
        assert again is not None and again is not first and again.connected


def _wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true"
        threading.Event().wait(0.01)


def _drop_and_run_one_job(simulator: ComfyUISimulator, auto_reconnect: bool, workflow: dict[str, Any]) -> Any:
    """Connect, let the server drop the socket, run one job to its end; the event source."""
    simulator.knobs.drop_websocket_after = 0.1
    with ComfyUIClient(url=simulator.url) as client:
        source = client.connect_websocket(auto_reconnect=auto_reconnect)
        assert source is not None
        # The server drops the socket on its own clock: wait until the monitor saw it (closed or reopened).
        _wait_until(lambda: not source.connected or source.reconnects > 0)
        simulator.knobs.drop_websocket_after = None
        assert client.wait_for_completion(client.queue_prompt(workflow)["prompt_id"], timeout=30)
        if auto_reconnect:
            _wait_until(lambda: source.reconnects > 0)
        return source


def test_auto_reconnect_false_really_stays_closed(comfyui_simulator: ComfyUISimulator, txt2img: dict[str, Any]) -> None:
    closed = _drop_and_run_one_job(comfyui_simulator, False, txt2img)
    assert closed.reconnects == 0 and not closed.connected
    assert _drop_and_run_one_job(comfyui_simulator, True, txt2img).reconnects >= 1


def test_without_the_monitor_connect_websocket_falls_back_to_polling(
    comfyui_simulator: ComfyUISimulator, txt2img: dict[str, Any]
) -> None:
    progress: list[Any] = []
    with ComfyUIClient(url=comfyui_simulator.url, plugin_options=["no:monitor"]) as client:
        source = client.connect_websocket()
        assert source is not None and source.name == "polling"
        client.on("progress", progress.append)
        history = client.wait_for_completion(client.queue_prompt(txt2img)["prompt_id"], timeout=30)
        client.disconnect_websocket()
        client.disconnect_websocket()
    assert history["status"]["status_str"] == "success"
    assert progress == []  # documented: polling cannot see sampler steps


# -- events handed to on() -----------------------------------------------------------------------------


def test_an_event_reads_as_the_raw_message_and_keeps_its_attributes() -> None:
    event = parse_message('{"type": "progress", "data": {"value": 3, "max": 20, "node": "3", "prompt_id": "p"}}')
    assert event["type"] == "progress" and event.get("type") == "progress"
    assert event["data"]["value"] == 3 and event["data"].get("max") == 20 and event.get("nope") is None
    assert dict(event) == {"type": "progress", "data": {"value": 3, "max": 20, "node": "3", "prompt_id": "p"}}
    assert (event.value, event.max, event.node, event.prompt_id) == (3.0, 20.0, "3", "p")
    with pytest.raises(TypeError):
        event["type"] = "other"  # type: ignore[index]
    with pytest.raises(KeyError):
        event["value"]


def test_a_raising_callback_is_logged_once_per_event_type(comfyui_simulator: ComfyUISimulator,
                                                          txt2img: dict[str, Any],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    def broken(event: Any) -> None:
        calls.append(event["type"])
        raise KeyError("value")

    with caplog.at_level(logging.DEBUG, logger="comfykit.client"), ComfyUIClient(url=comfyui_simulator.url) as client:
        client.on("progress", broken)
        client.on("executing", broken)
        client.wait_for_completion(client.queue_prompt(txt2img)["prompt_id"], timeout=30)
    assert calls.count("progress") > 1 and calls.count("executing") > 1  # failing on every frame
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR and "callback" in r.getMessage()]
    assert sorted(r.getMessage().split("'")[1] for r in logged) == ["executing", "progress"]
    assert all(r.exc_info for r in logged)


# -- workflows ----------------------------------------------------------------------------------------------


def test_update_node_input_changes_the_copy_not_its_original(txt2img: dict[str, Any]) -> None:
    manager = WorkflowManager()
    modified = txt2img.copy()
    assert manager.update_node_input(modified, "3", "seed", 5) is modified
    assert modified["3"]["inputs"]["seed"] == 5 and txt2img["3"]["inputs"]["seed"] == 42
    assert modified["3"]["inputs"]["model"] == txt2img["3"]["inputs"]["model"]
    with pytest.raises(WorkflowError, match="no node"):
        manager.update_node_input(modified, "99", "seed", 1)


def test_workflow_info_reads_as_the_original_dict_and_as_attributes(txt2img: dict[str, Any]) -> None:
    info = WorkflowManager().get_workflow_info(txt2img)
    assert info["total_nodes"] == info.nodes == 7
    assert info["node_types"] == info.types and info["node_types"]["CLIPTextEncode"] == 2
    assert info["output_nodes"] == info.outputs == ["9"]
    assert ("3", 0, "8", "samples") in info["connections"]
    assert list(info)[:2] == ["total_nodes", "node_types"] and "parameters" in info
    assert info.to_dict()["nodes"] == 7


def test_create_template_takes_both_argument_orders_and_the_original_parameter_form(txt2img: dict[str, Any]) -> None:
    manager = WorkflowManager()
    original = {"seed": {"node_id": "3", "input_name": "seed"}, "prompt": {"node_id": "6", "input_name": "text"}}
    by_position = manager.create_template("t1", txt2img, original)
    by_keyword = manager.create_template(name="t2", workflow=txt2img, parameters=original)
    comfykit_form = manager.create_template(txt2img, {"seed": "3.seed", "prompt": "6.text"}, name="t3")
    assert by_position.parameters == by_keyword.parameters == comfykit_form.parameters
    assert manager.instantiate_template("t1", {"seed": 9, "prompt": "a fox"})["6"]["inputs"]["text"] == "a fox"
    with pytest.raises(TemplateError, match="node_id and input_name"):
        manager.create_template("t4", txt2img, {"seed": {"node_id": "3"}})
    with pytest.raises(TemplateError, match="has no input 'sed'"):
        manager.create_template("t5", txt2img, {"seed": {"node_id": "3", "input_name": "sed"}})


def test_merge_takes_the_prefix_by_position_and_by_keyword(txt2img: dict[str, Any]) -> None:
    manager = WorkflowManager()
    positional = manager.merge_workflows(txt2img, txt2img, "second_")
    assert positional == manager.merge_workflows(txt2img, txt2img, node_id_prefix="second_")
    assert set(positional) == set(txt2img) | {f"second_{n}" for n in txt2img}
    assert positional["second_3"]["inputs"]["model"] == ["second_4", 0]


def test_offline_validation_checks_structure_and_says_schema_was_skipped(tmp_path: Path) -> None:
    manager = WorkflowManager()
    ok, messages = manager.validate_workflow({"3": {"class_type": "KSampler", "inputs": {}}})
    assert ok and len(messages) == 1 and messages[0].startswith("warning") and "not checked" in messages[0]
    ok, problems = manager.validate_workflow(
        {"1": {"class_type": "VAEDecode", "inputs": {"samples": ["2", -1], "vae": ["9", 0]}},
         "2": {"class_type": "KSampler", "inputs": {}}, "3": {"inputs": {}}}, detailed=True)
    assert not ok
    assert {p.code for p in problems if p.is_error} == {"output_index_out_of_range", "link_to_missing_node",
                                                        "missing_class_type"}
    saved = tmp_path / "object_info.json"
    saved.write_text(__import__("json").dumps(load_object_info("0.3.64")))
    ok, problems = WorkflowManager(object_info=saved).validate_workflow(
        {"3": {"class_type": "KSampler", "inputs": {}}}, detailed=True)
    assert not ok and "required_input_missing" in {p.code for p in problems}
    assert "schema_not_checked" not in {p.code for p in problems}


# -- the queue ---------------------------------------------------------------------------------------------------


def test_add_job_in_the_original_order_and_comfykit_order(txt2img: dict[str, Any]) -> None:
    with QueueManager(servers=["http://127.0.0.1:9"], store_outputs=False) as queue:
        assert queue.add_job("readme", txt2img) == "readme"
        assert queue.add_job(txt2img, "comfykit") == "comfykit"
        assert queue.add_job(job_id="keywords", workflow=txt2img, metadata={"n": 1}) == "keywords"
        assert queue.add_job("mixed", workflow=txt2img) == "mixed"
        assert queue.add_job("with-metadata", txt2img, {"n": 2}) == "with-metadata"
        chosen = queue.add_job(txt2img)
        assert chosen not in ("readme", "comfykit", "keywords", "mixed", "with-metadata")
        assert queue.get_job("keywords").metadata == {"n": 1}  # type: ignore[union-attr]
        assert queue.get_job("with-metadata").metadata == {"n": 2}  # type: ignore[union-attr]
        with pytest.raises(WorkflowError, match="job id twice"):
            queue.add_job("one", txt2img, job_id="two")
        for wrong in ("just-an-id", ["3", "seed"], 42):
            with pytest.raises(WorkflowError) as caught:
                queue.add_job(wrong)  # type: ignore[arg-type]
            assert caught.value.hint and "add_job(job_id, workflow)" in caught.value.hint


def test_add_jobs_from_list_numbers_the_jobs(txt2img: dict[str, Any]) -> None:
    with QueueManager(servers=["http://127.0.0.1:9"], store_outputs=False) as queue:
        assert queue.add_jobs_from_list([txt2img, txt2img]) == ["job_0", "job_1"]
        assert queue.add_jobs_from_list([txt2img, {"workflow": txt2img, "job_id": "own"}], job_prefix="img") == [
            "img_0", "own"]


def test_clear_completed_forgets_only_completed_jobs(comfyui_simulator: ComfyUISimulator,
                                                     txt2img: dict[str, Any]) -> None:
    broken = {"1": {"class_type": "NoSuchNode", "inputs": {}}}
    with QueueManager(servers=[comfyui_simulator.url], store_outputs=False, max_retries=0) as queue:
        done, failed, cancelled = queue.add_jobs_from_list([txt2img, broken, txt2img])
        queue.cancel_job(cancelled)
        queue.start()
        assert queue.wait_for_completion(timeout=60)
        queue.stop()
        assert [queue.get_job_status(j) for j in (done, failed, cancelled)] == [
            JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED]
        assert queue.clear_completed() == 1
        assert sorted(job.job_id for job in queue.get_all_jobs()) == sorted([failed, cancelled])
