"""Output records, and discovery of every output a ComfyUI node reports.

``OutputFile`` is one item of a node's UI output (``images``, ``gifs``,
``audio``, ``text``...) as ComfyUI reports it in ``executed`` events and in
``/history``; ``StoredOutput`` is what an output sink did with one.
:func:`discover_outputs` turns a history entry's ``outputs`` (or the
``output`` of ``executed`` events keyed by node id) into ``OutputFile`` records;
:func:`image_outputs` keeps the images among them, and
:func:`extract_output_images` gives them as the original tool's dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["METADATA_KEYS", "OutputFile", "StoredOutput", "discover_outputs", "extract_output_images", "image_outputs"]

#: UI keys that describe other outputs instead of being outputs themselves
#: (SaveAnimatedWEBP/PNG and core video nodes send ``"animated": [true]`` next to ``images``).
METADATA_KEYS = frozenset({"animated"})


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
    """What one sink stored: where, how big, and its SHA-256.

    ``node_id``, ``kind`` and ``index`` name the :class:`OutputFile` it stores
    (empty ``node_id`` for things about the whole job, such as a sidecar).
    """

    sink: str
    node_id: str
    kind: str
    location: str
    bytes: int | None = None
    sha256: str | None = None
    skipped: bool = False
    index: int = 0


def _looks_like_history_entry(data: Mapping[Any, Any]) -> bool:
    # A history entry wraps the per-node dict; node ids never sit next to "status"/"prompt".
    return isinstance(data.get("outputs"), Mapping) and ("status" in data or "prompt" in data or "meta" in data)


def _file_item(node_id: str, kind: str, index: int, item: Mapping[Any, Any]) -> OutputFile | None:
    filename = item.get("filename")
    if not isinstance(filename, str) or not filename:
        return None
    subfolder = item.get("subfolder")
    folder_type = item.get("type")
    return OutputFile(
        node_id=node_id,
        kind=kind,
        filename=filename,
        subfolder=subfolder if isinstance(subfolder, str) else "",
        folder_type=folder_type if isinstance(folder_type, str) and folder_type else "output",
        index=index,
        raw=item,
    )


def discover_outputs(outputs_by_node: Mapping[str, Any] | Any, *, include_temp: bool = False) -> list[OutputFile]:
    """Every output in ``outputs_by_node`` (``{node_id: ui_dict}``), in node order then item order.

    Items with a ``filename`` become file records whatever key they came
    under (``images``, ``gifs``, ``videos``, ``audio``, ``3d``, ``latents``,
    custom keys); other items (``text`` strings, numbers, odd shapes) become
    value records with the item kept in ``raw``.  Temp files (previews) are
    left out unless ``include_temp``.  A whole history entry is accepted too.
    Never raises on malformed input: what cannot be read is skipped or kept raw.
    """
    if not isinstance(outputs_by_node, Mapping):
        return []
    if _looks_like_history_entry(outputs_by_node):
        outputs_by_node = outputs_by_node["outputs"]
    found: list[OutputFile] = []
    for raw_node_id, ui in outputs_by_node.items():
        node_id = str(raw_node_id)
        if ui is None:
            continue
        if not isinstance(ui, Mapping):
            found.append(OutputFile(node_id=node_id, kind="raw", value=ui, raw=ui))
            continue
        for raw_kind, items in ui.items():
            kind = str(raw_kind)
            if kind in METADATA_KEYS:
                continue
            sequence = list(items) if isinstance(items, (list, tuple)) else [items]
            for index, item in enumerate(sequence):
                record = _file_item(node_id, kind, index, item) if isinstance(item, Mapping) else None
                if record is not None:
                    if record.is_temp and not include_temp:
                        continue
                    found.append(record)
                elif item is not None:
                    found.append(OutputFile(node_id=node_id, kind=kind, index=index, value=item, raw=item))
    return found


def image_outputs(outputs_by_node: Mapping[str, Any] | Any, *, include_temp: bool = True) -> list[OutputFile]:
    """The image files of ``outputs_by_node`` (what nodes report under ``images``), previews included unless told.

    The original tool's ``extract_output_images`` answers the same question with dicts.
    """
    return [o for o in discover_outputs(outputs_by_node, include_temp=include_temp) if o.kind == "images" and o.is_file]


def extract_output_images(history: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every image a history entry reports, as ``{"filename", "subfolder", "type", "node_id"}`` dicts.

    The original tool's helper (its README imports it from ``src.utils``, here
    :mod:`comfykit.utils` too), answered by :func:`image_outputs`.  Accepts one history
    entry (``{"outputs": ...}``) or a ``GET /history`` answer (``{prompt_id: entry}``);
    images from all output nodes are returned in node order, previews included.
    """
    entries = [history] if "outputs" in history else [e for e in history.values() if isinstance(e, Mapping)]
    return [
        {"filename": image.filename, "subfolder": image.subfolder, "type": image.folder_type, "node_id": image.node_id}
        for entry in entries
        for image in image_outputs(entry.get("outputs") or {}, include_temp=True)
    ]
