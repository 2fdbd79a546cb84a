"""The plugin manager: loading, ordering, disabling, broken plugins, entry points, sink isolation."""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import sys
import textwrap
from pathlib import Path
from typing import Any

import pluggy
import pytest

import comfykit.defaults
from comfykit import hookimpl, hookspecs
from comfykit.errors import PluginError
from comfykit.jobs import Job
from comfykit.outputs import OutputFile, StoredOutput
from comfykit.plugins import CORE_PLUGINS, get_plugin_manager, parse_plugin_options

#: The plugins comfykit ships, registered through its own entry points.
BUNDLED_PLUGINS = {"monitor", "download", "metadata", "cli", "convert"}


def _hookspec_functions() -> list[tuple[str, object]]:
    return [
        (name, fn)
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("comfykit_")
    ]


def test_every_hookspec_is_named_for_the_project_and_documented() -> None:
    specs = _hookspec_functions()
    assert len(specs) >= 20
    for name, fn in specs:
        doc = inspect.getdoc(fn)
        assert doc, f"hookspec {name} has no docstring"
        assert ":return:" in doc, f"hookspec {name} does not document its return value"
        for param in inspect.signature(fn).parameters:  # type: ignore[arg-type]
            assert f":param {param}:" in doc, f"hookspec {name} does not document {param!r}"


def test_firstresult_hooks_say_so_in_their_docstring() -> None:
    for name, fn in _hookspec_functions():
        opts = fn.comfykit_spec
        if opts.get("firstresult"):
            assert "first" in (inspect.getdoc(fn) or "").lower(), name


def test_a_new_manager_per_call_with_core_and_bundled_plugins() -> None:
    first = get_plugin_manager()
    second = get_plugin_manager()
    assert first.pm is not second.pm
    names = {name for name, _ in first.plugins()}
    assert set(CORE_PLUGINS) <= names
    assert set(BUNDLED_PLUGINS) <= names
    assert first.origins["monitor"] == "bundled"
    assert first.origins["core.polling"] == "core"
    assert first.failures == []


def test_parse_plugin_options_splits_enable_and_disable() -> None:
    assert parse_plugin_options(["no:monitor", "myplugin", " ", "no:cli"]) == (["myplugin"], ["monitor", "cli"])


def test_disable_by_name_argument_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    manager = get_plugin_manager(disable=["monitor"])
    assert not manager.is_registered("monitor")
    assert "monitor" in manager.disabled
    monkeypatch.setenv("COMFYKIT_DISABLE_PLUGINS", "download, metadata")
    manager = get_plugin_manager()
    assert not manager.is_registered("download")
    assert not manager.is_registered("metadata")
    assert manager.is_registered("monitor")


def test_core_plugins_cannot_be_disabled() -> None:
    manager = get_plugin_manager(disable=["core.polling", "core.retry"])
    assert manager.is_registered("core.polling")
    assert manager.is_registered("core.retry")


class _Recorder:
    def __init__(self, label: str, calls: list[str]) -> None:
        self.label = label
        self.calls = calls

    @hookimpl
    def comfykit_job_cancelled(self, job: Job) -> None:
        self.calls.append(self.label)


def test_python_plugins_are_registered_and_called_last_registered_first() -> None:
    calls: list[str] = []
    manager = get_plugin_manager(plugins=[_Recorder("a", calls), _Recorder("b", calls)])
    manager.job_cancelled(Job(workflow={}))
    assert calls == ["b", "a"]


def test_a_plugin_with_a_misspelled_hook_is_refused() -> None:
    class Misspelled:
        @hookimpl
        def comfykit_job_complete(self, job: Job) -> None:  # no such hook
            raise AssertionError("never called")

    with pytest.raises(PluginError, match="comfykit_job_complete"):
        get_plugin_manager(plugins=[Misspelled()])


def _install_fake_distribution(site: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """Write a dist-info folder and modules, as pip would, so importlib.metadata finds the entry points."""
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = ["[comfykit]", *(f"{name} = {target}" for name, target in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    yield site
    for name in [m for m in sys.modules if m.startswith("ck_test_")]:
        del sys.modules[name]


GOOD_PLUGIN = """
    from comfykit import hookimpl

    SEEN = []

    @hookimpl
    def comfykit_job_cancelled(job):
        SEEN.append(job.job_id)
"""


def test_third_party_plugin_is_loaded_through_the_entry_point_group(fake_site: Path) -> None:
    _install_fake_distribution(fake_site, "ck-test-good", {"good": "ck_test_good"}, {"ck_test_good": GOOD_PLUGIN})
    manager = get_plugin_manager()
    assert manager.is_registered("good")
    assert manager.origins["good"] == "entry point of ck-test-good"
    assert manager.hooks_of("good") == ["comfykit_job_cancelled"]
    job = Job(workflow={})
    manager.job_cancelled(job)
    assert [job.job_id] == sys.modules["ck_test_good"].SEEN


def test_autoload_can_be_switched_off_by_environment(fake_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install_fake_distribution(fake_site, "ck-test-good", {"good": "ck_test_good"}, {"ck_test_good": GOOD_PLUGIN})
    monkeypatch.setenv("COMFYKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    manager = get_plugin_manager()
    assert not manager.is_registered("good")
    # bundled plugins still load: they are part of comfykit
    assert manager.is_registered("monitor")
    # and an explicit -p still loads it, by module name too: under its entry-point name
    manager = get_plugin_manager(enable=["ck_test_good"])
    assert manager.is_registered("good") and manager.origins["good"] == "-p, entry point of ck-test-good"


def test_a_broken_plugin_is_reported_by_name_and_the_rest_keeps_working(
    fake_site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _install_fake_distribution(
        fake_site,
        "ck-test-broken",
        {"broken": "ck_test_broken", "good": "ck_test_good"},
        {"ck_test_broken": "raise RuntimeError('boom at import')\n", "ck_test_good": GOOD_PLUGIN},
    )
    with caplog.at_level(logging.WARNING, logger="comfykit.plugins"):
        manager = get_plugin_manager()
    assert manager.is_registered("good")
    assert not manager.is_registered("broken")
    [failure] = manager.failures
    assert failure.name == "broken"
    assert "RuntimeError: boom at import" in failure.error
    assert "'broken'" in caplog.text

    with pytest.raises(PluginError, match=r"broken.*boom at import") as info:
        get_plugin_manager(strict=True)
    assert info.value.hint is not None and "no:broken" in info.value.hint


def test_disabling_a_third_party_plugin_by_name(fake_site: Path) -> None:
    _install_fake_distribution(fake_site, "ck-test-good", {"good": "ck_test_good"}, {"ck_test_good": GOOD_PLUGIN})
    manager = get_plugin_manager(disable=["good"])
    assert not manager.is_registered("good")
    assert manager.pm.is_blocked("good")


class _GoodSink:
    @hookimpl
    def comfykit_store_outputs(self, job: Job, outputs: list[OutputFile], client: object) -> list[StoredOutput]:
        return [
            StoredOutput(sink="good", node_id=o.node_id, kind=o.kind, location=f"mem://{o.filename}") for o in outputs
        ]


class _BrokenSink:
    @hookimpl
    def comfykit_store_outputs(self, job: Job, outputs: list[OutputFile], client: object) -> list[StoredOutput]:
        raise OSError("disk on fire")


def test_one_failing_sink_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    manager = get_plugin_manager(disable=["download", "metadata"], plugins=[_BrokenSink(), _GoodSink()])
    outputs = [OutputFile(node_id="9", kind="images", filename="a.png")]
    with caplog.at_level(logging.ERROR, logger="comfykit.plugins"):
        results = manager.store_outputs(Job(workflow={}), outputs, client=object())  # type: ignore[arg-type]
    good = next(r for r in results if r.error is None)
    broken = next(r for r in results if r.error is not None)
    assert [s.location for s in good.stored] == ["mem://a.png"]
    assert isinstance(broken.error, OSError)
    assert "disk on fire" in caplog.text
    assert len(results) == 2


def test_should_retry_default_and_override() -> None:
    from comfykit.errors import PromptRejected, ServerUnreachable

    manager = get_plugin_manager()
    job = Job(workflow={})
    assert manager.should_retry(job, ServerUnreachable("refused"), 1) is True
    rejected = PromptRejected(status_code=400, error={"type": "prompt_no_outputs"}, node_errors={})
    assert manager.should_retry(job, rejected, 1) is False

    class NeverRetry:
        @hookimpl
        def comfykit_should_retry(self, job: Job, error: BaseException, attempt: int) -> bool:
            return False

    manager = get_plugin_manager(plugins=[NeverRetry()])
    assert manager.should_retry(job, ServerUnreachable("refused"), 1) is False


def test_hookimpl_marker_is_for_this_project() -> None:
    assert isinstance(hookimpl, pluggy.HookimplMarker)
    assert hookimpl.project_name == "comfykit"


def test_an_entry_point_plugin_through_the_cli_and_dash_p_no(fake_site: Path) -> None:
    from click.testing import CliRunner

    from comfykit_cli import build_cli

    _install_fake_distribution(fake_site, "ck-test-good", {"good": "ck_test_good"}, {"ck_test_good": GOOD_PLUGIN})

    def listing(*args: str) -> dict[str, Any]:
        result = CliRunner().invoke(build_cli(parse_args(args)), [*args, "plugins", "--json"], prog_name="comfykit")
        assert result.exit_code == 0, result.output
        return dict(json.loads(result.stdout))

    def parse_args(args: tuple[str, ...]) -> list[str]:
        return [args[i + 1] for i, arg in enumerate(args) if arg == "-p"]

    loaded = listing()
    [good] = [p for p in loaded["plugins"] if p["name"] == "good"]
    assert good == {"name": "good", "origin": "entry point of ck-test-good", "hooks": ["comfykit_job_cancelled"],
                    "distribution": "ck-test-good", "version": "1.0"}
    disabled = listing("-p", "no:good")
    assert "good" not in [p["name"] for p in disabled["plugins"]]
    assert "good" in disabled["disabled"]


def test_core_plugins_are_the_modules_of_comfykit_defaults() -> None:
    defaults = Path(comfykit.defaults.__file__).parent
    modules = {f"comfykit.defaults.{path.stem}" for path in defaults.glob("*.py") if path.stem != "__init__"}
    assert set(CORE_PLUGINS.values()) == modules
    manager = get_plugin_manager(autoload=False)
    for name, module_name in CORE_PLUGINS.items():
        assert manager.pm.get_plugin(name) is importlib.import_module(module_name)


def test_register_commands_keeps_the_first_owner_and_lets_plugins_extend_groups(caplog: pytest.LogCaptureFixture) -> None:
    import click

    class First:
        @hookimpl
        def comfykit_register_commands(self, cli: click.Group) -> None:
            @cli.group()
            def tools() -> None:
                """First's group."""

            @cli.command()
            def hello() -> None:
                """First's hello."""

    class Second:
        @hookimpl
        def comfykit_register_commands(self, cli: click.Group) -> None:
            @cli.command()
            def hello() -> None:
                """Second's hello."""

            tools = cli.commands["tools"]
            assert isinstance(tools, click.Group)

            @tools.command()
            def extra() -> None:
                """Added to First's group."""

    manager = get_plugin_manager(plugins=[First(), Second()], autoload=False, disable=["cli", "download"])
    root = click.Group("comfykit")
    with caplog.at_level(logging.WARNING, logger="comfykit.plugins"):
        conflicts = manager.register_commands(root)
    assert sorted(root.commands) == ["hello", "tools"]
    assert root.commands["hello"].help == "First's hello."
    tools = root.commands["tools"]
    assert isinstance(tools, click.Group) and "extra" in tools.commands
    [conflict] = conflicts
    assert conflict.command == "hello" and "First" in conflict.owner and "Second" in conflict.refused
    assert manager.command_conflicts == conflicts
    assert any("hello" in r.getMessage() and "Second" in r.getMessage() for r in caplog.records)


def test_names_that_moved_out_of_comfykit_plugins_are_still_importable_from_it() -> None:
    import comfykit.plugins as plugins_module
    from comfykit import plugin_loader, session, sinks
    from comfykit.plugin_commands import CommandConflict

    for name in ("CORE_PLUGINS", "ENTRY_POINT_GROUP", "get_plugin_manager", "parse_plugin_options"):
        assert getattr(plugins_module, name) is getattr(plugin_loader, name)
    assert plugins_module.open_session is session.open_session
    assert plugins_module.SinkResult is sinks.SinkResult and plugins_module.CommandConflict is CommandConflict
    assert all(getattr(plugins_module, name, None) is not None for name in plugins_module.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        _ = plugins_module.nothing_here
