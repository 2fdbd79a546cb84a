"""The prompt, queue and history routes: ``/prompt``, ``/queue``, ``/history``, ``/interrupt``, ``/free``."""

from __future__ import annotations

import asyncio
import heapq
import json
import time
import uuid
from typing import Any

from aiohttp import web

from comfykit.testing.replies import Routes, crash, json_response, mirror, read_json_body
from comfykit.testing.server import SECRET_KEYS, SimServer
from comfykit.testing.validation import UUID_RE, check_prompt

__all__ = ["add_prompt_routes"]


def add_prompt_routes(server: SimServer, routes: Routes) -> None:
    """Add the routes that queue, list, cancel and forget jobs to ``routes``."""
    route = mirror(routes)

    @route("POST", "/prompt")
    async def post_prompt(request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.text())
        except ValueError:
            return crash()
        if not isinstance(body, dict):
            return crash()
        with server.lock:
            if "number" in body:
                try:
                    number: float = float(body["number"])
                except (TypeError, ValueError):
                    return crash()
                if number.is_integer() and not isinstance(body["number"], float):
                    number = int(number)
            else:
                number = server.counter
                if body.get("front"):
                    number = -number
                server.counter += 1
        if "prompt" not in body:
            error = {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided", "extra_info": {}}
            return json_response({"error": error, "node_errors": {}}, 400)
        prompt_id = body.get("prompt_id")
        if server.is_new and prompt_id is not None and not (isinstance(prompt_id, str) and UUID_RE.fullmatch(prompt_id)):
            error = {
                "type": "invalid_prompt_id",
                "message": "prompt_id must be a valid UUID",
                "details": "prompt_id must be a UUID string in canonical lowercase hyphenated form; "
                "omit it to let the server generate one",
                "extra_info": {},
            }
            return json_response({"error": error, "node_errors": {}}, 400)
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
            return crash()
        if check.status == 400:
            return json_response(check.body, 400)
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
        return json_response({"prompt_id": prompt_id, "number": number, "node_errors": check.node_errors})

    @route("GET", "/prompt")
    async def get_prompt(request: web.Request) -> web.Response:
        return json_response({"exec_info": {"queue_remaining": server.queue_remaining()}})

    @route("GET", "/queue")
    async def get_queue(request: web.Request) -> web.Response:
        with server.lock:
            running = [server.running] if server.running is not None else []
            return json_response({"queue_running": running, "queue_pending": list(server.pending)})

    @route("POST", "/queue")
    async def post_queue(request: web.Request) -> web.Response:
        clear, doomed = await _clear_and_delete(request)
        with server.lock:
            if clear:
                server.pending.clear()
            server.remove_pending(doomed)
            server.broadcast_status()
        return web.Response(status=200)

    @route("GET", "/history")
    async def get_history(request: web.Request) -> web.Response:
        try:
            max_items = int(request.query["max_items"]) if "max_items" in request.query else None
            offset = int(request.query.get("offset", -1))
        except ValueError:
            return crash()
        with server.lock:
            items = list(server.history.items())
        if offset >= 0:
            items = items[offset:] if max_items is None else items[offset:offset + max_items]
        elif max_items is not None:
            items = items[-max_items:] if max_items > 0 else []
        return json_response(dict(items))

    @route("GET", "/history/{prompt_id}")
    async def get_history_one(request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        with server.lock:
            entry = server.history.get(prompt_id)
        return json_response({prompt_id: entry} if entry is not None else {})

    @route("POST", "/history")
    async def post_history(request: web.Request) -> web.Response:
        clear, doomed = await _clear_and_delete(request)
        with server.lock:
            for prompt_id in list(server.history) if clear else doomed:
                server.history.pop(prompt_id, None)
        return web.Response(status=200)

    @route("POST", "/interrupt")
    async def post_interrupt(request: web.Request) -> web.Response:
        body = await read_json_body(request)
        with server.lock:
            running = server.running
            if running is not None and (not body.get("prompt_id") or body["prompt_id"] == running[1]):
                server.interrupts.add(running[1])
        return web.Response(status=200)

    @route("POST", "/free")
    async def post_free(request: web.Request) -> web.Response:
        body = await read_json_body(request)
        if body.get("free_memory"):
            server.executor.free_memory()
        return web.Response(status=200)


async def _clear_and_delete(request: web.Request) -> tuple[bool, Any]:
    """What a ``POST /queue`` or ``POST /history`` body asks: whether to clear all, and the ids to delete."""
    body = await read_json_body(request)
    return bool(body.get("clear")), body.get("delete", []) or []
