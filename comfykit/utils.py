"""Small helpers: the original tool's output-image extraction, and the check that decoded data is plain JSON."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_NESTING", "extract_output_images", "plain_data_problem"]

#: deeper data than this is refused: real workflows and configs nest a few levels, and copying or
#: converting data nested thousands deep would exhaust the interpreter's recursion limit
MAX_NESTING = 64


def extract_output_images(history: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every image a history entry reports, as ``{"filename", "subfolder", "type", "node_id"}`` dicts.

    Accepts one history entry (``{"outputs": ...}``) or a ``GET /history`` answer
    (``{prompt_id: entry}``); images from all output nodes are returned in node order.
    """
    entries = [history] if "outputs" in history else [e for e in history.values() if isinstance(e, Mapping)]
    images: list[dict[str, Any]] = []
    for entry in entries:
        for node_id, ui in (entry.get("outputs") or {}).items():
            for item in (ui or {}).get("images", []) or []:
                if isinstance(item, Mapping) and "filename" in item:
                    images.append(
                        {
                            "filename": item["filename"],
                            "subfolder": item.get("subfolder", ""),
                            "type": item.get("type", "output"),
                            "node_id": node_id,
                        }
                    )
    return images


def plain_data_problem(data: Any, max_depth: int = MAX_NESTING) -> str | None:
    """Why decoded ``data`` is not plain JSON (a cycle, a non-JSON type, too deep), or ``None`` when it is.

    YAML can build what JSON cannot: anchors that contain themselves, dates, bytes, sets.
    The walk is iterative and visits a shared (aliased) value once, so neither deep
    nesting nor a "billion laughs" document makes the check itself expensive.
    """
    verified: set[int] = set()
    # (value, depth, exiting): a container is pushed again with exiting=True to leave the current path.
    stack: list[tuple[Any, int, bool]] = [(data, 0, False)]
    on_path: set[int] = set()
    while stack:
        value, depth, exiting = stack.pop()
        if exiting:
            on_path.discard(id(value))
            verified.add(id(value))
            continue
        if value is None or isinstance(value, (str, bool, int, float)):
            continue
        if not isinstance(value, (dict, list)):
            return f"a value of type {type(value).__name__} ({str(value)[:40]!r}), which JSON cannot carry"
        if id(value) in on_path:
            return "a value that contains itself (a YAML anchor used inside itself)"
        if id(value) in verified:
            continue
        if depth >= max_depth:
            return f"values nested more than {max_depth} levels deep"
        on_path.add(id(value))
        stack.append((value, depth, True))
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, (str, int, float, bool)) and key is not None:
                    return f"a key of type {type(key).__name__} ({str(key)[:40]!r}), which JSON cannot carry"
                stack.append((item, depth + 1, False))
        else:
            stack.extend((item, depth + 1, False) for item in value)
    return None
