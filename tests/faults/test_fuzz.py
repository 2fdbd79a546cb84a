"""Fuzzing the parsers that read user or server input: only comfykit's own exceptions may escape.

Complements the property tests next to each module (random graphs for the validator, garbage
editor workflows for ``ui_to_api``, random text for ``parse_update`` and the config file, random
frames for ``parse_message``) with what they leave out: whole files of random bytes, JSON and
YAML through ``load_workflow``; structured ``--set`` text and its application to a graph; random
template files and values; binary frames with real headers; structured config files and
random ``COMFYKIT_*`` values.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comfykit.config import ConfigWarning, core_registry, load_config
from comfykit.errors import ComfyKitError, ConfigError
from comfykit.events import parse_message
from comfykit.testing.catalog import load_object_info
from comfykit.workflow import load_workflow
from comfykit.workflow.edit import apply_updates, parse_update
from comfykit.workflow.templates import create_template, instantiate, load_template

INFO = load_object_info("0.3.64")
# FUZZ_EXAMPLES=5000 runs a longer, randomly seeded search; the default run is short and always the same.
_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=_EXAMPLES or 150, deadline=None, derandomize=not _EXAMPLES,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    scalars, lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
node_ids = st.text(alphabet="0123456789:ab", min_size=1, max_size=4)
class_types = st.sampled_from(["KSampler", "SaveImage", "EmptyImage", "ImageInvert", "Nope", ""]) | st.text(max_size=8)
api_nodes = st.fixed_dictionaries(
    {"class_type": class_types | json_values},
    optional={"inputs": st.dictionaries(st.text(max_size=8), json_values | st.tuples(node_ids, st.integers(-1, 3)).map(list),
                                        max_size=4) | json_values,
              "_meta": json_values},
)
api_graphs = st.dictionaries(node_ids, api_nodes | json_values, max_size=5)
ui_workflows = st.fixed_dictionaries(
    {"nodes": st.lists(st.fixed_dictionaries({"id": st.integers(-2, 6) | json_values, "type": class_types},
                                             optional={"inputs": json_values, "outputs": json_values,
                                                       "widgets_values": json_values, "mode": json_values}), max_size=4),
     "links": st.lists(st.lists(st.integers(-1, 6) | json_values, min_size=0, max_size=6), max_size=4) | json_values},
    optional={"groups": json_values, "extra": json_values, "definitions": json_values, "version": json_values},
)
documents = api_graphs | ui_workflows | st.fixed_dictionaries({"prompt": api_graphs}) | json_values
# Text made of the characters that carry YAML's syntax, so random strings reach deep into the parser.
yaml_text = st.text(alphabet=st.sampled_from(list(":-[]{},&*!|>'\"%@`#?\n  ab1.~")), max_size=120)
deep_nesting = st.sampled_from(["[", "{\"a\": ", "- ", "a:\n "]).flatmap(
    lambda unit: st.integers(100, 3000).map(lambda n: unit * n))


def _only_comfykit_errors(action: Any) -> Any:
    try:
        return action()
    except ComfyKitError:
        return None


def _write(directory: Path, name: str, content: str | bytes) -> Path:
    path = directory / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    return path


# ---------------------------------------------------------------- workflow loaders


@FUZZ
@given(content=st.binary(max_size=300) | st.text(max_size=300) | deep_nesting,
       suffix=st.sampled_from([".json", ".yaml", ".yml", ".png", ".txt"]))
def test_any_file_loads_or_raises_a_comfykit_error(tmp_path: Path, content: str | bytes, suffix: str) -> None:
    path = _write(tmp_path, "workflow" + suffix, content)
    _only_comfykit_errors(lambda: load_workflow(path, object_info=INFO))


@FUZZ
@given(document=documents, as_yaml=st.booleans())
# Editor documents carry no frontend version here: the guess is warned about, and not what this test is about.
@pytest.mark.filterwarnings("ignore::comfykit_convert.FrontendGuessWarning")
def test_any_api_or_editor_document_loads_or_raises_a_comfykit_error(tmp_path: Path, document: Any, as_yaml: bool) -> None:
    if as_yaml:
        path = _write(tmp_path, "workflow.yaml", yaml.safe_dump(document, allow_unicode=True))
    else:
        path = _write(tmp_path, "workflow.json", json.dumps(document))
    graph = _only_comfykit_errors(lambda: load_workflow(path, object_info=INFO))
    if graph is not None:
        json.dumps(graph)  # what comes out can always be posted


@FUZZ
@given(text=yaml_text)
def test_yaml_syntax_soup_loads_or_raises_a_comfykit_error(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path, "workflow.yaml", text)
    graph = _only_comfykit_errors(lambda: load_workflow(path, object_info=INFO))
    if graph is not None:
        json.dumps(graph)


@pytest.mark.parametrize("text", [
    "&a {'1': {class_type: X, inputs: *a}}",   # a graph that contains itself
    "'1': {class_type: X, inputs: {when: 2001-01-01}}",  # a date: not JSON
    "'1': {class_type: X, inputs: {data: !!binary aGk=}}",  # bytes: not JSON
    "'1': {class_type: X, inputs: {s: !!set {a, b}}}",
])
def test_yaml_that_cannot_become_json_is_refused_on_load(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path, "workflow.yaml", text)
    with pytest.raises(ComfyKitError):
        load_workflow(path)


def test_deeply_nested_and_oversized_numbers_are_load_errors(tmp_path: Path) -> None:
    for name, text in [("deep.json", "[" * 100_000 + "]" * 100_000), ("deep.yaml", "[" * 100_000),
                       ("digits.json", '{"1": {"class_type": "X", "inputs": {"n": ' + "9" * 5000 + "}}}")]:
        with pytest.raises(ComfyKitError):
            load_workflow(_write(tmp_path, name, text))


# ---------------------------------------------------------------- --set / --update

update_text = st.text(alphabet=st.sampled_from(list('"\'.=[]{}:,0123456789 abKS_\\')), max_size=40) | deep_nesting.map(
    lambda nest: "3.seed=" + nest)
GRAPH = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 2}, "_meta": {"title": "Sampler. \"A\"=b"}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["3", 0]}},
}


@FUZZ
@given(texts=st.lists(update_text, min_size=1, max_size=3))
def test_update_text_parses_and_applies_or_raises_a_comfykit_error(texts: list[str]) -> None:
    graph = _only_comfykit_errors(lambda: apply_updates(GRAPH, [parse_update(text) for text in texts]))
    if graph is not None:
        json.dumps(graph)
        assert GRAPH["3"]["inputs"] == {"seed": 1, "steps": 2}  # the caller's graph is never changed


# ---------------------------------------------------------------- templates

SMALL = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
}
parameter_specs = st.one_of(
    st.sampled_from(["1.width", "1.color", "2.filename_prefix", "EmptyImage.height", "9.x", "1.nope", "", "."]),
    st.lists(st.sampled_from(["1.width", "1.height", "2.filename_prefix", "x.y"]), max_size=3),
    st.fixed_dictionaries({}, optional={
        "targets": json_values | st.lists(st.sampled_from(["1.width", "1.color", "2.filename_prefix"]), max_size=2),
        "target": json_values, "type": st.sampled_from(["int", "float", "str", "bool", "choice", "x"]) | json_values,
        "default": json_values, "min": json_values, "max": json_values, "choices": json_values,
        "description": json_values}),
    json_values,
)


@FUZZ
@given(parameters=st.dictionaries(st.text(min_size=1, max_size=6), parameter_specs, max_size=3),
       values=st.dictionaries(st.text(max_size=6), json_values, max_size=3))
def test_random_templates_and_values_raise_only_comfykit_errors(parameters: dict[str, Any], values: dict[str, Any]) -> None:
    template = _only_comfykit_errors(lambda: create_template(SMALL, parameters, name="fuzz"))
    if template is None:
        return
    if values:
        # Aim most values at real parameter names, so they get past the unknown-name check.
        names = list(template.parameters) or ["x"]
        values = {names[i % len(names)] if i % 3 else key: value for i, (key, value) in enumerate(values.items())}
    graph = _only_comfykit_errors(lambda: instantiate(template, values))
    if graph is not None:
        json.dumps(graph)


@FUZZ
@given(document=st.fixed_dictionaries({}, optional={
    "name": json_values, "description": json_values, "workflow": st.just(SMALL) | json_values | st.just("missing.json"),
    "parameters": st.dictionaries(st.text(min_size=1, max_size=6), parameter_specs, max_size=3) | json_values,
    "extra": json_values}) | json_values | yaml_text)
def test_random_template_files_raise_only_comfykit_errors(tmp_path: Path, document: Any) -> None:
    text = document if isinstance(document, str) else yaml.safe_dump(document, allow_unicode=True)
    path = _write(tmp_path, "fuzz.template.yaml", text)
    _only_comfykit_errors(lambda: load_template(path, object_info=INFO))


# ---------------------------------------------------------------- events


@FUZZ
@given(kind=st.sampled_from([1, 2, 3, 4, 0, 2**31]), second=st.integers(0, 2**32 - 1), rest=st.binary(max_size=200))
def test_binary_frames_with_real_headers_never_raise(kind: int, second: int, rest: bytes) -> None:
    parse_message(kind.to_bytes(4, "big") + second.to_bytes(4, "big") + rest)


# ---------------------------------------------------------------- config

REGISTRY = list(core_registry())
config_files = st.dictionaries(
    st.sampled_from([*sorted({key.section or "servers" for key in REGISTRY}), "plugins", "zzz"]) | st.text(max_size=6),
    st.dictionaries(st.sampled_from(sorted({key.key for key in REGISTRY})) | st.text(max_size=6), json_values, max_size=4)
    | json_values,
    max_size=4,
)


def _load_quietly(**kwargs: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)
        try:
            load_config(**kwargs)
        except ConfigError:
            pass


@FUZZ
@given(document=config_files, as_text=yaml_text)
def test_structured_config_files_load_or_raise_config_errors(
    tmp_path_factory: pytest.TempPathFactory, document: Any, as_text: str
) -> None:
    for content in (yaml.safe_dump(document, allow_unicode=True), as_text):
        directory = tmp_path_factory.mktemp("cfg")
        _write(directory, "comfykit.yaml", content)
        _load_quietly(cwd=directory, env={})
        # config.yaml is the legacy name: it is only used when it has a comfyui: section.
        _write(directory, "config.yaml", content)
        (directory / "comfykit.yaml").unlink()
        _load_quietly(cwd=directory, env={})


@FUZZ
@given(env=st.dictionaries(st.sampled_from([key.env_var for key in REGISTRY]),
                           st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
                                   max_size=30) | deep_nesting | json_values.map(json.dumps), max_size=4))
def test_random_environment_values_load_or_raise_config_errors(tmp_path: Path, env: dict[str, str]) -> None:
    env.pop("COMFYKIT_CONFIG", None)
    _load_quietly(cwd=tmp_path, env=env)


def test_a_deeply_nested_config_file_is_a_config_error(tmp_path: Path) -> None:
    _write(tmp_path, "comfykit.yaml", "comfyui: " + "[" * 100_000)
    with pytest.raises(ConfigError):
        load_config(cwd=tmp_path, env={})
