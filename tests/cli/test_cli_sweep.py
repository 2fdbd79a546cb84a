"""How ``comfykit batch`` applies one sweep point to a workflow (the parser itself is tested in tests/workflow)."""

from __future__ import annotations

from typing import Any

import pytest

from comfykit.errors import WorkflowError
from comfykit_cli.targets import apply_sweep_values


def test_sweep_values_reach_nodes_by_id_title_class_or_bare_input() -> None:
    workflow: dict[str, Any] = {
        "1": {"class_type": "KSampler", "inputs": {"seed": 0, "cfg": 7}},
        "2": {"class_type": "KSampler", "inputs": {"seed": 0, "cfg": 7}, "_meta": {"title": "Second"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": ""}},
    }
    result = apply_sweep_values(workflow, {"seed": 5, "Second.cfg": 3, "CLIPTextEncode.text": "cat", "1.cfg": 9})
    assert result["1"]["inputs"] == {"seed": 5, "cfg": 9}
    assert result["2"]["inputs"] == {"seed": 5, "cfg": 3}
    assert result["3"]["inputs"] == {"text": "cat"}
    assert workflow["1"]["inputs"]["seed"] == 0
    with pytest.raises(WorkflowError, match="no node"):
        apply_sweep_values(workflow, {"denoise": 1})
