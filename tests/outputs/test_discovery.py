"""Output discovery on the shapes real ComfyUI sends, on known custom-node shapes, and on garbage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from comfykit.outputs import OutputFile, discover_outputs, image_outputs
from comfykit.utils import extract_output_images

RECORDINGS = Path(__file__).resolve().parents[1] / "fixtures" / "recordings" / "0.3.64"


def _executed_outputs(transcript: str) -> dict[str, Any]:
    """The ``executed`` outputs of one recorded socket transcript, keyed by node id."""
    data = json.loads((RECORDINGS / "ws" / f"{transcript}.json").read_text())
    found: dict[str, Any] = {}
    for socket in data["sockets"].values():
        for frame in socket["frames"]:
            message = frame.get("msg") or {}
            if message.get("type") == "executed":
                found[message["data"]["node"]] = message["data"]["output"]
    return found


def _history(name: str) -> dict[str, Any]:
    return dict(json.loads((RECORDINGS / "http" / f"{name}.json").read_text())["body"]["json"])


def test_two_outputs_transcript_gives_a_file_and_a_text_and_hides_the_preview() -> None:
    outputs = sorted(discover_outputs(_executed_outputs("success_two_outputs")), key=lambda o: o.node_id)
    assert [(o.node_id, o.kind, o.is_file) for o in outputs] == [("2", "images", True), ("5", "text", False)]
    image, text = outputs
    assert image.filename is not None and image.filename.startswith("comfykit_two_a_")
    assert image.folder_type == "output" and image.subfolder == ""
    assert text.value == "hello from comfykit" and text.filename is None


def test_temp_previews_are_included_when_asked() -> None:
    outputs = discover_outputs(_executed_outputs("success_two_outputs"), include_temp=True)
    temp = [o for o in outputs if o.is_temp]
    assert [(o.node_id, o.kind) for o in temp] == [("4", "images")]


def test_image_outputs_are_the_image_files_previews_included_unless_told() -> None:
    outputs = _executed_outputs("success_two_outputs")
    assert sorted((o.node_id, o.folder_type) for o in image_outputs(outputs)) == [("2", "output"), ("4", "temp")]
    assert [o.node_id for o in image_outputs(outputs, include_temp=False)] == ["2"]


def test_latents_and_batches_from_transcripts() -> None:
    [latent] = discover_outputs(_executed_outputs("sampler_nopreview_legacy"))
    assert latent.kind == "latents" and latent.filename is not None and latent.filename.endswith(".latent")
    batch = discover_outputs(_executed_outputs("success_batch_4_images"))
    assert [o.index for o in batch] == [0, 1, 2, 3]


def test_history_entries_and_extract_output_images_agree() -> None:
    answer = _history("get_history_all")
    for entry in answer.values():
        files = image_outputs(entry)
        images = extract_output_images(entry)
        assert [(o.node_id, o.filename, o.subfolder, o.folder_type) for o in files] == [
            (i["node_id"], i["filename"], i["subfolder"], i["type"]) for i in images
        ]
    texts = [o.value for entry in answer.values() for o in discover_outputs(entry) if o.kind == "text"]
    assert texts and set(texts) == {"comfy-kit"}


def test_custom_node_shapes() -> None:
    outputs = discover_outputs(
        {
            "10": {"images": [{"filename": "anim_00001_.webp", "subfolder": "", "type": "output"}], "animated": [True]},
            "11": {"gifs": [{"filename": "vid_00001.mp4", "subfolder": "v", "type": "output", "format": "video/h264-mp4",
                             "frame_rate": 8.0}]},
            "12": {"video": [{"filename": "clip.mp4", "subfolder": "", "type": "output"}]},
            "13": {"audio": [{"filename": "a.flac", "subfolder": "audio", "type": "output"}]},
            "14": {"3d": [{"filename": "mesh.glb", "subfolder": "3d", "type": "output"}]},
            "15": {"my_table": [{"rows": 3}], "score": 0.5, "blob": [{"filename": "x.bin"}]},
        }
    )
    assert [(o.node_id, o.kind, o.filename) for o in outputs] == [
        ("10", "images", "anim_00001_.webp"),
        ("11", "gifs", "vid_00001.mp4"),
        ("12", "video", "clip.mp4"),
        ("13", "audio", "a.flac"),
        ("14", "3d", "mesh.glb"),
        ("15", "my_table", None),
        ("15", "score", None),
        ("15", "blob", "x.bin"),
    ]
    assert outputs[1].raw["format"] == "video/h264-mp4" and outputs[1].subfolder == "v"
    assert outputs[5].value == {"rows": 3} and outputs[6].value == 0.5
    assert outputs[7].folder_type == "output"


def test_odd_values_are_kept_or_skipped_never_misread() -> None:
    outputs = discover_outputs({"1": None, "2": "plain", "3": {"images": [{"filename": 7}, {"filename": ""}, None]}})
    assert outputs == [
        OutputFile(node_id="2", kind="raw", value="plain", raw="plain"),
        OutputFile(node_id="3", kind="images", index=0, value={"filename": 7}, raw={"filename": 7}),
        OutputFile(node_id="3", kind="images", index=1, value={"filename": ""}, raw={"filename": ""}),
    ]
    assert discover_outputs([]) == [] and discover_outputs(None) == []


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["filename", "subfolder", "type", "images", "text", "outputs", "status", "x"])
                      | st.text(max_size=4), children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_discovery_never_raises(data: Any) -> None:
    for record in discover_outputs(data, include_temp=True):
        assert isinstance(record.node_id, str) and isinstance(record.kind, str)
        assert record.filename is None or (isinstance(record.filename, str) and record.filename)
        assert isinstance(record.subfolder, str) and isinstance(record.folder_type, str)
