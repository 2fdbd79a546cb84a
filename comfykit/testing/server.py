"""The simulator's HTTP and WebSocket surface: ComfyUI's routes, its queue and history, and the event routing.

``SimServer`` holds the state of one simulated ComfyUI process: the prompt counter, the
pending heap, the running job, the in-memory history, the sockets, and the executor
thread that runs one job at a time.  ``build_app`` exposes it as an aiohttp application
with every route also under ``/api`` (as ComfyUI mirrors them).
"""

from __future__ import annotations

import asyncio
import heapq
import io
import json
import logging
import mimetypes
import re
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from comfykit.testing.catalog import load_object_info
from comfykit.testing.executor import ExecJob, Executor
from comfykit.testing.files import FOLDER_TYPES, PathEscape, SimFiles
from comfykit.testing.knobs import Knobs
from comfykit.testing.validation import check_prompt

__all__ = ["SimServer", "build_app"]

log = logging.getLogger("comfykit.testing")

JSON_TYPE = "application/json"
CRASH_TEXT = "500 Internal Server Error\n\nServer got itself in trouble"
MAX_UPLOAD = 100 * 1024 * 1024
MAX_HISTORY = 10000
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SECRET_KEYS = ("api_key_comfy_org", "auth_token_comfy_org")
#: events a job without client_id still broadcasts to every socket (recorded quirk)
BROADCAST_WITHOUT_CLIENT = {"progress_state", "progress", "execution_interrupted"}


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data), content_type=JSON_TYPE, charset="utf-8")


def _crash() -> web.Response:
    return web.Response(status=500, text=CRASH_TEXT)


class _Socket:
    """One WebSocket and the ordered outbox that the executor thread feeds."""

    def __init__(self, ws: web.WebSocketResponse, client_id: str) -> None:
        self.ws = ws
        self.client_id = client_id
        self.preview_metadata = False
        self.outbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.opened = time.monotonic()


class _JobSink:
    """Routes one job's events to the right sockets (see the reference README, 'Who receives what')."""

    def __init__(self, server: SimServer, prompt_id: str, client_id: str | None) -> None:
        self.server = server
        self.prompt_id = prompt_id
        self.client_id = client_id
        self._legacy: list[bytes] = []

    def _targets(self, event_type: str) -> list[_Socket]:
        if self.client_id:
            socket = self.server.sockets.get(self.client_id)
            return [socket] if socket is not None else []
        if event_type in BROADCAST_WITHOUT_CLIENT:
            return list(self.server.sockets.values())
        return []

    def send(self, event_type: str, data: dict[str, Any]) -> None:
        frame = json.dumps({"type": event_type, "data": data})
        for socket in self._targets(event_type):
            self.server.deliver(socket, frame)
        if event_type == "progress" and self._legacy:
            # Legacy previews (type 1) follow their progress event; type 4 precedes it.
            for socket in self._targets("progress"):
                if not socket.preview_metadata:
                    for payload in self._legacy:
                        self.server.deliver(socket, payload)
            self._legacy.clear()

    def send_preview(self, image: bytes, image_format: str, metadata: dict[str, Any]) -> None:
        fmt = 2 if image_format == "PNG" else 1
        legacy = (1).to_bytes(4, "big") + fmt.to_bytes(4, "big") + image
        meta = json.dumps(metadata).encode()
        with_metadata = (4).to_bytes(4, "big") + len(meta).to_bytes(4, "big") + meta + image
        for socket in self._targets("progress"):
            if socket.preview_metadata:
                self.server.deliver(socket, with_metadata)
        self._legacy.append(legacy)

    def interrupted(self) -> bool:
        return self.prompt_id in self.server.interrupts


class SimServer:
    """The state and behaviour of one simulated ComfyUI server."""

    def __init__(self, *, version: str, files: SimFiles, knobs: Knobs, models: dict[str, list[str]] | None) -> None:
        self.version = version
        self.files = files
        self.knobs = knobs
        self.object_info = load_object_info(version, models=models)
        self.executor = Executor(self.object_info, files, knobs, version)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.lock = threading.Condition()
        self.counter = 0
        self.pending: list[list[Any]] = []
        self.running: list[Any] | None = None
        self.history: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.create_times: dict[str, int] = {}
        self.interrupts: set[str] = set()
        #: the current socket of each client id (what events are routed to)
        self.sockets: dict[str, _Socket] = {}
        #: every open socket, replaced ones included (what a restart or a drop closes)
        self.all_sockets: list[_Socket] = []
        self.execution_counts: dict[str, int] = {}
        self.posted: list[str] = []
        self._stop = False
        self._worker = threading.Thread(target=self._work, name="comfykit-sim-executor", daemon=True)
        self._worker.start()

    @property
    def is_new(self) -> bool:
        return self.version != "0.3.64"

    # -- socket delivery (thread-safe) ----------------------------------

    def deliver(self, socket: _Socket, payload: str | bytes | None) -> None:
        """Queue ``payload`` for ``socket`` from any thread; ``None`` closes the socket."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(socket.outbox.put_nowait, payload)

    def queue_remaining(self) -> int:
        return len(self.pending) + (1 if self.running is not None else 0)

    def broadcast_status(self) -> None:
        frame = json.dumps({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": self.queue_remaining()}}}})
        # Like ComfyUI, broadcasts go to the current socket of each client id: a socket replaced by a newer
        # one with the same clientId stays open but hears nothing (reconnect_same_client_id.json).
        for socket in list(self.sockets.values()):
            self.deliver(socket, frame)

    # -- the executor thread --------------------------------------------

    def _work(self) -> None:
        while True:
            with self.lock:
                while not self.pending and not self._stop:
                    self.lock.wait()
                if self._stop:
                    return
                item = heapq.heappop(self.pending)
                self.running = item
                self.broadcast_status()
            number, prompt_id, prompt, extra_data, outputs = item
            self.execution_counts[prompt_id] = self.execution_counts.get(prompt_id, 0) + 1
            sink = _JobSink(self, prompt_id, extra_data.get("client_id"))
            try:
                outcome = self.executor.run(ExecJob(prompt_id, number, prompt, extra_data, outputs), sink)
            except Exception:  # the simulator must keep serving; report like a crashed node would be
                log.exception("simulator executor failed on %s", prompt_id)
                with self.lock:
                    self.running = None
                    self.broadcast_status()
                continue
            if self.knobs.history_delay:
                time.sleep(self.knobs.history_delay)
            with self.lock:
                if self.running is not item:
                    continue  # a restart happened meanwhile: this job is forgotten
                history_extra = {k: v for k, v in extra_data.items() if k not in SECRET_KEYS}
                # A reused prompt id overwrites its entry in place: it keeps its old position (as recorded).
                self.history[prompt_id] = {
                    "prompt": [number, prompt_id, prompt, history_extra, outputs],
                    "outputs": outcome.outputs,
                    "status": {"status_str": outcome.status_str, "completed": outcome.completed, "messages": outcome.messages},
                    "meta": outcome.meta,
                }
                while len(self.history) > MAX_HISTORY:
                    self.history.popitem(last=False)
                self.running = None
                self.interrupts.discard(prompt_id)
                self.broadcast_status()
            sink.send("executing", {"node": None, "prompt_id": prompt_id})

    def remove_pending(self, prompt_ids: list[str]) -> bool:
        """Drop pending items by prompt id (call with ``lock`` held); True when any was removed."""
        doomed = set(prompt_ids)
        before = len(self.pending)
        self.pending = [item for item in self.pending if item[1] not in doomed]
        heapq.heapify(self.pending)
        return len(self.pending) != before

    def shutdown(self) -> None:
        with self.lock:
            self._stop = True
            self.lock.notify_all()

    def restart(self) -> None:
        """Forget everything a real restart forgets: queue, history, cache, temp files, sockets."""
        with self.lock:
            self.pending.clear()
            if self.running is not None:
                self.interrupts.add(self.running[1])
            self.running = None
            self.history.clear()
            self.create_times.clear()
            self.counter = 0
        self.executor.free_memory()
        self.files.clear_temp()
        for socket in list(self.all_sockets):
            self.deliver(socket, None)


def build_app(server: SimServer) -> web.Application:
    """The aiohttp application serving ``server``."""

    @web.middleware
    async def empty_errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        try:
            return await handler(request)
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as exc:
            return web.Response(status=exc.status)

    @web.middleware
    async def knobs_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        status = server.knobs.take_failure()
        if status is not None:
            return web.Response(status=status, text=f"{status} simulated failure", headers={"Retry-After": "0"})
        if server.knobs.response_delay:
            await asyncio.sleep(server.knobs.response_delay)
        hostile = server.knobs.hostile_body
        if hostile and request.method == "GET" and _is_hostile_path(request.path, server.knobs.hostile_paths):
            return await _hostile_body(request, hostile, server.knobs.hostile_bytes)
        origin = request.headers.get("Origin")
        if origin and request.host.split(":")[0] in ("127.0.0.1", "localhost"):
            origin_host = re.sub(r"^[a-z]+://", "", origin).split("/")[0]
            if origin_host != request.host:
                return web.Response(status=403)
        if server.is_new and request.headers.get("Sec-Fetch-Site") == "cross-site":
            return web.Response(status=403)
        if request.method == "OPTIONS":
            return web.Response(status=200)  # ComfyUI's middleware answers preflights itself, without CORS headers
        if request.content_length is not None and request.content_length > MAX_UPLOAD:
            return await _too_large(request)
        if request.content_type != "multipart/form-data":
            await request.read()  # the whole body, so a client that gives up cannot stop the request's effect
        response = await handler(request)
        if server.knobs.answer_delay:
            # The work is done; only the answer is late (a client timing out now "loses" it).
            await asyncio.sleep(server.knobs.answer_delay)
        return response

    app = web.Application(middlewares=[knobs_middleware, empty_errors], client_max_size=MAX_UPLOAD + 1024 * 1024)
    routes: list[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]] = []

    def route(method: str, path: str):
        def register(handler):
            routes.append((method, path, handler))
            routes.append((method, "/api" + path, handler))
            return handler

        return register

    # -- prompt, queue, history ------------------------------------------

    @route("POST", "/prompt")
    async def post_prompt(request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.text())
        except ValueError:
            return _crash()
        if not isinstance(body, dict):
            return _crash()
        with server.lock:
            if "number" in body:
                try:
                    number: float = float(body["number"])
                except (TypeError, ValueError):
                    return _crash()
                if number.is_integer() and not isinstance(body["number"], float):
                    number = int(number)
            else:
                number = server.counter
                if body.get("front"):
                    number = -number
                server.counter += 1
        if "prompt" not in body:
            error = {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided", "extra_info": {}}
            return _json({"error": error, "node_errors": {}}, 400)
        prompt_id = body.get("prompt_id")
        if server.is_new and prompt_id is not None and not (isinstance(prompt_id, str) and UUID_RE.fullmatch(prompt_id)):
            error = {
                "type": "invalid_prompt_id",
                "message": "prompt_id must be a valid UUID",
                "details": "prompt_id must be a UUID string in canonical lowercase hyphenated form; "
                "omit it to let the server generate one",
                "extra_info": {},
            }
            return _json({"error": error, "node_errors": {}}, 400)
        prompt = body["prompt"]
        check = await asyncio.to_thread(
            check_prompt,
            prompt,
            server.object_info,
            version=server.version,
            partial_targets=body.get("partial_execution_targets"),
            files=server.files,
        )
        if check.status == 500:
            return _crash()
        if check.status == 400:
            return _json(check.body, 400)
        prompt_id = str(prompt_id) if prompt_id is not None else str(uuid.uuid4())
        extra_data = dict(body.get("extra_data") or {})
        if "client_id" in body:
            extra_data["client_id"] = body["client_id"]
        if server.is_new:
            extra_data = {k: v for k, v in extra_data.items() if k not in SECRET_KEYS}
            extra_data["create_time"] = int(time.time() * 1000)
            if "Comfy-Usage-Source" in request.headers:
                extra_data["comfy_usage_source"] = request.headers["Comfy-Usage-Source"]
        with server.lock:
            server.create_times[prompt_id] = int(time.time() * 1000)
            heapq.heappush(server.pending, [number, prompt_id, prompt, extra_data, check.outputs_to_execute])
            server.posted.append(prompt_id)
            server.broadcast_status()
            server.lock.notify_all()
        return _json({"prompt_id": prompt_id, "number": number, "node_errors": check.node_errors})

    @route("GET", "/prompt")
    async def get_prompt(request: web.Request) -> web.Response:
        return _json({"exec_info": {"queue_remaining": server.queue_remaining()}})

    @route("GET", "/queue")
    async def get_queue(request: web.Request) -> web.Response:
        with server.lock:
            running = [server.running] if server.running is not None else []
            return _json({"queue_running": running, "queue_pending": list(server.pending)})

    @route("POST", "/queue")
    async def post_queue(request: web.Request) -> web.Response:
        body = await _json_body(request)
        with server.lock:
            if body.get("clear"):
                server.pending.clear()
            server.remove_pending(body.get("delete", []) or [])
            server.broadcast_status()
        return web.Response(status=200)

    @route("GET", "/history")
    async def get_history(request: web.Request) -> web.Response:
        try:
            max_items = int(request.query["max_items"]) if "max_items" in request.query else None
            offset = int(request.query.get("offset", -1))
        except ValueError:
            return _crash()
        with server.lock:
            items = list(server.history.items())
        if offset >= 0:
            items = items[offset:] if max_items is None else items[offset:offset + max_items]
        elif max_items is not None:
            items = items[-max_items:] if max_items > 0 else []
        return _json(dict(items))

    @route("GET", "/history/{prompt_id}")
    async def get_history_one(request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        with server.lock:
            entry = server.history.get(prompt_id)
        return _json({prompt_id: entry} if entry is not None else {})

    @route("POST", "/history")
    async def post_history(request: web.Request) -> web.Response:
        body = await _json_body(request)
        with server.lock:
            if body.get("clear"):
                server.history.clear()
            for prompt_id in body.get("delete", []) or []:
                server.history.pop(prompt_id, None)
        return web.Response(status=200)

    @route("POST", "/interrupt")
    async def post_interrupt(request: web.Request) -> web.Response:
        body = await _json_body(request)
        with server.lock:
            running = server.running
            if running is not None and (not body.get("prompt_id") or body["prompt_id"] == running[1]):
                server.interrupts.add(running[1])
        return web.Response(status=200)

    @route("POST", "/free")
    async def post_free(request: web.Request) -> web.Response:
        body = await _json_body(request)
        if body.get("free_memory"):
            server.executor.free_memory()
        return web.Response(status=200)

    # -- information -------------------------------------------------------

    @route("GET", "/object_info")
    async def object_info(request: web.Request) -> web.Response:
        return _json(_with_inputs(server))

    @route("GET", "/object_info/{node_class}")
    async def object_info_one(request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        catalogue = _with_inputs(server) if name == "LoadImage" else server.object_info
        return _json({name: catalogue[name]} if name in catalogue else {})

    @route("GET", "/system_stats")
    async def system_stats(request: web.Request) -> web.Response:
        return _json(_system_stats(server))

    @route("GET", "/features")
    async def features(request: web.Request) -> web.Response:
        return _json(_features(server))

    @route("GET", "/embeddings")
    async def embeddings(request: web.Request) -> web.Response:
        return _json([])

    @route("GET", "/extensions")
    async def extensions(request: web.Request) -> web.Response:
        return _json(["/extensions/core/websocket_image_save.js"])

    @route("GET", "/models")
    async def models(request: web.Request) -> web.Response:
        return _json(sorted(_model_folders(server)))

    @route("GET", "/models/{folder}")
    async def models_folder(request: web.Request) -> web.Response:
        folders = _model_folders(server)
        folder = request.match_info["folder"]
        if folder not in folders:
            return web.Response(status=404)
        return _json(folders[folder])

    # -- files ---------------------------------------------------------------

    async def upload(request: web.Request, *, mask: bool) -> web.Response:
        try:
            form = await request.post()
        except web.HTTPRequestEntityTooLarge:
            return await _too_large(request)
        image = form.get("image")
        if not image:
            return web.Response(status=400)
        if not isinstance(image, web.FileField):
            return _crash()  # a part with filename="" is a plain field: ComfyUI fails reading its .filename
        folder_type = str(form.get("type", "input") or "input")
        if folder_type not in FOLDER_TYPES:
            return _crash()
        filename = str(image.filename or "")
        if not filename:
            return _crash()
        subfolder = str(form.get("subfolder", "") or "")
        overwrite = str(form.get("overwrite", "")).lower() in ("true", "1")
        data = image.file.read()
        try:
            directory = server.files.inside(server.files.folder(folder_type), subfolder)
            target = server.files.inside(directory, filename)
        except PathEscape:
            return web.Response(status=400)
        directory.mkdir(parents=True, exist_ok=True)
        if not target.parent.is_dir():
            return _crash()  # "a/b.png": ComfyUI only creates the subfolder, so writing the file fails
        if mask:
            data = _apply_mask(server, form, data)
        name = filename
        if target.exists() and not overwrite:
            if target.read_bytes() == data:
                return _json({"name": name, "subfolder": subfolder, "type": folder_type})
            stem, dot, ext = filename.rpartition(".")
            if not dot:
                stem, ext = filename, ""
            counter = 1
            while True:
                name = f"{stem} ({counter}){'.' + ext if dot else ''}"
                target = directory / name
                if not target.exists():
                    break
                counter += 1
        target.write_bytes(data)
        return _json({"name": name, "subfolder": subfolder, "type": folder_type})

    @route("POST", "/upload/image")
    async def upload_image(request: web.Request) -> web.Response:
        return await upload(request, mask=False)

    @route("POST", "/upload/mask")
    async def upload_mask(request: web.Request) -> web.Response:
        return await upload(request, mask=True)

    @route("GET", "/view")
    async def view(request: web.Request) -> web.StreamResponse:
        filename = request.query.get("filename", "")
        if not filename:
            return web.Response(status=404)
        folder_type = request.query.get("type", "output")
        match = re.fullmatch(r"(.*) \[(input|output|temp)\]", filename)
        if match:
            filename, folder_type = match.group(1), match.group(2)
        if folder_type not in FOLDER_TYPES:
            return web.Response(status=400)
        if server.knobs.view_any_name:
            newest = _newest_file(server.files.output_dir)
            if newest is None:
                return web.Response(status=404)
            path = newest
        else:
            if filename.startswith("/") or ".." in filename:
                return web.Response(status=400)
            base = server.files.folder(folder_type)
            try:
                directory = server.files.inside(base, request.query.get("subfolder", ""))
                path = server.files.inside(directory, filename)
            except PathEscape:
                return web.Response(status=403)
            if not path.is_file():
                return web.Response(status=404)
        preview = request.query.get("preview")
        channel = request.query.get("channel")
        headers = {"Content-Disposition": f'filename="{path.name}"'}
        if server.is_new:
            headers["X-Content-Type-Options"] = "nosniff"
        if preview or channel:
            return _reencode(path, preview, channel, headers)
        cut_after = server.knobs.take_view_break()
        if cut_after is not None or server.knobs.view_ignore_range:
            return await _stream_file(request, path, headers, cut_after, not server.knobs.view_ignore_range)
        return web.FileResponse(path, headers=headers)

    # -- user data, internal routes, model metadata ------------------------------------

    def userdata_path(request: web.Request) -> Any:
        try:
            return server.files.inside(server.files.root / "user", request.match_info["file"])
        except PathEscape:
            raise web.HTTPForbidden() from None

    @route("GET", "/userdata")
    async def userdata_list(request: web.Request) -> web.Response:
        directory = request.query.get("dir")
        if not directory:
            return web.Response(status=400, text="Directory not provided")
        try:
            folder = server.files.inside(server.files.root / "user", directory)
        except PathEscape:
            return web.Response(status=403)
        if not folder.is_dir():
            return web.Response(status=404, text="Directory not found")
        return _json(sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()))

    @route("GET", "/userdata/{file}")
    async def userdata_get(request: web.Request) -> web.StreamResponse:
        path = userdata_path(request)
        if not path.is_file():
            return web.Response(status=404)
        return web.FileResponse(path)

    @route("POST", "/userdata/{file}")
    async def userdata_post(request: web.Request) -> web.Response:
        path = userdata_path(request)
        if path.exists() and request.query.get("overwrite", "true") == "false":
            return web.Response(status=409, text="File already exists")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(await request.read())
        relative = path.relative_to(server.files.root / "user").as_posix()
        if request.query.get("full_info") == "true":
            stat = path.stat()

            def stamp(seconds: float) -> float | int:
                return int(seconds * 1000) if server.is_new else seconds  # 0.33 reports epoch ms

            return _json({"path": relative, "size": stat.st_size, "modified": stamp(stat.st_mtime),
                          "created": stamp(stat.st_ctime)})
        return _json(relative)

    @route("DELETE", "/userdata/{file}")
    async def userdata_delete(request: web.Request) -> web.Response:
        path = userdata_path(request)
        if not path.is_file():
            return web.Response(status=404)
        path.unlink()
        return web.Response(status=204)

    @route("GET", "/view_metadata/{folder}")
    async def view_metadata(request: web.Request) -> web.Response:
        return web.Response(status=404)  # the simulator has no safetensors files to read headers from

    @route("GET", "/experiment/models/{folder}")
    async def experiment_models(request: web.Request) -> web.Response:
        return _json([]) if request.match_info["folder"] in _model_folders(server) else web.Response(status=404)

    async def internal_logs(request: web.Request) -> web.Response:
        return _json(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} - comfykit simulator posing as ComfyUI {server.version}\n")

    async def internal_logs_raw(request: web.Request) -> web.Response:
        line = {"t": time.strftime("%Y-%m-%dT%H:%M:%S"), "m": f"comfykit simulator {server.version}\n"}
        return _json({"entries": [line], "size": {"cols": 80, "rows": 24}})

    async def internal_folder_paths(request: web.Request) -> web.Response:
        names = list(MODEL_FOLDERS_NEW if server.is_new else MODEL_FOLDERS_OLD)
        return _json({name: [f"SIMULATOR/models/{name}"] for name in names})

    async def internal_files(request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        if kind not in FOLDER_TYPES:
            return _json({"error": "Invalid directory type"}, 400)
        folder = server.files.folder(kind)
        files = sorted((p for p in folder.iterdir() if p.is_file()), key=lambda p: p.stat().st_mtime, reverse=True)
        return _json([p.name for p in files])

    # /internal is a sub-application in ComfyUI: it is not mirrored under /api.
    routes.append(("GET", "/internal/logs", internal_logs))
    routes.append(("GET", "/internal/logs/raw", internal_logs_raw))
    routes.append(("GET", "/internal/folder_paths", internal_folder_paths))
    routes.append(("GET", "/internal/files/{kind}", internal_files))

    # -- jobs API (0.33) -------------------------------------------------------

    if server.is_new:
        from comfykit.testing.jobs_api import add_job_routes

        add_job_routes(server, routes)

    # -- WebSocket -------------------------------------------------------------

    @route("GET", "/ws")
    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=64 * 1024 * 1024)
        await ws.prepare(request)
        client_id = request.query.get("clientId") or uuid.uuid4().hex
        socket = _Socket(ws, client_id)
        server.sockets[client_id] = socket
        server.all_sockets.append(socket)
        status = {"status": {"exec_info": {"queue_remaining": server.queue_remaining()}}, "sid": client_id}
        socket.outbox.put_nowait(json.dumps({"type": "status", "data": status}))
        with server.lock:
            current = server.executor.current_node
            running = server.running
        if running is not None and current is not None and running[3].get("client_id") == client_id:
            socket.outbox.put_nowait(json.dumps({"type": "executing", "data": {"node": current[1]}}))
        writer = asyncio.create_task(_write(socket))
        dropper = asyncio.create_task(_drop_later(server, socket))
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    try:
                        frame = json.loads(message.data)
                    except ValueError:
                        continue
                    if isinstance(frame, dict) and frame.get("type") == "feature_flags":
                        flags = frame.get("data") or {}
                        socket.preview_metadata = bool(flags.get("supports_preview_metadata"))
                        socket.outbox.put_nowait(json.dumps({"type": "feature_flags", "data": _features(server)}))
                elif message.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            dropper.cancel()
            socket.outbox.put_nowait(None)
            await writer
            if server.sockets.get(client_id) is socket:
                del server.sockets[client_id]
            if socket in server.all_sockets:
                server.all_sockets.remove(socket)
        return ws

    for method, path, handler in routes:
        if method == "GET":
            app.router.add_get(path, handler)  # answers HEAD too, as ComfyUI's routes do
        else:
            app.router.add_route(method, path, handler)
    _add_static_routes(server, app)
    return app


async def _write(socket: _Socket) -> None:
    while True:
        payload = await socket.outbox.get()
        if payload is None:
            break
        try:
            if isinstance(payload, bytes):
                await socket.ws.send_bytes(payload)
            else:
                await socket.ws.send_str(payload)
        except (ConnectionError, RuntimeError):
            break
    await socket.ws.close()


async def _drop_later(server: SimServer, socket: _Socket) -> None:
    while True:
        await asyncio.sleep(0.02)
        after = server.knobs.drop_websocket_after
        if after is not None and time.monotonic() - socket.opened >= after:
            socket.outbox.put_nowait(None)
            return


def _is_hostile_path(path: str, prefixes: tuple[str, ...] | str) -> bool:
    if isinstance(prefixes, str):  # ``comfykit serve --hostile-paths /history,/queue`` passes text
        prefixes = tuple(part.strip() for part in prefixes.split(",") if part.strip())
    path = path[4:] if path.startswith("/api/") else path
    return any(path == prefix or path.startswith(prefix.rstrip("/") + "/") for prefix in prefixes)


async def _hostile_body(request: web.Request, kind: str, size: int) -> web.StreamResponse:
    """A body meant to hurt the client (see ``Knobs.hostile_body``); it never holds more than one chunk in memory."""
    response = web.StreamResponse(headers={"Content-Type": JSON_TYPE})
    if kind in ("huge", "short"):
        response.content_length = size
    elif kind not in ("huge_chunked", "trickle", "flood"):
        raise ValueError(f"unknown hostile_body {kind!r}")
    await response.prepare(request)
    chunk = b" " * 65536  # whitespace: the body stays valid JSON however much of it there is
    try:
        if kind in ("huge", "huge_chunked"):
            head, tail = b'{"padding": ', b"0}"
            await response.write(head)
            remaining = size - len(head) - len(tail)
            while remaining > 0:
                await response.write(chunk[:remaining])
                remaining -= len(chunk)
            await response.write(tail)
        elif kind == "short":
            await response.write(b'{"padding": ')
            while request.transport is not None and not request.transport.is_closing():
                await asyncio.sleep(0.05)
            return response
        else:
            await response.write(b"[")
            while True:
                if kind == "trickle":
                    await asyncio.sleep(0.02)
                    await response.write(b" ")
                else:
                    await response.write(chunk)
        await response.write_eof()
    except (ConnectionError, RuntimeError) as exc:
        log.debug("hostile %s body on %s ended: the client gave up (%s)", kind, request.path, exc)
    return response


async def _too_large(request: web.Request) -> web.Response:
    """The 413 of aiohttp's ``client_max_size``, after reading the body so the client sees the answer."""
    while await request.content.readany():
        pass
    return web.Response(status=413, text=f"Maximum request body size {MAX_UPLOAD} exceeded.")


async def _json_body(request: web.Request) -> dict[str, Any]:
    text = await request.text()
    if not text:
        return {}
    try:
        body = json.loads(text)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _with_inputs(server: SimServer) -> dict[str, Any]:
    """The catalogue with LoadImage's list of input files filled in, as each real request has it."""
    catalogue = dict(server.object_info)
    entry = catalogue.get("LoadImage")
    if entry is not None:
        entry = json.loads(json.dumps(entry))
        spec = entry["input"]["required"]["image"]
        files = server.files.list_inputs()
        if isinstance(spec[0], list):
            spec[0] = files
        elif len(spec) > 1 and isinstance(spec[1], dict):
            spec[1]["options"] = files
        catalogue["LoadImage"] = entry
    return catalogue


#: the model folder names each version knows (its ``/internal/folder_paths`` keys)
MODEL_FOLDERS_OLD = (
    "checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision", "style_models",
    "embeddings", "diffusers", "vae_approx", "controlnet", "gligen", "upscale_models", "custom_nodes", "hypernetworks",
    "photomaker", "classifiers", "model_patches", "audio_encoders",
)
MODEL_FOLDERS_NEW = (
    *MODEL_FOLDERS_OLD[:14], "latent_upscale_models", "custom_nodes", "datasets", *MODEL_FOLDERS_OLD[15:],
    "background_removal", "frame_interpolation", "geometry_estimation", "optical_flow", "detection",
)


def _model_folders(server: SimServer) -> dict[str, list[str]]:
    folders = {
        "checkpoints": "ckpt_name", "loras": "lora_name", "vae": "vae_name", "diffusion_models": "unet_name",
        "text_encoders": "clip_name", "upscale_models": "model_name", "controlnet": "control_net_name",
    }
    result: dict[str, list[str]] = {name: [] for name in ("configs", "embeddings", "clip_vision", "style_models")}
    for folder, input_name in folders.items():
        names: set[str] = set()
        for entry in server.object_info.values():
            for section in ("required", "optional"):
                spec = entry.get("input", {}).get(section, {}).get(input_name)
                if isinstance(spec, list) and spec and isinstance(spec[0], list):
                    names.update(str(n) for n in spec[0])
        result[folder] = sorted(names)
    return result


def _features(server: SimServer) -> dict[str, Any]:
    features: dict[str, Any] = {"supports_preview_metadata": True, "max_upload_size": MAX_UPLOAD}
    if server.is_new:
        features = {
            "supports_preview_metadata": True,
            "supports_model_type_tags": True,
            "max_upload_size": MAX_UPLOAD,
            "extension": {"manager": {"supports_v4": True}},
            "node_replacements": True,
            "assets": False,
        }
    return features


def _system_stats(server: SimServer) -> dict[str, Any]:
    ram = 24 * 1024**3
    system: dict[str, Any] = {
        "os": "linux" if server.is_new else "posix",
        "ram_total": ram,
        "ram_free": ram // 2,
        "comfyui_version": server.version,
        "required_frontend_version": "1.49.6" if server.is_new else "1.27.10",
        "installed_templates_version": "0.11.44" if server.is_new else "0.1.95",
        "required_templates_version": "0.11.44" if server.is_new else "0.1.95",
        "python_version": sys.version,
        "pytorch_version": "simulated",
        "embedded_python": False,
        "argv": ["comfykit-simulator"],
    }
    if server.is_new:
        system["comfy_package_versions"] = [
            {"name": "comfyui-frontend-package", "installed": "1.49.6", "required": "1.49.6"},
            {"name": "comfyui-workflow-templates", "installed": "0.11.44", "required": "0.11.44"},
        ]
        system["deploy_environment"] = "comfykit-simulator"
    device = {
        "name": "cpu", "type": "cpu", "index": None, "vram_total": ram, "vram_free": ram // 2,
        "torch_vram_total": ram, "torch_vram_free": ram // 2,
    }
    return {"system": system, "devices": [device]}


def _apply_mask(server: SimServer, form: Any, data: bytes) -> bytes:
    from PIL import Image

    try:
        reference = json.loads(str(form.get("original_ref", "{}")))
        original_path = server.files.inside(
            server.files.folder(reference.get("type", "input")), reference.get("subfolder", ""), reference["filename"]
        )
        with Image.open(original_path) as original, Image.open(io.BytesIO(data)) as mask:
            result = original.convert("RGBA")
            result.putalpha(mask.convert("RGBA").getchannel("A").resize(result.size))
            buffer = io.BytesIO()
            result.save(buffer, format="PNG")
            return buffer.getvalue()
    except (KeyError, OSError, ValueError, PathEscape):
        return data


def _newest_file(folder: Any) -> Any:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return max(files, key=lambda p: (p.stat().st_mtime_ns, str(p))) if files else None


async def _stream_file(
    request: web.Request, path: Any, headers: dict[str, str], cut_after: int | None, honour_range: bool
) -> web.StreamResponse:
    """Send a file by hand, so a transfer can be cut mid-body or a Range ignored (the fault knobs)."""
    size = path.stat().st_size
    start = 0
    if honour_range and "Range" in request.headers:
        try:
            start = request.http_range.start or 0
        except ValueError:
            return web.Response(status=416)
        if start >= size:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
    response = web.StreamResponse(status=206 if start else 200, headers=headers)
    response.headers["Accept-Ranges"] = "bytes"
    if start:
        response.headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
    response.content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    response.content_length = size - start
    await response.prepare(request)
    remaining = size - start if cut_after is None else min(cut_after, size - start)
    with open(path, "rb") as handle:
        handle.seek(start)
        while remaining > 0:
            chunk = handle.read(min(64 * 1024, remaining))
            if not chunk:
                break
            await response.write(chunk)
            remaining -= len(chunk)
    if cut_after is not None and cut_after < size - start:
        # Close the connection with the body unfinished: the client sees a broken transfer.
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


def _reencode(path: Any, preview: str | None, channel: str | None, headers: dict[str, str]) -> web.Response:
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        if channel == "a":
            image = image.getchannel("A") if "A" in image.getbands() else Image.new("L", image.size, 255)
        elif channel == "rgb":
            image = image.convert("RGB")
        buffer = io.BytesIO()
        if preview:
            fmt, _, quality = preview.partition(";")
            fmt = "WEBP" if fmt == "webp" else "JPEG"
            image.convert("RGB").save(buffer, format=fmt, quality=int(quality or 90))
            content_type = "image/webp" if fmt == "WEBP" else "image/jpeg"
        else:
            image.save(buffer, format="PNG")
            content_type = "image/png"
    return web.Response(body=buffer.getvalue(), content_type=content_type, headers=headers)


def _add_static_routes(server: SimServer, app: web.Application) -> None:
    """Small routes the editor uses; bodies shaped like the recordings."""
    simple: dict[str, Any] = {
        "/users": {"storage": "server", "migrated": True},
        "/settings": {},
        "/i18n": {},
        "/workflow_templates": {},
        "/experiment/models": [],
        "/v2/userdata": [],
    }
    if server.is_new:
        simple["/global_subgraphs"] = {}
        simple["/node_replacements"] = {}

    def constant(value: Any) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            return _json(value)

        return handler

    for path, value in simple.items():
        app.router.add_get(path, constant(value))
        app.router.add_get("/api" + path, constant(value))

    async def root(request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>ComfyUI (comfykit simulator)</title>", content_type="text/html")

    app.router.add_get("/", root)
    app.router.add_get("/api/", root)
    app.router.add_get("/index.html", root)  # a static file: not mirrored under /api
    if server.is_new:
        _add_disabled_assets(app)


ASSETS_DISABLED = {
    "error": {
        "code": "SERVICE_DISABLED",
        "message": "Assets system is disabled. Start the server with --enable-assets to use this feature.",
        "details": {},
    }
}


def _add_disabled_assets(app: web.Application) -> None:
    """0.33.0's assets routes as a server without ``--enable-assets`` has them: 503 for every method."""

    async def disabled(request: web.Request) -> web.Response:
        return _json(ASSETS_DISABLED, 503)

    for path in ("/api/assets", "/api/assets/{tail:.*}", "/api/tags"):
        app.router.add_route("*", path, disabled)
