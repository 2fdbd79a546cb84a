"""Fixtures for the compatibility tests: a folder laid out as the original README assumes, and its graph."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from comfykit.testing import ComfyUISimulator
from comfykit.testing.quickstart import TXT2IMG
from tests.compat.folder import WORKFLOW_FILES, readme_config, tiny_png


@pytest.fixture
def txt2img() -> dict[str, Any]:
    return json.loads(json.dumps(TXT2IMG))


@pytest.fixture
def readme_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, comfyui_simulator: ComfyUISimulator) -> Path:
    for name in WORKFLOW_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(json.dumps(TXT2IMG, indent=2))
    (tmp_path / "input_image.png").write_bytes(tiny_png())
    (tmp_path / "config.yaml").write_text(readme_config(comfyui_simulator.port))
    monkeypatch.chdir(tmp_path)
    return tmp_path
