"""Loading a plugin as its author's tests do: installed and given again, by entry-point name, hermetically."""

from __future__ import annotations

import importlib
import logging

import pytest

from comfykit import ComfyUIClient
from comfykit.config import core_registry
from comfykit.errors import PluginError
from comfykit.plugins import get_plugin_manager
from comfykit.session import open_session
from comfykit.testing.cli_runner import CliRunner

from .conftest import Install

PLUGIN = """
    from comfykit import hookimpl

    @hookimpl
    def comfykit_add_config(registry):
        registry.add("stamp", "text", "ck", help="What gets stamped.")

    @hookimpl
    def comfykit_job_cancelled(job):
        pass
"""

BAD_DECLARATION = """
    from comfykit import hookimpl

    @hookimpl
    def comfykit_add_config(registry):
        registry.add("broken", "ok", 1)
        registry.add("broken", "shape", {}, type="dict")
"""


def test_a_module_given_again_after_its_entry_point_loaded_it_registers_once(install: Install) -> None:
    install("ck-stamp", "stamp", "ck_stamp", PLUGIN)
    module = importlib.import_module("ck_stamp")
    manager = get_plugin_manager(plugins=[module], enable=["ck_stamp"])
    assert [name for name, plugin in manager.plugins() if plugin is module] == ["stamp"]
    with ComfyUIClient(url="http://127.0.0.1:9", plugins=[module]) as client:
        assert client.config["stamp.text"] == "ck"


def test_dash_p_takes_entry_point_names_with_autoload_off(install: Install) -> None:
    install("ck-stamp", "stamp", "ck_stamp", PLUGIN)
    assert not get_plugin_manager(autoload=False).is_registered("stamp")
    manager = get_plugin_manager(autoload=False, enable=["stamp"])
    assert manager.is_registered("stamp") and manager.origins["stamp"] == "-p, entry point of ck-stamp"
    assert manager.distributions["stamp"] == ("ck-stamp", "2.5")


def test_dash_p_no_takes_the_module_name_too_and_warns_when_nothing_matches(
    install: Install, caplog: pytest.LogCaptureFixture
) -> None:
    install("ck-stamp", "stamp", "ck_stamp", PLUGIN)
    assert not get_plugin_manager(disable=["ck_stamp"]).is_registered("stamp")
    with caplog.at_level(logging.WARNING, logger="comfykit.plugins"):
        manager = get_plugin_manager(disable=["stmap"])
    assert manager.is_registered("stamp") and manager.unmatched_disables == ["stmap"]
    assert [r.getMessage() for r in caplog.records if "stmap" in r.getMessage()] == [
        "no plugin is called 'stmap', so disabling it (-p no:, plugins.disable, COMFYKIT_DISABLE_PLUGINS) "
        "does nothing; `comfykit plugins` lists the plugins' names"
    ]
    listing = CliRunner()("-p", "no:stmap", "plugins")
    assert listing.exit_code == 0 and "UNMATCHED no:stmap" in listing.stdout


def test_the_hermetic_mode_loads_only_the_named_third_party_plugins(
    install: Install, monkeypatch: pytest.MonkeyPatch
) -> None:
    install("ck-stamp", "stamp", "ck_stamp", PLUGIN)
    install("ck-other", "other", "ck_other", PLUGIN.replace('"stamp"', '"other"'))
    monkeypatch.setenv("COMFYKIT_PLUGINS", "stamp")
    manager = get_plugin_manager()
    assert manager.is_registered("stamp") and not manager.is_registered("other")
    assert manager.is_registered("monitor") and manager.is_registered("cli")  # bundled ones still load
    monkeypatch.setenv("COMFYKIT_PLUGINS", "")
    assert not get_plugin_manager().is_registered("stamp")
    # by module name, and the argument wins over the variable
    assert get_plugin_manager(only=["ck_other"]).is_registered("other")
    # naming a plugin does not undo disabling it, by either of its names
    assert not get_plugin_manager(only=["ck_other"], disable=["other"]).is_registered("ck_other")
    assert not get_plugin_manager(enable=["ck_other"], disable=["ck_other"]).is_registered("other")
    run = CliRunner(only_plugins=["ck_other"])("--json", "plugins")
    assert {"other"} == {p["name"] for p in run.json["plugins"]} & {"stamp", "other"}


def test_a_bad_key_declaration_is_that_plugins_load_failure(install: Install) -> None:
    install("ck-broken", "broken", "ck_broken", BAD_DECLARATION)
    install("ck-stamp", "stamp", "ck_stamp", PLUGIN)
    manager, config = open_session()
    assert not manager.is_registered("broken") and "broken.ok" not in config and config["stamp.text"] == "ck"
    [failure] = [f for f in manager.failures if f.name == "broken"]
    assert "unknown config type 'dict'" in failure.error and failure.origin == "entry point of ck-broken"
    result = CliRunner()("--json", "plugins")
    assert result.exit_code == 0
    assert [f["name"] for f in result.json["failures"]] == ["broken"]
    with pytest.raises(PluginError, match="plugin 'broken'"):
        get_plugin_manager(strict=True).add_config(core_registry())
