"""Reading workflow files: API-format JSON, the ``{"prompt": ...}`` wrapper, YAML, and ComfyUI PNGs.

A PNG saved by ComfyUI carries its graph in text chunks (``prompt``, ``workflow``);
they are read with ``struct`` and ``zlib`` alone, seeking over the image data, so a
huge image costs no more than its text.

Reading (bytes to data) and conversion (data to an API graph) are separate hooks,
``comfykit_read_workflow`` and ``comfykit_convert_workflow``, so a plugin can add a
container format or a workflow format independently.  Nothing here mutates the
caller's data: every result is a deep copy.
"""

from __future__ import annotations

import copy
import json
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from comfykit.errors import ConversionError, WorkflowLoadError
from comfykit.parsing import load_yaml, plain_data_problem

__all__ = ["dump_yaml", "is_api_graph", "is_ui_workflow", "png_text", "read_workflow_file", "to_api_graph"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: the text chunks that can hold a workflow, and the keywords ComfyUI writes
PNG_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
WORKFLOW_KEYWORDS = ("prompt", "workflow")
#: a text chunk (or its decompressed text) larger than this is refused: real workflows are a few MB
MAX_PNG_TEXT = 64 * 1024 * 1024


def read_workflow_file(path: Path) -> Any:
    """Decode a JSON, YAML or PNG workflow file; raise :class:`WorkflowLoadError` naming the file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(PNG_SIGNATURE))
            if head == PNG_SIGNATURE:
                text = png_text(handle, path)
            else:
                raw = head + handle.read()
    except OSError as exc:
        raise WorkflowLoadError(f"cannot read the file: {exc.strerror or exc}", path=str(path),
                                hint="Check the path and permissions.") from None
    if head == PNG_SIGNATURE:
        return _png_workflow(text, path)
    return _decode(raw, path)


def _decode(raw: bytes, path: Path) -> Any:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise WorkflowLoadError("the file is neither UTF-8 text nor a PNG", path=str(path)) from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = load_yaml(text)
        except yaml.YAMLError as exc:
            raise WorkflowLoadError(f"invalid YAML: {exc}", path=str(path)) from None
        except RecursionError:
            raise WorkflowLoadError("the YAML is nested too deeply to read", path=str(path)) from None
        except ValueError as exc:  # e.g. an integer of more digits than Python converts
            raise WorkflowLoadError(f"invalid YAML: {exc}", path=str(path)) from None
        return _plain(data, path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkflowLoadError(
            f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            path=str(path),
            hint="Export the workflow again, or check the file was not truncated.",
        ) from None
    except RecursionError:
        raise WorkflowLoadError("the JSON is nested too deeply to read", path=str(path)) from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise WorkflowLoadError(f"invalid JSON: {exc}", path=str(path)) from None
    return _plain(data, path)


def _plain(data: Any, path: Path) -> Any:
    problem = plain_data_problem(data)
    if problem is not None:
        raise WorkflowLoadError(f"the workflow holds {problem}", path=str(path),
                                hint="A workflow is plain JSON data: numbers, text, lists and mappings.")
    return data


def png_text(handle: BinaryIO, path: Path) -> dict[str, str]:
    """The workflow text chunks of a PNG (the handle is just past the signature), by keyword.

    Chunks are walked by their length fields; image data and other texts are skipped
    with a seek, never read or decoded.  A damaged chunk raises :class:`WorkflowLoadError`.
    """
    found: dict[str, str] = {}
    while True:
        header = handle.read(8)
        if len(header) < 8:
            return found  # no IEND: a truncated image, but its text chunks may all be there
        length, kind = struct.unpack(">I4s", header)
        if kind == b"IEND":
            return found
        # A keyword is at most 79 bytes: its NUL is within the first 80, so other texts are skipped unread.
        head = handle.read(min(length, 80)) if kind in PNG_TEXT_CHUNKS else b""
        if head.partition(b"\0")[0].decode("latin-1") not in WORKFLOW_KEYWORDS:
            handle.seek(length - len(head) + 4, 1)  # the rest of the data, and its CRC
            continue
        if length > MAX_PNG_TEXT:
            raise WorkflowLoadError(f"a {kind.decode()} chunk of {length} bytes is larger than any workflow",
                                    path=str(path))
        body = head + handle.read(length - len(head))
        crc = handle.read(4)
        if len(body) < length or len(crc) < 4 or struct.unpack(">I", crc)[0] != zlib.crc32(kind + body):
            raise WorkflowLoadError(f"the PNG's {kind.decode()} chunk is damaged (truncated or a bad checksum)",
                                    path=str(path), hint="Save the image from ComfyUI again.")
        keyword, text = _text_chunk(kind, body, path)
        found.setdefault(keyword, text)


def _text_chunk(kind: bytes, body: bytes, path: Path) -> tuple[str, str]:
    """(keyword, text) of a tEXt, zTXt or iTXt chunk body."""
    keyword, sep, rest = body.partition(b"\0")
    name = keyword.decode("latin-1")
    if not sep:
        return name, ""
    if kind == b"tEXt":
        return name, rest.decode("latin-1")
    if kind == b"zTXt":
        return name, _inflate(rest[1:], name, path).decode("latin-1")
    # iTXt: compression flag, method, language tag NUL, translated keyword NUL, UTF-8 text
    if len(rest) < 2:
        return name, ""
    compressed = rest[0] == 1
    _language, _, tail = rest[2:].partition(b"\0")
    _translated, _, data = tail.partition(b"\0")
    raw = _inflate(data, name, path) if compressed else data
    return name, raw.decode("utf-8", errors="replace")


def _inflate(data: bytes, keyword: str, path: Path) -> bytes:
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(data, MAX_PNG_TEXT)
    except zlib.error as exc:
        raise WorkflowLoadError(f"the PNG's {keyword!r} text chunk cannot be decompressed: {exc}", path=str(path)) from None
    if inflater.unconsumed_tail:
        raise WorkflowLoadError(f"the PNG's {keyword!r} text chunk inflates past {MAX_PNG_TEXT} bytes", path=str(path))
    return text


def _png_workflow(text: Mapping[str, str], path: Path) -> Any:
    for key in WORKFLOW_KEYWORDS:
        if key in text:
            try:
                return _plain(json.loads(text[key]), path)
            except (ValueError, RecursionError) as exc:
                raise WorkflowLoadError(f"the PNG's {key!r} text chunk is not valid JSON: {exc}", path=str(path)) from None
    raise WorkflowLoadError(
        "this PNG carries no ComfyUI workflow (no 'prompt' or 'workflow' text chunk)",
        path=str(path),
        hint="Only images saved by ComfyUI's SaveImage node embed their workflow.",
    )


def is_api_graph(data: Any) -> bool:
    """``{node_id: {"class_type": ..., "inputs": {...}}}`` with at least one node."""
    return (
        isinstance(data, Mapping)
        and bool(data)
        and all(isinstance(node, Mapping) and "class_type" in node for node in data.values())
    )


def is_ui_workflow(data: Any) -> bool:
    """What the ComfyUI editor saves: ``nodes`` and ``links`` lists."""
    return isinstance(data, Mapping) and isinstance(data.get("nodes"), list) and "links" in data


def to_api_graph(data: Any, source: str | None) -> dict[str, Any] | None:
    """A deep copy of the API graph in ``data`` (bare or wrapped), or ``None`` when it is another format."""
    if isinstance(data, Mapping) and "prompt" in data and is_api_graph(data["prompt"]):
        data = data["prompt"]
    if is_api_graph(data):
        return {str(node_id): copy.deepcopy(dict(node)) for node_id, node in data.items()}
    if is_ui_workflow(data):
        return None
    if isinstance(data, Mapping) and not data:
        raise ConversionError("the workflow is empty", path=source, hint="Export it again with 'Export (API)'.")
    return None


def dump_yaml(data: Any) -> str:
    """YAML text that loads back equal: readable Unicode, except that PyYAML mangles U+0085 unescaped."""
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    if "\x85" in text:
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=False)
    return text
