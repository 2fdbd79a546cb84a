"""Every Python example of the plugin docs, the guides and getting-started runs, against a simulator where it needs one.

How a page's fenced ``python`` blocks are run (the markers are HTML comments on the line
before a block, so they do not show on the rendered page):

- In docs/plugins/, each block is a plugin: it is run as a module, registered in a
  ``QueueManager`` that runs a job on a simulator (the job must complete without warnings,
  so a sink that fails fails the test), its validators run on a workflow, and its commands
  are listed by the CLI.  The hook reference's blocks are separate plugins; the tutorial's
  build one plugin step by step, so each of its blocks adds to the module of the ones before.
- On the other pages, the blocks run in order in one namespace per page, in a temporary
  working directory, with ``http://127.0.0.1:8188`` pointing at a simulator.  The names the
  guides take as given exist: ``client`` is always an open client to that simulator (also
  after a block closed its own), ``workflow`` a text-to-image graph whose prompt node is titled
  "Positive Prompt", saved as ``my_workflow.json`` too.  ``test_*``
  functions a block defines are called with the ``comfyui_simulator``, ``comfykit_cli`` and
  ``tmp_path`` they name.
- ``<!-- docs-test: fragment -->`` marks a block that is a piece of a larger program (it
  names things the page only describes, or servers that do not exist); it is only compiled.
- ``<!-- docs-test: file NAME -->`` before any block writes its text to ``NAME`` in the
  working directory, for the examples that read it.
- ``--8<-- "path"`` snippet lines are replaced by the file they include.
"""

from __future__ import annotations

import inspect
import json
import re
import types
from pathlib import Path
from typing import Any

import pytest

from comfykit import ComfyUIClient, JobStatus, QueueManager, load_config
from comfykit.plugins import get_plugin_manager
from comfykit.testing import ComfyUISimulator
from comfykit.testing.cli_runner import CliRunner
from comfykit.workflow import validate_workflow

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted([*DOCS.glob("plugins/*.md"), *DOCS.glob("guides/*.md"), DOCS / "getting-started.md"])
#: plugin pages, and whether their blocks build one module together
PLUGIN_PAGES = {"hooks.md": False, "tutorial.md": True}
BLOCK = re.compile(r"(?:^<!-- docs-test: (?P<marker>[^>]*?) -->\n)?^```(?P<lang>\w*)\n(?P<body>.*?)^```$",
                   re.MULTILINE | re.DOTALL)
SNIPPET = re.compile(r'^--8<-- "(?P<path>[^"]+)"$', re.MULTILINE)
DEFAULT_SERVER = "http://127.0.0.1:8188"

#: the graph the guides call ``workflow`` (runs on the simulator without models)
GUIDE_WORKFLOW: dict[str, Any] = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse", "clip": ["4", 1]},
          "_meta": {"title": "Positive Prompt"}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
    "3": {"class_type": "KSampler", "inputs": {
        "seed": 1, "steps": 2, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
        "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "guide", "images": ["8", 0]}},
}

WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 9}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "docs"}},
}


def blocks(page: Path) -> list[tuple[str, str, str, int]]:
    """(language, marker, source, line) of each fenced block of ``page``, snippets included."""
    text = page.read_text(encoding="utf-8")
    found = []
    for match in BLOCK.finditer(text):
        body = SNIPPET.sub(lambda m: (ROOT / m["path"]).read_text(encoding="utf-8"), match["body"])
        found.append((match["lang"], (match["marker"] or "").strip(), body, text.count("\n", 0, match.start()) + 1))
    return found


def exercise_plugin(module: types.ModuleType, simulator: ComfyUISimulator, tmp_path: Path) -> None:
    """Use a plugin the way comfykit does: a job through the queue, validation, and the CLI."""
    config = load_config(overrides={"output.output_dir": str(tmp_path / "outputs"), "batch.max_retries": 0},
                         use_file=False)
    with QueueManager(servers=[simulator.url], config=config, plugins=[module]) as queue:
        job_id = queue.add_job(WORKFLOW)
        queue.run(timeout=60)
        job = queue.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED, job
    assert job.warnings == [], job.warnings
    validate_workflow(WORKFLOW, plugin_manager=get_plugin_manager(plugins=[module]))
    listing = CliRunner(server=simulator.url, plugins=[module], cwd=tmp_path)("--help")
    assert listing.exit_code == 0, listing


def run_page_blocks(page: Path, simulator: ComfyUISimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_workflow.json").write_text(json.dumps(GUIDE_WORKFLOW), encoding="utf-8")
    with ComfyUIClient(url=simulator.url) as client:
        namespace: dict[str, Any] = {"__name__": f"docs_{page.stem}", "workflow": dict(GUIDE_WORKFLOW)}
        return _run_blocks(page, simulator, tmp_path, namespace, client)


def _run_blocks(page: Path, simulator: ComfyUISimulator, tmp_path: Path, namespace: dict[str, Any],
                client: ComfyUIClient) -> int:
    module = types.ModuleType(f"docs_{page.stem}")
    ran = 0
    for index, (lang, marker, source, line) in enumerate(blocks(page)):
        namespace["client"] = client
        if marker.startswith("file "):
            (tmp_path / marker.removeprefix("file ").strip()).write_text(source, encoding="utf-8")
        if lang != "python":
            continue
        where = f"{page.relative_to(ROOT)}:{line}"
        code = compile(source.replace(DEFAULT_SERVER, simulator.url), where, "exec")
        if marker == "fragment":
            continue
        if page.name in PLUGIN_PAGES:
            if not PLUGIN_PAGES[page.name]:
                module = types.ModuleType(f"docs_{page.stem}_{index}")
            exec(code, module.__dict__)
            exercise_plugin(module, simulator, tmp_path / f"block{index}")
        else:
            exec(code, namespace)
            for name in [n for n in namespace if n.startswith("test_") and callable(namespace[n])]:
                test = namespace.pop(name)
                (tmp_path / name).mkdir()
                # A fresh simulator per test function, as the function-scoped fixture gives one in pytest
                # (a job the page ran before would otherwise be served from the cache).
                with ComfyUISimulator(port=0, root=tmp_path / name / "sim") as own:
                    given = {"comfyui_simulator": own, "tmp_path": tmp_path / name,
                             "comfykit_cli": CliRunner(server=own.url, cwd=tmp_path / name)}
                    test(**{arg: given[arg] for arg in inspect.signature(test).parameters})
        ran += 1
    return ran


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_the_python_examples_of_the_page_run(page: Path, comfyui_simulator: ComfyUISimulator, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    python_blocks = [b for b in blocks(page) if b[0] == "python"]
    ran = run_page_blocks(page, comfyui_simulator, tmp_path, monkeypatch)
    fragments = sum(1 for b in python_blocks if b[1] == "fragment")
    assert ran + fragments == len(python_blocks)


def test_the_hook_reference_runs_more_examples_than_it_marks_as_fragments() -> None:
    python_blocks = [b for b in blocks(DOCS / "plugins" / "hooks.md") if b[0] == "python"]
    assert sum(1 for b in python_blocks if b[1] != "fragment") == len(python_blocks)
