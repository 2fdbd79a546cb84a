"""Small helpers kept from the original tool's API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["extract_output_images"]


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
