"""Reading the recorded exchanges copied into tests/fixtures, and the shape two answers are compared by."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RECORDINGS = Path(__file__).resolve().parent.parent / "fixtures" / "recordings"


def load_http(version: str, name: str) -> dict[str, Any]:
    """One recorded HTTP exchange of ComfyUI ``version``."""
    return dict(json.loads((RECORDINGS / version / "http" / f"{name}.json").read_text()))


def shape(value: Any) -> Any:
    """Keys and value types, recursively; ids, numbers and texts themselves are ignored."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return ["list"]
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if value is None:
        return "null"
    return type(value).__name__
