"""Reading workflow files: API-format JSON, the ``{"prompt": ...}`` wrapper, YAML, and ComfyUI PNGs.

Reading (bytes to data) and conversion (data to an API graph) are separate hooks,
``comfykit_read_workflow`` and ``comfykit_convert_workflow``, so a plugin can add a
container format or a workflow format independently.  Nothing here mutates the
caller's data: every result is a deep copy.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from comfykit.errors import ConversionError, WorkflowLoadError
from comfykit.utils import plain_data_problem

__all__ = ["dump_yaml", "is_api_graph", "is_ui_workflow", "read_workflow_file", "to_api_graph"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_workflow_file(path: Path) -> Any:
    """Decode a JSON, YAML or PNG workflow file; raise :class:`WorkflowLoadError` naming the file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise WorkflowLoadError(f"cannot read the file: {exc.strerror or exc}", path=str(path),
                                hint="Check the path and permissions.") from None
    if raw.startswith(PNG_SIGNATURE):
        return _read_png(path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise WorkflowLoadError("the file is neither UTF-8 text nor a PNG", path=str(path)) from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise WorkflowLoadError(f"invalid YAML: {exc}", path=str(path)) from None
        except RecursionError:
            raise WorkflowLoadError("the YAML is nested too deeply to read", path=str(path)) from None
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


def _read_png(path: Path) -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise WorkflowLoadError("reading workflows from PNG files needs Pillow", path=str(path),
                                hint="pip install 'comfykit[simulator]' or pip install Pillow") from None
    try:
        with Image.open(path) as image:
            text = dict(getattr(image, "text", {}) or image.info)
    except Exception as exc:  # Pillow's decoders raise many types (OSError, SyntaxError, ValueError...) on corrupt files
        raise WorkflowLoadError(f"the PNG cannot be read: {type(exc).__name__}: {exc}", path=str(path)) from None
    for key in ("prompt", "workflow"):
        if isinstance(text.get(key), str):
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
