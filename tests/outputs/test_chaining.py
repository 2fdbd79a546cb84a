"""One job's output as the next job's input, on the same server (no transfer) and across a pool."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfykit import ComfyUIClient
from comfykit.errors import OutputError
from comfykit.outputs import OutputFile, discover_outputs
from comfykit.queue.inputs import UploadCache, output_as_input
from comfykit.testing import ComfyUISimulator

MAKE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 8, "batch_size": 1, "color": 255}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "chain/first"}},
}


def _next_job(image: str) -> dict[str, dict[str, object]]:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "chain/second"}},
    }


def _run(client: ComfyUIClient, prompt: dict[str, dict[str, object]]) -> list[OutputFile]:
    prompt_id = client.queue_prompt(prompt)["prompt_id"]
    return discover_outputs(client.wait_for_completion(prompt_id, timeout=30)["outputs"])


def test_an_output_feeds_the_next_job_on_the_same_server(tmp_path: Path) -> None:
    with ComfyUISimulator(port=0, root=tmp_path / "sim") as sim, ComfyUIClient(url=sim.url) as client:
        first = _run(client, MAKE)[0]
        reference = output_as_input(first)
        assert reference == f"chain/{first.filename} [output]"
        second = _run(client, _next_job(reference))[0]
        import io

        from PIL import Image

        picture = Image.open(io.BytesIO(client.get_image(second.filename or "", second.subfolder)))
        assert picture.size == (16, 8) and picture.convert("RGB").getpixel((0, 0)) == (255, 255, 0)


def test_an_output_is_copied_to_another_server_once(tmp_path: Path) -> None:
    with ComfyUISimulator(port=0, root=tmp_path / "a") as a, ComfyUISimulator(port=0, root=tmp_path / "b") as b, \
            ComfyUIClient(url=a.url) as source, ComfyUIClient(url=b.url) as target:
        first = _run(source, MAKE)[0]
        cache = UploadCache()
        name = output_as_input(first, source=source, target=target, cache=cache)
        assert name == output_as_input(first, source=source, target=target, cache=cache)
        assert not name.endswith("]")
        assert _run(target, _next_job(name))[0].filename


def test_only_files_can_be_chained() -> None:
    with pytest.raises(OutputError, match="not a file"):
        output_as_input(OutputFile(node_id="5", kind="text", value="hello"))
