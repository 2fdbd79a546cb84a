"""One plugin manager per CLI run, command clashes, ``send --wait`` as a batch of one, and the log file.

Each test here failed before the CLI built its plugin manager once from the config and
``-p`` together, and before ``send --wait`` went through the queue.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from click.testing import CliRunner, Result
from compat.folder import readme_config

from comfykit import hookimpl
from comfykit.outputs import StoredOutput
from comfykit.testing import ComfyUISimulator
from comfykit_cli import build_cli, main, root_options

RECORDINGS = Path(__file__).resolve().parent.parent / "fixtures" / "recordings" / "0.33.0" / "workflows"
INVERT = str(RECORDINGS / "invert_save.json")

GREETER = '''
import click
from comfykit import hookimpl

@hookimpl
def comfykit_add_config(registry):
    registry.add("greeter", "greeting", "hello", help="What greet says.")

@hookimpl
def comfykit_register_commands(cli):
    @cli.command()
    @click.pass_obj
    def greet(run):
        """Say the configured greeting."""
        click.echo(run.config()["greeter.greeting"])
'''


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COMFYKIT_CONFIG", raising=False)
    (tmp_path / "greeter_plugin.py").write_text(GREETER)
    monkeypatch.syspath_prepend(str(tmp_path))


def run(*args: str, plugins: tuple[object, ...] = ()) -> Result:
    return CliRunner().invoke(build_cli(plugins=plugins), list(args), prog_name="comfykit")


def events(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


# --------------------------------------------------------------------------- one manager per run


def test_a_plugin_enabled_in_the_config_file_brings_its_command_and_its_keys(tmp_path: Path) -> None:
    (tmp_path / "comfykit.yaml").write_text("plugins:\n  enable: [greeter_plugin]\ngreeter:\n  greeting: bonjour\n")
    result = run("greet")
    assert result.exit_code == 0, result.output
    assert result.stdout == "bonjour\n"
    assert "greet" in run("--help").stdout


def test_a_plugin_disabled_in_the_config_file_has_no_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "comfykit.yaml").write_text("plugins:\n  disable: [greeter_plugin]\n")
    assert main(["-p", "greeter_plugin", "greet"]) == 2
    assert "No such command" in capsys.readouterr().err
    listing = json.loads(run("-p", "greeter_plugin", "plugins", "--json").stdout)
    assert "greeter_plugin" in listing["disabled"]
    assert "greeter_plugin" not in [plugin["name"] for plugin in listing["plugins"]]


def test_the_config_file_given_with_dash_dash_config_chooses_the_plugins(tmp_path: Path) -> None:
    config = tmp_path / "elsewhere.yaml"
    config.write_text("plugins:\n  enable: [greeter_plugin]\n")
    assert run("greet").exit_code == 2
    result = run("--config", str(config), "greet")
    assert result.exit_code == 0, result.output
    assert result.stdout == "hello\n"


def test_a_broken_config_file_leaves_help_working_and_fails_the_commands_that_read_it(tmp_path: Path) -> None:
    (tmp_path / "comfykit.yaml").write_text("plugins: [unclosed\n")
    assert run("--help").exit_code == 0
    result = run("config")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and "comfykit.yaml" in result.stderr


def test_root_options_are_read_before_the_command_name_only() -> None:
    options = root_options(["-pone", "-p", "two", "--config=c.yaml", "-vv", "--server", "http://x", "send", "-p", "x"])
    assert options.plugin_options == ("one", "two")
    assert options.config_path == "c.yaml"
    assert options.verbose == 2


# --------------------------------------------------------------------------- command clashes


class SendProbe:
    """A plugin that tries to take the built-in ``send``, and adds a command of its own."""

    @hookimpl
    def comfykit_register_commands(self, cli: click.Group) -> None:
        @cli.command()
        def send() -> None:
            """The probe's send."""
            click.echo("probe send")

        @cli.command()
        def probe() -> None:
            """The probe's own command."""
            click.echo("probe")


def test_a_command_name_clash_keeps_the_first_owner_and_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="comfykit.plugins"):
        helped = run("send", "--help", plugins=(SendProbe(),))
    assert helped.exit_code == 0
    assert "--wait" in helped.stdout and "The probe's send." not in helped.stdout
    warning = [record.getMessage() for record in caplog.records if "send" in record.getMessage()]
    assert warning and "'cli'" in warning[0] and "SendProbe" in warning[0]
    assert run("probe", plugins=(SendProbe(),)).stdout == "probe\n"
    listing = json.loads(run("plugins", "--json", plugins=(SendProbe(),)).stdout)
    [conflict] = listing["conflicts"]
    assert conflict["command"] == "send" and conflict["owner"] == "cli" and "SendProbe" in conflict["refused"]
    assert "CONFLICT command 'send'" in run("plugins", plugins=(SendProbe(),)).stdout


# --------------------------------------------------------------------------- send --wait is a batch of one


class Recorder:
    """A third-party output sink that also records the job lifecycle hooks."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    @hookimpl
    def comfykit_job_submitted(self, job: Any) -> None:
        self.calls.append(("submitted", job.job_id))

    @hookimpl
    def comfykit_job_completed(self, job: Any) -> None:
        self.calls.append(("completed", job.job_id))

    @hookimpl
    def comfykit_store_outputs(self, job: Any, outputs: Any, client: Any) -> list[StoredOutput]:
        self.calls.append(("stored", job.job_id))
        return [StoredOutput(sink="recorder", node_id=o.node_id, kind=o.kind, location=f"memory://{o.filename}")
                for o in outputs]


def test_send_wait_runs_every_sink_and_job_hook_and_names_folders_like_batch(
    comfyui_simulator: ComfyUISimulator, tmp_path: Path
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("output:\n  save_metadata: true\n")
    recorder = Recorder()
    sent = run("--config", str(config), "--json", "--server", comfyui_simulator.url, "send", INVERT, "--wait",
               "--output-dir", str(tmp_path / "sent"), plugins=(recorder,))
    assert sent.exit_code == 0, sent.output
    done = events(sent)[-1]
    job_id = done["job_id"]
    assert done["event"] == "completed" and done["status"] == "completed"
    assert recorder.calls == [("submitted", job_id), ("stored", job_id), ("completed", job_id)]
    assert any(f.startswith("memory://") for f in done["files"])
    sidecar = tmp_path / "sent" / f"{job_id}.json"
    assert sidecar.is_file() and str(sidecar) in done["files"]
    assert json.loads(sidecar.read_text())["job_id"] == job_id
    images = [Path(f) for f in done["files"] if f.endswith(".png") and not f.startswith("memory:")]
    assert images and all(image.is_file() for image in images)

    batched = run("--config", str(config), "--json", "--server", comfyui_simulator.url, "batch", INVERT,
                  "--output-dir", str(tmp_path / "batched"))
    assert batched.exit_code == 0, batched.output
    [finished] = [e for e in events(batched) if e["event"] == "job_completed"]
    batch_layout = sorted(str(Path(f).relative_to(tmp_path / "batched")).replace(finished["job_id"], "JOB")
                          for f in finished["files"])
    send_layout = sorted(str(Path(f).relative_to(tmp_path / "sent")).replace(job_id, "JOB")
                         for f in done["files"] if not f.startswith("memory://"))
    assert send_layout == batch_layout
    assert any(part.startswith("JOB/") for part in send_layout)


def test_send_wait_of_an_invalid_workflow_fails_before_posting(comfyui_simulator: ComfyUISimulator) -> None:
    workflow = json.loads(Path(INVERT).read_text())
    workflow["1"]["inputs"]["width"] = 0
    bad = Path("bad.json")
    bad.write_text(json.dumps(workflow))
    result = run("--json", "--server", comfyui_simulator.url, "send", str(bad), "--wait")
    assert result.exit_code == 1
    assert events(result)[-1]["event"] == "failed"
    assert result.stderr.startswith("Error: ")
    assert httpx.get(comfyui_simulator.url + "/history", timeout=10).json() == {}


# --------------------------------------------------------------------------- logging


def test_the_readme_config_yaml_puts_info_records_in_the_log_file(comfyui_simulator: ComfyUISimulator,
                                                                  tmp_path: Path) -> None:
    port = comfyui_simulator.url.rsplit(":", 1)[1]
    (tmp_path / "config.yaml").write_text(readme_config(int(port)))
    result = run("--json", "send", INVERT, "--wait")
    assert result.exit_code == 0, result.output
    done = events(result)[-1]
    text = (tmp_path / "comfyui_api.log").read_text()
    assert "INFO comfykit.cli: job " in text and done["prompt_id"] in text and "completed" in text
    assert "INFO comfykit.cli" in result.stderr  # console: true
    assert (tmp_path / "outputs" / f"{done['job_id']}.json").is_file()  # save_metadata: true


def test_python_dash_m_comfykit_runs_the_console_script() -> None:
    result = subprocess.run([sys.executable, "-m", "comfykit", "plugins", "--json"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    names = [plugin["name"] for plugin in json.loads(result.stdout)["plugins"]]
    assert {"cli", "download", "metadata", "monitor"} <= set(names)


def test_the_core_imports_no_bundled_plugin() -> None:
    import ast

    bundled = {"comfykit_cli", "comfykit_download", "comfykit_metadata", "comfykit_monitor"}
    core = Path(__file__).resolve().parents[2] / "comfykit"
    for path in core.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {(node.module or "").split(".")[0]}
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = {node.value.split(".")[0]}  # importlib.import_module("comfykit_cli") and tables of names
            else:
                continue
            assert not names & bundled, f"{path.relative_to(core.parent)}:{node.lineno} names {names & bundled}"


def test_help_loads_the_plugins_but_no_heavy_module() -> None:
    code = ("import sys\nfrom comfykit_cli import main\nmain(['--help'])\n"
            "print(sorted(m for m in ('httpx', 'aiohttp', 'rich', 'PIL', 'comfykit.client', 'comfykit.queue') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "send" in result.stdout and "download" in result.stdout
    assert result.stdout.splitlines()[-1] == "[]"


def test_serve_options_carry_the_knobs_help_text() -> None:
    import attrs

    from comfykit.testing import Knobs

    text = run("serve", "--help").stdout
    helped = [field for field in attrs.fields(Knobs) if not field.name.startswith("_")]
    assert all(field.metadata.get("help") for field in helped)
    assert "the status code of the failures" in " ".join(text.split())


def test_the_original_readme_command_lines(comfyui_simulator: ComfyUISimulator, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "workflows"
    folder.mkdir()
    workflow = folder / "my_workflow.json"
    workflow.write_text((RECORDINGS / "tiny_ksampler.json").read_text())
    server = ["--server", comfyui_simulator.url]
    assert main([*server, "send", str(workflow), "--wait"]) == 0
    assert main([*server, "send", str(workflow), "--update", "6.seed=42", "--update", "3.text=a beautiful landscape",
                 "--wait"]) == 0
    assert main([*server, "batch", str(folder), "--timeout", "600"]) == 0
    assert main([*server, "validate", str(workflow)]) == 0
    assert main([*server, "queue", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert out.count("completed ") >= 2 and "1 completed, 0 failed" in out and "running: -" in out
    history = httpx.get(comfyui_simulator.url + "/history", timeout=10).json()
    prompts = [entry["prompt"][2] for entry in history.values()]
    assert any(p["6"]["inputs"]["seed"] == 42 and p["3"]["inputs"]["text"] == "a beautiful landscape" for p in prompts)


def test_the_download_command_belongs_to_the_download_plugin() -> None:
    assert "download" in run("--help").stdout
    result = run("-p", "no:download", "download", "some-prompt")
    assert result.exit_code == 2 and "No such command" in result.stderr
    assert "download" not in run("-p", "no:download", "--help").stdout


def test_a_plugin_failing_under_plugins_strict_is_one_readable_error(tmp_path: Path) -> None:
    (tmp_path / "comfykit.yaml").write_text("plugins:\n  strict: true\n  enable: [no_such_plugin_module_here]\n")
    result = run("queue")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: plugin 'no_such_plugin_module_here'") and "Traceback" not in result.stderr
