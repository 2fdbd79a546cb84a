"""The documentation keeps up with the code: every hook documented under its exact signature."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from comfykit import hookspecs

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _hookspecs() -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(fn)
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("comfykit_")
    }


def test_every_hook_is_documented_under_its_exact_signature() -> None:
    text = (DOCS / "plugins" / "hooks.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^### (comfykit_\w+\([^)]*\))$", text, flags=re.MULTILINE))
    for name, signature in _hookspecs().items():
        expected = f"{name}({', '.join(signature.parameters)})"
        assert expected in headings, f"docs/plugins/hooks.md lacks a '### {expected}' section"
    documented = {h.split("(")[0] for h in headings}
    assert documented <= set(_hookspecs()), f"documented hooks that do not exist: {documented - set(_hookspecs())}"


def test_firstresult_hooks_are_marked_in_the_reference() -> None:
    text = (DOCS / "plugins" / "hooks.md").read_text(encoding="utf-8")
    sections = re.split(r"^### ", text, flags=re.MULTILINE)
    by_name = {s.split("(")[0]: s for s in sections[1:]}
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction):
        if name.startswith("comfykit_") and fn.comfykit_spec["firstresult"]:
            assert "**firstresult**" in by_name[name], name


def test_every_hook_section_documents_arguments_return_calling_and_an_example() -> None:
    text = (DOCS / "plugins" / "hooks.md").read_text(encoding="utf-8")
    sections = re.split(r"^### ", text, flags=re.MULTILINE)
    by_name = {s.split("(")[0]: s for s in sections[1:]}
    for name, signature in _hookspecs().items():
        section = by_name[name]
        for parameter in signature.parameters:
            assert f"- `{parameter}`" in section, f"{name}: argument {parameter!r} has no '- `{parameter}`' line"
        assert "\n- Returns" in section, f"{name}: no '- Returns ...' line"
        calls = [line for line in section.splitlines() if line.startswith("- Calls:")]
        assert len(calls) == 1, f"{name}: needs exactly one '- Calls: ...' line"
        firstresult = getattr(hookspecs, name).comfykit_spec["firstresult"]
        assert ("**firstresult**" in calls[0]) == firstresult, f"{name}: the Calls line misstates firstresult"
        assert "```python" in section, f"{name}: no Python example"


def test_generated_reference_pages_are_up_to_date() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for relative, build in module.PAGES.items():
        committed = (DOCS / relative).read_text(encoding="utf-8")
        assert committed == build() + "\n", f"docs/{relative} is stale: run python docs/gen_reference.py"


def test_every_hook_has_a_test() -> None:
    """Each hookspec is implemented (``def comfykit_x(``) or called (``.comfykit_x(``) by some test, as datasette checks."""
    tests = Path(__file__).resolve().parent
    sources = "\n".join(path.read_text(encoding="utf-8") for path in sorted(tests.rglob("*.py")))
    untested = [
        name for name in _hookspecs()
        if not re.search(rf"(?:\bdef |\.){name}\(", sources)
    ]
    assert not untested, f"hooks without a test that implements or calls them: {', '.join(untested)}"
