"""Tests of the forbid-nodes plugin against the comfyui_simulator fixture that comfykit's pytest plugin provides."""

from __future__ import annotations

from typing import Any

import comfykit_forbid_nodes
import pytest

from comfykit import ComfyUIClient, JobStatus, QueueManager, load_config
from comfykit.workflow import validate_workflow


def graph(output_class: str) -> dict[str, Any]:
    """A model-free graph ending in ``output_class`` (SaveImage or PreviewImage)."""
    inputs: dict[str, Any] = {"images": ["1", 0]}
    if output_class == "SaveImage":
        inputs["filename_prefix"] = "forbid/test"
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 7}},
        "2": {"class_type": output_class, "inputs": inputs},
    }


@pytest.fixture
def client(comfyui_simulator: Any) -> Any:
    # plugins= registers the module even when the package is not installed (no entry point yet).
    with ComfyUIClient(url=comfyui_simulator.url, plugins=[comfykit_forbid_nodes]) as client:
        yield client


def test_a_forbidden_node_is_a_validation_error(client: Any) -> None:
    ok, problems = validate_workflow(graph("PreviewImage"), client=client)
    assert not ok
    assert [(p.code, p.node_id, p.class_type) for p in problems] == [("forbidden_node", "2", "PreviewImage")]


def test_allowed_nodes_pass(client: Any) -> None:
    assert validate_workflow(graph("SaveImage"), client=client) == (True, [])


def test_the_environment_changes_the_list(comfyui_simulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMFYKIT_FORBID_NODES_CLASSES", "SaveImage,ImageInvert")
    with ComfyUIClient(url=comfyui_simulator.url, plugins=[comfykit_forbid_nodes]) as client:
        assert client.config["forbid_nodes.classes"] == ["SaveImage", "ImageInvert"]
        ok, problems = validate_workflow(graph("SaveImage"), client=client)
        assert not ok and problems[0].class_type == "SaveImage"
        assert validate_workflow(graph("PreviewImage"), client=client)[0]


def test_a_queue_fails_a_forbidden_job_before_posting_it(comfyui_simulator: Any, tmp_path: Any) -> None:
    config = load_config(overrides={"output.output_dir": str(tmp_path)}, use_file=False)
    with QueueManager(servers=[comfyui_simulator.url], config=config, plugins=[comfykit_forbid_nodes]) as queue:
        bad = queue.add_job(graph("PreviewImage"))
        good = queue.add_job(graph("SaveImage"))
        stats = queue.run(timeout=60)
        assert (stats["completed"], stats["failed"]) == (1, 1)
        failed = queue.get_job(bad)
        assert failed is not None and failed.status is JobStatus.FAILED
        assert "PreviewImage" in (failed.error or "") and failed.attempts == 0
        assert queue.get_job_status(good) is JobStatus.COMPLETED
    # Refused before POST /prompt: the server executed only the allowed job.
    assert len(comfyui_simulator.execution_counts) == 1
