"""One test per editor rule of FRONTEND-RULES.md, on small graphs of our own, plus frontend selection."""

from __future__ import annotations

import functools
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from comfykit import ComfyUIClient
from comfykit.errors import ConversionError
from comfykit.testing import ComfyUISimulator
from comfykit.workflow import load_workflow
from comfykit_convert import DEFAULT_FRONTEND, FrontendGuessWarning, rules_for, ui_to_api

_CODECS = {"key": "h264", "inputs": {"required": {"crf": ["FLOAT", {"default": 23.0}]},
                                     "optional": {"seed": ["INT", {"default": 0}]}}}
INFO: dict[str, Any] = {
    "Save": {  # a dynamic combo whose options nest another one
        "input": {"required": {
            "video": ["VIDEO", {}],
            "prefix": ["STRING", {"default": "out"}],
            "format": ["COMFY_DYNAMICCOMBO_V3", {"default": "mp4", "options": [
                {"key": "auto", "inputs": {"required": {}}},
                {"key": "mp4", "inputs": {"required": {
                    "codec": ["COMFY_DYNAMICCOMBO_V3", {"options": [{"key": "auto", "inputs": {}}, _CODECS]}],
                    "audio": ["AUDIO", {}]}}},
            ]}],
            "quality": ["INT", {"default": 5}],
        }},
        "input_order": {"required": ["video", "prefix", "format", "quality"]},
        "output": [], "name": "Save", "display_name": "Save",
    },
    "Source": {"input": {"required": {}}, "output": ["VIDEO", "AUDIO"], "name": "Source", "display_name": "Source"},
    "Compare": {"input": {"required": {"view": ["IMAGECOMPARE", {}], "tint": ["COLOR", {}]},
                          "optional": {"boxes": ["BOUNDING_BOXES", {"default": []}], "size": ["FLOAT,INT", {
                              "widgetType": "FLOAT", "default": 2.0}]}},
                "output": [], "name": "Compare", "display_name": "Compare"},
    "PreviewAny": {"input": {"required": {"source": ["*", {}]}}, "output": [], "name": "PreviewAny",
                   "display_name": "Preview Any"},
    "LoadAudio": {"input": {"required": {"audio": [["a.mp3"], {"audio_upload": True}]}}, "output": ["AUDIO"],
                  "name": "LoadAudio", "display_name": "Load Audio"},
    "LoadOut": {"input": {"required": {"image": ["COMBO", {"options": ["o.png"], "image_upload": True,
                                                            "remote": {"route": "/x", "refresh_button": True}}]}},
                "output": ["IMAGE"], "name": "LoadOut", "display_name": "Load Output"},
    "CustomCombo": {"input": {"required": {"choice": ["COMBO", {"options": []}]}}, "output": ["COMBO"],
                    "name": "CustomCombo", "display_name": "Custom Combo"},
    "Preview3DAdvanced": {"input": {"required": {"viewport_state": ["LOAD_3D", {}], "width": ["INT", {"default": 8}]}},
                          "output": [], "name": "Preview3DAdvanced", "display_name": "Preview 3D (Advanced)"},
    "Num": {"input": {"required": {"seed": ["INT", {"default": 1}], "steps": ["INT", {"default": 20}]}},
            "output": ["INT"], "name": "Num", "display_name": "Num"},
    "Forced": {"input": {"required": {"a": ["INT", {}], "b": ["INT", {"forceInput": True}], "c": ["FLOAT", {}]}},
               "output": [], "name": "Forced", "display_name": "Forced"},
}


def _node(node_id: int, kind: str, widgets: Any = None, inputs: Any = (), mode: int = 0, **extra: Any) -> dict[str, Any]:
    node = {"id": node_id, "type": kind, "mode": mode, "order": node_id, "properties": {},
            "inputs": [{"name": n, "type": t, "link": link} for n, t, link in inputs], "outputs": [], **extra}
    if widgets is not None:
        node["widgets_values"] = widgets
    return node


def _ui(*nodes: dict[str, Any], links: Any = (), **extra: Any) -> dict[str, Any]:
    return {"last_node_id": 50, "nodes": list(nodes), "links": list(links), "version": 0.4, **extra}


def _inputs(ui: dict[str, Any], node: str, frontend: str = "1.49.6", info: Any = None) -> dict[str, Any]:
    return ui_to_api(ui, info or INFO, frontend_version=frontend)[node]["inputs"]


def test_dynamic_combo_children_follow_their_parent_depth_first_and_take_the_next_slots() -> None:
    ui = _ui(_node(1, "Source"), _node(2, "Save", ["clip", "mp4", "h264", 18.0, 7, 9], inputs=[("video", "VIDEO", 1)]),
             links=[[1, 1, 0, 2, 0, "VIDEO"]])
    inputs = _inputs(ui, "2")
    assert list(inputs) == ["prefix", "format", "format.codec", "format.codec.crf", "format.codec.seed", "quality", "video"]
    # format.codec.seed is no seed widget of its own: no control_after_generate slot after it
    assert inputs == {"prefix": "clip", "format": "mp4", "format.codec": "h264", "format.codec.crf": 18.0,
                      "format.codec.seed": 7, "quality": 9, "video": ["1", 0]}


def test_dynamic_combo_defaults_to_its_first_key_and_a_stale_value_has_no_children() -> None:
    fresh = _inputs(_ui(_node(2, "Save", ["clip"])), "2")
    assert fresh == {"prefix": "clip", "format": "auto", "quality": 5}  # the first key, not the spec's default
    stale = _ui(_node(1, "Source"), _node(2, "Save", ["clip", "webm", 3],
                                          inputs=[("format.audio", "AUDIO", 1), ("video", "VIDEO", None)]),
                links=[[1, 1, 1, 2, 0, "AUDIO"]])
    # "webm" is no option: no children, the next value lands on quality, and the link into a
    # child the option does not define is dropped
    assert _inputs(stale, "2") == {"prefix": "clip", "format": "webm", "quality": 3}
    kept = _ui(_node(1, "Source"), _node(2, "Save", ["clip", "mp4", "auto", 3], inputs=[("format.audio", "AUDIO", 1)]),
               links=[[1, 1, 1, 2, 0, "AUDIO"]])
    assert _inputs(kept, "2")["format.audio"] == ["1", 1]


def test_on_1_27_a_dynamic_combo_is_no_widget() -> None:
    assert _inputs(_ui(_node(2, "Save", ["clip", 4])), "2", "1.27.10") == {"prefix": "clip", "quality": 4}


def test_widget_types_new_in_1_49_and_widget_type_option() -> None:
    ui = _ui(_node(3, "Compare", ["#ff0000", [{"x": 1}], 3.5]))
    # IMAGECOMPARE takes no slot and always sends two empty names; lists are boxed
    assert _inputs(ui, "3") == {"view": {"__value__": ["", ""]}, "tint": "#ff0000", "boxes": {"__value__": [{"x": 1}]},
                                "size": 3.5}
    assert _inputs(_ui(_node(3, "Compare", [])), "3") == {"view": {"__value__": ["", ""]}, "tint": "#000000",
                                                           "boxes": {"__value__": []}, "size": 2.0}


def test_extension_widgets_differ_by_frontend() -> None:
    ui = _ui(_node(1, "LoadAudio", ["a.mp3", None, None]), _node(2, "PreviewAny", [], inputs=[("source", "*", 5)]),
             _node(3, "Num", [4, "fixed", 9]), links=[[5, 3, 0, 2, 0, "*"]])
    old = ui_to_api(ui, INFO, frontend_version="1.27.10")
    assert old["1"]["inputs"] == {"audio": "a.mp3", "audioUI": ""}
    assert old["2"]["inputs"] == {"preview": "", "source": ["3", 0]}
    new = ui_to_api(ui, INFO, frontend_version="1.49.6")
    assert new["1"]["inputs"] == {"audio": "a.mp3"} and new["2"]["inputs"] == {"source": ["3", 0]}


def test_values_an_older_editor_saved_for_force_input_inputs_are_dropped() -> None:
    # migrateWidgetsValues: three values for a, b (forceInput) and c: b's is dropped
    assert _inputs(_ui(_node(1, "Forced", [1, 2, 3.5])), "1") == {"a": 1, "c": 3.5}
    # two values: nothing to migrate
    assert _inputs(_ui(_node(1, "Forced", [1, 3.5])), "1") == {"a": 1, "c": 3.5}


def test_remote_combo_refresh_button_is_sent_and_the_toggle_and_upload_are_not() -> None:
    ui = _ui(_node(1, "LoadOut", ["o.png [output]", False, "refresh", "image"]))
    assert _inputs(ui, "1") == {"image": "o.png [output]", "refresh": "refresh"}


def test_custom_combo_index_and_growing_options() -> None:
    ui = _ui(_node(1, "CustomCombo", ["b", 7, "a", "b", ""]))
    assert _inputs(ui, "1") == {"choice": "b", "index": 1, "option1": "a", "option2": "b", "option3": ""}
    assert _inputs(_ui(_node(1, "CustomCombo", ["z", 0, "a"])), "1")["index"] == -1


def test_viewport_state_is_rebuilt_from_the_camera_config() -> None:
    camera = {"position": {"x": 1}, "zoom": 2}
    ui = _ui(_node(1, "Preview3DAdvanced", ["", 16], properties={"Camera Config": {"state": camera}}))
    inputs = _inputs(ui, "1")
    assert inputs["viewport_state"] == {"image": "", "mask": "", "normal": "", "camera_info": camera, "recording": "",
                                        "model_3d_info": []}
    assert inputs["width"] == 16
    default = _inputs(_ui(_node(1, "Preview3DAdvanced", ["", 16])), "1")["viewport_state"]["camera_info"]
    assert default["cameraType"] == "perspective" and default["fov"] == 35


def _with_subgraph(instance_values: Any, *, nested_mode: int = 0) -> dict[str, Any]:
    """Root instance 10 of definition A; A holds Num 1 (seed, steps promoted) and a nested instance 2 of B."""
    def definition(sub_id: str, nodes: list[Any], links: list[Any], inputs: list[Any]) -> dict[str, Any]:
        return {"id": sub_id, "name": sub_id, "nodes": nodes, "links": links, "inputs": inputs, "outputs": []}

    b = definition("bbbbbbbb-0000-4000-8000-000000000002", [_node(1, "Num", [5, "fixed", 6])], [], [])
    a = definition("aaaaaaaa-0000-4000-8000-000000000001", [
        _node(1, "Num", [1, "fixed", 2], inputs=[("seed", "INT", 31), ("steps", "INT", 32)]),
        _node(2, b["id"], mode=nested_mode),
    ], [{"id": 31, "origin_id": -10, "origin_slot": 0, "target_id": 1, "target_slot": 0, "type": "INT"},
        {"id": 32, "origin_id": -10, "origin_slot": 1, "target_id": 1, "target_slot": 1, "type": "INT"}],
        [{"name": "seed", "type": "INT", "linkIds": [31]}, {"name": "steps", "type": "INT", "linkIds": [32]}])
    for entry in a["nodes"][0]["inputs"]:
        entry["widget"] = {"name": entry["name"]}
    root = _node(10, a["id"], instance_values, inputs=[("seed", "INT", None), ("steps", "INT", None)])
    return _ui(root, definitions={"subgraphs": [a, b]}, last_node_id=10)


def test_promoted_values_take_one_slot_each_without_companions() -> None:
    assert _inputs(_with_subgraph([11, 12]), "10:1") == {"seed": 11, "steps": 12}
    # fewer saved values: the inner widget keeps its own
    assert _inputs(_with_subgraph([11]), "10:1") == {"seed": 11, "steps": 2}


def test_a_nested_muted_instance_still_runs_on_1_49_only() -> None:
    ui = _with_subgraph([], nested_mode=2)
    # (1.49 also renumbers B's node 1, which A's node 1 already uses, past last_node_id)
    assert "10:2:11" in ui_to_api(ui, INFO, frontend_version="1.49.6")
    assert set(ui_to_api(ui, INFO, frontend_version="1.27.10")) == {"10:1"}


def test_what_the_editor_would_not_know_is_an_error_naming_the_node() -> None:
    missing_link = _ui(_node(2, "Save", ["x"], inputs=[("video", "VIDEO", 7)], title="Final"),
                       links=[[7, 44, 0, 2, 0, "VIDEO"]])
    with pytest.raises(ConversionError, match=r"node 2 \(Save 'Final'\).*node 44") as caught:
        ui_to_api(missing_link, INFO, frontend_version="1.49.6", source="w.json")
    assert caught.value.node_id == "2" and caught.value.hint
    with pytest.raises(ConversionError, match=r"node 3 \(Nope 'Mine'\).*'Nope'"):
        ui_to_api(_ui(_node(3, "Nope", title="Mine")), INFO, frontend_version="1.49.6")


def test_rules_for_picks_the_newest_known_not_newer_than_asked() -> None:
    assert rules_for("1.27.10").version == "1.27.10"
    assert rules_for("1.30.2").version == "1.27.10"
    assert rules_for("1.49.6").version == "1.49.6" == rules_for("2.0.0").version
    assert rules_for("1.2.0").version == "1.27.10"  # older than all: the oldest rules
    assert rules_for(None).version == DEFAULT_FRONTEND


def test_without_a_frontend_the_newest_rules_are_used_with_a_warning() -> None:
    with pytest.warns(FrontendGuessWarning, match=DEFAULT_FRONTEND):
        api = ui_to_api(_ui(_node(1, "LoadAudio", ["a.mp3"])), INFO)
    assert api["1"]["inputs"] == {"audio": "a.mp3"}
    with pytest.warns(FrontendGuessWarning, match=r"no rules for frontend 1\.30\.0.*1\.27\.10"):
        api = ui_to_api(_ui(_node(1, "LoadAudio", ["a.mp3"])), INFO, frontend_version="1.30.0")
    assert api["1"]["inputs"] == {"audio": "a.mp3", "audioUI": ""}


def _preview_workflow(tmp_path: Path) -> Path:
    ui = _ui(_node(1, "PrimitiveStringMultiline", ["hi"]), _node(2, "PreviewAny", [], inputs=[("source", "*", 5)]),
             links=[[5, 1, 0, 2, 0, "STRING"]])
    path = tmp_path / "ui.json"
    path.write_text(json.dumps(ui))
    return path


@pytest.mark.parametrize(("server", "frontend"), [("0.3.64", "1.27.10"), ("0.33.0", "1.49.6")])
def test_a_client_follows_the_frontend_its_server_expects(tmp_path: Path, server: str, frontend: str) -> None:
    path = _preview_workflow(tmp_path)
    with ComfyUISimulator(port=0, comfyui_version=server, root=tmp_path / "sim") as sim, \
            ComfyUIClient(url=sim.url, plugin_options=["no:monitor"]) as client:
        assert client.required_frontend_version() == frontend
        with warnings.catch_warnings():
            warnings.simplefilter("error", FrontendGuessWarning)  # the server said which: no guess
            api = load_workflow(path, client=client)
    # only 1.27's PreviewAny extension adds the sent 'preview' widget
    assert ("preview" in api["2"]["inputs"]) == (frontend == "1.27.10")


def test_cli_convert_offline_takes_frontend(tmp_path: Path) -> None:
    from comfykit.testing.catalog import load_object_info
    from comfykit_cli import build_cli

    path = _preview_workflow(tmp_path)
    info = tmp_path / "object_info.json"
    info.write_text(json.dumps(load_object_info("0.3.64")))
    runner = CliRunner()
    cli = build_cli()
    old = runner.invoke(cli, ["convert", str(path), "--object-info", str(info), "--frontend", "1.27.10"])
    assert old.exit_code == 0, old.output
    assert json.loads(old.stdout)["2"]["inputs"]["preview"] == ""
    new = runner.invoke(cli, ["convert", str(path), "--object-info", str(info), "--frontend", "1.49.6"])
    assert new.exit_code == 0, new.output
    assert "preview" not in json.loads(new.stdout)["2"]["inputs"]


def test_without_the_convert_plugin_an_editor_workflow_is_a_clear_error(tmp_path: Path) -> None:
    from comfykit.plugins import open_session

    manager = open_session(plugin_options=["no:convert"])[0]
    with pytest.raises(ConversionError, match="no installed plugin converts") as caught:
        load_workflow(_preview_workflow(tmp_path), object_info=INFO, plugin_manager=manager)
    assert "no:convert" in (caught.value.hint or "")


_values = st.lists(st.one_of(st.sampled_from(["auto", "mp4", "h264", "webm", "", "x"]), st.integers(-5, 50),
                             st.floats(allow_nan=False, width=32), st.none(), st.booleans(),
                             st.lists(st.integers(), max_size=2)), max_size=9)


@settings(max_examples=300, deadline=None)
@given(values=_values, linked=st.sets(st.sampled_from(["format.audio", "format.codec.crf", "format.x", "video"])))
def test_random_widget_lists_on_dynamic_combos_never_shift_values_into_foreign_names(
    values: list[Any], linked: set[str]
) -> None:
    links = [[i + 1, 1, 0, 2, i, "*"] for i in range(len(linked))]
    node = _node(2, "Save", values, inputs=[(name, "*", i + 1) for i, name in enumerate(sorted(linked))])
    try:
        api = ui_to_api(_ui(_node(1, "Source"), node, links=links), INFO, frontend_version="1.49.6")
    except ConversionError:
        return
    inputs = api["2"]["inputs"]
    allowed = {"video", "prefix", "format", "quality"}
    if inputs.get("format") == "mp4":
        allowed |= {"format.codec", "format.audio"}
        if inputs.get("format.codec") == "h264":
            allowed |= {"format.codec.crf", "format.codec.seed"}
    assert set(inputs) <= allowed
    assert inputs.get("format") == (values[1] if len(values) > 1 else "auto") or not isinstance(inputs.get("format"), str)


def test_a_saved_camera_comes_back_as_the_viewer_restores_it() -> None:
    """OrbitControls.update + lookAt, repeated in double precision: last bits as the editor's."""
    state = {"position": {"x": -4.993544331452558, "y": 0.7154650457579443, "z": 2.460673019613121},
             "target": {"x": -0.18539216968998096, "y": -0.12940291071409174, "z": 0.060075853302763965},
             "quaternion": {"x": 0, "y": 0, "z": 0, "w": 1}, "zoom": 1}
    ui = _ui(_node(1, "Preview3DAdvanced", ["", 16], properties={"Camera Config": {"state": state}}))
    camera = _inputs(ui, "1")["viewport_state"]["camera_info"]
    assert camera["position"] == {"x": -4.993544331452557, "y": 0.7154650457579443, "z": 2.460673019613121}
    assert camera["target"] == {"x": -0.18539216968998093, "y": -0.12940291071409174, "z": 0.06007585330276396}
    assert camera["quaternion"] == {"x": -0.06624370863685092, "y": -0.5243794928018769, "z": -0.040967371110791184,
                                    "w": 0.8479148501466129}
    assert camera["zoom"] == 1


def _possible_names(inputs: Any, prefix: str = "") -> set[str]:
    """Every input name a spec section tree can give rise to, dynamic-combo children included."""
    names: set[str] = set()
    for section in ("required", "optional"):
        for name, spec in ((inputs or {}).get(section) or {}).items():
            names.add(prefix + name)
            if isinstance(spec, list) and spec and spec[0] == "COMFY_DYNAMICCOMBO_V3":
                for option in spec[1].get("options", []):
                    names |= _possible_names(option.get("inputs"), f"{prefix}{name}.")
    return names


_DYNAMIC_CLASSES = ["SaveVideo", "ResizeImageMaskNode", "TextGenerate", "SaveAudioAdvanced", "SaveImageAdvanced"]
_WIDGET_TYPES = {"STRING", "INT", "FLOAT", "COMBO", "BOOLEAN", "COMFY_DYNAMICCOMBO_V3"}


@functools.cache
def _catalogue_0_33() -> dict[str, Any]:
    from comfykit.testing.catalog import load_object_info

    return load_object_info("0.33.0")


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(_DYNAMIC_CLASSES), values=_values)
def test_random_widget_lists_on_real_dynamic_combo_classes_stay_within_their_inputs(kind: str, values: list[Any]) -> None:
    info = _catalogue_0_33()
    try:
        inputs = _inputs(_ui(_node(1, kind, values)), "1", info=info)
    except ConversionError:
        return
    assert set(inputs) <= _possible_names(info[kind]["input"])
    # the first value always lands on the first widget, whatever follows
    required = info[kind]["input"]["required"]
    first = next(n for n in info[kind]["input_order"]["required"]
                 if isinstance(required[n][0], list) or required[n][0] in _WIDGET_TYPES)
    if values and values[0] is not None and not isinstance(values[0], list):
        assert inputs[first] == values[0]
