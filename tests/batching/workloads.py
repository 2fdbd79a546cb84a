"""Workloads shared by the batch tests and the child process they kill: unique model-free graphs."""

from __future__ import annotations

from typing import Any


def unique_workflows(count: int, *, offset: int = 0) -> list[dict[str, Any]]:
    """``count`` different three-node graphs (an empty image of a distinct colour, inverted, saved)."""
    return [
        {
            "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": offset + i}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": f"q/{offset + i}"}},
        }
        for i in range(count)
    ]
