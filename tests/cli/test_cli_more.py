"""The single-server commands, global options and error handling, through click's runner against the simulator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from click.testing import CliRunner, Result

from comfykit import hookimpl
from comfykit.testing import ComfyUISimulator
from comfykit_cli import build_cli
from comfykit_convert import FrontendGuessWarning

RECORDINGS = Path(__file__).resolve().parent.parent / "fixtures" / "recordings" / "0.33.0" / "workflows"
INVERT = str(RECORDINGS / "invert_save.json")
LOAD_INVERT = str(RECORDINGS / "load_invert_save.json")
CLOSED = "http://127.0.0.1:9"


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Outputs default to ./outputs: keep them out of the checkout.
    monkeypatch.chdir(tmp_path)


def run(*args: str, plugins: tuple[object, ...] = ()) -> Result:
    return CliRunner().invoke(build_cli(plugins=plugins), list(args), prog_name="comfykit")


def lines(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


# --------------------------------------------------------------------------- send


def test_send_wait_downloads_outputs_and_prints_the_files(comfyui_simulator: ComfyUISimulator, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run("--server", comfyui_simulator.url, "send", INVERT, "--wait", "--output-dir", str(out),
                 "--set", "EmptyImage.width=8")
    assert result.exit_code == 0, result.output
    files = [p for p in out.rglob("*.png")]
    assert len(files) == 1
    assert str(files[0]) in result.stdout
    from PIL import Image

    with Image.open(files[0]) as image:
        assert image.width == 8


def test_send_wait_json_is_ndjson_with_progress_and_files(comfyui_simulator: ComfyUISimulator, tmp_path: Path) -> None:
    result = run("--json", "send", str(RECORDINGS / "tiny_ksampler.json"), "--wait", "--server", comfyui_simulator.url,
                 "--output-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    events = lines(result)
    assert events[0]["event"] == "queued"
    assert events[-1]["event"] == "completed"
    assert all(e["prompt_id"] == events[0]["prompt_id"] for e in events)
    assert {e["event"] for e in events[1:-1]} <= {"progress"}
    assert events[-1]["files"] and all(Path(f).is_file() for f in events[-1]["files"])


def test_send_input_uploads_the_file_and_no_download_writes_nothing(
    comfyui_simulator: ComfyUISimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from PIL import Image

    picture = tmp_path / "cat.png"
    Image.new("RGB", (5, 7), "white").save(picture)
    monkeypatch.chdir(tmp_path)
    result = run("--json", "--server", comfyui_simulator.url, "send", LOAD_INVERT, "--input", "image=cat.png",
                 "--wait", "--no-download")
    assert result.exit_code == 0, result.output
    final = lines(result)[-1]
    assert final["files"] == [] and final["images"]
    assert not (tmp_path / "outputs").exists()
    uploaded = list(comfyui_simulator.root.joinpath("input").glob("cat*.png"))
    assert uploaded


def test_send_a_failing_job_exits_1_with_a_failed_event(comfyui_simulator: ComfyUISimulator) -> None:
    result = run("--json", "--server", comfyui_simulator.url, "send", str(RECORDINGS / "exec_error_canny.json"), "--wait")
    assert result.exit_code == 1
    assert lines(result)[-1]["event"] == "failed"
    assert "Traceback" not in result.output
    assert result.stderr.startswith("Error: Job ")


def test_send_bad_set_is_a_usage_error_and_unknown_node_exit_1(comfyui_simulator: ComfyUISimulator) -> None:
    assert run("send", INVERT, "--set", "nodot", "--server", comfyui_simulator.url).exit_code == 2
    result = run("send", INVERT, "--set", "No Such Title.text=x", "--server", comfyui_simulator.url)
    assert result.exit_code == 1
    assert "No Such Title" in result.stderr and "Hint:" in result.stderr


def test_send_accepts_an_editor_workflow(comfyui_simulator: ComfyUISimulator, tmp_path: Path) -> None:
    path = tmp_path / "ui.json"
    path.write_text(json.dumps(_ui_workflow()))
    result = run("--server", comfyui_simulator.url, "send", str(path), "--wait", "--no-download")
    assert result.exit_code == 0, result.output
    assert "completed" in result.stdout


# --------------------------------------------------------------------------- small commands


def test_history_lists_and_shows_one(comfyui_simulator: ComfyUISimulator) -> None:
    sent = run("--json", "--server", comfyui_simulator.url, "send", INVERT, "--wait", "--no-download")
    prompt_id = lines(sent)[-1]["prompt_id"]
    listing = run("--json", "--server", comfyui_simulator.url, "history", "--limit", "5")
    assert listing.exit_code == 0
    assert [item["prompt_id"] for item in json.loads(listing.stdout)] == [prompt_id]
    one = run("--server", comfyui_simulator.url, "history", prompt_id, "--json")
    assert json.loads(one.stdout)["status"] == "success"
    missing = run("--server", comfyui_simulator.url, "history", "0" * 8)
    assert missing.exit_code == 1 and "no history" in missing.stderr


def test_cancel_removes_pending_prompts_and_reports_unknown_ones(comfyui_simulator: ComfyUISimulator) -> None:
    comfyui_simulator.knobs.node_seconds = 0.5
    ids = [json.loads(run("--json", "--server", comfyui_simulator.url, "send", INVERT).stdout)["prompt_id"]
           for _ in range(3)]
    result = run("--json", "--server", comfyui_simulator.url, "cancel", ids[2], "not-a-prompt")
    assert result.exit_code == 1
    answer = json.loads(result.stdout)
    assert answer["unknown"] == ["not-a-prompt"]
    assert ids[2] in answer["removed"] + answer["interrupted"]
    queue = json.loads(run("--json", "--server", comfyui_simulator.url, "queue").stdout)
    assert ids[2] not in queue["running"] + queue["pending"]
    assert run("--server", comfyui_simulator.url, "clear", "--history").exit_code == 0
    assert run("--server", comfyui_simulator.url, "interrupt").exit_code == 0
    queue = json.loads(run("--json", "--server", comfyui_simulator.url, "queue").stdout)
    assert queue["pending"] == []


def test_upload_then_download(comfyui_simulator: ComfyUISimulator, tmp_path: Path) -> None:
    from PIL import Image

    picture = tmp_path / "dog.png"
    Image.new("RGB", (3, 3)).save(picture)
    result = run("--json", "--server", comfyui_simulator.url, "upload", str(picture), "--subfolder", "pets")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["name"] == "dog.png"
    assert json.loads(result.stdout)[0]["subfolder"] == "pets"
    sent = run("--json", "--server", comfyui_simulator.url, "send", INVERT, "--wait", "--no-download")
    prompt_id = lines(sent)[-1]["prompt_id"]
    fetched = run("--json", "--server", comfyui_simulator.url, "download", prompt_id, "--output-dir", str(tmp_path / "d"))
    assert fetched.exit_code == 0, fetched.output
    records = json.loads(fetched.stdout)
    assert len(records) == 1 and Path(records[0]["location"]).is_file()


def test_nodes_search_and_show(comfyui_simulator: ComfyUISimulator, tmp_path: Path) -> None:
    listing = run("--json", "--server", comfyui_simulator.url, "nodes", "ksampler*")
    names = [item["name"] for item in json.loads(listing.stdout)]
    assert "KSampler" in names and "KSamplerAdvanced" in names
    one = run("--server", comfyui_simulator.url, "nodes", "EmptyImage", "--json")
    details = json.loads(one.stdout)
    assert details["inputs"]["width"] == {"required": True, "type": "INT", "default": 512, "min": 1, "max": 16384,
                                          "step": 1}
    shown = run("--server", comfyui_simulator.url, "nodes", "KSampler")
    assert "sampler_name: COMBO; one of: euler" in shown.stdout
    assert run("--server", comfyui_simulator.url, "nodes", "no-such-node-anywhere").exit_code == 1


def test_convert_with_a_server_and_offline(comfyui_simulator: ComfyUISimulator, tmp_path: Path) -> None:
    source = tmp_path / "ui.json"
    source.write_text(json.dumps(_ui_workflow()))
    target = tmp_path / "api.json"
    result = run("--server", comfyui_simulator.url, "convert", str(source), "-o", str(target))
    assert result.exit_code == 0, result.output
    api = json.loads(target.read_text())
    assert api["1"]["class_type"] == "EmptyImage" and api["3"]["inputs"]["images"] == ["2", 0]
    info = tmp_path / "object_info.json"
    info.write_text(httpx.get(comfyui_simulator.url + "/object_info", timeout=30).text)
    # Offline, nothing tells which editor made the file: the newest rules are used, and that guess is said.
    with pytest.warns(FrontendGuessWarning, match="no frontend version given"):
        offline = run("--server", CLOSED, "convert", str(source), "--object-info", str(info))
    assert offline.exit_code == 0, offline.output
    assert json.loads(offline.stdout) == api


def test_plugins_lists_origins_hooks_disabled_and_failures() -> None:
    result = run("-p", "no:metadata", "-p", "no_such_plugin_module", "plugins", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    by_name = {item["name"]: item for item in data["plugins"]}
    assert by_name["download"]["origin"] == "bundled"
    assert "comfykit_store_outputs" in by_name["download"]["hooks"]
    assert "metadata" not in by_name and "metadata" in data["disabled"]
    assert data["failures"][0]["name"] == "no_such_plugin_module"


def test_config_shows_sources_and_hides_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("comfyui:\n  token: hunter2\noutput:\n  output_dir: /tmp/x\n")
    monkeypatch.setenv("COMFYKIT_BATCH_MAX_RETRIES", "7")
    result = run("--config", str(config), "config", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    values = data["values"]
    assert values["comfyui.token"] == {"value": "***", "source": f"file ({config}:2)"}
    assert values["output.output_dir"]["source"] == f"file ({config}:4)"
    assert values["batch.max_retries"] == {"value": 7, "source": "env (COMFYKIT_BATCH_MAX_RETRIES)"}
    assert values["output.verify_size"]["source"] == "default"  # a key the download plugin declares
    assert "hunter2" not in run("--config", str(config), "config").stdout


def test_a_missing_config_file_is_one_readable_error(tmp_path: Path) -> None:
    result = run("--config", str(tmp_path / "nope.yaml"), "config")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and "Hint:" in result.stderr and "Traceback" not in result.stderr


# --------------------------------------------------------------------------- errors and plugins


@pytest.mark.parametrize("args", [
    ["queue"], ["system"], ["history"], ["cancel", "x"], ["interrupt"], ["clear"], ["download", "x"], ["nodes"],
    ["send", INVERT], ["batch", INVERT],
])
def test_unreachable_server_exits_3_without_traceback(args: list[str]) -> None:
    result = run("--server", CLOSED, *args)
    assert result.exit_code == 3, result.output
    assert "Is ComfyUI running" in result.stderr and "Traceback" not in result.stderr


def test_verbose_shows_the_traceback() -> None:
    result = run("-v", "--server", CLOSED, "queue")
    assert result.exit_code == 3
    assert "Traceback" in result.stderr


@pytest.mark.parametrize("args", [
    ["send"], ["batch", INVERT, "--concurrency", "0"], ["history", "--limit", "x"], ["cancel"], ["nodes", "--bogus"],
    ["upload", "/no/such/file"], ["--no-such-global", "queue"], ["batch"],
])
def test_bad_flags_exit_2(args: list[str]) -> None:
    assert run(*args).exit_code == 2


class HelloPlugin:
    @hookimpl
    def comfykit_register_commands(self, cli: click.Group) -> None:
        @cli.command()
        def hello() -> None:
            """Say hello from a plugin."""
            click.echo("hello")


def test_a_plugin_object_adds_a_command_that_shows_in_help() -> None:
    helped = run("--help", plugins=(HelloPlugin(),))
    assert "hello" in helped.stdout and "Say hello from a plugin." in helped.stdout
    assert run("hello", plugins=(HelloPlugin(),)).stdout == "hello\n"


def test_logging_goes_to_the_configured_file(comfyui_simulator: ComfyUISimulator, tmp_path: Path) -> None:
    log_file = tmp_path / "comfykit.log"
    config = tmp_path / "c.yaml"
    config.write_text(f"logging:\n  level: DEBUG\n  file: {log_file}\n  console: false\n")
    result = run("--config", str(config), "--server", comfyui_simulator.url, "send", INVERT, "--wait", "--no-download")
    assert result.exit_code == 0, result.output
    assert "DEBUG" in log_file.read_text()
    assert "DEBUG" not in result.stderr


def _ui_workflow() -> dict[str, Any]:
    def node(node_id: int, kind: str, widgets: list[Any], inputs: list[Any], outputs: list[Any]) -> dict[str, Any]:
        return {"id": node_id, "type": kind, "mode": 0, "order": node_id, "pos": [0, 0], "size": [1, 1], "flags": {},
                "properties": {}, "inputs": inputs, "outputs": outputs, "widgets_values": widgets}

    return {
        "last_node_id": 3, "last_link_id": 2, "groups": [], "config": {}, "extra": {}, "version": 0.4,
        "nodes": [
            node(1, "EmptyImage", [16, 16, 1, 0], [], [{"name": "IMAGE", "type": "IMAGE", "links": [1]}]),
            node(2, "ImageInvert", [], [{"name": "image", "type": "IMAGE", "link": 1}],
                 [{"name": "IMAGE", "type": "IMAGE", "links": [2]}]),
            node(3, "SaveImage", ["ui/x"], [{"name": "images", "type": "IMAGE", "link": 2}], []),
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]],
    }


def test_the_real_entry_point_reports_an_unreachable_server_with_exit_3() -> None:
    result = subprocess.run([sys.executable, "-m", "comfykit", "--server", CLOSED, "system"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 3
    assert result.stderr.startswith("Error: cannot reach ComfyUI at http://127.0.0.1:9")
    assert "Hint: Is ComfyUI running" in result.stderr and "Traceback" not in result.stderr


def test_config_shows_a_server_given_on_the_command_line() -> None:
    values = json.loads(run("--server", "http://example.invalid:1", "config", "--json").stdout)["values"]
    assert values["comfyui.url"] == {"value": "http://example.invalid:1", "source": "argument"}


def test_ctrl_c_during_send_wait_cancels_the_job_and_exits_130(tmp_path: Path) -> None:
    with ComfyUISimulator(port=0, root=tmp_path / "sim") as sim:
        sim.knobs.node_seconds = 2.0
        process = subprocess.Popen(
            [sys.executable, "-m", "comfykit", "--json", "--server", sim.url, "send", INVERT, "--wait"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert process.stdout is not None
            queued = json.loads(process.stdout.readline())
            assert queued["event"] == "queued"
            process.send_signal(signal.SIGINT)
            rest, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        assert process.returncode == 130, err
        assert json.loads(rest.splitlines()[-1]) == {"event": "cancelled", "prompt_id": queued["prompt_id"]}
        queue = httpx.get(sim.url + "/queue", timeout=10).json()
        assert queued["prompt_id"] not in [item[1] for item in queue["queue_pending"]]


def test_send_runs_the_prepare_prompt_hook(comfyui_simulator: ComfyUISimulator) -> None:
    from comfykit import hookimpl

    class Prefix:
        @hookimpl
        def comfykit_prepare_prompt(self, prompt: dict[str, Any], job: Any, client: Any) -> None:
            for node in prompt.values():
                if node["class_type"] == "SaveImage":
                    node["inputs"]["filename_prefix"] = "hooked/" + node["inputs"]["filename_prefix"]

    result = run("--json", "--server", comfyui_simulator.url, "send", INVERT, "--wait", "--no-download",
                 plugins=(Prefix(),))
    assert result.exit_code == 0, result.output
    done = [event for event in lines(result) if event.get("event") == "completed"]
    assert done, result.output
    from comfykit import ComfyUIClient

    with ComfyUIClient(url=comfyui_simulator.url) as client:
        entry = client.get_history(done[0]["prompt_id"])[done[0]["prompt_id"]]
    assert entry["prompt"][2]["3"]["inputs"]["filename_prefix"].startswith("hooked/")
