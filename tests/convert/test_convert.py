"""Editor (UI-format) workflows convert to the API graph the editor's own "Export (API)" makes."""

from __future__ import annotations

import copy
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comfykit import ComfyUIClient
from comfykit.errors import ComfyKitError, ConversionError
from comfykit.testing import ComfyUISimulator
from comfykit.testing.catalog import load_object_info
from comfykit.workflow import load_workflow
from comfykit_convert import ui_to_api


def _shared_pairs() -> Path:
    if os.environ.get("COMFYKIT_SHARED"):
        return Path(os.environ["COMFYKIT_SHARED"]) / "ui-to-api"
    # ../shared beside the checkout (or beside the folder holding git worktrees).
    here = Path(__file__).resolve()
    candidates = [here.parents[3] / "shared" / "ui-to-api", here.parents[4] / "shared" / "ui-to-api"]
    return next((c for c in candidates if c.is_dir()), candidates[0])


PAIRS = _shared_pairs()
#: pair folder -> (ComfyUI version whose catalogue the simulator ships, the frontend it expects)
FOLDERS = {"fe-1.27.10": ("0.3.64", "1.27.10"), "fe-1.49.6": ("0.33.0", "1.49.6")}


def _pair_names() -> list[str]:
    found = [f"{folder}/{p.name.removesuffix('.ui.json')}" for folder in FOLDERS
             for p in sorted((PAIRS / folder).glob("*.ui.json"))]
    return found or ["<absent>"]


@pytest.mark.parametrize("name", _pair_names())
def test_real_editor_exports_are_reproduced(name: str) -> None:
    if name == "<absent>":
        pytest.skip(f"{PAIRS} has no pairs (set COMFYKIT_SHARED to the shared folder)")
    folder = name.split("/")[0]
    server, frontend = FOLDERS[folder]
    ui = json.loads((PAIRS / f"{name}.ui.json").read_text(encoding="utf-8"))
    expected = json.loads((PAIRS / f"{name}.api.json").read_text(encoding="utf-8"))
    api = ui_to_api(ui, load_object_info(server), source=name, frontend_version=frontend)
    assert api == expected
    assert list(api) == list(expected)  # the same key order too, so saved files diff cleanly
    for node_id, entry in api.items():
        assert list(entry["inputs"]) == list(expected[node_id]["inputs"]), node_id


# ---------------------------------------------------------------------- a small catalogue of our own

INFO: dict[str, Any] = {
    "Loader": {
        "input": {"required": {"ckpt_name": [["a.ckpt", "b.ckpt"]]}},
        "output": ["MODEL", "CLIP"], "name": "Loader", "display_name": "Load It",
    },
    "Sampler": {
        "input": {
            "required": {
                "model": ["MODEL"],
                "seed": ["INT", {"default": 0, "control_after_generate": True}],
                "steps": ["INT", {"default": 20}],
                "sampler": ["COMBO", {"options": ["euler", "heun"]}],
            },
            "optional": {"denoise": ["FLOAT", {"default": 1.0}], "extra": ["MODEL"]},
        },
        "output": ["MODEL"], "name": "Sampler", "display_name": "Sample",
    },
    "OldSeed": {
        "input": {"required": {"noise_seed": ["INT", {}], "cfg": ["FLOAT", {"default": 7.5}]}},
        "output": ["NOISE"], "name": "OldSeed",
    },
    "Text": {
        "input": {"required": {"text": ["STRING", {"multiline": True, "dynamicPrompts": True}], "clip": ["CLIP"]}},
        "output": ["CONDITIONING"], "name": "Text", "display_name": "Encode",
    },
    "Filter": {
        "input": {"required": {"model": ["MODEL"], "strength": ["FLOAT", {"default": 1.0}]}},
        "output": ["MODEL"], "name": "Filter", "display_name": "Filter",
    },
    "Save": {
        "input": {"required": {"model": ["MODEL"], "prefix": ["STRING", {"default": "out"}]},
                  "optional": {"cond": ["CONDITIONING"], "noise": ["NOISE"]}},
        "output": [], "name": "Save", "display_name": "Save", "output_node": True,
    },
    "Recorder": {
        "input": {"required": {"audio": ["AUDIO_RECORD", {}], "gain": ["FLOAT", {"default": 1.0}]}},
        "output": ["AUDIO"], "name": "Recorder",
    },
    "Uploader": {
        "input": {"required": {"image": [["x.png", "y.png"], {"image_upload": True}], "channel": [["alpha", "red"]]},
                  "optional": {"points": ["STRING", {"default": ""}]}},
        "output": ["MASK"], "name": "Uploader",
    },
}


FRONTEND = "1.49.6"


def _convert(ui: Any, info: Any = None, **options: Any) -> dict[str, Any]:
    """``ui_to_api`` with our small catalogue and the newest frontend's rules unless told otherwise."""
    options.setdefault("frontend_version", FRONTEND)
    return ui_to_api(ui, INFO if info is None else info, **options)


def _node(
    node_id: int, kind: str, widgets: Any = None, *, inputs: list[tuple[Any, ...]] = (),  # type: ignore[assignment]
    outputs: list[tuple[str, str, list[int]]] = (), mode: int = 0, title: str | None = None,  # type: ignore[assignment]
) -> dict[str, Any]:
    node: dict[str, Any] = {"id": node_id, "type": kind, "mode": mode, "order": node_id, "pos": [0, 0], "size": [1, 1],
                            "flags": {}, "properties": {}}
    node["inputs"] = [
        {"name": name, "type": type_, "link": link, **({"widget": {"name": name}} if widget else {})}
        for name, type_, link, *rest in inputs for widget in [rest[0] if rest else False]
    ]
    node["outputs"] = [{"name": name, "type": type_, "links": links} for name, type_, links in outputs]
    if widgets is not None:
        node["widgets_values"] = widgets
    if title is not None:
        node["title"] = title
    return node


def _ui(nodes: list[dict[str, Any]], links: list[list[Any]], **extra: Any) -> dict[str, Any]:
    return {"last_node_id": 99, "last_link_id": 99, "nodes": nodes, "links": links, "groups": [], "config": {},
            "extra": {}, "version": 0.4, **extra}


def _chain(middle: list[dict[str, Any]], links: list[list[Any]]) -> dict[str, Any]:
    """Loader(1) -> ... -> Save(9), the middle nodes and links given by the test."""
    loader = _node(1, "Loader", ["b.ckpt"], outputs=[("MODEL", "MODEL", [1]), ("CLIP", "CLIP", [])])
    last_link = links[-1][0]
    save = _node(9, "Save", ["result"], inputs=[("model", "MODEL", last_link)])
    return _ui([loader, *middle, save], links)


def test_widgets_follow_the_schema_order_and_skip_the_seed_control_value() -> None:
    ui = _chain(
        [_node(2, "Sampler", [123, "randomize", 30, "heun", 0.5], inputs=[("model", "MODEL", 1)],
               outputs=[("MODEL", "MODEL", [2])], title="My sampler")],
        [[1, 1, 0, 2, 0, "MODEL"], [2, 2, 0, 9, 0, "MODEL"]],
    )
    api = _convert(ui)
    assert api == {
        "1": {"inputs": {"ckpt_name": "b.ckpt"}, "class_type": "Loader", "_meta": {"title": "Load It"}},
        "2": {"inputs": {"seed": 123, "steps": 30, "sampler": "heun", "denoise": 0.5, "model": ["1", 0]},
              "class_type": "Sampler", "_meta": {"title": "My sampler"}},
        "9": {"inputs": {"prefix": "result", "model": ["2", 0]}, "class_type": "Save", "_meta": {"title": "Save"}},
    }
    assert list(api["2"]["inputs"]) == ["seed", "steps", "sampler", "denoise", "model"]


def test_legacy_seed_names_upload_buttons_dicts_defaults_and_list_values() -> None:
    ui = _ui([
        _node(1, "OldSeed", [5, "fixed", 2.5], outputs=[("NOISE", "NOISE", [])]),
        # the upload button comes after the optional widgets (getOrderedInputSpecs)
        _node(2, "Uploader", ["y.png", "red", "[1, 2]", "image"], outputs=[("MASK", "MASK", [])]),
        _node(3, "Sampler", {"seed": 7, "sampler": "heun", "denoise": [0.1, 0.2]}, inputs=[("model", "MODEL", None)]),
        _node(4, "Save"),
        _node(5, "Recorder", ["take1.wav", 0.5]),
    ], [])
    api = _convert(ui)
    # Widgets added by editor extensions (a recorder here) hold a saved value too.
    assert api["5"]["inputs"] == {"audio": "take1.wav", "gain": 0.5}
    assert api["1"]["inputs"] == {"noise_seed": 5, "cfg": 2.5}
    assert api["1"]["_meta"]["title"] == "OldSeed"  # no display_name: the class name
    assert api["2"]["inputs"] == {"image": "y.png", "channel": "red", "points": "[1, 2]"}
    # widgets_values saved as a dict (some node packs do) map by name; missing ones take defaults;
    # list values are boxed so the server does not read them as links.
    assert api["3"]["inputs"] == {"seed": 7, "steps": 20, "sampler": "heun", "denoise": {"__value__": [0.1, 0.2]}}
    assert api["4"]["inputs"] == {"prefix": "out"}


def test_primitive_values_reach_every_target_widget_through_reroutes() -> None:
    ui = _ui([
        _node(1, "Loader", ["a.ckpt"], outputs=[("MODEL", "MODEL", [1]), ("CLIP", "CLIP", [])]),
        _node(5, "PrimitiveNode", [42, "fixed"], outputs=[("INT", "INT", [10, 11])], title="steps"),
        _node(6, "Reroute", inputs=[("", "*", 11)], outputs=[("", "INT", [12])]),
        _node(2, "Sampler", [1, "fixed", 20, "euler", 1.0], inputs=[("model", "MODEL", 1), ("steps", "INT", 10, True)],
              outputs=[("MODEL", "MODEL", [2])]),
        _node(3, "Sampler", [2, "fixed", 20, "euler", 1.0], inputs=[("model", "MODEL", 2), ("steps", "INT", 12, True)],
              outputs=[("MODEL", "MODEL", [3])]),
        _node(9, "Save", ["x"], inputs=[("model", "MODEL", 3)]),
    ], [[1, 1, 0, 2, 0, "MODEL"], [2, 2, 0, 3, 0, "MODEL"], [3, 3, 0, 9, 0, "MODEL"],
        [10, 5, 0, 2, 1, "INT"], [11, 5, 0, 6, 0, "INT"], [12, 6, 0, 3, 1, "INT"]])
    api = _convert(ui)
    assert set(api) == {"1", "2", "3", "9"}
    assert api["2"]["inputs"]["steps"] == 42 and api["3"]["inputs"]["steps"] == 42
    assert api["3"]["inputs"]["model"] == ["2", 0]


def test_links_pass_through_a_chain_of_reroutes() -> None:
    ui = _chain(
        [_node(2, "Reroute", inputs=[("", "*", 1)], outputs=[("", "MODEL", [2])]),
         _node(3, "Reroute", inputs=[("", "*", 2)], outputs=[("", "MODEL", [3])]),
         _node(4, "Note", ["a remark"])],
        [[1, 1, 0, 2, 0, "*"], [2, 2, 0, 3, 0, "*"], [3, 3, 0, 9, 0, "MODEL"]],
    )
    api = _convert(ui)
    assert set(api) == {"1", "9"}
    assert api["9"]["inputs"]["model"] == ["1", 0]


def test_muted_nodes_are_left_out_with_the_links_from_them() -> None:
    ui = _chain(
        [_node(2, "Filter", [0.3], inputs=[("model", "MODEL", 1)], outputs=[("MODEL", "MODEL", [2])], mode=2)],
        [[1, 1, 0, 2, 0, "MODEL"], [2, 2, 0, 9, 0, "MODEL"]],
    )
    api = _convert(ui)
    assert set(api) == {"1", "9"}
    assert api["9"]["inputs"] == {"prefix": "result"}


def test_bypassed_nodes_pass_their_matching_input_through() -> None:
    ui = _chain(
        [_node(2, "Filter", [0.3], inputs=[("model", "MODEL", 1)], outputs=[("MODEL", "MODEL", [2])], mode=4),
         _node(3, "Uploader", ["x.png", "alpha", "image"], outputs=[("MASK", "MASK", [4])], mode=4),
         _node(4, "Text", ["hi"], inputs=[("clip", "CLIP", None)], outputs=[("CONDITIONING", "CONDITIONING", [5])], mode=4)],
        [[1, 1, 0, 2, 0, "MODEL"], [4, 3, 0, 9, 2, "NOISE"], [5, 4, 0, 9, 1, "CONDITIONING"], [2, 2, 0, 9, 0, "MODEL"]],
    )
    ui["nodes"][-1]["inputs"] += [{"name": "cond", "type": "CONDITIONING", "link": 5},
                                  {"name": "noise", "type": "NOISE", "link": 4}]
    api = _convert(ui)
    assert set(api) == {"1", "9"}
    # Nothing of a matching type upstream of the bypassed nodes: those inputs are dropped.
    assert api["9"]["inputs"] == {"prefix": "result", "model": ["1", 0]}


def _subgraph(sub_id: str, name: str, nodes: list[dict[str, Any]], links: list[dict[str, Any]],
              inputs: list[tuple[str, str, list[int]]], outputs: list[tuple[str, str, list[int]]]) -> dict[str, Any]:
    return {
        "id": sub_id, "version": 1, "name": name, "revision": 0, "config": {}, "state": {},
        "inputNode": {"id": -10, "bounding": [0, 0, 1, 1]}, "outputNode": {"id": -20, "bounding": [0, 0, 1, 1]},
        "inputs": [{"id": f"in-{n}", "name": n, "type": t, "linkIds": ids} for n, t, ids in inputs],
        "outputs": [{"id": f"out-{n}", "name": n, "type": t, "linkIds": ids} for n, t, ids in outputs],
        "widgets": [], "nodes": nodes, "links": links, "groups": [], "extra": {},
    }


def _link(link_id: int, origin: int, origin_slot: int, target: int, target_slot: int, type_: str) -> dict[str, Any]:
    return {"id": link_id, "origin_id": origin, "origin_slot": origin_slot, "target_id": target,
            "target_slot": target_slot, "type": type_}


def test_subgraphs_flatten_to_chained_ids_and_link_through_their_boundaries() -> None:
    inner_id, outer_id = "11111111-aaaa-4bbb-8ccc-000000000001", "22222222-aaaa-4bbb-8ccc-000000000002"
    # Inner subgraph: boundary model -> Filter(3) -> boundary output.
    inner = _subgraph(inner_id, "Inner", [
        _node(3, "Filter", [0.25], inputs=[("model", "MODEL", 31)], outputs=[("MODEL", "MODEL", [32])]),
    ], [_link(31, -10, 0, 3, 0, "MODEL"), _link(32, 3, 0, -20, 0, "MODEL")],
        inputs=[("model", "MODEL", [31])], outputs=[("MODEL", "MODEL", [32])])
    # Outer subgraph: boundary model -> Filter(1, strength promoted) -> Inner instance(2) -> boundary output.
    outer = _subgraph(outer_id, "Outer", [
        _node(1, "Filter", [0.9], inputs=[("model", "MODEL", 21), ("strength", "FLOAT", 24, True)],
              outputs=[("MODEL", "MODEL", [22])]),
        _node(2, inner_id, inputs=[("model", "MODEL", 22)], outputs=[("MODEL", "MODEL", [23])]),
        _node(4, "Note", ["inside"]),
    ], [_link(21, -10, 0, 1, 0, "MODEL"), _link(22, 1, 0, 2, 0, "MODEL"), _link(23, 2, 0, -20, 0, "MODEL"),
        _link(24, -10, 1, 1, 1, "FLOAT")],
        inputs=[("model", "MODEL", [21]), ("strength", "FLOAT", [24])], outputs=[("MODEL", "MODEL", [23])])
    ui = _chain(
        [_node(10, outer_id, [0.5], inputs=[("model", "MODEL", 1)], outputs=[("MODEL", "MODEL", [2])])],
        [[1, 1, 0, 10, 0, "MODEL"], [2, 10, 0, 9, 0, "MODEL"]],
    )
    ui["definitions"] = {"subgraphs": [outer, inner]}
    api = _convert(ui, frontend_version="1.27.10")
    assert list(api) == ["1", "9", "10:1", "10:2:3"]
    assert api["10:1"]["inputs"] == {"strength": 0.5, "model": ["1", 0]}  # the instance's widget value wins
    assert api["10:2:3"]["inputs"] == {"strength": 0.25, "model": ["10:1", 0]}
    assert api["9"]["inputs"]["model"] == ["10:2:3", 0]

    # 1.49 renumbers inner node 1, which collides with the root's node 1, past last_node_id (99).
    renumbered = _convert(ui, frontend_version="1.49.6")
    assert list(renumbered) == ["1", "9", "10:100", "10:2:3"]
    assert renumbered["10:2:3"]["inputs"]["model"] == ["10:100", 0]

    # A muted instance runs nothing inside; what it fed loses the link.
    ui["nodes"][1]["mode"] = 2
    assert _convert(ui) == {"1": api["1"], "9": {**api["9"], "inputs": {"prefix": "result"}}}
    # A bypassed instance passes its input through.
    ui["nodes"][1]["mode"] = 4
    assert _convert(ui)["9"]["inputs"]["model"] == ["1", 0]


def test_dynamic_prompts_drop_comments_and_pick_an_option() -> None:
    ui = _ui([
        _node(1, "Loader", ["a.ckpt"], outputs=[("MODEL", "MODEL", []), ("CLIP", "CLIP", [1])]),
        _node(2, "Text", ["a {red|blue} cat /* draft */ // todo\nin \\{braces\\}"], inputs=[("clip", "CLIP", 1)]),
    ], [[1, 1, 1, 2, 0, "CLIP"]])
    text = _convert(ui, rng=random.Random(1))["2"]["inputs"]["text"]
    assert text in ("a red cat  \nin {braces}", "a blue cat  \nin {braces}")


def test_unknown_classes_and_group_nodes_are_named_with_a_hint() -> None:
    ui = _ui([_node(7, "FancyUpscaler", [2])], [])
    with pytest.raises(ConversionError) as caught:
        _convert(ui, source="flow.json")
    message = str(caught.value)
    assert "flow.json" in message and "node 7" in message and "'FancyUpscaler'" in message
    assert "node pack" in (caught.value.hint or "")
    assert caught.value.node_id == "7"
    # Muted or bypassed, an unknown node is not needed (the editor leaves it out too).
    ui["nodes"][0]["mode"] = 2
    assert _convert(ui) == {}
    orphan = _ui([_node(4, "0b0e5f6a-1111-4222-8333-444455556666")], [])
    with pytest.raises(ConversionError, match="no definition"):
        _convert(orphan)
    group = _ui([_node(3, "workflow>MyGroup", [1])], [], extra={"groupNodes": {"MyGroup": {"nodes": []}}})
    with pytest.raises(ConversionError, match="group node") as caught:
        _convert(group)
    assert "Convert to nodes" in (caught.value.hint or "")


def test_a_ui_workflow_without_object_info_says_what_is_needed(tmp_path: Path) -> None:
    path = tmp_path / "ui.json"
    path.write_text(json.dumps(_ui([_node(1, "Loader", ["a.ckpt"])], [])))
    with pytest.raises(ConversionError, match="object_info") as caught:
        load_workflow(path)
    assert "client=" in (caught.value.hint or "") and "--server" in (caught.value.hint or "")
    assert load_workflow(path, object_info=INFO, frontend_version=FRONTEND)["1"]["inputs"] == {"ckpt_name": "a.ckpt"}


def test_the_input_is_never_modified_and_nothing_is_shared() -> None:
    ui = _chain(
        [_node(2, "Sampler", {"seed": 1, "denoise": [0.5]}, inputs=[("model", "MODEL", 1)], outputs=[("MODEL", "MODEL", [2])])],
        [[1, 1, 0, 2, 0, "MODEL"], [2, 2, 0, 9, 0, "MODEL"]],
    )
    before = copy.deepcopy(ui)
    info_before = copy.deepcopy(INFO)
    api = _convert(ui)
    assert ui == before
    assert info_before == INFO
    api["2"]["inputs"]["denoise"]["__value__"].append(9)
    api["1"]["inputs"]["ckpt_name"] = "changed"
    assert ui == before


def test_load_through_a_simulator_client_then_run_it(tmp_path: Path) -> None:
    ui = _ui([
        _node(1, "EmptyImage", [32, 16, 1, 255], outputs=[("IMAGE", "IMAGE", [1])]),
        _node(4, "Reroute", inputs=[("", "*", 1)], outputs=[("", "IMAGE", [2])]),
        _node(2, "ImageInvert", inputs=[("image", "IMAGE", 2)], outputs=[("IMAGE", "IMAGE", [3])], mode=4),
        _node(3, "SaveImage", ["converted/x"], inputs=[("images", "IMAGE", 3)], title="Keep"),
    ], [[1, 1, 0, 4, 0, "*"], [2, 4, 0, 2, 0, "IMAGE"], [3, 2, 0, 3, 0, "IMAGE"]])
    path = tmp_path / "ui.json"
    path.write_text(json.dumps(ui))
    with ComfyUISimulator(port=0, root=tmp_path / "sim") as sim, \
            ComfyUIClient(url=sim.url, plugin_options=["no:monitor"]) as client:
        api = load_workflow(path, client=client)
        title = client.get_object_info("EmptyImage")["EmptyImage"]["display_name"]
        assert api == {
            "1": {"inputs": {"width": 32, "height": 16, "batch_size": 1, "color": 255}, "class_type": "EmptyImage",
                  "_meta": {"title": title}},
            "3": {"inputs": {"filename_prefix": "converted/x", "images": ["1", 0]}, "class_type": "SaveImage",
                  "_meta": {"title": "Keep"}},
        }
        answer = client.queue_prompt(api)
        assert answer["node_errors"] == {}
        entry = client.wait_for_completion(answer["prompt_id"], timeout=20)
        assert entry["status"]["status_str"] == "success"


def test_a_png_with_only_the_editor_workflow_converts(tmp_path: Path) -> None:
    from PIL import Image, PngImagePlugin

    chunk = PngImagePlugin.PngInfo()
    chunk.add_text("workflow", json.dumps(_ui([_node(1, "Loader", ["b.ckpt"])], [])))
    Image.new("RGB", (2, 2)).save(tmp_path / "saved.png", pnginfo=chunk)
    assert load_workflow(tmp_path / "saved.png", object_info=INFO, frontend_version=FRONTEND) == {
        "1": {"inputs": {"ckpt_name": "b.ckpt"}, "class_type": "Loader", "_meta": {"title": "Load It"}},
    }


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 12) | st.sampled_from(["", "*", "MODEL", "Loader", "Reroute", "x"]),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(
        st.sampled_from(["id", "type", "link", "links", "name", "inputs", "outputs", "widgets_values", "mode",
                         "origin_id", "target_id", "linkIds", "widget", "definitions", "subgraphs", "nodes"]),
        inner, max_size=6),
    max_leaves=25,
)
_node_types = st.sampled_from(["Loader", "Sampler", "Filter", "Save", "Reroute", "PrimitiveNode", "Note", "sg"])
_garbage_node = st.fixed_dictionaries(
    {"id": st.integers(1, 6), "type": _node_types},
    optional={"mode": st.sampled_from([0, 2, 4, "x"]), "widgets_values": _json, "title": _json,
              "inputs": st.lists(st.fixed_dictionaries({"name": st.sampled_from(["model", "steps", "", "x"])},
                                                       optional={"type": _json, "link": st.integers(0, 8) | _json,
                                                                 "widget": _json}), max_size=3) | _json,
              "outputs": _json},
)
_garbage_link = st.lists(st.integers(-20, 8) | _json, min_size=5, max_size=6) | _json


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes=st.lists(_garbage_node, max_size=6), links=st.lists(_garbage_link, max_size=6),
       subgraph_nodes=st.lists(_garbage_node, max_size=3), sub_io=_json)
def test_garbage_only_ever_raises_comfykit_errors(
    nodes: list[Any], links: list[Any], subgraph_nodes: list[Any], sub_io: Any
) -> None:
    ui = {"nodes": nodes, "links": links, "definitions": {"subgraphs": [
        {"id": "sg", "nodes": subgraph_nodes, "links": links, "inputs": sub_io, "outputs": sub_io}]}}
    try:
        result = _convert(ui)
    except ComfyKitError:
        return
    assert isinstance(result, dict)
    json.dumps(result)
