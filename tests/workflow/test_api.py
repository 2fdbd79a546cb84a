"""The workflow API's own guarantees: PNG text without Pillow or pixels, the shared catalogue cache, atomic saves."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comfykit import WorkflowManager
from comfykit.errors import WorkflowLoadError, WorkflowValidationError
from comfykit.plugins import get_plugin_manager
from comfykit.testing.catalog import load_object_info
from comfykit.workflow import load_workflow, save_template, validate_before_send
from comfykit.workflow.api import saved_object_info
from comfykit.workflow.loader import png_text
from comfykit.workflow.templates import create_template

ROOT = Path(__file__).resolve().parent.parent.parent
INVERT = json.loads((ROOT / "tests" / "fixtures" / "recordings" / "0.33.0" / "workflows" / "invert_save.json").read_text())


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width: int, height: int, *texts: bytes) -> bytes:
    """A valid grey PNG of the given size, all black, with the given text chunks before the image data."""
    pixels = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then one byte per pixel
    data = b"".join(pixels.compress(row) for _ in range(height)) + pixels.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + b"".join(texts)
            + _chunk(b"IDAT", data) + _chunk(b"IEND", b""))


def _text(keyword: str, text: str) -> bytes:
    return _chunk(b"tEXt", keyword.encode("latin-1") + b"\0" + text.encode("latin-1"))


def test_a_huge_png_costs_its_text_not_its_pixels(tmp_path: Path) -> None:
    # 13000 x 13000 grey is 169 MB of pixels once decoded, in a file of a few hundred KB.
    image = tmp_path / "huge.png"
    image.write_bytes(_png(13000, 13000, _text("prompt", json.dumps(INVERT))))
    assert image.stat().st_size < 1024 * 1024
    # A fresh interpreter, so the peak is this load's alone; VmHWM is the peak resident size of the
    # process's own memory (getrusage's ru_maxrss would include the forking parent's).
    script = (
        "import sys; sys.modules['PIL'] = None\n"  # no Pillow: importing it fails
        "from comfykit.workflow import load_workflow\n"
        f"print(len(load_workflow({str(image)!r})))\n"
        "print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')))\n"
    )
    if not Path("/proc/self/status").is_file():
        pytest.skip("needs /proc/self/status (Linux) to read the peak memory")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    nodes, peak_kb = done.stdout.split()
    assert nodes == str(len(INVERT))
    assert int(peak_kb) / 1024 < 150, f"loading the workflow of a huge PNG peaked at {int(peak_kb) / 1024:.0f} MB"


def test_png_text_chunks_of_every_kind_are_read(tmp_path: Path) -> None:
    text = json.dumps(INVERT).encode()
    chunks = {
        "ztxt": _chunk(b"zTXt", b"prompt\0\0" + zlib.compress(text)),
        "itxt": _chunk(b"iTXt", b"prompt\0\0\0en\0Prompt\0" + text),
        "itxt-compressed": _chunk(b"iTXt", b"prompt\0\1\0\0\0" + zlib.compress(text)),
    }
    for name, chunk in chunks.items():
        path = tmp_path / f"{name}.png"
        other = _text("parameters", "x" * 200_000)  # another tool's text: skipped, not read
        path.write_bytes(_png(2, 2, _text("Software", "test"), other, chunk))
        assert load_workflow(path) == INVERT, name


def test_a_damaged_png_text_chunk_is_a_clear_error(tmp_path: Path) -> None:
    good = _text("prompt", json.dumps(INVERT))
    damaged = good[:-1] + bytes([good[-1] ^ 0xFF])  # a wrong checksum
    path = tmp_path / "damaged.png"
    path.write_bytes(_png(2, 2, damaged))
    with pytest.raises(WorkflowLoadError, match=r"damaged\.png.*damaged"):
        load_workflow(path)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png(2, 2, _chunk(b"zTXt", b"prompt\0\0" + b"not zlib")))
    with pytest.raises(WorkflowLoadError, match="cannot be decompressed"):
        load_workflow(bomb)
    plain = tmp_path / "plain.png"
    plain.write_bytes(_png(2, 2, _text("Software", "x")))
    with pytest.raises(WorkflowLoadError, match="carries no ComfyUI workflow"):
        load_workflow(plain)


def _catalogue_without(name: str) -> dict[str, Any]:
    info = load_object_info("0.3.64")
    return {key: info[key] for key in ("EmptyImage", "ImageInvert", "SaveImage") if key != name}


def test_two_threads_with_two_saved_catalogues_each_get_their_own(tmp_path: Path) -> None:
    # Submitter threads of two batches check against different saved files at the same time;
    # each must always see its own file, never fail because the other replaced the cached one.
    full, partial = tmp_path / "full.json", tmp_path / "partial.json"
    full.write_text(json.dumps(_catalogue_without("")))
    partial.write_text(json.dumps(_catalogue_without("ImageInvert")))
    manager = get_plugin_manager(autoload=False)
    failures: list[BaseException] = []
    verdicts: dict[str, set[str]] = {"full": set(), "partial": set()}
    start = threading.Barrier(2)

    def check(name: str, path: Path) -> None:
        settings = {"workflow.validate_before_send": True, "workflow.object_info": str(path)}
        start.wait()
        try:
            for _ in range(200):
                assert ("ImageInvert" in saved_object_info(path)) == (name == "full")
                try:
                    validate_before_send(INVERT, config=settings, plugin_manager=manager)
                    verdicts[name].add("valid")
                except WorkflowValidationError:
                    verdicts[name].add("invalid")
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=check, args=item) for item in (("full", full), ("partial", partial))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    assert verdicts == {"full": {"valid"}, "partial": {"invalid"}}


def test_concurrent_saves_of_one_file_never_collide(tmp_path: Path) -> None:
    # The old fixed ".name.tmp" file made two writers rename each other's temp file away.
    big = {str(i): {"class_type": "EmptyImage", "inputs": {"width": i, "height": 64, "batch_size": 1, "color": 0}}
           for i in range(1, 3000)}
    target = tmp_path / "shared.json"
    template = create_template(INVERT, {"width": "1.width"}, name="shared")
    manager = WorkflowManager(tmp_path)
    failures: list[BaseException] = []

    def save(n: int) -> None:
        try:
            for _ in range(15):
                manager.save_workflow(big, target)
                save_template(template, tmp_path)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=save, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    assert json.loads(target.read_text()) == big
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.json", "shared.template.yaml"]


def test_a_saved_catalogue_path_gives_the_full_checks(tmp_path: Path) -> None:
    from comfykit.workflow import validate_workflow

    saved = tmp_path / "object_info.json"
    saved.write_text(json.dumps(load_object_info("0.3.64")))
    graph = {"3": {"class_type": "KSampler", "inputs": {}}}
    ok, problems = validate_workflow(graph)
    assert ok and [p.code for p in problems] == ["schema_not_checked"]
    ok, problems = validate_workflow(graph, object_info=saved)
    assert not ok and "required_input_missing" in {p.code for p in problems}
    assert "schema_not_checked" not in {p.code for p in problems}


# Lowest first: a module may import (at its top, or anywhere) only the workflow modules before it.
# (convert and plugin may move out of the folder; a module added to it must be placed here.)
LAYERS = ["problems", "loader", "edit", "validate", "convert", "plugin", "api", "info", "templates", "sweep", "compat"]


def test_workflow_modules_import_only_the_layers_below_them() -> None:
    import ast

    folder = ROOT / "comfykit" / "workflow"
    present = {p.stem for p in folder.glob("*.py")} - {"__init__"}
    assert present <= set(LAYERS), f"place {sorted(present - set(LAYERS))} in LAYERS"
    for index, name in enumerate(LAYERS):
        if name not in present:
            continue
        tree = ast.parse((folder / f"{name}.py").read_text())
        imported = {node.module.rsplit(".", 1)[-1] for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("comfykit.workflow.")}
        above = imported - set(LAYERS[:index])
        assert not above, f"workflow/{name}.py imports {sorted(above)}, which sit above it"


@settings(max_examples=150, deadline=None)
@given(chunks=st.lists(st.tuples(st.sampled_from([b"tEXt", b"zTXt", b"iTXt", b"IDAT", b"abcd"]), st.binary(max_size=60),
                                 st.booleans()), max_size=5))
def test_any_chunk_sequence_reads_or_fails_with_a_load_error(tmp_path_factory: pytest.TempPathFactory,
                                                             chunks: list[tuple[bytes, bytes, bool]]) -> None:
    body = b"".join(_chunk(kind, data) if good_crc else _chunk(kind, data)[:-1] + b"\0" for kind, data, good_crc in chunks)
    path = tmp_path_factory.mktemp("png") / "fuzz.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    with open(path, "rb") as handle:
        handle.seek(8)
        try:
            texts = png_text(handle, path)
        except WorkflowLoadError:
            return
    assert set(texts) <= {"prompt", "workflow"} and all(isinstance(t, str) for t in texts.values())


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=200), kind=st.sampled_from(["tEXt", "zTXt", "iTXt", "iTXt-z"]))
def test_the_text_of_every_chunk_kind_comes_back_as_written(tmp_path_factory: pytest.TempPathFactory, text: str,
                                                            kind: str) -> None:
    latin = text.encode("latin-1", errors="replace").decode("latin-1")
    chunk = {
        "tEXt": _chunk(b"tEXt", b"workflow\0" + latin.encode("latin-1")),
        "zTXt": _chunk(b"zTXt", b"workflow\0\0" + zlib.compress(latin.encode("latin-1"))),
        "iTXt": _chunk(b"iTXt", b"workflow\0\0\0\0\0" + text.encode("utf-8")),
        "iTXt-z": _chunk(b"iTXt", b"workflow\0\1\0de\0Arbeit\0" + zlib.compress(text.encode("utf-8"))),
    }[kind]
    path = tmp_path_factory.mktemp("png") / "text.png"
    path.write_bytes(_png(1, 1, chunk))
    with open(path, "rb") as handle:
        handle.seek(8)
        assert png_text(handle, path) == {"workflow": latin if kind in ("tEXt", "zTXt") else text}
