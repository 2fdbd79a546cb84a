"""send, validate, queue and system against the simulator through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfykit.testing import ComfyUISimulator
from comfykit_cli import main

RECORDINGS = Path(__file__).resolve().parent.parent / "fixtures" / "recordings" / "0.33.0" / "workflows"


def test_send_wait_json(comfyui_simulator: ComfyUISimulator, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["send", str(RECORDINGS / "invert_save.json"), "--update", "1.width=32", "--wait", "--json",
                 "--no-download", "--server", comfyui_simulator.url])
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[0]["event"] == "queued"
    result = events[-1]
    assert result["event"] == "completed"
    assert result["status"] == "completed"
    assert result["images"][0]["filename"].endswith(".png")


def test_validate_offline_and_online(comfyui_simulator: ComfyUISimulator, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    good = str(RECORDINGS / "invert_save.json")
    assert main(["validate", "--offline", good]) == 0
    bad = tmp_path / "bad.json"
    workflow = json.loads((RECORDINGS / "invert_save.json").read_text())
    workflow["1"]["inputs"]["width"] = 0
    bad.write_text(json.dumps(workflow))
    capsys.readouterr()
    assert main(["validate", str(bad), "--server", comfyui_simulator.url, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report[str(bad)][0]["code"] == "value_smaller_than_min"


def test_queue_and_system(comfyui_simulator: ComfyUISimulator, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["queue", "--server", comfyui_simulator.url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"running": [], "pending": []}
    assert main(["system", "--server", comfyui_simulator.url]) == 0
    assert "ComfyUI 0.33.0 (jobs API: yes)" in capsys.readouterr().out


def test_unreachable_server_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["queue", "--server", "http://127.0.0.1:9"]) == 3
    assert "Is ComfyUI running" in capsys.readouterr().err
