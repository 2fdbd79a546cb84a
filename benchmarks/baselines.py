"""Two reference clients the benchmarks compare comfykit against, written with nothing but httpx and websocket-client.

``raw_pipelined`` is the limit: post every prompt back to back, then wait for all of
them on one socket; no client does less work.  ``naive_sequential`` is what most
scripts do: post, wait, download, next.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import websocket


def _socket(base_url: str, client_id: str) -> websocket.WebSocket:
    ws_url = base_url.replace("http://", "ws://").replace("https://", "wss://") + f"/ws?clientId={client_id}"
    ws = websocket.create_connection(ws_url, timeout=60)
    ws.settimeout(60)
    return ws


def _finished_prompt(message: str | bytes) -> str | None:
    if isinstance(message, bytes):
        return None
    frame = json.loads(message)
    if frame.get("type") == "executing" and frame["data"].get("node") is None:
        return str(frame["data"].get("prompt_id"))
    return None


def raw_pipelined(
    base_url: str, prompts: list[dict[str, Any]], download: Callable[[httpx.Client, dict[str, Any]], None] | None = None
) -> dict[str, float]:
    """Post all prompts, then wait for every completion on one socket (and fetch its history and
    files with ``download``). Returns per-prompt completion times."""
    client_id = uuid.uuid4().hex
    ws = _socket(base_url, client_id)
    done_at: dict[str, float] = {}
    try:
        with httpx.Client(base_url=base_url, timeout=60) as http:
            pending = set()
            for prompt in prompts:
                prompt_id = str(uuid.uuid4())
                pending.add(prompt_id)
                http.post("/prompt", json={"prompt": prompt, "client_id": client_id, "prompt_id": prompt_id})
            while pending:
                finished = _finished_prompt(ws.recv())
                if finished in pending:
                    pending.discard(finished)
                    done_at[finished] = time.perf_counter()
                    if download is not None:
                        download(http, http.get(f"/history/{finished}").json().get(finished, {}))
    finally:
        ws.close()
    return done_at


def naive_sequential(
    base_url: str, prompts: list[dict[str, Any]], download: Callable[[httpx.Client, dict[str, Any]], None] | None = None
) -> int:
    """Post one prompt, wait for it, fetch its history (and files), then the next. Returns the count."""
    client_id = uuid.uuid4().hex
    ws = _socket(base_url, client_id)
    try:
        with httpx.Client(base_url=base_url, timeout=60) as http:
            for prompt in prompts:
                prompt_id = str(uuid.uuid4())
                http.post("/prompt", json={"prompt": prompt, "client_id": client_id, "prompt_id": prompt_id})
                while _finished_prompt(ws.recv()) != prompt_id:
                    pass
                entry = http.get(f"/history/{prompt_id}").json().get(prompt_id, {})
                if download is not None:
                    download(http, entry)
    finally:
        ws.close()
    return len(prompts)


def download_all(http: httpx.Client, entry: dict[str, Any]) -> None:
    """Fetch every output file of a history entry into memory (the naive loop's download step)."""
    for ui in entry.get("outputs", {}).values():
        for item in ui.get("images", []):
            http.get("/view", params={"filename": item["filename"], "subfolder": item["subfolder"], "type": item["type"]})


def saver(folder: Path) -> Callable[[httpx.Client, dict[str, Any]], None]:
    """A download step that writes every saved (not temp) image of a history entry into ``folder``, as a script would."""

    def save(http: httpx.Client, entry: dict[str, Any]) -> None:
        for ui in entry.get("outputs", {}).values():
            for item in ui.get("images", []):
                if item["type"] == "temp":
                    continue
                answer = http.get("/view", params={"filename": item["filename"], "subfolder": item["subfolder"],
                                                   "type": item["type"]})
                (folder / item["filename"]).write_bytes(answer.content)

    return save
