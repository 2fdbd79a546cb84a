"""Workflow and template files built to exhaust memory or crash the parser get a clear error naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfykit.errors import TemplateError, WorkflowLoadError
from comfykit.workflow import load_template, load_workflow


def _bomb(levels: int = 12) -> str:
    lines = ['x0: &x0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"x{n}: &x{n} [" + ", ".join([f"*x{n - 1}"] * 10) + "]" for n in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_in_a_workflows_meta_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(_bomb() + '"1":\n  class_type: EmptyImage\n  inputs: {width: 8, height: 8}\n  _meta: {laughs: *x11}\n')
    with pytest.raises(WorkflowLoadError, match="aliases expand") as caught:
        load_workflow(path)
    assert str(path) in str(caught.value)


def test_a_five_thousand_digit_integer_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text('"1":\n  class_type: KSampler\n  inputs:\n    seed: ' + "9" * 5000 + "\n")
    with pytest.raises(WorkflowLoadError, match="invalid YAML") as caught:
        load_workflow(path)
    assert str(path) in str(caught.value)
    json_path = tmp_path / "flow.json"
    json_path.write_text('{"1": {"class_type": "KSampler", "inputs": {"seed": ' + "9" * 5000 + "}}}")
    with pytest.raises(WorkflowLoadError, match="invalid JSON"):
        load_workflow(json_path)


def test_a_template_with_an_alias_bomb_or_a_huge_integer_is_a_template_error(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.template.yaml"
    bomb.write_text(_bomb() + "name: bomb\nparameters: *x11\n")
    with pytest.raises(TemplateError, match="aliases expand"):
        load_template(bomb)
    digits = tmp_path / "digits.template.yaml"
    digits.write_text("name: digits\nversion: " + "7" * 5000 + "\n")
    with pytest.raises(TemplateError, match="invalid YAML"):
        load_template(digits)
