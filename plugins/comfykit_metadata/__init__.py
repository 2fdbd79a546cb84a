"""The bundled ``metadata`` plugin: a JSON sidecar per job, an optional JSONL manifest, optional PNG text chunks.

The sidecar ``<output_dir>/<job_id>.json`` records what is needed to
reproduce or audit a job: the prompt actually sent, the template parameters,
the seeds in the graph, the server, the timings, cached nodes, and every
output with what the sinks before this one stored for it (``job.stored``:
the download sink's path, size and SHA-256).  It describes the job as it
ends: completed, with its times in the client's clock (UTC ISO 8601) and the
server's own timestamps under ``server_times``.  Secrets never reach it: keys
that look like credentials are removed wherever they appear, and the client's
own credentials are masked inside any text.

Like the downloader, the hooks read ``client.config`` on every call and keep
no module-level settings.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from comfykit import __version__, hookimpl
from comfykit.jobs import Job, JobStatus
from comfykit.outputs import OutputFile, StoredOutput
from comfykit.paths import atomic_file, atomic_write, output_root, safe_output_path, sha256_of_file
from comfykit.secrets import SECRET_NAME

if TYPE_CHECKING:
    from comfykit.client import ComfyUIClient
    from comfykit.config import ConfigRegistry

__all__ = ["SECRET_KEY_PATTERN", "build_metadata", "embed_png_text", "find_seeds", "readable_json", "strip_secrets"]

SINK_NAME = "metadata"
#: Keys removed wherever they appear in the sidecar (``extra_data.api_key_comfy_org`` among others).
SECRET_KEY_PATTERN = SECRET_NAME
SEED_INPUTS = frozenset({"seed", "noise_seed"})
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_KEYWORD = "comfykit"
_IEND = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))

# Appends from several jobs of one process go through this lock; other processes through flock.
_manifest_lock = threading.Lock()


# --------------------------------------------------------------------------- hooks


@hookimpl
def comfykit_add_config(registry: ConfigRegistry) -> None:
    registry.add("output", "save_metadata", True, help="Write a JSON metadata sidecar per job.")
    registry.add("output", "manifest", None, type="str", help="JSONL manifest file for a batch.")
    registry.add("output", "embed_png_metadata", False, help="Embed job parameters in PNG text chunks.")


# trylast: the sinks before this one have their records in job.stored, so the sidecar lists them.
@hookimpl(trylast=True)
def comfykit_store_outputs(
    job: Job, outputs: Sequence[OutputFile], client: ComfyUIClient, durable: bool
) -> list[StoredOutput]:
    config = client.config  # single keys: config.section() walks every key of the config
    if not config.get("output.save_metadata", True):
        return []
    root = output_root(config.get("output.output_dir") or "outputs")
    rewritten: set[str] = set()
    if config.get("output.embed_png_metadata"):
        payload = json.dumps(_png_payload(job, _client_secrets(client)), sort_keys=True)
        for path in _local_files(job.stored, root):
            if path.suffix.lower() == ".png" and embed_png_text(path, PNG_KEYWORD, payload):
                rewritten.add(str(path))
    document = build_metadata(job, outputs, client, rewritten=rewritten)
    data = (readable_json(document) + "\n").encode("utf-8")
    sidecar = safe_output_path(root, "{job_id}.json", {"job_id": job.job_id})
    atomic_write(sidecar, data, durable=durable)
    stored = [_record(sidecar, data, "metadata")]
    manifest = config.get("output.manifest")
    if manifest:
        line = json.dumps(_manifest_entry(document, sidecar), sort_keys=True, default=str) + "\n"
        path = _append_line(Path(manifest).expanduser(), line)
        stored.append(_record(path, line.encode("utf-8"), "manifest"))
    return stored


def readable_json(value: Any, levels: int = 2, indent: str = "") -> str:
    """``value`` as JSON with its first ``levels`` levels one item per line, and what is deeper on one line each.

    ``json.dumps(indent=2)`` runs the pure-Python encoder (its C accelerator only writes
    compact JSON), which made the sidecar's prompt and history the costliest part of
    storing a small job; here only the outer levels are laid out in Python.
    """
    if levels <= 0 or not value or not isinstance(value, (dict, list)):
        return _encode(value)
    inner = indent + "  "
    # The last laid-out level encodes its items whole: no call per leaf.
    layout: Callable[[Any], str] = _encode if levels == 1 else functools.partial(readable_json, levels=levels - 1,
                                                                                indent=inner)
    if isinstance(value, dict):
        items = [f"{inner}{_encode(str(key))}: {layout(item)}" for key, item in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    return "[\n" + ",\n".join(inner + layout(item) for item in value) + "\n" + indent + "]"


#: ``json.dumps(value, default=str)`` without building an encoder per call
_encode = json.JSONEncoder(default=str).encode


def _record(path: Path, data: bytes, kind: str) -> StoredOutput:
    return StoredOutput(
        sink=SINK_NAME, node_id="", kind=kind, location=str(path), bytes=len(data), sha256=hashlib.sha256(data).hexdigest()
    )


# --------------------------------------------------------------------------- the document


def strip_secrets(value: Any, secrets: Sequence[str] = ()) -> Any:
    """A copy of ``value`` without credential-like keys, and with each of ``secrets`` masked in text."""
    # The common types first, by exact type: the Mapping check is an ABC's, slow for every leaf.
    kind = type(value)
    if kind is str:
        for secret in secrets:
            if secret and secret in value:
                value = value.replace(secret, "***")
        return value
    if kind is dict or (kind is not int and kind is not float and isinstance(value, Mapping)):
        return {str(k): strip_secrets(v, secrets) for k, v in value.items() if not _secret_key(str(k))}
    if kind is list or kind is tuple:
        return [strip_secrets(v, secrets) for v in value]
    if isinstance(value, str):  # a str subclass
        return strip_secrets(str(value), secrets)
    if isinstance(value, (list, tuple)):
        return [strip_secrets(v, secrets) for v in value]
    return value


@functools.lru_cache(maxsize=4096)
def _secret_key(key: str) -> bool:
    # The same few dozen keys come back in every sidecar: one dict look-up instead of a regex search.
    return SECRET_KEY_PATTERN.search(key) is not None


def find_seeds(prompt: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """``{node_id: {input: value}}`` for every integer ``seed``/``noise_seed`` input of an API graph."""
    seeds: dict[str, dict[str, int]] = {}
    for node_id, node in prompt.items():
        inputs = node.get("inputs") if isinstance(node, Mapping) else None
        if not isinstance(inputs, Mapping):
            continue
        for name, value in inputs.items():
            if name in SEED_INPUTS and isinstance(value, int) and not isinstance(value, bool):
                seeds.setdefault(str(node_id), {})[str(name)] = value
    return seeds


def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return datetime.datetime.fromtimestamp(stamp, tz=datetime.timezone.utc).isoformat()


def _span(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round(max(0.0, end - start), 6)


@functools.lru_cache(maxsize=256)  # a batch has a few servers, and each job's sidecar names one
def _public_url(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _client_secrets(client: ComfyUIClient) -> Sequence[str]:
    """The credentials to mask in text: the client's own mask knows them all (keys, headers, URL passwords)."""
    return client.secret_mask.secrets


def _sent_prompt(job: Job) -> tuple[Any, Any]:
    """(the prompt the server ran, the extra_data it stored), from history when it is there."""
    history = job.history or {}
    entry = history.get("prompt")
    if isinstance(entry, (list, tuple)) and len(entry) >= 3 and isinstance(entry[2], Mapping):
        extra = entry[3] if len(entry) >= 4 else job.extra_data
        return entry[2], extra
    workflow = job.workflow.get("prompt") if isinstance(job.workflow.get("prompt"), Mapping) else job.workflow
    return workflow, job.extra_data


def _server_times(job: Job) -> dict[str, str | None]:
    """The server's own timestamps (its clock, not ours), named as its history messages name them."""
    history = job.history or {}
    messages = (history.get("status") or {}).get("messages") if isinstance(history, Mapping) else None
    found: dict[str, str | None] = {}
    for message in messages or []:
        if isinstance(message, (list, tuple)) and len(message) == 2 and isinstance(message[1], Mapping):
            stamp = message[1].get("timestamp")
            if isinstance(stamp, (int, float)) and not isinstance(stamp, bool):
                found[str(message[0])] = _iso(stamp / 1000.0)
    return found


def _stored_for(job: Job) -> dict[tuple[str, str, int], list[StoredOutput]]:
    by_output: dict[tuple[str, str, int], list[StoredOutput]] = {}
    for record in job.stored:
        if record.node_id:
            by_output.setdefault((record.node_id, record.kind, record.index), []).append(record)
    return by_output


def _local_files(records: Sequence[StoredOutput], root: Path) -> list[Path]:
    """The files other sinks wrote inside the output folder (a location may also be a URL)."""
    found: list[Path] = []
    for record in records:
        path = Path(record.location)
        if record.node_id and path.is_absolute() and path.is_file() and path.resolve().is_relative_to(root):
            found.append(path)
    return found


def build_metadata(
    job: Job, outputs: Sequence[OutputFile], client: ComfyUIClient, *, rewritten: Collection[str] = ()
) -> dict[str, Any]:
    """The sidecar document of one job as it ends, secrets already removed.

    Each output lists what the sinks before this one stored for it
    (``job.stored``); the first record's path, size and SHA-256 are repeated
    on the output itself.  Files in ``rewritten`` (PNGs this sink added a text
    chunk to) are hashed again, since their bytes changed after they were stored.
    """
    prompt, extra_data = _sent_prompt(job)
    stored_for = _stored_for(job)
    listed: list[dict[str, Any]] = []
    for output in outputs:
        item: dict[str, Any] = {"node_id": output.node_id, "kind": output.kind, "index": output.index}
        if output.is_file:
            item.update(filename=output.filename, subfolder=output.subfolder, type=output.folder_type)
        else:
            item["value"] = output.value
        records = [_stored_item(record, rewritten) for record in stored_for.get((output.node_id, output.kind, output.index), [])]
        if records:
            first = records[0]
            item.update(path=first["location"], bytes=first["bytes"], sha256=first["sha256"], stored=records)
        listed.append(item)
    # The sinks run as the job completes, so its end is now unless the queue already stamped it.
    finished = job.finished_at if job.finished_at is not None else time.time()
    submitted, started = job.submitted_at, job.started_at
    server_times = _server_times(job)
    document = {
        "comfykit_version": __version__,
        "job_id": job.job_id,
        "prompt_id": job.prompt_id,
        "server": _public_url(job.server or client.base_url),
        # Sinks are only called for a job the server ran successfully; storing its outputs completes it.
        "status": str(JobStatus.COMPLETED),
        "attempts": job.attempts,
        "times": {
            "created": _iso(job.created_at),
            "submitted": _iso(submitted),
            "started": _iso(started),
            "finished": _iso(finished),
        },
        "server_times": server_times,
        "durations": {
            "queued": _span(submitted, started),
            "running": _span(started, finished),
            "total": _span(submitted if submitted is not None else job.created_at, finished),
        },
        "params": job.params,
        "seeds": find_seeds(prompt) if isinstance(prompt, Mapping) else {},
        "cached_nodes": list(job.cached_nodes),
        "metadata": job.metadata,
        "prompt": prompt,
        "extra_data": extra_data,
        "outputs": listed,
    }
    result: dict[str, Any] = strip_secrets(document, _client_secrets(client))
    return result


def _stored_item(record: StoredOutput, rewritten: Collection[str]) -> dict[str, Any]:
    item = {"sink": record.sink, "location": record.location, "bytes": record.bytes, "sha256": record.sha256}
    path = Path(record.location) if rewritten else None
    if path is not None and str(path) in rewritten:
        item.update(bytes=os.path.getsize(path), sha256=sha256_of_file(path))
    return item


def _manifest_entry(document: Mapping[str, Any], sidecar: Path) -> dict[str, Any]:
    keys = ("job_id", "prompt_id", "server", "status", "times", "durations", "params", "seeds", "cached_nodes")
    entry = {key: document[key] for key in keys}
    entry["sidecar"] = str(sidecar)
    entry["outputs"] = [
        {k: item[k] for k in ("node_id", "kind", "filename", "path", "sha256") if k in item} for item in document["outputs"]
    ]
    return entry


def _png_payload(job: Job, secrets: Sequence[str]) -> dict[str, Any]:
    prompt, _ = _sent_prompt(job)
    payload = {
        "job_id": job.job_id,
        "prompt_id": job.prompt_id,
        "params": job.params,
        "seeds": find_seeds(prompt) if isinstance(prompt, Mapping) else {},
    }
    result: dict[str, Any] = strip_secrets(payload, secrets)
    return result


# --------------------------------------------------------------------------- files


def _append_line(path: Path, line: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with _manifest_lock, open(path, "a", encoding="utf-8") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: appends of one short line are not interleaved by the OS
            fcntl = None  # type: ignore[assignment]
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            handle.write(line)
            handle.flush()
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return path.resolve()


def _png_chunks(handle: Any) -> Any:
    """(type, data offset, length) of each chunk of a PNG file, read by seeking over the data."""
    handle.seek(len(PNG_SIGNATURE))
    while True:
        header = handle.read(8)
        if len(header) < 8:
            return
        length, kind = struct.unpack(">I4s", header)
        offset = handle.tell()
        yield kind, offset, length
        handle.seek(offset + length + 4)


def embed_png_text(path: Path, keyword: str, text: str) -> bool:
    """Add a ``tEXt`` chunk ``keyword`` to a PNG file, atomically and without re-encoding the image.

    Existing chunks (ComfyUI's ``prompt`` and ``workflow``) are kept byte for
    byte.  Returns ``False`` when the file is not a PNG or already carries the
    keyword.
    """
    with open(path, "rb") as handle:
        if handle.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
            return False
        end = None
        for kind, offset, length in _png_chunks(handle):
            if kind == b"tEXt":
                handle.seek(offset)
                if handle.read(min(length, len(keyword) + 1)) == keyword.encode("latin-1") + b"\0":
                    return False
            if kind == b"IEND":
                end = offset - 8
                break
        if end is None:
            return False
        body = keyword.encode("latin-1") + b"\0" + text.encode("latin-1", errors="replace")
        chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
        with atomic_file(path) as copy:  # durable always: it replaces a file already stored
            handle.seek(0)
            remaining = end
            while remaining > 0:
                block = handle.read(min(1024 * 1024, remaining))
                if not block:
                    break
                copy.write(block)
                remaining -= len(block)
            copy.write(chunk + _IEND)
    return True
