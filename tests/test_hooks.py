"""Each hook that core calls today, exercised through a real plugin object against the simulator."""

from __future__ import annotations

import json
import threading
import zipfile
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from comfykit import ComfyUIClient, QueueManager, hookimpl
from comfykit.config import Config, ConfigRegistry
from comfykit.errors import ConversionError, WorkflowLoadError
from comfykit.events import Event
from comfykit.jobs import Job
from comfykit.plugins import get_plugin_manager
from comfykit.testing import ComfyUISimulator
from comfykit.workflow import Problem, load_workflow, validate_workflow

RECORDINGS = Path(__file__).resolve().parent / "fixtures" / "recordings"


class Recorder:
    """A plugin that records the hooks it sees."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.events: list[Event] = []
        self.webhook_url: str | None = None

    @hookimpl
    def comfykit_add_config(self, registry: ConfigRegistry) -> None:
        registry.add("webhook", "url", None, type="str", help="Where to post.")

    @hookimpl
    def comfykit_configure(self, config: Config) -> None:
        self.calls.append("configure")
        self.webhook_url = config["webhook.url"]

    @hookimpl
    def comfykit_session_start(self, client: ComfyUIClient) -> None:
        self.calls.append("session_start")

    @hookimpl
    def comfykit_session_finish(self, client: ComfyUIClient) -> None:
        self.calls.append("session_finish")

    @hookimpl
    def comfykit_handle_event(self, event: Event) -> None:
        self.events.append(event)


def test_hook_add_config_and_configure(monkeypatch: Any) -> None:
    monkeypatch.setenv("COMFYKIT_WEBHOOK_URL", "http://127.0.0.1:9/hook")
    recorder = Recorder()
    with ComfyUIClient(url="http://127.0.0.1:9", plugins=[recorder]) as client:
        assert client.config.source("webhook.url").kind == "env"
    assert recorder.webhook_url == "http://127.0.0.1:9/hook"
    assert recorder.calls == ["configure"]  # no request made: no session


def test_hook_session_start_finish_and_handle_event(tmp_path: Path) -> None:
    recorder = Recorder()
    workflow = json.loads((RECORDINGS / "0.33.0" / "workflows" / "invert_save.json").read_text())
    with ComfyUISimulator(port=0, root=tmp_path) as sim, ComfyUIClient(url=sim.url, plugins=[recorder]) as client:
        prompt_id = client.queue_prompt(workflow)["prompt_id"]
        client.wait_for_completion(prompt_id, timeout=20)
    assert recorder.calls == ["configure", "session_start", "session_finish"]
    types = [e.type for e in recorder.events if e.prompt_id == prompt_id]
    assert types[0] == "execution_start" and types[-1] == "executing"


def test_hook_event_source_a_plugin_can_replace_the_websocket(tmp_path: Path) -> None:
    class QuietSource:
        name = "quiet"
        connected = False
        started = False

        def start(self) -> None:
            QuietSource.started = True

        def stop(self) -> None:
            """Nothing to close."""

        def watch(self, prompt_id: str) -> None:
            """Nothing to subscribe."""

        def unwatch(self, prompt_id: str) -> None:
            """Nothing to unsubscribe."""

    class Provider:
        @hookimpl(tryfirst=True)
        def comfykit_event_source(self, client: ComfyUIClient) -> QuietSource:
            return QuietSource()

    workflow = json.loads((RECORDINGS / "0.33.0" / "workflows" / "preview_image.json").read_text())
    with ComfyUISimulator(port=0, root=tmp_path) as sim, ComfyUIClient(url=sim.url, plugins=[Provider()]) as client:
        prompt_id = client.queue_prompt(workflow)["prompt_id"]
        assert client.event_source is not None and client.event_source.name == "quiet"
        assert QuietSource.started
        # no live events at all: the tracker still finds the job by asking the server
        assert client.wait_for_completion(prompt_id, timeout=20)["status"]["completed"]


def test_hook_register_commands_adds_a_command(tmp_path: Path, monkeypatch: Any) -> None:
    (tmp_path / "hello_plugin.py").write_text(
        "import click\nfrom comfykit import hookimpl\n\n"
        "@hookimpl\ndef comfykit_register_commands(cli):\n"
        "    @cli.command()\n    def hello():\n        '''Say hello.'''\n        click.echo('hello from a plugin')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from comfykit_cli import build_cli

    cli = build_cli(["hello_plugin"])
    assert isinstance(cli, click.Group)
    result = CliRunner().invoke(cli, ["-p", "hello_plugin", "hello"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "hello from a plugin"


def test_hook_add_config_defaults_apply_to_a_config_object_built_before() -> None:
    from comfykit.config import load_config

    prebuilt = load_config(use_file=False, env={}, overrides={"comfyui.port": 9})
    recorder = Recorder()
    with ComfyUIClient(config=prebuilt, plugins=[recorder]) as client:
        assert client.config["comfyui.port"] == 9
        assert client.config["webhook.url"] is None
    assert recorder.calls == ["configure"]


# ----------------------------------------------------------------------------- workflows and submission

INVERT = RECORDINGS / "0.33.0" / "workflows" / "invert_save.json"


class ZipReader:
    """Reads ``.ckz`` files: a zip holding ``workflow.json`` (a container core does not know)."""

    @hookimpl
    def comfykit_read_workflow(self, path: Path) -> Any | None:
        if path.suffix != ".ckz":
            return None
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("workflow.json"))


class MiniFormat:
    """Converts ``{"mini": [[id, class, inputs], ...]}``, a format core does not know, to an API graph."""

    @hookimpl
    def comfykit_convert_workflow(self, data: Any, source: str | None, object_info: Any) -> dict[str, Any] | None:
        if not isinstance(data, dict) or "mini" not in data:
            return None
        try:
            return {str(node_id): {"class_type": cls, "inputs": dict(inputs)} for node_id, cls, inputs in data["mini"]}
        except (TypeError, ValueError):
            raise ConversionError("a mini node is not [id, class, inputs]", path=source,
                                  hint="Write each node as [id, class, {inputs}].") from None


class ForbidSave:
    """A validator that forbids writing files to the server's output folder."""

    @hookimpl
    def comfykit_validate_workflow(self, workflow: Any, object_info: Any) -> list[Problem]:
        return [
            Problem(code="forbidden_node", message="SaveImage is not allowed here", node_id=node_id,
                    class_type="SaveImage", hint="Use PreviewImage.")
            for node_id, node in workflow.items() if node.get("class_type") == "SaveImage"
        ]


class Stamp:
    """Changes every prompt just before it is posted, and notes the jobs and clients it saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    @hookimpl
    def comfykit_prepare_prompt(self, prompt: dict[str, Any], job: Job, client: ComfyUIClient) -> None:
        prompt["1"]["inputs"]["width"] = 16
        job.extra_data["stamped_by"] = "Stamp"
        with self.lock:
            self.seen.append((job.job_id, client.base_url))


def test_hook_read_workflow_a_plugin_reads_a_new_container(tmp_path: Path) -> None:
    container = tmp_path / "flow.ckz"
    with zipfile.ZipFile(container, "w") as archive:
        archive.writestr("workflow.json", INVERT.read_text())
    with ComfyUISimulator(port=0, root=tmp_path) as sim, ComfyUIClient(url=sim.url, plugins=[ZipReader()]) as client:
        graph = load_workflow(container, client=client)
        assert graph == json.loads(INVERT.read_text())
        prompt_id = client.queue_prompt(graph)["prompt_id"]
        assert client.wait_for_completion(prompt_id, timeout=20)["status"]["completed"]
        # Files the plugin does not claim still reach core's reader.
        assert load_workflow(INVERT, client=client) == graph
    with pytest.raises(WorkflowLoadError):
        load_workflow(container, plugin_manager=get_plugin_manager(autoload=False))


def test_hook_convert_workflow_a_plugin_adds_a_format(tmp_path: Path) -> None:
    api = json.loads(INVERT.read_text())
    mini = {"mini": [[node_id, node["class_type"], node["inputs"]] for node_id, node in api.items()]}
    with ComfyUISimulator(port=0, root=tmp_path) as sim, ComfyUIClient(url=sim.url, plugins=[MiniFormat()]) as client:
        graph = load_workflow(mini, client=client)
        assert graph == api
        prompt_id = client.queue_prompt(graph)["prompt_id"]
        assert client.wait_for_completion(prompt_id, timeout=20)["status"]["completed"]
        with pytest.raises(ConversionError, match="not \\[id, class, inputs\\]") as info:
            load_workflow({"mini": [["1", "EmptyImage"]]}, client=client)
        assert info.value.hint
    with pytest.raises(WorkflowLoadError, match="not a ComfyUI workflow"):
        load_workflow(mini, plugin_manager=get_plugin_manager(autoload=False))


def test_hook_validate_workflow_every_validator_reports(tmp_path: Path) -> None:
    graph = json.loads(INVERT.read_text())
    graph["1"]["inputs"]["width"] = 0
    with ComfyUISimulator(port=0, root=tmp_path) as sim, ComfyUIClient(url=sim.url, plugins=[ForbidSave()]) as client:
        ok, problems = validate_workflow(graph, client=client)
    assert not ok
    codes = {(p.code, p.node_id) for p in problems}
    assert ("forbidden_node", "3") in codes  # the plugin's
    assert ("value_smaller_than_min", "1") in codes  # core's schema check still ran
    offline = validate_workflow(json.loads(INVERT.read_text()), plugin_manager=get_plugin_manager(plugins=[ForbidSave()]))
    assert [p.code for p in offline[1]] == ["forbidden_node", "schema_not_checked"]  # offline: no schema checks


def test_hook_prepare_prompt_changes_every_prompt_of_a_batch(tmp_path: Path) -> None:
    stamp = Stamp()
    workflow = json.loads(INVERT.read_text())
    with ComfyUISimulator(port=0, root=tmp_path) as sim:
        queue = QueueManager(servers=[sim.url], plugins=[stamp], store_outputs=False)
        try:
            ids = [queue.add_job(workflow, metadata={"n": n}, extra_data={"n": n}) for n in range(3)]
            stats = queue.run(timeout=60)
        finally:
            queue.close()
        assert stats["completed"] == 3
        with ComfyUIClient(url=sim.url) as client:
            history = client.get_history()
    assert sorted(job_id for job_id, _ in stamp.seen) == sorted(ids)
    assert {url for _, url in stamp.seen} == {sim.url.rstrip("/")}
    sent = [entry["prompt"] for entry in history.values()]
    assert len(sent) == 3
    assert all(prompt[2]["1"]["inputs"]["width"] == 16 for prompt in sent)
    assert all(prompt[3].get("stamped_by") == "Stamp" for prompt in sent)
    # The job keeps the workflow it was given; only what was posted changed.
    jobs = [queue.get_job(job_id) for job_id in ids]
    assert all(job is not None and job.workflow["1"]["inputs"]["width"] == 64 for job in jobs)
