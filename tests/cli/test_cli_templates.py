"""``comfykit templates list|show|create``, and templates with ``--set``, ``--sweep`` and ``--random-seeds`` in send and batch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from comfykit import ComfyUIClient
from comfykit.testing import ComfyUISimulator
from comfykit_cli import build_cli

RECORDINGS = Path(__file__).resolve().parent.parent / "fixtures" / "recordings" / "0.33.0" / "workflows"
KSAMPLER = str(RECORDINGS / "tiny_ksampler.json")
INVERT = str(RECORDINGS / "invert_save.json")


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The default templates folder (./templates) and outputs land in the test's folder.
    monkeypatch.chdir(tmp_path)


def run(*args: str) -> Result:
    return CliRunner().invoke(build_cli(), list(args), prog_name="comfykit")


def make_template(*extra: str, name: str = "tiny") -> Result:
    result = run("templates", "create", KSAMPLER, "--name", name, "--description", "A tiny sampler",
                 "--param", "seed=KSampler.seed", "--param", "prompt=3.text", "--param", "steps=6.steps:int=4",
                 "--describe", "prompt=What to draw", *extra)
    assert result.exit_code == 0, result.output
    return result


def submitted(url: str) -> list[dict[str, Any]]:
    """The prompts the simulator ran, oldest first."""
    with ComfyUIClient(url=url) as client:
        history = client.get_history()
    entries = sorted(history.values(), key=lambda entry: entry["prompt"][0])
    return [entry["prompt"][2] for entry in entries]


def test_create_writes_a_template_that_show_and_list_report(tmp_path: Path) -> None:
    created = json.loads(make_template("--choices", "sampler=euler,dpmpp_2m", "--param", "sampler=6.sampler_name",
                                       "--required", "prompt", "--json").stdout)
    assert created["source"] == str(Path("templates") / "tiny.template.yaml")
    data = yaml.safe_load((tmp_path / "templates" / "tiny.template.yaml").read_text())
    assert data["parameters"]["seed"] == {"targets": ["KSampler.seed"], "type": "int", "default": 1}
    assert data["parameters"]["steps"] == {"targets": ["6.steps"], "type": "int", "default": 4}
    assert data["parameters"]["prompt"] == {"targets": ["3.text"], "type": "str", "description": "What to draw"}
    assert data["parameters"]["sampler"]["choices"] == ["euler", "dpmpp_2m"]
    assert isinstance(data["workflow"], dict)  # inline by default

    shown = json.loads(run("templates", "show", "tiny", "--json").stdout)
    assert shown["name"] == "tiny" and shown["description"] == "A tiny sampler"
    assert shown["parameters"]["prompt"]["required"] is True
    assert shown["parameters"]["seed"]["required"] is False
    text = run("templates", "show", "templates/tiny.template.yaml").stdout
    assert "prompt (str, required): What to draw" in text and "seed -> KSampler.seed" in text

    listed = json.loads(run("templates", "list", "--json").stdout)
    assert [(t["name"], t["parameters"]) for t in listed["templates"]] == [("tiny", ["seed", "prompt", "steps", "sampler"])]
    assert "tiny" in run("templates", "list").stdout


def test_create_link_refers_to_the_workflow_file(tmp_path: Path) -> None:
    flow = tmp_path / "flow.json"
    flow.write_text(Path(KSAMPLER).read_text())
    assert run("templates", "create", str(flow), "--name", "linked", "--param", "seed=6.seed", "--link",
               "--dir", "here").exit_code == 0
    data = yaml.safe_load((tmp_path / "here" / "linked.template.yaml").read_text())
    assert data["workflow"] == str(flow.resolve())
    assert "linked" in run("templates", "list", "--dir", "here").stdout


def test_create_mistakes_are_reported(tmp_path: Path) -> None:
    make_template()
    again = run("templates", "create", KSAMPLER, "--name", "tiny", "--param", "seed=6.seed")
    assert again.exit_code == 2 and "--force" in again.stderr
    assert run("templates", "create", KSAMPLER, "--name", "tiny", "--param", "seed=6.seed", "--force").exit_code == 0
    assert run("templates", "create", KSAMPLER, "--name", "x", "--param", "seed").exit_code == 2
    assert run("templates", "create", KSAMPLER, "--name", "x", "--param", "seed=KSampler").exit_code == 2
    assert run("templates", "create", KSAMPLER, "--name", "x", "--param", "seed=6.seed",
               "--describe", "other=text").exit_code == 2
    bad_input = run("templates", "create", KSAMPLER, "--name", "x", "--param", "seed=6.sed")
    assert bad_input.exit_code == 1 and "Hint:" in bad_input.stderr and "seed" in bad_input.stderr
    bad_default = run("templates", "create", KSAMPLER, "--name", "x", "--param", "steps=6.steps:int=many")
    assert bad_default.exit_code == 1 and "not an integer" in bad_default.stderr
    assert not (tmp_path / "templates" / "x.template.yaml").exists()


def test_show_an_unknown_template_suggests_close_names() -> None:
    make_template()
    result = run("templates", "show", "tin")
    assert result.exit_code == 1 and "Did you mean tiny" in result.stderr


def test_send_a_template_by_name_with_parameters_and_node_sets(comfyui_simulator: ComfyUISimulator) -> None:
    make_template()
    result = run("send", "tiny", "--set", "prompt=a red fox", "--set", "steps=3", "--set", "KSampler.cfg=3.5",
                 "--update", "5.width=128", "--wait", "--no-download", "--json", "--server", comfyui_simulator.url)
    assert result.exit_code == 0, result.output
    [prompt] = submitted(comfyui_simulator.url)
    assert prompt["3"]["inputs"]["text"] == "a red fox"
    assert prompt["6"]["inputs"]["steps"] == 3 and prompt["6"]["inputs"]["cfg"] == 3.5
    assert prompt["6"]["inputs"]["seed"] == 1
    assert prompt["5"]["inputs"]["width"] == 128


def test_send_a_template_path_checks_its_parameters(comfyui_simulator: ComfyUISimulator) -> None:
    make_template("--required", "prompt")
    missing = run("send", "templates/tiny.template.yaml", "--server", comfyui_simulator.url)
    assert missing.exit_code == 1 and "missing required parameter 'prompt'" in missing.stderr
    typo = run("send", "templates/tiny.template.yaml", "--set", "prompt=x", "--set", "sed=4", "--server",
               comfyui_simulator.url)
    assert typo.exit_code == 1 and "Did you mean seed" in typo.stderr
    wrong = run("send", "tiny", "--set", "prompt=x", "--set", "steps=lots", "--server", comfyui_simulator.url)
    assert wrong.exit_code == 1 and "not an integer" in wrong.stderr
    assert submitted(comfyui_simulator.url) == []


def test_a_bare_set_name_on_a_plain_workflow_is_a_usage_error_with_a_hint(comfyui_simulator: ComfyUISimulator) -> None:
    result = run("send", INVERT, "--set", "color=5", "--server", comfyui_simulator.url)
    assert result.exit_code == 2
    assert "not a template" in result.stderr and "templates create" in result.stderr
    # A name with a dot still edits a node input of a plain workflow.
    assert run("send", INVERT, "--set", "EmptyImage.color=5", "--server", comfyui_simulator.url).exit_code == 0


def test_send_an_unknown_name_that_is_no_file_says_so(comfyui_simulator: ComfyUISimulator) -> None:
    result = run("send", "nothing-here", "--server", comfyui_simulator.url)
    assert result.exit_code == 1 and "no template named 'nothing-here'" in result.stderr
    missing_file = run("send", "nothing-here.json", "--server", comfyui_simulator.url)
    assert missing_file.exit_code == 1 and "no such file" in missing_file.stderr


def test_send_random_seeds_leaves_an_explicit_seed_alone(comfyui_simulator: ComfyUISimulator) -> None:
    make_template()
    assert run("send", "tiny", "--random-seeds", "--server", comfyui_simulator.url).exit_code == 0
    assert run("send", "tiny", "--random-seeds", "--set", "seed=5", "--server", comfyui_simulator.url).exit_code == 0
    assert run("send", KSAMPLER, "--random-seeds", "--server", comfyui_simulator.url).exit_code == 0
    first, pinned, plain = submitted(comfyui_simulator.url)
    assert first["6"]["inputs"]["seed"] != 1
    assert pinned["6"]["inputs"]["seed"] == 5
    assert plain["6"]["inputs"]["seed"] != 1


def test_batch_sweeps_template_parameters_and_node_inputs(comfyui_simulator: ComfyUISimulator) -> None:
    make_template()
    result = run("--json", "--server", comfyui_simulator.url, "batch", "tiny", "--sweep", "seed=1..3",
                 "--sweep", "prompt=cat,dog", "--sweep", "KSampler.cfg=2.5", "--set", "steps=2", "--no-download")
    assert result.exit_code == 0, result.output
    stream = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert stream[0]["total"] == 6 and stream[-1]["completed"] == 6
    ran = {(p["6"]["inputs"]["seed"], p["3"]["inputs"]["text"], p["6"]["inputs"]["cfg"], p["6"]["inputs"]["steps"])
           for p in submitted(comfyui_simulator.url)}
    assert ran == {(seed, text, 2.5, 2) for seed in (1, 2, 3) for text in ("cat", "dog")}


def test_batch_random_seeds_give_each_job_its_own_seed(comfyui_simulator: ComfyUISimulator, tmp_path: Path) -> None:
    make_template()
    result = run("--server", comfyui_simulator.url, "batch", KSAMPLER, "templates/tiny.template.yaml",
                 "--sweep", "6.cfg=1,2,3", "--random-seeds", "--no-download")
    assert result.exit_code == 0, result.output
    seeds = [p["6"]["inputs"]["seed"] for p in submitted(comfyui_simulator.url)]
    assert len(seeds) == 6 and len(set(seeds)) == 6


def test_batch_template_parameters_need_a_template(comfyui_simulator: ComfyUISimulator) -> None:
    result = run("--server", comfyui_simulator.url, "batch", INVERT, "--set", "color=3", "--no-download")
    assert result.exit_code == 2 and "not a template" in result.stderr
    swept = run("--server", comfyui_simulator.url, "batch", INVERT, "--sweep", "denoise=1,2", "--no-download")
    assert swept.exit_code == 1 and "no node" in swept.stderr
