"""The simulator's input, output and temp folders, with ComfyUI's naming and its refusal of escapes."""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["FOLDER_TYPES", "PathEscape", "SimFiles"]

FOLDER_TYPES = ("input", "output", "temp")


class PathEscape(ValueError):
    """A requested name would leave its folder."""


class SimFiles:
    """Where the simulated server keeps files; every path it hands out stays inside ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.input_dir = self.root / "input"
        self.output_dir = self.root / "output"
        self.temp_dir = self.root / "temp"
        for folder in (self.input_dir, self.output_dir, self.temp_dir):
            folder.mkdir(parents=True, exist_ok=True)

    def folder(self, folder_type: str) -> Path:
        if folder_type not in FOLDER_TYPES:
            raise ValueError(f"unknown folder type {folder_type!r}")
        return {"input": self.input_dir, "output": self.output_dir, "temp": self.temp_dir}[folder_type]

    def inside(self, base: Path, *parts: str) -> Path:
        """Join ``parts`` under ``base``; raise PathEscape when the result leaves it."""
        candidate = Path(os.path.abspath(os.path.join(base, *parts)))
        if os.path.commonpath([candidate, base]) != str(base):
            raise PathEscape(os.path.join(*parts) if parts else "")
        return candidate

    def list_inputs(self) -> list[str]:
        names: list[str] = []
        for path in sorted(self.input_dir.rglob("*")):
            if path.is_file():
                names.append(path.relative_to(self.input_dir).as_posix())
        return names

    def input_path(self, name: str) -> Path:
        """Resolve a LoadImage value (``sub/x.png`` or ``x.png [input]``) inside its folder."""
        folder = self.input_dir
        match = re.fullmatch(r"(.*) \[(input|output|temp)\]", name)
        if match:
            name, folder = match.group(1), self.folder(match.group(2))
        return self.inside(folder, name)

    def save(self, folder_type: str, filename_prefix: str, ext: str, data: bytes) -> tuple[str, str]:
        """Write ``data`` as ``<prefix>_<counter>_.<ext>`` the way ComfyUI names saved files."""
        base = self.folder(folder_type)
        subfolder, _, prefix = filename_prefix.replace("\\", "/").rpartition("/")
        directory = self.inside(base, subfolder) if subfolder else base
        directory.mkdir(parents=True, exist_ok=True)
        pattern = re.compile(re.escape(prefix) + r"_(\d{5})_")
        counter = 1 + max(
            (int(m.group(1)) for p in directory.iterdir() if (m := pattern.match(p.name))), default=0
        )
        filename = f"{prefix}_{counter:05d}_.{ext}"
        # Whole or not at all: a /view (view_any_name serves "the newest file") must never read half of it.
        partial = directory / f".{filename}.partial"
        partial.write_bytes(data)
        os.replace(partial, directory / filename)
        return filename, subfolder

    def clear_temp(self) -> None:
        for path in sorted(self.temp_dir.rglob("*"), reverse=True):
            if path.is_file():
                path.unlink()
            elif path.is_dir():
                path.rmdir()
