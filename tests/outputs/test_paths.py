"""Naming templates and the guarantee that no server-sent name escapes the output folder."""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comfykit.errors import OutputError, UnsafePathError
from comfykit.jobs import Job
from comfykit.outputs import OutputFile
from comfykit.paths import (
    MAX_COMPONENT_BYTES,
    _part_tokens,
    _sanitize_any,
    output_root,
    resolve_inside,
    safe_output_path,
    sanitize_component,
)
from comfykit_download.naming import DEFAULT_NAMING, output_fields, plan_output_paths


def _fields(filename: str, subfolder: str = "", **extra: Any) -> dict[str, Any]:
    output = OutputFile(node_id="9", kind="images", filename=filename, subfolder=subfolder)
    job = Job(workflow={}, job_id="job1", params={"seed": 42, "name": "../evil"})
    when = datetime.datetime(2026, 11, 25, 18, 30, 5)
    return output_fields(output, job=job, prompt_id="p-1", server="http://gpu-box:8188", when=when) | extra


def test_default_template(tmp_path: Path) -> None:
    assert safe_output_path(tmp_path, DEFAULT_NAMING, _fields("x_00001_.png")) == tmp_path.resolve() / "job1" / "9_x_00001_.png"


def test_every_field_and_template_parameters(tmp_path: Path) -> None:
    template = "{date}/{host}/{prompt_id}/{subfolder}/{kind}_{index:03d}_{stem}_s{params[seed]}_{seed}_{name}.{ext}"
    path = safe_output_path(tmp_path, template, _fields("pic.webp", "a/b"))
    assert path.relative_to(tmp_path.resolve()).as_posix() == "2026-11-25/gpu-box/p-1/a/b/images_000_pic_s42_42_.._evil.webp"
    assert safe_output_path(tmp_path, "{time}_{filename}", _fields("a.png")).name == "18-30-05_a.png"


def test_template_mistakes_are_clear(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="unknown field 'nope'") as info:
        safe_output_path(tmp_path, "{nope}/{filename}", _fields("a.png"))
    assert "output.naming" in str(info.value)
    with pytest.raises(OutputError, match="bad naming template"):
        safe_output_path(tmp_path, "{filename", _fields("a.png"))
    with pytest.raises(OutputError, match="private"):
        safe_output_path(tmp_path, "{filename.__class__}", _fields("a.png"))


@pytest.mark.parametrize(
    ("filename", "subfolder", "expected"),
    [
        ("../../etc/x.png", "", "job1/9_.._.._etc_x.png"),
        ("/abs/p.png", "", "job1/9__abs_p.png"),
        ("C:\\x.png", "", "job1/9_C__x.png"),
        ("a\x00b.png", "", "job1/9_a_b.png"),
        ("x.png", "../..", "job1/x.png"),
        ("x.png", "/etc", "job1/etc/x.png"),
        ("x.png", "C:\\Windows\\..\\..", "job1/C_/Windows/x.png"),
    ],
)
def test_hostile_names_are_sanitized(tmp_path: Path, filename: str, subfolder: str, expected: str) -> None:
    template = "{job_id}/{subfolder}/{filename}" if subfolder else DEFAULT_NAMING
    path = safe_output_path(tmp_path, template, _fields(filename, subfolder))
    assert path.relative_to(tmp_path.resolve()).as_posix() == expected


# Names near the shortcut's edges: plain characters, and the ones it must leave to the general rules.
_NEAR_PLAIN = st.one_of(
    st.text(alphabet="aZ09_-. ", max_size=205),
    st.text(alphabet="aZ09_-. /\\:é\x00", max_size=12),
    st.sampled_from(["CON", "con.png", "Lpt9 .txt", "aux", "nul.", "com0", "PRN .x", "x" * 200, "x" * 201]),
)


@given(_NEAR_PLAIN)
def test_the_plain_name_shortcut_answers_as_the_general_rules(name: str) -> None:
    assert sanitize_component(name) == _sanitize_any(name, "_")


def test_part_file_tokens_are_unique_and_differ_in_a_forked_child() -> None:
    tokens = [_part_tokens.next() for _ in range(10_000)]
    assert len(set(tokens)) == len(tokens) and all(len(t) == 12 and int(t, 16) >= 0 for t in tokens)
    if not hasattr(os, "fork"):
        return
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child's first token, then out without running the parent's cleanup
        os.write(write, _part_tokens.next().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    theirs = os.read(read, 64).decode()
    os.close(read)
    # Drawn again after the fork: another process half (1 in 16 million to clash, and O_EXCL would still decide).
    assert theirs[:6] != tokens[-1][:6]


def test_components_are_made_safe() -> None:
    assert sanitize_component("..") == "_" and sanitize_component("") == "_" and sanitize_component(" . ") == "_"
    assert sanitize_component("CON") == "_CON" and sanitize_component("lpt1.txt") == "_lpt1.txt"
    assert sanitize_component("nul .png") == "_nul .png" and sanitize_component("console.png") == "console.png"
    assert sanitize_component("a\tb\x7f") == "a_b_" and sanitize_component("name. ") == "name"
    long = sanitize_component("é" * 300 + ".png")
    assert long.endswith(".png") and len(long.encode()) <= MAX_COMPONENT_BYTES
    long.encode("utf-8").decode("utf-8")


def test_a_symlink_inside_the_folder_that_points_outside_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "out", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "job1")
    with pytest.raises(UnsafePathError, match="outside the output folder") as info:
        safe_output_path(root, DEFAULT_NAMING, _fields("x.png"))
    assert info.value.hint and "symbolic link" in info.value.hint


def test_a_template_that_renders_nothing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsafePathError, match="empty path"):
        safe_output_path(tmp_path, "{subfolder}", _fields("x.png", "../.."))


def test_plans_give_colliding_outputs_distinct_names(tmp_path: Path) -> None:
    outputs = [OutputFile(node_id="3", kind="images", filename="same.png", index=i) for i in range(3)]
    outputs.append(OutputFile(node_id="5", kind="text", value="hi"))
    plan = plan_output_paths(tmp_path, "{filename}", outputs, job=Job(workflow={}, job_id="j"))
    assert [p.name for _, p in plan if isinstance(p, Path)] == ["same.png", "same_1.png", "same_2.png", "text_0.txt"]


_pieces = st.sampled_from([".", "/", "\\", ":", "C", "a", "\x00", "\x01", " ", "é", "~", "..", "CON", "x" * 60, "../"])
_hostile = st.lists(_pieces, max_size=12).map("".join) | st.text(max_size=300)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(filename=_hostile, subfolder=_hostile, template=st.sampled_from([DEFAULT_NAMING, "{subfolder}/{filename}",
                                                                        "{subfolder}{filename}", "{stem}/{ext}"]))
def test_results_are_always_inside_root(tmp_path: Path, filename: str, subfolder: str, template: str) -> None:
    root = (tmp_path / "out").resolve()
    try:
        path = safe_output_path(root, template, _fields(filename, subfolder))
    except UnsafePathError:
        return
    assert os.path.commonpath([path, root]) == str(root) and path != root
    assert all(0 < len(part.encode("utf-8")) <= MAX_COMPONENT_BYTES for part in path.relative_to(root).parts)
    assert all(part not in {".", ".."} and "\x00" not in part for part in path.relative_to(root).parts)


def test_resolving_below_the_root_agrees_with_path_resolve(tmp_path: Path) -> None:
    root = output_root(tmp_path / "out")
    elsewhere = tmp_path / "elsewhere"
    (root / "a" / "b").mkdir(parents=True)
    elsewhere.mkdir()
    (root / "link").symlink_to(elsewhere, target_is_directory=True)
    (root / "a" / "inner").symlink_to(root / "a" / "b", target_is_directory=True)
    (root / "a" / "file.png").write_bytes(b"x")
    for relative in ["a", "a/b", "a/b/new/deeper.png", "link", "link/x.png", "a/inner/y.png", "a/file.png",
                     "a/file.png/below", "missing/x/y.png"]:
        path = root / relative
        assert resolve_inside(root, path) == path.resolve(), relative
    assert not str(resolve_inside(root, root / "link" / "x.png")).startswith(str(root))
