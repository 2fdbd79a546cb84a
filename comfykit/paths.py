"""Where an output lands on disk: naming templates, and names a server cannot turn into an escape.

Filenames and subfolders come from the server, which may be buggy or hostile
(``../../etc/x``, ``/abs``, ``C:\\x``, NUL bytes, 300-character names).
:func:`safe_output_path` renders the naming template with sanitized values,
sanitizes every path component of the result once more, and refuses with
:class:`comfykit.errors.UnsafePathError` anything whose resolved location
(symlinks followed) is not inside the output folder.  :func:`temp_file_beside`,
:func:`atomic_file`, :func:`atomic_write` and :func:`sha256_of_file` are the writing helpers every sink
(bundled or third-party) shares: nothing half-written ever carries a final name.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import re
import string
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

from comfykit.errors import OutputError, UnsafePathError

if TYPE_CHECKING:
    from comfykit.jobs import Job
    from comfykit.outputs import OutputFile

__all__ = [
    "DEFAULT_NAMING",
    "MAX_COMPONENT_BYTES",
    "atomic_file",
    "atomic_write",
    "job_time",
    "output_fields",
    "plan_output_paths",
    "safe_output_path",
    "sanitize_component",
    "sha256_of_file",
    "temp_file_beside",
]

DEFAULT_NAMING = "{job_id}/{node_id}_{filename}"

#: Longest file or folder name written, in UTF-8 bytes (most file systems allow 255).
MAX_COMPONENT_BYTES = 200

_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"COM{i}" for i in range(10)}
    | {f"LPT{i}" for i in range(10)}
)
# Control characters, path separators and the characters Windows refuses in names.
_UNSAFE_CHARS = re.compile(r'[\x00-\x1f\x7f/\\:<>"|?*]')
_SEPARATORS = re.compile(r"[/\\]+")
_MAX_EXT_BYTES = 32


def _cap(name: str, limit: int) -> str:
    """Cut ``name`` to ``limit`` UTF-8 bytes, keeping a short extension and whole characters."""
    if len(name.encode("utf-8")) <= limit:
        return name
    stem, dot, ext = name.rpartition(".")
    suffix = f".{ext}" if dot and stem and len(ext.encode("utf-8")) < _MAX_EXT_BYTES else ""
    if not suffix:
        stem = name
    room = limit - len(suffix.encode("utf-8"))
    cut = stem.encode("utf-8")[:room].decode("utf-8", errors="ignore")
    return cut + suffix


def sanitize_component(name: str, *, fallback: str = "_") -> str:
    """One safe file or folder name from any text: never empty, ``.``/``..``, a separator or a device name."""
    cleaned = _UNSAFE_CHARS.sub("_", name)
    # Windows drops trailing dots and spaces, so "x.." or "x " would name another file there.
    cleaned = cleaned.strip(" ").rstrip(". ")
    if not cleaned or set(cleaned) <= {"."}:
        return fallback
    base = cleaned.split(".", 1)[0].rstrip(" ").upper()
    if base in _WINDOWS_RESERVED:
        cleaned = "_" + cleaned
    return _cap(cleaned, MAX_COMPONENT_BYTES)


def _sanitize_relative(text: str) -> str:
    """A subfolder-like value: separators kept, every part sanitized, empty/``.``/``..`` parts dropped."""
    parts = [p for p in _SEPARATORS.split(text) if p.strip(" ").rstrip(". ")]
    return "/".join(sanitize_component(p) for p in parts)


class _SafeValues(Mapping[str, Any]):
    """Template values with every text made safe; unknown names fall back to the job's parameters."""

    def __init__(self, fields: Mapping[str, Any], params: Mapping[str, Any]) -> None:
        self._fields = fields
        self._params = params

    @staticmethod
    def safe(key: str, value: Any) -> Any:
        if isinstance(value, bool) or value is None:
            return sanitize_component(str(value))
        if isinstance(value, (int, float)):
            return value
        if isinstance(value, Mapping):
            return {str(k): _SafeValues.safe(str(k), v) for k, v in value.items()}
        if key == "subfolder":
            return _sanitize_relative(str(value))
        return sanitize_component(str(value))

    def __getitem__(self, key: str) -> Any:
        if key in self._fields:
            return self.safe(key, self._fields[key])
        if key in self._params:
            return self.safe(key, self._params[key])
        raise KeyError(key)

    def __iter__(self) -> Any:
        return iter({**self._params, **self._fields})

    def __len__(self) -> int:
        return len({**self._params, **self._fields})


def _render(template: str, fields: Mapping[str, Any]) -> str:
    params = fields.get("params")
    values = _SafeValues(fields, params if isinstance(params, Mapping) else {})
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise OutputError(f"bad naming template {template!r}: {exc}", hint="Fix output.naming.") from None
    for name in names:
        if name.startswith("_") or "._" in name or "[_" in name:
            raise OutputError(
                f"naming template {template!r} uses a private attribute ({name!r})",
                hint="Use plain field names such as {job_id}, {node_id}, {filename}, {params[seed]}.",
            )
    try:
        return template.format_map(values)
    except (KeyError, IndexError) as exc:
        known = ", ".join(sorted(k for k in fields if k != "params"))
        raise OutputError(
            f"naming template {template!r} uses an unknown field {exc}",
            hint=f"Known fields: {known}; template parameters as {{params[name]}} or {{name}}. Fix output.naming.",
        ) from None
    except (ValueError, TypeError, AttributeError) as exc:
        raise OutputError(f"naming template {template!r} cannot be rendered: {exc}", hint="Fix output.naming.") from None


def _is_inside(path: Path, root: Path) -> bool:
    try:
        return os.path.commonpath([str(path), str(root)]) == str(root)
    except ValueError:  # different drives on Windows
        return False


def safe_output_path(root: Path | str, template: str, fields: Mapping[str, Any]) -> Path:
    """The absolute file path for one output: ``template`` rendered with ``fields`` under ``root``.

    Every text value is made a safe name before rendering (subfolders keep
    their ``/``), and every component of the rendered path is sanitized
    again.  Raise :class:`UnsafePathError` when the result, with symlinks
    resolved, would still be outside ``root`` (a symlink inside the folder
    pointing elsewhere) or is empty; :class:`OutputError` when the template
    itself is wrong.
    """
    root_path = Path(root).expanduser().resolve()
    rendered = _render(template, fields)
    parts = [sanitize_component(p) for p in _SEPARATORS.split(rendered) if p.strip(" ").rstrip(". ")]
    where = f"filename {fields.get('filename')!r}, subfolder {fields.get('subfolder')!r} from node {fields.get('node_id')}"
    if not parts:
        raise UnsafePathError(
            f"the naming template {template!r} gives an empty path for {where}",
            hint="Make output.naming include {filename}.",
        )
    candidate = root_path.joinpath(*parts)
    resolved = candidate.resolve()
    if not _is_inside(resolved, root_path) or resolved == root_path:
        raise UnsafePathError(
            f"refusing to write {where} to {resolved}: it is outside the output folder {root_path}",
            hint="A symbolic link inside the output folder points outside it; remove it or choose another output_dir.",
        )
    return resolved


def job_time(job: Job | None) -> datetime.datetime:
    """The moment ``{date}``/``{time}`` stand for: when the job finished (else was submitted, created).

    Taken from the job rather than the clock, so every sink computes the same
    paths and a second download of the same job finds the files of the first.
    """
    if job is not None:
        stamp = job.finished_at or job.started_at or job.submitted_at or job.created_at
        return datetime.datetime.fromtimestamp(stamp)
    return datetime.datetime.now()


def output_fields(
    output: OutputFile,
    *,
    job: Job | None = None,
    prompt_id: str | None = None,
    server: str | None = None,
    when: datetime.datetime | None = None,
    index: int | None = None,
) -> dict[str, Any]:
    """The naming-template fields of one output (``job_id``, ``node_id``, ``filename``, ``date``...)."""
    when = when or job_time(job)
    filename = output.filename if output.filename is not None else f"{output.kind}_{output.index}.txt"
    stem, dot, ext = filename.rpartition(".")
    if not dot or not stem:
        stem, ext = filename, ""
    prompt = prompt_id or (job.prompt_id if job is not None else None) or ""
    job_id = job.job_id if job is not None else (prompt or "job")
    host = urlsplit(server).hostname if server else None
    return {
        "job_id": job_id,
        "prompt_id": prompt,
        "node_id": output.node_id,
        "filename": filename,
        "stem": stem,
        "ext": ext,
        "subfolder": output.subfolder,
        "kind": output.kind,
        "type": output.folder_type,
        "index": output.index if index is None else index,
        "date": when.strftime("%Y-%m-%d"),
        "time": when.strftime("%H-%M-%S"),
        "host": host or "",
        "server": host or "",
        "params": dict(job.params) if job is not None else {},
    }


def plan_output_paths(
    root: Path | str,
    template: str,
    outputs: Sequence[OutputFile],
    *,
    job: Job | None = None,
    prompt_id: str | None = None,
    server: str | None = None,
    when: datetime.datetime | None = None,
) -> list[tuple[OutputFile, Path | UnsafePathError]]:
    """Each output with its target path, or the :class:`UnsafePathError` that refused it.

    Two outputs that would land on the same path (a template without
    ``{index}``, or a server reporting one name for everything) get ``_1``,
    ``_2``... before the extension, in output order, so the plan is the same
    for every sink that computes it.
    """
    when = when or job_time(job)
    taken: set[Path] = set()
    plan: list[tuple[OutputFile, Path | UnsafePathError]] = []
    for output in outputs:
        fields = output_fields(output, job=job, prompt_id=prompt_id, server=server, when=when)
        try:
            path = safe_output_path(root, template, fields)
        except UnsafePathError as exc:
            plan.append((output, exc))
            continue
        path = _unique(path, taken)
        taken.add(path)
        plan.append((output, path))
    return plan


def _unique(path: Path, taken: Iterable[Path]) -> Path:
    used = set(taken)
    if path not in used:
        return path
    stem, dot, ext = path.name.rpartition(".")
    if not dot or not stem:
        stem, ext = path.name, ""
    suffix = f".{ext}" if ext and len(ext.encode("utf-8")) < _MAX_EXT_BYTES else ""
    if not suffix:
        stem = path.name
    counter = 1
    while True:
        tail = f"_{counter}{suffix}"
        room = MAX_COMPONENT_BYTES - len(tail.encode("utf-8"))
        candidate = path.with_name(stem.encode("utf-8")[:room].decode("utf-8", errors="ignore") + tail)
        if candidate not in used:
            return candidate
        counter += 1


def temp_file_beside(target: Path) -> tuple[IO[bytes], Path]:
    """An open hidden ``.part`` file in ``target``'s folder; the caller renames it onto ``target`` or removes it."""
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed by the caller, renamed or removed
        dir=target.parent, prefix=f".{target.name[:40]}.", suffix=".part", delete=False
    )
    return handle, Path(handle.name)


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[IO[bytes]]:
    """A file to write ``target``'s new content into; it takes ``target``'s name only once complete.

    On leaving the block the data is flushed to disk and renamed over ``target``; if
    the block raises, the partial file is removed and ``target`` is left as it was.
    """
    handle, temp = temp_file_beside(target)
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def atomic_write(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` so that a reader (or a crash) sees the old file or the whole new one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(target) as handle:
        handle.write(data)


def sha256_of_file(path: Path, chunk_size: int = 1024 * 1024) -> str:
    """The SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()
