"""Templates: creation checks, instantiation checks and coercion, random seeds, YAML files, lookup by name."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from comfykit import WorkflowManager
from comfykit.errors import TemplateError
from comfykit.workflow import (
    Parameter,
    Template,
    create_template,
    find_template,
    instantiate,
    list_templates,
    load_template,
    save_template,
)

ROOT = Path(__file__).resolve().parent.parent.parent
WORKFLOWS = ROOT / "tests" / "fixtures" / "recordings" / "0.33.0" / "workflows"
KSAMPLER = json.loads((WORKFLOWS / "tiny_ksampler.json").read_text())
KSAMPLER["3"]["_meta"] = {"title": "Positive Prompt"}

PARAMETERS: dict[str, Any] = {
    "prompt": {"targets": ['"Positive Prompt".text'], "type": "str", "description": "What to draw"},
    "seed": {"targets": ["KSampler.seed"], "type": "int", "default": 0, "min": 0},
    "steps": {"target": "6.steps", "type": "int", "default": 6, "min": 1, "max": 100},
    "cfg": {"targets": ["KSampler.cfg"], "type": "float", "default": 2.0, "min": 0.0, "max": 30.0},
    "sampler": {"targets": ["KSampler.sampler_name"], "type": "choice", "choices": ["euler", "dpmpp_2m", 5],
                "default": "euler"},
    "size": {"targets": ["EmptySD3LatentImage.width", "EmptySD3LatentImage.height"], "type": "int", "default": 256},
    "flag": {"targets": ["SaveLatent.filename_prefix"], "type": "str", "default": "tiny"},
}


@pytest.fixture
def template() -> Template:
    return create_template(KSAMPLER, PARAMETERS, name="tiny", description="A tiny sampler")


def test_instantiate_sets_every_target_and_keeps_the_template(template: Template) -> None:
    before = copy.deepcopy(template.workflow)
    graph = instantiate(template, {"prompt": "a cat", "seed": 42, "size": 512, "sampler": "dpmpp_2m"})
    assert graph["3"]["inputs"]["text"] == "a cat"
    assert graph["6"]["inputs"]["seed"] == 42 and graph["6"]["inputs"]["sampler_name"] == "dpmpp_2m"
    assert graph["5"]["inputs"]["width"] == graph["5"]["inputs"]["height"] == 512
    assert graph["6"]["inputs"]["steps"] == 6  # the default
    assert template.workflow == before
    assert template.parameters["prompt"].required and not template.parameters["seed"].required


def test_text_values_are_converted_to_the_parameter_type(template: Template) -> None:
    graph = instantiate(template, {"prompt": 42, "seed": "42", "cfg": "7.5", "steps": 3.0, "sampler": "5"})
    assert graph["3"]["inputs"]["text"] == "42"
    assert graph["6"]["inputs"]["seed"] == 42 and graph["6"]["inputs"]["cfg"] == 7.5
    assert graph["6"]["inputs"]["steps"] == 3 and graph["6"]["inputs"]["sampler_name"] == 5
    flags = create_template(KSAMPLER, {"b": {"target": "KSampler.denoise", "type": "bool", "default": False}})
    assert instantiate(flags, {"b": "true"})["6"]["inputs"]["denoise"] is True
    assert instantiate(flags, {"b": "No"})["6"]["inputs"]["denoise"] is False
    assert instantiate(flags, {"b": 1})["6"]["inputs"]["denoise"] is True


@pytest.mark.parametrize(
    ("values", "message", "hint"),
    [
        ({"prompt": "x", "sed": 1}, "unknown parameter 'sed'", "Did you mean seed"),
        ({"prompt": "x", "zzz": 1}, "unknown parameter 'zzz'", "Its parameters are: prompt, seed"),
        ({}, "missing required parameter 'prompt'", "prompt=... (prompt: What to draw)"),
        ({"prompt": "x", "seed": "forty"}, "parameter 'seed': value 'forty' is not an integer", "whole number"),
        ({"prompt": "x", "seed": True}, "parameter 'seed': value True is not an integer", "whole number"),
        ({"prompt": "x", "seed": 1.5}, "parameter 'seed': value 1.5 is not an integer", "whole number"),
        ({"prompt": "x", "cfg": "hot"}, "parameter 'cfg': value 'hot' is not a number", "7.5"),
        ({"prompt": "x", "cfg": "nan"}, "not a finite number", "7.5"),
        ({"prompt": "x", "steps": 0}, "parameter 'steps': value 0 is below the minimum 1", "from 1 to 100"),
        ({"prompt": "x", "cfg": 31}, "parameter 'cfg': value 31 is above the maximum 30.0", "from 0.0 to 30.0"),
        ({"prompt": "x", "sampler": "eulr"}, "parameter 'sampler': value 'eulr' is not one of the choices", "euler"),
        ({"prompt": "x", "sampler": "zzz"}, "not one of the choices", "Choose from: euler, dpmpp_2m, 5"),
        ({"prompt": ["a"]}, "parameter 'prompt': value ['a'] is not a text", "quote"),
    ],
)
def test_bad_values_raise_template_errors_naming_the_parameter(
    template: Template, values: dict[str, Any], message: str, hint: str
) -> None:
    with pytest.raises(TemplateError) as caught:
        instantiate(template, values)
    assert str(caught.value).startswith("template 'tiny': ")
    assert message in caught.value.message
    assert hint in (caught.value.hint or "")


def test_bool_parameters_reject_other_text() -> None:
    flags = create_template(KSAMPLER, {"b": {"target": "KSampler.denoise", "type": "bool"}})
    with pytest.raises(TemplateError, match="is not true or false"):
        instantiate(flags, {"b": "maybe"})


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"x": {"targets": ["Nope.seed"], "type": "int"}}, "target 'Nope.seed': no node 'Nope'"),
        ({"x": {"targets": ["KSampler.sed"], "type": "int"}}, "has no input 'sed'"),
        ({"x": {"targets": [], "type": "int"}}, "has no targets"),
        ({"x": {"type": "int"}}, "has no targets"),
        ({"x": {"targets": ["KSampler.seed"], "type": "integer"}}, "unknown type 'integer'"),
        ({"x": {"targets": ["KSampler.seed"], "type": "choice"}}, "a choice without choices"),
        ({"x": {"targets": ["KSampler.seed"], "type": "int", "min": 5, "max": 1}}, "min 5 above max 1"),
        ({"x": {"targets": ["KSampler.seed"], "type": "int", "default": "a"}}, "default 'a' is not an integer"),
        ({"x": {"targets": ["KSampler.seed"], "kind": "int"}}, "unknown field(s) kind"),
        ({"x": "KSampler.model"}, "targets a linked input"),
        ({"a=b": "KSampler.seed"}, "not usable"),
    ],
)
def test_create_template_checks_targets_types_and_defaults(parameters: dict[str, Any], message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        create_template(KSAMPLER, parameters, name="bad")
    assert message in caught.value.message


def test_bare_targets_take_type_and_default_from_the_workflow() -> None:
    template = create_template(KSAMPLER, {"seed": "KSampler.seed", "denoise": ["6.denoise"]})
    assert template.parameters["seed"] == Parameter(targets=("KSampler.seed",), type="int", default=1)
    assert template.parameters["denoise"].type == "float"
    assert instantiate(template) == KSAMPLER
    assert template.describe() == ["seed (int, default 1)", "denoise (float, default 1.0)"]


def test_random_seeds(template: Template) -> None:
    one = instantiate(template, {"prompt": "x"}, random_seeds=True, rng=random.Random(7))
    again = instantiate(template, {"prompt": "x"}, random_seeds=True, rng=random.Random(7))
    other = instantiate(template, {"prompt": "x"}, random_seeds=True, rng=random.Random(8))
    assert one == again and one["6"]["inputs"]["seed"] != other["6"]["inputs"]["seed"]
    assert 0 <= one["6"]["inputs"]["seed"] < 2**53
    given = instantiate(template, {"prompt": "x", "seed": 3}, random_seeds=True)
    assert given["6"]["inputs"]["seed"] == 3
    # Seed inputs no parameter covers are randomized too.
    bare = create_template(KSAMPLER, {"steps": "KSampler.steps"})
    assert instantiate(bare, random_seeds=True, rng=random.Random(1))["6"]["inputs"]["seed"] != 1
    assert instantiate(bare)["6"]["inputs"]["seed"] == 1


def test_save_and_load_inline_and_referenced(tmp_path: Path, template: Template) -> None:
    inline = save_template(template, tmp_path)
    assert inline == tmp_path / "tiny.template.yaml"
    loaded = load_template(inline)
    assert loaded.workflow == template.workflow and loaded.parameters == template.parameters
    assert loaded.description == "A tiny sampler" and loaded.source == str(inline)

    referenced = save_template(template, tmp_path / "sub" / "ref.template.yaml", workflow_file="tiny.json")
    data = yaml.safe_load(referenced.read_text())
    assert data["workflow"] == "tiny.json"
    assert json.loads((tmp_path / "sub" / "tiny.json").read_text()) == template.workflow
    again = load_template(referenced)
    assert again.workflow == template.workflow and again.workflow_file == "tiny.json"
    assert instantiate(again, {"prompt": "a"}) == instantiate(template, {"prompt": "a"})


def test_errors_name_the_template_file(tmp_path: Path, template: Template) -> None:
    path = save_template(template, tmp_path)
    with pytest.raises(TemplateError) as caught:
        instantiate(load_template(path), {"prompt": "x", "steps": 500})
    assert str(caught.value).startswith(f"{path}: template 'tiny': parameter 'steps'")
    broken = tmp_path / "broken.template.yaml"
    broken.write_text("name: broken\nworkflow: missing.json\nparameters: {}\n")
    with pytest.raises(TemplateError, match=r"broken\.template\.yaml: template 'broken': its workflow cannot be loaded"):
        load_template(broken)
    broken.write_text("workflow: {}\nextra: 1\n")
    with pytest.raises(TemplateError, match="unknown key"):
        load_template(broken)
    broken.write_text("- a list\n")
    with pytest.raises(TemplateError, match="must hold a mapping"):
        load_template(broken)
    broken.write_text("name: x\nparameters: {}\n")
    with pytest.raises(TemplateError, match="has no workflow"):
        load_template(broken)
    with pytest.raises(TemplateError, match="cannot read"):
        load_template(tmp_path / "absent.template.yaml")


def test_find_template_by_name_from_a_folder_or_the_config(tmp_path: Path, template: Template) -> None:
    save_template(template, tmp_path / "templates")
    save_template(attrs_evolve(template, name="other"), tmp_path / "templates")
    assert list_templates(tmp_path / "templates") == ["other", "tiny"]
    assert list_templates(tmp_path / "nowhere") == []
    assert find_template("tiny", tmp_path / "templates").name == "tiny"
    assert find_template("tiny", {"workflow.templates_dir": str(tmp_path / "templates")}).name == "tiny"
    assert find_template("tiny", {"workflow": {"templates_dir": str(tmp_path / "templates")}}).name == "tiny"
    assert find_template(str(tmp_path / "templates" / "other.template.yaml")).name == "other"
    with pytest.raises(TemplateError, match="no template named 'tinny'") as caught:
        find_template("tinny", tmp_path / "templates")
    assert "Did you mean tiny" in (caught.value.hint or "")
    with pytest.raises(TemplateError) as caught:
        find_template("zzz", tmp_path / "empty")
    assert "no templates in" in (caught.value.hint or "")


def attrs_evolve(template: Template, **changes: Any) -> Template:
    import attrs

    return attrs.evolve(template, **changes)


def test_workflow_manager_template_methods(tmp_path: Path) -> None:
    manager = WorkflowManager(tmp_path / "workflows", templates_dir=tmp_path / "templates")
    manager.register_workflow("tiny", KSAMPLER)
    template = manager.create_template("tiny", {"seed": "KSampler.seed"}, name="seeded")
    assert manager.instantiate_template("seeded", {"seed": 9})["6"]["inputs"]["seed"] == 9
    assert manager.instantiate_template(template)["6"]["inputs"]["seed"] == 1
    saved = manager.save_template("seeded")
    assert saved == tmp_path / "templates" / "seeded.template.yaml"
    fresh = WorkflowManager(tmp_path / "workflows", templates_dir=tmp_path / "templates")
    assert fresh.list_templates() == ["seeded"]
    assert fresh.instantiate_template("seeded", {"seed": "5"})["6"]["inputs"]["seed"] == 5
    with pytest.raises(TemplateError, match="no template named"):
        fresh.instantiate_template("nope")


# --------------------------------------------------------------------------- properties

INT_BOUNDS = (-1000, 1000)
CHOICES = ["euler", "dpmpp_2m", "ddim"]


def _typed_template() -> Template:
    return create_template(KSAMPLER, {
        "i": {"targets": ["KSampler.seed"], "type": "int", "min": INT_BOUNDS[0], "max": INT_BOUNDS[1]},
        "f": {"targets": ["KSampler.cfg"], "type": "float", "min": 0.0, "max": 30.0},
        "s": {"targets": ["CLIPTextEncode.text"], "type": "str"},
        "b": {"targets": ["KSampler.denoise"], "type": "bool"},
        "c": {"targets": ["KSampler.sampler_name"], "type": "choice", "choices": CHOICES},
    })


TYPED = _typed_template()


@settings(max_examples=200, deadline=None)
@given(i=st.integers(*INT_BOUNDS), f=st.floats(0.0, 30.0), s=st.text(), b=st.booleans(), c=st.sampled_from(CHOICES),
       as_text=st.booleans())
def test_valid_values_always_land_in_the_graph(i: int, f: float, s: str, b: bool, c: str, as_text: bool) -> None:
    values: dict[str, Any] = {"i": i, "f": f, "s": s, "b": b, "c": c}
    if as_text:  # what the command line passes
        values.update(i=str(i), f=repr(f), b=str(b).lower())
    graph = instantiate(TYPED, values)
    inputs = graph["6"]["inputs"]
    assert (inputs["seed"], inputs["cfg"], inputs["denoise"], inputs["sampler_name"]) == (i, f, b, c)
    assert graph["3"]["inputs"]["text"] == s


def _parses_as_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


bad_values = st.one_of(
    st.tuples(st.just("i"), st.one_of(st.integers(max_value=INT_BOUNDS[0] - 1), st.integers(min_value=INT_BOUNDS[1] + 1),
                                      st.booleans(), st.none(), st.lists(st.integers()),
                                      st.text().filter(lambda t: not _parses_as_int(t)))),
    st.tuples(st.just("f"), st.one_of(st.floats(max_value=-0.001), st.floats(min_value=30.001), st.booleans(), st.none(),
                                      st.text(alphabet="abcxyz", min_size=1))),
    st.tuples(st.just("s"), st.one_of(st.none(), st.booleans(), st.lists(st.text()), st.dictionaries(st.text(), st.text()))),
    st.tuples(st.just("b"), st.one_of(st.integers().filter(lambda n: n not in (0, 1)), st.none(), st.floats(),
                                      st.text().filter(lambda t: t.strip().lower() not in
                                                       {"true", "false", "yes", "no", "on", "off", "1", "0"}))),
    st.tuples(st.just("c"), st.one_of(st.text().filter(lambda t: t not in CHOICES), st.integers(), st.none())),
    st.tuples(st.text(min_size=1).filter(lambda t: t not in "ifsbc"), st.integers()),
)


@settings(max_examples=300, deadline=None)
@given(bad=bad_values)
def test_invalid_values_always_raise_template_errors(bad: tuple[str, Any]) -> None:
    name, value = bad
    values: dict[str, Any] = {"i": 1, "f": 1.0, "s": "x", "b": True, "c": "euler", name: value}
    with pytest.raises(TemplateError):
        instantiate(TYPED, values)


def test_the_documented_template_example_loads(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "workflows.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "txt2img.template.yaml").write_text(block)
    (tmp_path / "txt2img.json").write_text(json.dumps(KSAMPLER))
    template = find_template("txt2img", {"workflow.templates_dir": str(tmp_path)})
    graph = instantiate(template, {"prompt": "a cat", "seed": "42"})
    assert graph["3"]["inputs"]["text"] == "a cat" and graph["6"]["inputs"]["seed"] == 42
