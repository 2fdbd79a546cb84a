"""Output records: what a server reported a job produced, and what a sink stored.

``OutputFile`` is one item of a node's UI output (``images``, ``gifs``,
``audio``, ``text``...) as ComfyUI reports it in ``executed`` events and in
``/history``; ``StoredOutput`` is what an output sink did with one.
"""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["OutputFile", "StoredOutput"]


@attrs.frozen
class OutputFile:
    """One output a node reported: a file on the server, or an inline value (text).

    ``kind`` is the key it came under (``images``, ``gifs``, ``videos``,
    ``audio``, ``text``, ``latents``, ``3d``... or an unknown key kept as is);
    ``folder_type`` is ComfyUI's ``type`` (``output``, ``temp``, ``input``).
    ``value`` holds inline data (text strings); ``raw`` the item as sent.
    """

    node_id: str
    kind: str
    filename: str | None = None
    subfolder: str = ""
    folder_type: str = "output"
    index: int = 0
    value: Any = None
    raw: Any = None

    @property
    def is_file(self) -> bool:
        return self.filename is not None

    @property
    def is_temp(self) -> bool:
        return self.folder_type == "temp"


@attrs.frozen
class StoredOutput:
    """What one sink stored: where, how big, and its SHA-256."""

    sink: str
    node_id: str
    kind: str
    location: str
    bytes: int | None = None
    sha256: str | None = None
    skipped: bool = False
