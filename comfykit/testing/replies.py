"""What every route group of the simulator answers with: JSON bodies, ComfyUI's crash page, the upload limit.

Also the route table the groups fill (``add_*_routes(server, routes)``) and ``mirror``,
which registers a route both as itself and under ``/api`` (as ComfyUI mirrors them).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

__all__ = [
    "CRASH_TEXT", "JSON_TYPE", "MAX_UPLOAD", "Handler", "Routes", "crash", "json_response", "mirror", "read_json_body",
    "too_large",
]

JSON_TYPE = "application/json"
CRASH_TEXT = "500 Internal Server Error\n\nServer got itself in trouble"
MAX_UPLOAD = 100 * 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: (method, path, handler), in the order the application registers them
Routes = list[tuple[str, str, Handler]]


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data), content_type=JSON_TYPE, charset="utf-8")


def crash() -> web.Response:
    """The answer of a ComfyUI handler that raised: aiohttp's bare 500 page."""
    return web.Response(status=500, text=CRASH_TEXT)


def mirror(routes: Routes) -> Callable[[str, str], Callable[[Handler], Handler]]:
    """A decorator factory: ``@route("GET", "/queue")`` adds the handler at ``/queue`` and ``/api/queue``."""

    def route(method: str, path: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            routes.append((method, path, handler))
            routes.append((method, "/api" + path, handler))
            return handler

        return register

    return route


async def too_large(request: web.Request) -> web.Response:
    """The 413 of aiohttp's ``client_max_size``, after reading the body so the client sees the answer."""
    while await request.content.readany():
        pass
    return web.Response(status=413, text=f"Maximum request body size {MAX_UPLOAD} exceeded.")


async def read_json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; ``{}`` for an empty, unreadable or non-object body (as ComfyUI's handlers treat them)."""
    text = await request.text()
    if not text:
        return {}
    try:
        body = json.loads(text)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
