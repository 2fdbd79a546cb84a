"""The workflow the examples send: an empty image of one colour, inverted, saved.

It needs no model, so every example finishes in seconds on the simulator
(``comfykit serve``) and runs unchanged on a real ComfyUI.  Node 1 is titled
``Background``, so its inputs can be named by title (``Background.color``).  The
scripts beside this file import it by its bare name: Python puts a script's own
folder first on the import path.
"""

from __future__ import annotations

from typing import Any

__all__ = ["solid_image"]


def solid_image(prefix: str, *, size: int = 64, color: int = 0) -> dict[str, Any]:
    """A new API-format graph saving a ``size`` by ``size`` image of ``color`` under ``prefix``."""
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": size, "height": size, "batch_size": 1, "color": color},
            "_meta": {"title": "Background"},
        },
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }
