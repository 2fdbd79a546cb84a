"""The bundled ``download`` plugin: an output sink that streams every output file to the output folder.

Files are streamed from ``/view`` in chunks into a temporary file next to the
destination, hashed while written, checked against the announced size and
renamed into place, so a reader never sees half a file.  A broken transfer is
resumed with a Range request when the server answers 206 (else restarted);
a file already present with the same size is left alone.  Inline text
outputs are written as ``.txt`` files.  Names come from the ``output.naming``
template (:mod:`comfykit_download.naming`) and are sanitized by
:mod:`comfykit.paths`: nothing a server sends can put a file outside
``output.output_dir``.

The hooks read the client's effective config on every call, so one process
can run clients with different settings without shared state.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import re
import shutil
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import attrs

from comfykit import hookimpl
from comfykit.errors import NotFound, OutputError, RequestTimeout, ServerError, ServerUnreachable, UnsafePathError
from comfykit.jobs import Job
from comfykit.outputs import OutputFile, StoredOutput, discover_outputs
from comfykit.paths import (
    atomic_write,
    finish_file,
    output_root,
    part_prefix,
    resolve_inside,
    sha256_of_file,
    temp_file_beside,
)
from comfykit_download.naming import DEFAULT_NAMING, plan_output_paths

if TYPE_CHECKING:
    import click
    import httpx

    from comfykit.client import ComfyUIClient
    from comfykit.config import Config, ConfigRegistry

__all__ = ["CHUNK_SIZE", "DownloadError", "DownloadLimits", "download_outputs", "selected_outputs"]

log = logging.getLogger("comfykit.download")

SINK_NAME = "download"
#: Bytes read at a time when hashing a file already on disk.
CHUNK_SIZE = 1024 * 1024
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


_MAX_BYTES = 16 * 1024**3  # room for long videos
_DEADLINE = 3600.0
_MIN_FREE_BYTES = 256 * 1024**2


@attrs.frozen
class DownloadLimits:
    """What one file may cost: its size, the time its whole transfer takes, the disk space it must leave."""

    #: larger files are refused (the announced size before anything is written, else as they arrive)
    max_bytes: int = _MAX_BYTES
    #: seconds for the whole transfer of one file, retries included: a trickling body ends
    deadline: float = _DEADLINE
    #: the transfer stops when the disk would have less than this left
    min_free_bytes: int = _MIN_FREE_BYTES

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> DownloadLimits:
        return cls(max_bytes=int(section.get("max_bytes", _MAX_BYTES)),
                   deadline=float(section.get("download_timeout", _DEADLINE)),
                   min_free_bytes=int(section.get("min_free_bytes", _MIN_FREE_BYTES)))


#: the ``output.*`` keys of :class:`DownloadLimits`
_LIMIT_KEYS = ("max_bytes", "download_timeout", "min_free_bytes")
#: Free space is checked again after this many bytes, so a full disk stops a transfer early.
_SPACE_CHECK_BYTES = 64 * 1024**2


class DownloadError(OutputError):
    """Some outputs of a job could not be stored; ``stored`` lists those that were, ``errors`` the rest."""

    def __init__(self, message: str, *, stored: Sequence[StoredOutput], errors: Sequence[BaseException]) -> None:
        details = "\n".join(f"  - {error}" for error in errors)
        super().__init__(f"{message}\n{details}", hint="The files listed as stored are complete; retry for the rest.")
        self.stored = list(stored)
        self.errors = list(errors)


class _LeftoverParts:
    """The partial files killed runs left in each folder a client writes to, listed once per folder and client.

    Listing the folder for every file made storing a batch quadratic: the 10,000th output
    of a folder looked at 10,000 names.  A killed run's ``.part`` files are in the folder
    before this client first writes there, so one listing finds them all; each is removed
    when its target is written again.  A part file of another name may be a transfer still
    in progress (another thread's or process's), so only the target's own are touched:
    :func:`comfykit.paths.part_prefix` tags each part file with its whole target name.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._found: weakref.WeakKeyDictionary[Any, dict[Path, dict[str, list[str]]]] = weakref.WeakKeyDictionary()

    def remove(self, client: ComfyUIClient, target: Path, *, fresh: bool = False) -> None:
        """Remove ``target``'s leftover part files; ``fresh``: its folder was made just now (nothing to list)."""
        folder, prefixes = target.parent, [part_prefix(target)]
        if len(target.name) < 40:
            # Part files of versions before the tag: their untagged prefix is unambiguous for a short name.
            prefixes.append(f".{target.name}.")
        with self._lock:
            folders = self._found.setdefault(client, {})
            if folder not in folders:
                if len(folders) >= _MAX_LISTED_FOLDERS:  # one folder per job ({job_id}/...): forget the oldest
                    folders.pop(next(iter(folders)))
                folders[folder] = {} if fresh else _list_parts(folder)
            stale = [name for prefix in prefixes for name in folders[folder].pop(prefix, [])]
        for name in stale:
            path = folder / name
            try:
                path.unlink(missing_ok=True)
                log.info("removed a partial file left by an earlier run: %s", path)
            except OSError as exc:
                log.warning("could not remove the partial file %s: %s", path, exc)


def _list_parts(folder: Path) -> dict[str, list[str]]:
    """``{part prefix: [part file names]}`` of the ``.part`` files in ``folder`` (see :func:`comfykit.paths.part_prefix`)."""
    found: dict[str, list[str]] = {}
    try:
        names = os.listdir(folder)
    except OSError:
        return found
    for name in names:
        if name.startswith(".") and name.endswith(".part"):
            # "<part prefix><12 hex>.part": the prefix is everything before the random token.
            head = name[: -len(".part")].rpartition(".")[0]
            if head:
                found.setdefault(head + ".", []).append(name)
    return found


#: folders whose listing a client keeps (a folder forgotten and met again is listed again)
_MAX_LISTED_FOLDERS = 4096
_leftovers = _LeftoverParts()


class _FreeSpace:
    """The free space of the disk under each output folder, asked of the system at most once a second.

    Asking for every file cost a system call per job; within a second the answer is what
    was free then less what this process announced it would write since.  Close to the
    limit (within ``_FRESH_MARGIN``) the system is asked every time.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[Path, tuple[float, int]] = {}  # output folder -> (when asked, free bytes left)

    def take(self, root: Path, folder: Path, coming: int, keep: int) -> int:
        """What will be free once ``coming`` more bytes are written to ``folder`` (below ``root``)."""
        now = time.monotonic()
        with self._lock:
            asked, free = self._known.get(root, (-_FREE_SPACE_TTL, 0))
            if now - asked < _FREE_SPACE_TTL and free - coming >= keep + _FRESH_MARGIN:
                self._known[root] = (asked, free - coming)
                return free - coming
        free = shutil.disk_usage(folder).free
        with self._lock:
            self._known[root] = (now, free - coming)
        return free - coming


#: seconds a free-space answer is used for; bytes above the limit under which it is asked every time
_FREE_SPACE_TTL = 1.0
_FRESH_MARGIN = 256 * 1024 * 1024
_free_space = _FreeSpace()


def _check_room(name: str, target: Path, root: Path, coming: int, limits: DownloadLimits) -> None:
    """Refuse a file larger than the limit, or one that would leave the disk (nearly) full."""
    if coming > limits.max_bytes:
        raise OutputError(f"{name} is {coming:,} bytes, larger than output.max_bytes ({limits.max_bytes:,})",
                          hint="Raise output.max_bytes if such files are expected.")
    left = _free_space.take(root, target.parent, coming, limits.min_free_bytes)
    if left < limits.min_free_bytes:
        free = left + coming
        raise OutputError(
            f"not enough disk space for {name} in {target.parent}: {free:,} bytes free, {coming:,} to come, "
            f"{limits.min_free_bytes:,} to keep free (output.min_free_bytes)",
            hint="Free some space, then resume the journal: the outputs are fetched again.")


class _Incomplete(Exception):
    """The transfer ended before the announced size was reached."""


# --------------------------------------------------------------------------- hooks


@hookimpl
def comfykit_add_config(registry: ConfigRegistry) -> None:
    # output.output_dir and output.include_temp are core's: every sink shares them.
    registry.add("output", "download_results", True, help="Download outputs after each job.")
    registry.add(
        "output", "naming", DEFAULT_NAMING,
        help="Template for output paths inside output_dir.",
    )
    registry.add("output", "concurrent_downloads", 4, help="Downloads running at once.")
    registry.add("output", "verify_size", True, help="Check each downloaded file against the size the server announced.")
    registry.add("output", "download_attempts", 3, help="Attempts per file before a broken download is given up.")
    registry.add("output", "max_bytes", _MAX_BYTES,
                 help="Largest output file downloaded, in bytes (16 GiB: room for long videos); larger ones fail.")
    registry.add("output", "download_timeout", _DEADLINE,
                 help="Seconds one file's whole transfer may take, retries included.")
    registry.add("output", "min_free_bytes", _MIN_FREE_BYTES,
                 help="A download stops (and its partial file is removed) when the disk would have less free space.")


@hookimpl
def comfykit_configure(config: Config) -> None:
    if config.get("output.download_attempts", 3) < 1:
        from comfykit.errors import ConfigError

        raise ConfigError("output.download_attempts must be at least 1", key="output.download_attempts")


@hookimpl
def comfykit_register_commands(cli: click.Group) -> None:
    from comfykit_download.command import download

    cli.add_command(download)


@hookimpl
def comfykit_store_outputs(
    job: Job, outputs: Sequence[OutputFile], client: ComfyUIClient, durable: bool
) -> list[StoredOutput]:
    # Single keys, not config.section("output"): that walks every key of the config, twice per job.
    config = client.config
    if not config.get("output.download_results", True):
        return []
    return download_outputs(
        client,
        list(outputs),
        config.get("output.output_dir") or "outputs",
        job=job,
        naming=config.get("output.naming") or DEFAULT_NAMING,
        include_temp=bool(config.get("output.include_temp", False)),
        max_concurrent=int(config.get("output.concurrent_downloads") or 4),
        verify_size=bool(config.get("output.verify_size", True)),
        attempts=int(config.get("output.download_attempts") or 3),
        limits=DownloadLimits.from_config({key: config[f"output.{key}"] for key in _LIMIT_KEYS
                                           if f"output.{key}" in config}),
        durable=durable,
    )


# --------------------------------------------------------------------------- API


def _resolve_outputs(
    client: ComfyUIClient, source: Job | Mapping[str, Any] | Sequence[OutputFile] | str, include_temp: bool
) -> tuple[list[OutputFile], Job | None, str | None]:
    if isinstance(source, Job):
        outputs = list(source.outputs)
        if not outputs and source.history is not None:
            outputs = discover_outputs(source.history.get("outputs") or {}, include_temp=True)
        return outputs, source, source.prompt_id
    if isinstance(source, str):
        history = client.get_history(source)
        entry = history.get(source)
        if not isinstance(entry, Mapping):
            raise OutputError(
                f"the server has no history for prompt {source!r}",
                hint="History is lost when ComfyUI restarts; check the prompt id with `comfykit history`.",
            )
        return discover_outputs(entry.get("outputs") or {}, include_temp=include_temp), None, source
    if isinstance(source, Mapping):
        return discover_outputs(source, include_temp=include_temp), None, None
    return list(source), None, None


def selected_outputs(outputs: Sequence[OutputFile], *, include_temp: bool = False) -> list[OutputFile]:
    """The outputs the downloader writes: files (temp ones only if asked) and text values."""
    return [o for o in outputs if (include_temp or not o.is_temp) and (o.is_file or isinstance(o.value, str))]


def download_outputs(
    client: ComfyUIClient,
    job_or_outputs: Job | Mapping[str, Any] | Sequence[OutputFile] | str,
    output_dir: str | os.PathLike[str],
    *,
    job: Job | None = None,
    naming: str = DEFAULT_NAMING,
    include_temp: bool = False,
    max_concurrent: int = 4,
    verify_size: bool = True,
    attempts: int = 3,
    limits: DownloadLimits | None = None,
    durable: bool = True,
) -> list[StoredOutput]:
    """Store the outputs of one job under ``output_dir``; return one record per file written or kept.

    ``job_or_outputs`` is a :class:`Job`, a history entry or ``{node_id:
    ui}`` dict, a list of :class:`OutputFile`, or a prompt id whose history
    is fetched.  Up to ``max_concurrent`` files download at once.  Raises
    :class:`DownloadError` (with ``stored`` and ``errors``) when some outputs
    could not be stored; the others are complete on disk.  ``durable`` (the sink hook's ``durable``)
    flushes each file to disk before it is renamed into place.
    """
    outputs, found_job, prompt_id = _resolve_outputs(client, job_or_outputs, include_temp)
    job = job or found_job
    prompt_id = prompt_id or (job.prompt_id if job is not None else None)
    selected = selected_outputs(outputs, include_temp=include_temp)
    root = output_root(output_dir)
    plan = plan_output_paths(root, naming, selected, job=job, prompt_id=prompt_id, server=client.base_url)
    errors: list[BaseException] = [target for _, target in plan if isinstance(target, UnsafePathError)]
    work = [(output, target) for output, target in plan if isinstance(target, Path)]

    def store(item: tuple[OutputFile, Path]) -> StoredOutput:
        output, target = item
        if output.filename is None:
            return _write_text(output, str(output.value), target, root, durable=durable)
        return _download(client, output, target, root, verify_size=verify_size, attempts=attempts,
                         limits=limits or DownloadLimits(), durable=durable)

    stored: list[StoredOutput] = []
    with contextlib.ExitStack() as stack:
        if len(work) > 1 and max_concurrent > 1:
            pool = stack.enter_context(
                ThreadPoolExecutor(max_workers=min(max_concurrent, len(work)), thread_name_prefix="comfykit-dl")
            )
            results: list[Callable[[], StoredOutput]] = [pool.submit(store, item).result for item in work]
        else:
            # A thread pool per job costs more CPU than one small file: the sink's own thread downloads it.
            results = [functools.partial(store, item) for item in work]
        for result in results:
            try:
                stored.append(result())
            except Exception as exc:  # collected: one bad file must not hide the others
                errors.append(exc)
    if errors:
        for error in errors:
            log.error("download failed: %s", error)
        raise DownloadError(f"{len(errors)} of {len(selected)} outputs could not be stored", stored=stored, errors=errors)
    return stored


# --------------------------------------------------------------------------- one file


def _make_parent(target: Path, root: Path) -> bool:
    """Make ``target``'s folder (inside ``root``); ``True`` when it did not exist yet (so nothing is in it).

    A stat first: mkdir of an existing folder takes the folder's lock, which every file
    created in it takes too.
    """
    fresh = not target.parent.is_dir()
    if fresh and target.parent.parent == root:
        try:
            os.mkdir(target.parent)
            return True  # made by this call, right inside the (resolved) output folder: a folder, not a link
        except (FileExistsError, FileNotFoundError):
            pass  # made meanwhile, or a file of that name, or no output folder yet: the general way below tells
    try:
        if fresh:
            target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = next((p for p in (target.parent, *target.parent.parents) if p.is_file()), target.parent)
        raise OutputError(
            f"cannot store {target.name!r}: {blocking} is a file, and this output needs a folder of that name",
            hint="Two outputs are named so that one is the other's folder (e.g. 'a' and 'a/b.png'); "
                 "put {node_id} or {index} into output.naming to tell them apart.",
        ) from None
    if not fresh and target.is_dir():
        raise OutputError(
            f"cannot store {target.name!r}: {target} is a folder",
            hint="Two outputs are named so that one is the other's folder (e.g. 'a/b.png' and 'a'); "
                 "put {node_id} or {index} into output.naming to tell them apart.",
        )
    # A folder swapped for a symlink between planning and writing must not redirect the file.
    real_parent = resolve_inside(root, target.parent)
    if os.path.commonpath([str(real_parent), str(root)]) != str(root):
        raise UnsafePathError(
            f"refusing to write {target.name!r}: {target.parent} now leads outside the output folder {root}",
            hint="Something replaced a folder inside the output folder with a link; check it.",
        )
    return fresh


def _write_text(output: OutputFile, text: str, target: Path, root: Path, *, durable: bool) -> StoredOutput:
    data = text.encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    if target.is_file() and target.stat().st_size == len(data) and sha256_of_file(target) == digest:
        return _record(output, target, len(data), digest, skipped=True)
    _make_parent(target, root)
    atomic_write(target, data, durable=durable)
    return _record(output, target, len(data), digest)


def _record(output: OutputFile, target: Path, size: int, digest: str, *, skipped: bool = False) -> StoredOutput:
    return StoredOutput(
        sink=SINK_NAME, node_id=output.node_id, kind=output.kind, index=output.index, location=str(target), bytes=size,
        sha256=digest, skipped=skipped,
    )


def _total_size(response: httpx.Response, offset: int) -> tuple[int, int | None]:
    """(where this body starts, the file's full size if announced)."""
    if response.status_code == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if match is None:
            return -1, None
        total = match.group(3)
        return int(match.group(1)), None if total == "*" else int(total)
    length = response.headers.get("Content-Length")
    return 0, int(length) if length is not None and length.isdigit() else None


def _download(
    client: ComfyUIClient, output: OutputFile, target: Path, root: Path, *, verify_size: bool, attempts: int,
    limits: DownloadLimits,
    durable: bool,
) -> StoredOutput:
    assert output.filename is not None
    name = f"{output.filename!r} (node {output.node_id})"
    # A folder made just now holds nothing: no leftovers to look for, no earlier file to keep.
    fresh = _make_parent(target, root)
    _leftovers.remove(client, target, fresh=fresh)
    deadline = time.monotonic() + limits.deadline
    next_space_check = 0
    handle: IO[bytes] | None = None
    temp: Path | None = None
    written = 0
    digest = hashlib.sha256()
    total: int | None = None
    try:
        attempt = 0
        while True:
            attempt += 1
            try:
                with client.stream_view(output.filename, output.subfolder, output.folder_type, offset=written) as response:
                    start, total = _total_size(response, written)
                    if (handle is None and not fresh and target.is_file() and total is not None
                            and target.stat().st_size == total):
                        return _record(output, target, total, sha256_of_file(target), skipped=True)
                    if total is not None:
                        _check_room(name, target, root, total - written, limits)
                        # Room for the whole file is checked: look again only after the next 64 MiB.
                        next_space_check = max(next_space_check, written + _SPACE_CHECK_BYTES)
                    if handle is None:
                        handle, temp = temp_file_beside(target)
                    if start != written:
                        # The Range was ignored (200) or answered oddly: start over from the first byte.
                        handle.seek(0)
                        handle.truncate()
                        written, digest = 0, hashlib.sha256()
                        if response.status_code == 206:
                            raise _Incomplete(f"unusable Content-Range {response.headers.get('Content-Range')!r}")
                    # Chunks as they arrive (at most one network read each): nothing received is held
                    # back in a re-chunking buffer and lost when the connection breaks.
                    for chunk in response.iter_bytes():
                        handle.write(chunk)
                        digest.update(chunk)
                        written += len(chunk)
                        if written > limits.max_bytes:
                            raise OutputError(f"{name} is larger than output.max_bytes ({limits.max_bytes:,} bytes)",
                                              hint="Raise output.max_bytes if such files are expected.")
                        if time.monotonic() > deadline:
                            raise OutputError(
                                f"downloading {name} took longer than output.download_timeout ({limits.deadline:g} s; "
                                f"{written:,} bytes received)",
                                hint="The server sends too slowly or never ends; raise output.download_timeout "
                                     "for huge files on slow links.")
                        if written >= next_space_check:
                            next_space_check = written + _SPACE_CHECK_BYTES
                            _check_room(name, target, root, 0, limits)
                if verify_size and total is not None and written != total:
                    raise _Incomplete(f"got {written} of {total} bytes")
                break
            except NotFound:
                raise OutputError(
                    f"the server has no file {name} in {output.folder_type}/{output.subfolder}",
                    hint="It may have been deleted, or (temp files) the server restarted.",
                ) from None
            except (ServerUnreachable, RequestTimeout, ServerError, _Incomplete) as exc:
                if isinstance(exc, ServerError) and exc.status_code < 500:
                    raise OutputError(f"the server refused to send {name}: {exc.message}") from exc
                if attempt >= attempts:
                    raise OutputError(
                        f"downloading {name} failed after {attempt} attempts: {type(exc).__name__}: {exc}",
                        hint="The connection keeps breaking; raise output.download_attempts or check the network.",
                    ) from exc
                log.warning("download of %s broke after %d bytes (%s); retrying", name, written, exc)
        assert handle is not None and temp is not None
        finish_file(handle, durable=durable)
        handle.close()
        os.replace(temp, target)
        temp = None
        return _record(output, target, written, digest.hexdigest())
    finally:
        if handle is not None and not handle.closed:
            handle.close()
        if temp is not None:
            temp.unlink(missing_ok=True)
