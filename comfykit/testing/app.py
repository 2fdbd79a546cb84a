"""``build_app``: the simulator's aiohttp application, its two middlewares and its route groups.

The knobs middleware injects the HTTP faults (forced 5xx, delays, hostile bodies) and acts as
ComfyUI's own middleware does (origin checks, preflights, the upload limit); each
``add_*_routes(server, routes)`` adds one group of routes.
"""

from __future__ import annotations

import asyncio
import logging
import re

from aiohttp import web

from comfykit.testing.jobs_api import add_job_routes
from comfykit.testing.replies import JSON_TYPE, MAX_UPLOAD, Handler, Routes, too_large
from comfykit.testing.routes_files import add_file_routes
from comfykit.testing.routes_info import add_info_routes, add_static_routes
from comfykit.testing.routes_prompt import add_prompt_routes
from comfykit.testing.server import SimServer
from comfykit.testing.websocket import add_websocket_routes

__all__ = ["build_app"]

log = logging.getLogger("comfykit.testing")


def build_app(server: SimServer) -> web.Application:
    """The aiohttp application serving ``server``."""

    @web.middleware
    async def empty_errors(request: web.Request, handler: Handler):
        try:
            return await handler(request)
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as exc:
            return web.Response(status=exc.status)

    @web.middleware
    async def knobs_middleware(request: web.Request, handler: Handler):
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
            return await too_large(request)
        if request.content_type != "multipart/form-data":
            await request.read()  # the whole body, so a client that gives up cannot stop the request's effect
        response = await handler(request)
        if server.knobs.answer_delay:
            # The work is done; only the answer is late (a client timing out now "loses" it).
            await asyncio.sleep(server.knobs.answer_delay)
        return response

    app = web.Application(middlewares=[knobs_middleware, empty_errors], client_max_size=MAX_UPLOAD + 1024 * 1024)

    routes: Routes = []
    add_prompt_routes(server, routes)
    add_info_routes(server, routes)
    add_file_routes(server, routes)
    if server.is_new:
        add_job_routes(server, routes)
    add_websocket_routes(server, routes)
    for method, path, handler in routes:
        if method == "GET":
            app.router.add_get(path, handler)  # answers HEAD too, as ComfyUI's routes do
        else:
            app.router.add_route(method, path, handler)
    add_static_routes(server, app)
    return app


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
