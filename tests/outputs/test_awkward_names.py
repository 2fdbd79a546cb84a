"""Outputs whose names cannot all be stored get a clear error each, and the others are stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfykit import ComfyUIClient
from comfykit.errors import UnsafePathError
from comfykit.outputs import OutputFile, discover_outputs
from comfykit.paths import MAX_DEPTH, safe_output_path
from comfykit.testing import ComfyUISimulator
from comfykit_download import DownloadError, download_outputs

from .conftest import workflow


def test_a_subfolder_thousands_of_levels_deep_is_refused() -> None:
    fields = {"filename": "x.png", "subfolder": "/".join(["a"] * 1500), "node_id": "9"}
    with pytest.raises(UnsafePathError, match="1501 levels") as caught:
        safe_output_path("/tmp/out", "{subfolder}/{filename}", fields)
    assert "absurd subfolder" in (caught.value.hint or "")
    shallow = {**fields, "subfolder": "/".join(["a"] * (MAX_DEPTH - 1))}
    assert safe_output_path("/tmp/out", "{subfolder}/{filename}", shallow).name == "x.png"


def _outputs(client: ComfyUIClient, color: int) -> list[OutputFile]:
    graph = workflow("batch_save")
    graph["1"]["inputs"].update(color=color, batch_size=1)  # a new graph each time: no cached outputs
    entry = client.wait_for_completion(client.queue_prompt(graph)["prompt_id"], timeout=60)
    return discover_outputs(entry["outputs"])


def test_a_file_named_like_another_outputs_folder_is_a_clear_error(
    client: ComfyUIClient, sim: ComfyUISimulator, out_dir: Path
) -> None:
    sim.knobs.view_any_name = True
    sim.knobs.output_filename = "~"
    as_file = _outputs(client, 1)
    sim.knobs.output_subfolder = "~"
    sim.knobs.output_filename = "x.png"
    in_folder = _outputs(client, 2)
    naming = "{subfolder}/{filename}"
    download_outputs(client, as_file, out_dir, naming=naming)
    assert (out_dir / "~").is_file()
    with pytest.raises(DownloadError) as caught:
        download_outputs(client, in_folder, out_dir, naming=naming)
    [error] = caught.value.errors
    assert "is a file, and this output needs a folder of that name" in str(error)
    # The other way round: the folder exists, and a file of its name arrives.
    other = out_dir.parent / "other"
    download_outputs(client, in_folder, other, naming=naming)
    with pytest.raises(DownloadError) as caught:
        download_outputs(client, as_file, other, naming=naming)
    assert "is a folder" in str(caught.value.errors[0])
