"""Each Python example of the original tool's README, in comfykit's words, with the effect the README promises.

One test per README block, in the README's order, using the README's call forms
(only the imports differ: ``comfykit`` instead of ``src``) against the simulator.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import pytest

from comfykit import ComfyUIClient, QueueManager, WorkflowManager
from comfykit.testing import ComfyUISimulator
from comfykit.utils import extract_output_images
from tests.compat.folder import received_prompts

README_SEEDS = [12345 + i for i in range(10)]


def _client(simulator: ComfyUISimulator) -> ComfyUIClient:
    return ComfyUIClient(host="127.0.0.1", port=simulator.port)


def test_basic_usage_loads_sends_and_waits(readme_folder: Path, comfyui_simulator: ComfyUISimulator) -> None:
    with _client(comfyui_simulator) as client:
        workflow = WorkflowManager().load_workflow(Path("workflows/my_workflow.json"))
        response = client.queue_prompt(workflow)
        history = client.wait_for_completion(response["prompt_id"])
    assert history["status"]["status_str"] == "success"
    assert received_prompts(comfyui_simulator) == [workflow]


def test_progress_callback_reads_the_raw_message(readme_folder: Path, comfyui_simulator: ComfyUISimulator,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    workflow = WorkflowManager().load_workflow(Path("workflows/my_workflow.json"))
    seen: list[tuple[Any, Any]] = []
    with caplog.at_level(logging.WARNING), _client(comfyui_simulator) as client:
        client.connect_websocket()
        source = client.event_source
        assert source is not None and source.connected
        client.on("progress", lambda data: seen.append((data["data"].get("value", 0), data["data"].get("max", 100))))
        response = client.queue_prompt(workflow)
        client.wait_for_completion(response["prompt_id"])
        client.disconnect_websocket()
        assert client.event_source is None and not source.connected
    values = [value for value, _ in seen]
    assert values == sorted(set(values)) and values[-1] == workflow["3"]["inputs"]["steps"]
    assert {maximum for _, maximum in seen} == {workflow["3"]["inputs"]["steps"]}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_batch_of_ten_seeds_runs_ten_different_prompts(readme_folder: Path, comfyui_simulator: ComfyUISimulator,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    with _client(comfyui_simulator) as client:
        workflow_mgr = WorkflowManager()
        queue_mgr = QueueManager(client, max_concurrent=3, retry_on_failure=True, max_retries=3)
        queue_mgr.on("job_completed", lambda job: print(f"done {job.job_id}"))
        queue_mgr.on("job_failed", lambda job: print(f"failed {job.job_id}: {job.error}"))
        workflow = workflow_mgr.load_workflow(Path("workflows/base.json"))
        pristine = copy.deepcopy(workflow)
        for i in range(10):
            modified = workflow.copy()
            workflow_mgr.update_node_input(modified, "3", "seed", 12345 + i)
            queue_mgr.add_job(f"job_{i}", modified)
        queue_mgr.start()
        queue_mgr.wait_for_completion()
        queue_mgr.stop()
        stats = queue_mgr.get_statistics()
    assert (stats["completed"], stats["failed"]) == (10, 0)
    assert workflow == pristine  # every edit went to a copy
    assert sorted(p["3"]["inputs"]["seed"] for p in received_prompts(comfyui_simulator)) == README_SEEDS
    assert sorted(capsys.readouterr().out.split("\n")[:-1]) == sorted(f"done job_{i}" for i in range(10))


def test_template_with_node_id_and_input_name(readme_folder: Path, comfyui_simulator: ComfyUISimulator) -> None:
    workflow_mgr = WorkflowManager()
    base_workflow = workflow_mgr.load_workflow(Path("workflows/base.json"))
    workflow_mgr.create_template(
        name="text_to_image",
        workflow=base_workflow,
        parameters={
            "prompt": {"node_id": "6", "input_name": "text"},
            "negative_prompt": {"node_id": "7", "input_name": "text"},
            "seed": {"node_id": "3", "input_name": "seed"},
            "steps": {"node_id": "3", "input_name": "steps"},
            "cfg": {"node_id": "3", "input_name": "cfg"},
        },
    )
    values = {"prompt": "a harbour in fog", "negative_prompt": "text, watermark", "seed": 7, "steps": 4, "cfg": 5.5}
    workflow = workflow_mgr.instantiate_template("text_to_image", values)
    with _client(comfyui_simulator) as client:
        client.wait_for_completion(client.queue_prompt(workflow)["prompt_id"])
    (sent,) = received_prompts(comfyui_simulator)
    assert (sent["6"]["inputs"]["text"], sent["7"]["inputs"]["text"]) == ("a harbour in fog", "text, watermark")
    assert (sent["3"]["inputs"]["seed"], sent["3"]["inputs"]["steps"], sent["3"]["inputs"]["cfg"]) == (7, 4, 5.5)


def test_validation_offline_reports_structure_and_says_what_it_skipped(readme_folder: Path) -> None:
    workflow_mgr = WorkflowManager()
    workflow = workflow_mgr.load_workflow(Path("workflow.json"))
    is_valid, errors = workflow_mgr.validate_workflow(workflow)
    assert is_valid and len(errors) == 1 and "not checked" in errors[0]
    workflow["8"]["inputs"]["samples"] = ["42", 0]
    is_valid, errors = workflow_mgr.validate_workflow(workflow)
    assert not is_valid and any("node '42'" in error for error in errors)


def test_manipulation_edits_in_place_and_saves(readme_folder: Path) -> None:
    workflow_mgr = WorkflowManager()
    workflow = workflow_mgr.load_workflow(Path("workflow.json"))
    assert workflow_mgr.find_nodes_by_type(workflow, "KSampler") == ["3"]
    workflow_mgr.update_node_input(workflow, "3", "seed", 99999)
    workflow_mgr.update_node_input(workflow, "3", "steps", 30)
    assert (workflow["3"]["inputs"]["seed"], workflow["3"]["inputs"]["steps"]) == (99999, 30)
    info = workflow_mgr.get_workflow_info(workflow)
    assert info["total_nodes"] == 7 == info.nodes
    assert info["node_types"] == {"CheckpointLoaderSimple": 1, "CLIPTextEncode": 2, "EmptyLatentImage": 1,
                                  "KSampler": 1, "VAEDecode": 1, "SaveImage": 1}
    workflow_mgr.save_workflow(workflow, Path("modified.json"))
    assert workflow_mgr.load_workflow(Path("modified.json")) == workflow


def test_upload_and_download_with_the_default_client(readme_folder: Path, comfyui_simulator: ComfyUISimulator) -> None:
    workflow = WorkflowManager().load_workflow(Path("workflow.json"))
    client = ComfyUIClient()  # host and port come from the README's config.yaml in the working folder
    try:
        assert client.base_url == comfyui_simulator.url
        result = client.upload_image(Path("input_image.png"))
        assert result["name"] == "input_image.png"
        prompt_id = client.queue_prompt(workflow)["prompt_id"]
        history = client.wait_for_completion(prompt_id)
        images = extract_output_images(history)
        assert len(images) == workflow["5"]["inputs"]["batch_size"]
        for img in images:
            data = client.get_image(img["filename"], subfolder=img["subfolder"], folder_type=img["type"])
            Path(f"output_{img['filename']}").write_bytes(data)
    finally:
        client.close()
    for img in images:
        assert Path(f"output_{img['filename']}").read_bytes().startswith(b"\x89PNG")


def test_context_manager_closes_the_websocket(readme_folder: Path, comfyui_simulator: ComfyUISimulator) -> None:
    workflow = WorkflowManager().load_workflow(Path("workflow.json"))
    with _client(comfyui_simulator) as client:
        client.connect_websocket()
        source = client.event_source
        response = client.queue_prompt(workflow)
        history = client.wait_for_completion(response["prompt_id"])
    assert history["status"]["completed"]
    assert source is not None and source.name == "websocket" and not source.connected
