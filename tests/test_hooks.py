"""Each hook that core calls today, exercised through a real plugin object against the simulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from click.testing import CliRunner

from comfykit import ComfyUIClient, hookimpl
from comfykit.config import Config, ConfigRegistry
from comfykit.events import Event
from comfykit.testing import ComfyUISimulator

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
