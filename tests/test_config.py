"""Configuration: file discovery, precedence, provenance, unknown keys, bad values, merging."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import yaml
from compat.folder import readme_config
from hypothesis import given, settings
from hypothesis import strategies as st

from comfykit.config import (
    ConfigRegistry,
    ConfigWarning,
    core_registry,
    find_config_file,
    load_config,
)
from comfykit.errors import ConfigError

# The original tool's config.yaml, exactly as users have it.
ORIGINAL_CONFIG = readme_config()


def test_defaults_without_any_file(tmp_path: Path) -> None:
    config = load_config(cwd=tmp_path, env={})
    assert config["comfyui.port"] == 8188
    assert config["batch.max_concurrent"] == 3
    assert config.source("comfyui.port").kind == "default"
    assert config.path is None


def test_the_original_config_yaml_is_accepted_as_is(tmp_path: Path) -> None:
    from comfykit.plugins import get_plugin_manager
    from comfykit.session import session_registry

    (tmp_path / "config.yaml").write_text(ORIGINAL_CONFIG)
    # Some of its sections (logging) belong to bundled plugins, which declare their keys.
    registry = session_registry(get_plugin_manager(autoload=False))
    with warnings_as_errors():
        config = load_config(cwd=tmp_path, env={}, registry=registry)
    assert config.path == tmp_path / "config.yaml"
    assert config["comfyui.timeout"] == 300.0
    assert config["websocket.reconnect_delay"] == 2.0
    assert config["logging.file"] == "./comfyui_api.log"
    assert config.section("output") ["output_dir"] == "./outputs"
    assert config.source("batch.max_retries").detail.endswith("config.yaml:24")


def test_config_yaml_without_comfyui_section_is_not_ours(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("something: else\n")
    assert find_config_file(cwd=tmp_path) is None


def test_comfykit_yaml_wins_over_config_yaml(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(ORIGINAL_CONFIG)
    (tmp_path / "comfykit.yaml").write_text("comfyui:\n  port: 9000\n")
    config = load_config(cwd=tmp_path, env={})
    assert config["comfyui.port"] == 9000


def test_user_config_dir_is_the_last_resort(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xdg = tmp_path / "xdg"
    (xdg / "comfykit").mkdir(parents=True)
    (xdg / "comfykit" / "comfykit.yaml").write_text("batch:\n  max_retries: 7\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    work = tmp_path / "work"
    work.mkdir()
    assert load_config(cwd=work, env={})["batch.max_retries"] == 7


def test_explicit_path_and_comfykit_config_env(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.yaml"
    path.write_text("comfyui:\n  host: gpu.local\n")
    assert load_config(path=path, env={})["comfyui.host"] == "gpu.local"
    assert load_config(env={"COMFYKIT_CONFIG": str(path)}, cwd=tmp_path)["comfyui.host"] == "gpu.local"
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_config(path=tmp_path / "missing.yaml", env={})
    assert info.value.hint


def test_precedence_arguments_over_env_over_file_over_defaults(tmp_path: Path) -> None:
    (tmp_path / "comfykit.yaml").write_text("comfyui:\n  port: 1111\n  host: filehost\n  protocol: https\n")
    env = {"COMFYKIT_COMFYUI_PORT": "2222", "COMFYKIT_COMFYUI_HOST": "envhost"}
    config = load_config(cwd=tmp_path, env=env, overrides={"comfyui.port": 3333})
    assert config["comfyui.port"] == 3333
    assert config.source("comfyui.port").kind == "argument"
    assert config["comfyui.host"] == "envhost"
    assert config.source("comfyui.host").kind == "env"
    assert config.source("comfyui.host").detail == "COMFYKIT_COMFYUI_HOST"
    assert config["comfyui.protocol"] == "https"
    assert config.source("comfyui.protocol").kind == "file"
    assert config["comfyui.timeout"] == 300.0


def test_comfykit_url_sets_the_server(tmp_path: Path) -> None:
    config = load_config(cwd=tmp_path, env={"COMFYKIT_URL": "https://gpu.example/comfy"})
    assert config["comfyui.url"] == "https://gpu.example/comfy"


def test_unknown_key_warns_once_through_logging_with_the_closest_valid_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "comfykit.yaml").write_text("output:\n  outptu_dir: x\nbatch:\n  max_concurent: 2\n")
    with warnings_as_errors(), caplog.at_level(logging.WARNING, logger="comfykit.config"):
        config = load_config(cwd=tmp_path, env={})
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 2
    assert any("output.outptu_dir" in m and "output.output_dir" in m and ":2:" in m for m in messages)
    assert any("batch.max_concurrent" in m for m in messages)
    assert config["output.output_dir"] == "./outputs"


def test_bad_value_names_key_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "comfykit.yaml"
    path.write_text("comfyui:\n  host: x\n  port: eighty\n")
    with pytest.raises(ConfigError) as info:
        load_config(cwd=tmp_path, env={})
    error = info.value
    assert error.key == "comfyui.port"
    assert error.line == 3
    assert f"{path}:3" in str(error)


def test_bad_env_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="COMFYKIT_BATCH_MAX_RETRIES"):
        load_config(cwd=tmp_path, env={"COMFYKIT_BATCH_MAX_RETRIES": "many"})


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "comfykit.yaml").write_text("comfyui:\n  host: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML") as info:
        load_config(cwd=tmp_path, env={})
    assert info.value.line is not None


def test_a_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    (tmp_path / "comfykit.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_config(cwd=tmp_path, env={})


def test_secrets_are_redacted(tmp_path: Path) -> None:
    config = load_config(cwd=tmp_path, env={"COMFYKIT_COMFYUI_TOKEN": "s3cret", "COMFYKIT_COMFYUI_API_KEY": "k"})
    assert config["comfyui.token"] == "s3cret"
    shown = config.redacted()
    assert shown["comfyui.token"] == "***"
    assert shown["comfyui.api_key"] == "***"
    assert "s3cret" not in repr(shown)


def test_plugin_declared_keys_and_servers_list(tmp_path: Path) -> None:
    registry = core_registry()
    registry.add("webhook", "url", None, type="str", help="Where to post.")
    registry.add("webhook", "retries", 2)
    (tmp_path / "comfykit.yaml").write_text(
        "webhook:\n  url: http://127.0.0.1:9/hook\nservers:\n  - http://a:8188\n  - {url: http://b:8188, weight: 2}\n"
    )
    config = load_config(cwd=tmp_path, env={"COMFYKIT_WEBHOOK_RETRIES": "5"}, registry=registry)
    assert config.section("webhook") == {"url": "http://127.0.0.1:9/hook", "retries": 5}
    assert config["servers"][1] == {"url": "http://b:8188", "weight": 2}


def test_conflicting_declarations_are_refused() -> None:
    registry = ConfigRegistry()
    registry.add("x", "y", 1)
    registry.add("x", "y", 1)  # identical is fine
    with pytest.raises(ConfigError, match="declared twice"):
        registry.add("x", "y", "other")


def test_unknown_override_key_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(cwd=tmp_path, env={}, overrides={"comfyui.prot": 1})
    assert info.value.hint is not None and "comfyui.port" in info.value.hint


def test_every_core_key_has_help_and_an_env_variable() -> None:
    for key in core_registry():
        assert key.help, key.dotted
        assert key.env_var.startswith("COMFYKIT_")


class warnings_as_errors:
    """Fail the test if loading emits a ConfigWarning."""

    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("error", ConfigWarning)

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


# ---------------------------------------------------------------- hypothesis: merging

INT_KEYS = ["comfyui.port", "batch.max_concurrent", "batch.max_retries", "websocket.reconnect_attempts"]
layer = st.dictionaries(st.sampled_from(INT_KEYS), st.integers(min_value=0, max_value=10**6), max_size=4)


@settings(max_examples=60, deadline=None)
@given(file_layer=layer, env_layer=layer, arg_layer=layer)
def test_merging_respects_precedence_for_any_layers(
    tmp_path_factory: pytest.TempPathFactory,
    file_layer: dict[str, int],
    env_layer: dict[str, int],
    arg_layer: dict[str, int],
) -> None:
    directory = tmp_path_factory.mktemp("cfg")
    nested: dict[str, dict[str, int]] = {}
    for dotted, value in file_layer.items():
        section, key = dotted.split(".")
        nested.setdefault(section, {})[key] = value
    (directory / "comfykit.yaml").write_text(yaml.safe_dump(nested))
    env = {"COMFYKIT_" + k.replace(".", "_").upper(): str(v) for k, v in env_layer.items()}
    config = load_config(cwd=directory, env=env, overrides=dict(arg_layer))
    defaults = {k.dotted: k.default for k in config.registry}
    for key in INT_KEYS:
        expected = arg_layer.get(key, env_layer.get(key, file_layer.get(key, defaults[key])))
        assert config[key] == expected
        if key in arg_layer:
            kind = "argument"
        elif key in env_layer:
            kind = "env"
        else:
            kind = "file" if key in file_layer else "default"
        assert config.source(key).kind == kind


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=200))
def test_any_file_content_loads_or_raises_config_error(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    import warnings

    directory = tmp_path_factory.mktemp("fuzz")
    (directory / "comfykit.yaml").write_text(text, encoding="utf-8", errors="surrogatepass")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)
        try:
            load_config(cwd=directory, env={})
        except ConfigError:
            pass


def test_env_var_names_do_not_collide() -> None:
    names = [key.env_var for key in core_registry()]
    assert len(names) == len(set(names))
    assert os.sep not in "".join(names)


# --------------------------------------------------------------------------- keys owned by plugins


def _keys_declared_by(plugin: object) -> set[str]:
    registry = ConfigRegistry()
    plugin.comfykit_add_config(registry=registry)  # type: ignore[attr-defined]
    return {key.dotted for key in registry}


def test_each_bundled_plugin_declares_the_keys_it_reads_and_core_keeps_its_own() -> None:
    import comfykit_download
    import comfykit_metadata
    import comfykit_monitor

    core = {key.dotted for key in core_registry()}
    monitor = _keys_declared_by(comfykit_monitor)
    download = _keys_declared_by(comfykit_download)
    metadata = _keys_declared_by(comfykit_metadata)
    assert {"websocket.enable", "websocket.reconnect_attempts", "websocket.reconnect_delay",
            "websocket.max_frame_size", "websocket.ping_interval"} == monitor
    assert {"output.download_results", "output.naming", "output.concurrent_downloads"} <= download
    assert {"output.save_metadata", "output.manifest", "output.embed_png_metadata"} == metadata
    assert not core & (monitor | download | metadata)
    # What core code reads stays core's: the polling source, the output selection, the shared folder.
    assert {"websocket.poll_interval", "output.sinks", "output.include_temp", "output.output_dir",
            "workflow.validate_before_send", "workflow.object_info", "workflow.templates_dir"} <= core
    assert "workflow.workflows_dir" not in core  # never read by anything


def test_the_original_config_loads_silently_in_a_session_with_the_bundled_plugins(tmp_path: Path) -> None:
    from comfykit.plugins import open_session

    path = tmp_path / "config.yaml"
    path.write_text(ORIGINAL_CONFIG)
    with warnings_as_errors():
        _, config = open_session(path)
    assert config["websocket.reconnect_attempts"] == 5 and config.source("websocket.enable").kind == "file"
    assert config["output.download_results"] is True and config["output.save_metadata"] is True
    auto_queue = config.registry.get("workflow.auto_queue")
    assert config["workflow.auto_queue"] is True and auto_queue is not None and "no effect" in auto_queue.help


def test_with_a_plugin_disabled_its_keys_in_the_file_are_accepted_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from comfykit.plugins import open_session

    path = tmp_path / "config.yaml"
    path.write_text(ORIGINAL_CONFIG + "watermark:\n  seed: 4\nstray:\n  key: 1\n")
    with warnings_as_errors(), caplog.at_level(logging.DEBUG, logger="comfykit.config"):
        _, config = open_session(path, plugin_options=["no:monitor", "no:watermark"])
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name == "comfykit.config"]
    # Only the key no plugin, loaded or disabled, could own is warned about, once.
    assert len(warned) == 1 and "'stray.key'" in warned[0] and "config.yaml:" in warned[0]
    quiet = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
    assert "websocket.enable" in quiet and "watermark.seed" in quiet
    assert "websocket.enable" not in config and config["websocket.poll_interval"] == 0.05
    assert config["output.download_results"] is True  # the other plugins' keys are read as usual


def test_plugin_keys_can_be_set_before_any_client_exists(tmp_path: Path) -> None:
    config = load_config(cwd=tmp_path, env={"COMFYKIT_WEBSOCKET_ENABLE": "0"}, overrides={"output.naming": "{filename}"})
    assert config["websocket.enable"] is False and config.source("websocket.enable").kind == "env"
    assert config["output.naming"] == "{filename}"


def test_a_type_name_that_does_not_exist_is_refused_with_the_choices() -> None:
    with pytest.raises(ConfigError) as info:
        ConfigRegistry().add("x", "y", 1, type="integer")  # type: ignore[arg-type]
    assert info.value.hint is not None and "int" in info.value.hint


def test_plugin_names_must_be_names(tmp_path: Path) -> None:
    (tmp_path / "comfykit.yaml").write_text("plugins:\n  disable: [{a: 1}]\n")
    with pytest.raises(ConfigError) as info:
        load_config(cwd=tmp_path, env={})
    assert info.value.key == "plugins.disable" and info.value.line == 2


def test_the_environment_given_is_the_one_whose_comfykit_config_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text("comfyui:\n  port: 1234\n")
    monkeypatch.setenv("COMFYKIT_CONFIG", str(elsewhere))
    assert load_config(cwd=tmp_path, env={})["comfyui.port"] == 8188  # env={}: the process's variable is not read
    assert load_config(cwd=tmp_path, env={"COMFYKIT_CONFIG": str(elsewhere)})["comfyui.port"] == 1234
    assert load_config(cwd=tmp_path)["comfyui.port"] == 1234
