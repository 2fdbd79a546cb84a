"""What a plugin's command and its author get from the CLI: -o, config --describe, plugins --hooks, the runner."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from comfykit import hookspecs
from comfykit.testing.cli_runner import CliRunner

from .conftest import Install

SETTINGS_PLUGIN = """
    import click
    from comfykit import hookimpl

    SETTINGS = {"seed": None}

    @hookimpl
    def comfykit_add_config(registry):
        registry.add("wm", "seed", None, type="int", help="Seed given to every sampler.")

    @hookimpl
    def comfykit_configure(config):
        SETTINGS["seed"] = config["wm.seed"]

    @hookimpl
    def comfykit_register_commands(cli):
        @cli.command("wm-seed")
        def wm_seed():
            # reads module state only: comfykit_configure must have run before the command
            click.echo(f"seed={SETTINGS['seed']}")
"""


def test_comfykit_configure_runs_before_a_plugin_command(install: Install, tmp_path: Path) -> None:
    install("ck-wm", "wm", "ck_wm", SETTINGS_PLUGIN)
    (tmp_path / "comfykit.yaml").write_text("wm:\n  seed: 42\n")
    run = CliRunner(cwd=tmp_path)
    assert run("wm-seed").stdout == "seed=42\n"
    assert run("-o", "wm.seed=7", "wm-seed").stdout == "seed=7\n"
    assert run("--option=wm.seed=8", "wm-seed").stdout == "seed=8\n"


def test_dash_o_sets_any_key_and_refuses_unknown_or_bad_ones(install: Install, tmp_path: Path) -> None:
    install("ck-wm", "wm", "ck_wm", SETTINGS_PLUGIN)
    run = CliRunner(cwd=tmp_path)
    values = run("-o", "wm.seed=3", "-o", "batch.max_concurrent=9", "config", "--json").json["values"]
    assert values["wm.seed"] == {"value": 3, "source": "argument"}
    assert values["batch.max_concurrent"]["value"] == 9
    unknown = run("-o", "batch.max_concurent=2", "config")
    assert unknown.exit_code == 1 and "batch.max_concurrent" in unknown.stderr
    bad = run("-o", "wm.seed=many", "wm-seed")
    assert bad.exit_code == 1 and "bad value for wm.seed" in bad.stderr
    assert run("-o", "plugins.disable=wm", "wm-seed").exit_code == 2  # -o plugins.* chooses the plugins too


def test_config_describe_lists_every_key_with_type_default_owner_and_help(install: Install, tmp_path: Path) -> None:
    install("ck-wm", "wm", "ck_wm", SETTINGS_PLUGIN)
    run = CliRunner(cwd=tmp_path)
    keys = {k["key"]: k for k in run("config", "--describe", "--json").json["keys"]}
    assert keys["wm.seed"] == {"key": "wm.seed", "type": "int", "default": None, "env": "COMFYKIT_WM_SEED",
                               "declared_by": "wm", "secret": False, "help": "Seed given to every sampler."}
    assert keys["batch.max_concurrent"]["declared_by"] == "comfykit"
    assert keys["output.naming"]["declared_by"] == "download"
    text = run("config", "--describe").stdout
    assert "wm.seed (int, default none, $COMFYKIT_WM_SEED, wm)\n    Seed given to every sampler.\n" in text


def test_plugins_hooks_lists_every_hookspec_with_signature_and_first_doc_line() -> None:
    listed = {h["name"]: h for h in CliRunner()("plugins", "--hooks", "--json").json["hooks"]}
    specs = {name: f for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("comfykit_")}
    assert set(listed) == set(specs)
    for name, function in specs.items():
        assert listed[name]["signature"] == f"{name}({', '.join(inspect.signature(function).parameters)})"
        assert listed[name]["doc"] == inspect.getdoc(function).splitlines()[0]
    assert listed["comfykit_should_retry"]["firstresult"] and listed["comfykit_add_config"]["historic"]
    text = CliRunner()("plugins", "--hooks").stdout
    assert "comfykit_should_retry(job, error, attempt)  [firstresult]\n" in text


def test_plugins_shows_distribution_and_version(install: Install) -> None:
    install("ck-wm", "wm", "ck_wm", SETTINGS_PLUGIN)
    result = CliRunner()("plugins")
    assert "wm  (ck-wm 2.5, entry point of ck-wm)\n" in result.stdout
    from comfykit import __version__

    assert f"monitor  (comfykit {__version__}, bundled)\n" in result.stdout


WORKFLOW = (
    '{"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 3}},'
    ' "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "cli"}}}'
)


def test_the_cli_fixture_runs_against_the_simulator_and_parses_json_events(comfykit_cli: CliRunner,
                                                                           tmp_path: Path) -> None:
    (tmp_path / "flow.json").write_text(WORKFLOW)
    result = comfykit_cli("--json", "send", "flow.json", "--wait")
    assert result.exit_code == 0, result
    kinds = [event["event"] for event in result.events]
    assert kinds[0] == "queued" and kinds[-1] == "completed"
    assert (tmp_path / "outputs").is_dir()  # runs start in the test's tmp_path
    down = comfykit_cli("--server", "http://127.0.0.1:9", "system")
    assert down.exit_code == 3 and "cannot reach" in down.stderr


@pytest.mark.comfykit_plugins("ck_wm")
def test_the_marker_makes_the_fixture_hermetic(install: Install, comfykit_cli: CliRunner) -> None:
    install("ck-wm", "wm", "ck_wm", SETTINGS_PLUGIN)
    install("ck-other", "other", "ck_other", SETTINGS_PLUGIN.replace("wm", "ot"))
    names = {p["name"] for p in comfykit_cli("--json", "plugins").json["plugins"]}
    assert "wm" in names and "other" not in names
