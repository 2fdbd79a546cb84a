"""The original tool's README itself: its Python code blocks, run in order, against the simulator.

The only changes made to the README's code (``_as_comfykit``):

- imports: ``from src.client``/``src.workflow_manager``/``src.queue_manager import X`` become
  ``from comfykit import X`` and ``from src.utils import ...`` becomes ``from comfykit.utils import ...``;
- ``port=8188`` becomes the simulator's port (it listens on 127.0.0.1, the README's host).

The progress example sends a ``workflow`` it leaves to the reader; it gets the graph of
the block before with another seed (the same graph again would be served from the
server's cache, with no sampler steps to report).  ``ComfyUIClient()`` with no arguments
finds the simulator through the README's own ``config.yaml`` in the working folder, and
the workflow files the README names (``workflows/my_workflow.json``, ``workflows/base.json``,
``workflow.json``) hold the text-to-image graph with the KSampler as node "3" (see
``readme_folder``).  The blocks share one namespace, as in a script pasted together from the README.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from comfykit import ComfyUIClient
from comfykit.testing import ComfyUISimulator
from tests.compat.folder import received_prompts


def _seed_readme() -> Path:
    if os.environ.get("COMFYKIT_SHARED"):
        return Path(os.environ["COMFYKIT_SHARED"]) / "seed" / "README.md"
    # ../shared beside the checkout (or beside the folder holding git worktrees).
    here = Path(__file__).resolve()
    candidates = [here.parents[3] / "shared" / "seed" / "README.md", here.parents[4] / "shared" / "seed" / "README.md"]
    return next((c for c in candidates if c.is_file()), candidates[0])


README = _seed_readme()
IMPORTS = [
    (re.compile(r"^from src\.(?:client|workflow_manager|queue_manager) import ", re.M), "from comfykit import "),
    (re.compile(r"^from src\.utils import ", re.M), "from comfykit.utils import "),
]


def _as_comfykit(code: str, port: int) -> str:
    for pattern, replacement in IMPORTS:
        code = pattern.sub(replacement, code)
    return code.replace("port=8188", f"port={port}")


def _blocks() -> dict[str, str]:
    """The README's Python blocks, by the heading above each."""
    text = README.read_text(encoding="utf-8")
    blocks: dict[str, str] = {}
    for match in re.finditer(r"^#+ (?P<title>[^\n]+)\n+```python\n(?P<code>.*?)^```", text, re.M | re.S):
        blocks[match["title"].strip().rstrip(":")] = match["code"]
    return blocks


@pytest.mark.parametrize("comfyui_simulator", ["0.3.64", "0.33.0"], indirect=True)
def test_the_readme_python_blocks_run_with_the_effects_it_describes(
    readme_folder: Path, comfyui_simulator: ComfyUISimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    if not README.is_file():
        pytest.skip(f"{README} is absent (set COMFYKIT_SHARED to the shared folder)")
    blocks = _blocks()
    assert list(blocks) == ["Basic Usage", "With WebSocket Progress Monitoring", "Batch Processing",
                            "Workflow Templates", "Workflow Validation", "Workflow Manipulation",
                            "Image Upload/Download", "Context Manager Support"]
    namespace: dict[str, Any] = {"__name__": "readme"}
    printed: dict[str, str] = {}
    for title, code in blocks.items():
        assert "src." not in _as_comfykit(code, comfyui_simulator.port), title
        if title == "With WebSocket Progress Monitoring":
            # This block sends "workflow" without saying which ("# Send workflow..."). The one of the block
            # before has just run: sent again, a server (real or simulated) answers it from its cache without
            # sampling, so there would be no progress to print. Give it a graph of its own, as a reader would.
            namespace["workflow"] = {**namespace["workflow"], "3": {**namespace["workflow"]["3"]}}
            namespace["workflow"]["3"]["inputs"] = {**namespace["workflow"]["3"]["inputs"], "seed": 7}
        exec(compile(_as_comfykit(code, comfyui_simulator.port), f"README: {title}", "exec"), namespace)
        printed[title] = capsys.readouterr().out
        if title == "Workflow Templates":
            template_graph = namespace["workflow"]
    prompts = received_prompts(comfyui_simulator)

    # Basic usage, then the progress example, each ran one job.
    assert printed["Basic Usage"] == "Workflow completed!\n"
    progress = [tuple(map(int, line.split(": ")[1].split("/"))) for line in printed["With WebSocket Progress Monitoring"]
                .splitlines()]
    values = [value for value, _ in progress]
    assert values and values == sorted(set(values)) and values[-1] == 20 and {m for _, m in progress} == {20}

    # The batch: ten jobs, ten different seeds, and the copies never changed the base workflow.
    batch = printed["Batch Processing"].splitlines()
    assert batch[-1] == "Completed: 10, Failed: 0"
    assert sorted(line.split()[-1] for line in batch[:-1]) == sorted(f"job_{i}" for i in range(10))
    assert sorted(p["3"]["inputs"]["seed"] for p in prompts[2:12]) == [12345 + i for i in range(10)]

    # The template's graph carries the values given; sent to the server, they arrive as given.
    with ComfyUIClient(url=comfyui_simulator.url) as client:
        client.wait_for_completion(client.queue_prompt(template_graph)["prompt_id"])
    sent = received_prompts(comfyui_simulator)[-1]
    assert sent["6"]["inputs"]["text"] == "a beautiful sunset over mountains"
    assert sent["7"]["inputs"]["text"] == "blurry, low quality"
    assert (sent["3"]["inputs"]["seed"], sent["3"]["inputs"]["steps"], sent["3"]["inputs"]["cfg"]) == (42, 25, 7.5)

    # Validation found nothing to print; manipulation printed the README's keys and saved the file.
    assert printed["Workflow Validation"] == ""
    assert printed["Workflow Manipulation"].splitlines()[0] == "Total nodes: 7"
    assert Path("modified.json").is_file()
    # The download wrote the first job's images; the context manager's job ran the edited workflow.
    assert sorted(Path().glob("output_*.png")) and all(p.read_bytes()[:4] == b"\x89PNG" for p in Path().glob("output_*"))
    edited = received_prompts(comfyui_simulator)[-2]
    assert (edited["3"]["inputs"]["seed"], edited["3"]["inputs"]["steps"]) == (99999, 30)

    # merge_workflows(workflow1, workflow2, node_id_prefix) from the API reference: both parts, links rewritten.
    merged = namespace["workflow_mgr"].merge_workflows(namespace["workflow"], namespace["base_workflow"], "second_")
    assert set(merged) == set(namespace["workflow"]) | {f"second_{n}" for n in namespace["base_workflow"]}
    assert merged["second_3"]["inputs"]["positive"] == ["second_6", 0]
