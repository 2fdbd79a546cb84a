"""A FastAPI service that runs a ComfyUI workflow per request and streams its progress as Server-Sent Events.

One AsyncComfyUIClient serves every request: one connection pool and one WebSocket,
however many requests wait at once.  Run it with a server at COMFYKIT_URL::

    pip install 'comfykit[aio]' fastapi uvicorn
    COMFYKIT_URL=http://127.0.0.1:8188 uvicorn fastapi_progress:app

then ``curl -N -X POST localhost:8000/generate -H 'content-type: application/json' -d @workflow_api.json``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from comfykit import AsyncComfyUIClient
from comfykit.errors import ComfyKitError
from comfykit.events import ProgressEvent


def sse(event: str, data: dict[str, Any]) -> str:
    """One Server-Sent Events message."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def create_app(**client_options: Any) -> FastAPI:
    """The app; ``client_options`` go to AsyncComfyUIClient (the URL, a config...)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncComfyUIClient(**client_options) as client:
            app.state.comfy = client
            yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/generate")
    async def generate(workflow: dict[str, Any]) -> StreamingResponse:
        client: AsyncComfyUIClient = app.state.comfy
        handle = await client.submit(workflow)  # a rejected workflow fails here, before the stream starts

        async def stream() -> AsyncIterator[str]:
            try:
                yield sse("queued", {"prompt_id": handle.prompt_id})
                async for event in handle.events():
                    message: dict[str, Any] = {"event": event.type,
                                               "fraction": client.tracker.progress(handle.prompt_id).fraction}
                    if isinstance(event, ProgressEvent):  # a sampler step
                        message.update(node=event.node, step=event.value, steps=event.max)
                    yield sse("progress", message)
                job = await handle.result()
                yield sse("done", {"prompt_id": job.prompt_id, "files": [s.location for s in job.stored]})
            except ComfyKitError as exc:
                yield sse("error", {"prompt_id": handle.prompt_id, "error": str(exc)})
            except asyncio.CancelledError:
                await handle.cancel()  # the browser went away: free the server for someone else
                raise

        return StreamingResponse(stream(), media_type="text/event-stream")

    return app


app = create_app()
