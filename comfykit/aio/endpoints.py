"""``AsyncEndpoints``: every HTTP endpoint of a ComfyUI server as a coroutine, over one ``httpx.AsyncClient`` pool.

What each endpoint sends and how its answer is checked is :mod:`comfykit._http`'s, as
for :class:`comfykit.ComfyUIClient`: the same size caps, deadlines, refused redirects,
error types and secret masking.  :class:`~comfykit.aio.AsyncComfyUIClient` adds the
node catalogue (shared with its sync client) and the jobs on top of these.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx

from comfykit import _http
from comfykit._http import MAX_ERROR_BYTES, MAX_JSON_BYTES, MAX_SMALL_BYTES, BodyReader, Call, Connection
from comfykit.client import ServerInfo
from comfykit.errors import ComfyKitError, NotFound, ServerError, TransportError

__all__ = ["AsyncEndpoints"]


class AsyncEndpoints:
    """The endpoints of one server; ``before_request`` runs before each request (the session's start)."""

    def __init__(
        self, connection: Connection, *, transport: httpx.AsyncBaseTransport | None,
        before_request: Callable[[], Awaitable[None]],
    ) -> None:
        self.connection = connection
        self.base_url = connection.base_url
        self.client_id = connection.client_id
        self.ws_url = connection.ws_url
        #: masks credentials in what the server echoes back (a 401 page repeating the headers)
        self.secret_mask = connection.secret_mask
        self.timeout = connection.timeout
        self._before_request = before_request
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=connection.headers, auth=connection.auth,
            verify=connection.verify, timeout=connection.timeouts(), transport=transport,
        )
        self._pool_closed = False
        self._info: ServerInfo | None = None

    async def close_pool(self) -> None:
        """Close the connection pool; every later request raises."""
        self._pool_closed = True
        await self._http.aclose()

    # -- transport -----------------------------------------------------------------------------

    async def _open(self, method: str, path: str, **options: Any) -> httpx.Response:
        if self._pool_closed:
            raise ComfyKitError("this client is closed", hint="Create a new AsyncComfyUIClient.")
        await self._before_request()
        try:
            return await self._http.send(self._http.build_request(method, path, **options), stream=True)
        except httpx.HTTPError as exc:
            raise _http.send_error(method, self.base_url + path, self.base_url, exc) from None

    async def _read(self, method: str, url: str, response: httpx.Response, limit: int, budget: float) -> httpx.Response:
        """Read a streamed answer under ``limit`` and ``budget``; an error page is cut, and raised as its error."""
        failed = response.status_code >= 300
        reader = BodyReader(method, url, response, MAX_ERROR_BYTES if failed else limit, budget, truncate=failed)
        try:
            async for chunk in response.aiter_bytes():
                if reader.add(chunk):
                    break
        except httpx.HTTPError as exc:
            raise reader.failure(exc) from None
        answer = _http.buffered(response, reader.body())
        if failed:
            raise _http.status_error(method, url, answer, self.secret_mask)
        return answer

    async def _request(self, method: str, path: str, *, limit: int = MAX_SMALL_BYTES, **options: Any) -> httpx.Response:
        """As the sync client's request: the body bounded by ``limit`` and a deadline, no redirects."""
        timeout = options.get("timeout")
        budget = float(timeout) if isinstance(timeout, (int, float)) else self.timeout
        response = await self._open(method, path, **options)
        try:
            return await self._read(method, self.base_url + path, response, limit, budget)
        finally:
            await response.aclose()

    async def _call(self, call: Call) -> Any:
        """Make one endpoint's request; its checked JSON, or ``None`` for an endpoint that answers none."""
        if call.check is None:
            await self._request(call.method, call.path, limit=call.limit, **call.options)
            return None
        response = await self._request(call.method, call.path, limit=MAX_JSON_BYTES, **call.options)
        return call.check(_http.decode_json(call.method, self.base_url + call.path, response, self.secret_mask),
                          call.where)

    async def _answer_or_none(self, call: Call) -> Any:
        try:
            return await self._call(call)
        except NotFound:
            return None

    # -- server facts --------------------------------------------------------------------------

    async def ping(self, timeout: float = 3.0) -> bool:
        """True when the server answers ``/system_stats`` within ``timeout`` seconds."""
        try:
            await self._request("GET", "/system_stats", timeout=timeout)
        except (TransportError, ServerError):
            return False
        return True

    async def server_info(self) -> ServerInfo:
        """Version, features and whether the jobs API exists; asked once per client."""
        if self._info is None:
            stats = await self._call(_http.system_stats())
            features = await self._answer_or_none(_http.features())
            try:
                await self._call(_http.jobs_probe())
                has_jobs = True
            except NotFound:
                has_jobs = False
            self._info = ServerInfo(**_http.server_facts(stats, features, has_jobs))
        return self._info

    async def required_frontend_version(self) -> str | None:
        """The editor version the server expects (read with :meth:`server_info`); ``None`` when it does not say."""
        system = (await self.server_info()).system_stats.get("system")
        version = system.get("required_frontend_version") if isinstance(system, dict) else None
        return version if isinstance(version, str) and version else None

    # -- prompts and the queue -----------------------------------------------------------------

    async def post_prompt(
        self, workflow: Mapping[str, Any], *, prompt_id: str | None = None, front: bool = False,
        number: float | None = None, extra_data: Mapping[str, Any] | None = None, targets: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """Only the ``POST /prompt``, nothing prepared or watched (``submit()`` is the job to wait for)."""
        return await self._call(_http.post_prompt(
            workflow, client_id=self.client_id, api_key=self.connection.api_key, prompt_id=prompt_id, front=front,
            number=number, extra_data=extra_data, targets=targets,
        ))

    async def get_prompt_status(self) -> dict[str, Any]:
        return await self._call(_http.prompt_status())

    async def get_queue(self) -> dict[str, Any]:
        return await self._call(_http.queue())

    async def delete_from_queue(self, prompt_ids: Iterable[str]) -> None:
        await self._call(_http.delete_from_queue(prompt_ids))

    async def clear_queue(self) -> None:
        await self._call(_http.clear_queue())

    async def get_history(
        self, prompt_id: str | None = None, max_items: int | None = None, offset: int | None = None
    ) -> dict[str, Any]:
        return await self._call(_http.history(prompt_id, max_items, offset))

    async def delete_history(self, prompt_ids: Iterable[str]) -> None:
        await self._call(_http.delete_history(prompt_ids))

    async def clear_history(self) -> None:
        await self._call(_http.clear_history())

    async def interrupt_execution(self, prompt_id: str | None = None) -> None:
        await self._call(_http.interrupt(prompt_id))

    async def free_memory(self, *, unload_models: bool = False, free_memory: bool = False) -> None:
        await self._call(_http.free_memory(unload_models=unload_models, free_memory=free_memory))

    # -- information ---------------------------------------------------------------------------

    async def get_system_stats(self) -> dict[str, Any]:
        return await self._call(_http.system_stats())

    async def get_features(self) -> dict[str, Any]:
        return await self._call(_http.features())

    async def get_embeddings(self) -> list[str]:
        return await self._call(_http.embeddings())

    async def get_extensions(self) -> list[str]:
        return await self._call(_http.extensions())

    async def get_models(self, folder: str | None = None) -> list[str]:
        return await self._call(_http.models(folder))

    # -- the jobs API (ComfyUI 0.33+) ------------------------------------------------------------

    async def _require_jobs_api(self) -> None:
        info = await self.server_info()
        if not info.has_jobs_api:
            raise _http.jobs_api_missing(self.base_url, info.version)

    async def get_jobs(self, **filters: Any) -> dict[str, Any]:
        """``GET /api/jobs`` with the filters of :meth:`comfykit.ComfyUIClient.get_jobs`."""
        await self._require_jobs_api()
        return await self._call(_http.jobs(**filters))

    async def get_job(self, job_id: str) -> dict[str, Any]:
        await self._require_jobs_api()
        return await self._call(_http.job(job_id))

    async def cancel_job(self, job_id: str) -> bool:
        await self._require_jobs_api()
        return bool((await self._call(_http.cancel_job(job_id))).get("cancelled"))

    async def cancel_jobs(self, job_ids: Iterable[str]) -> bool:
        await self._require_jobs_api()
        return bool((await self._call(_http.cancel_jobs(job_ids))).get("cancelled"))

    # -- files ---------------------------------------------------------------------------------

    async def upload_image(
        self, path_or_bytes: Any, subfolder: str = "", overwrite: bool = False, type: str = "input", *,
        filename: str | None = None,
    ) -> dict[str, Any]:
        """Upload an image; returns the server's ``{"name", "subfolder", "type"}`` (it may rename)."""
        fields = _http.image_fields(subfolder, overwrite, type)
        return await self._call(await asyncio.to_thread(_http.upload, "/upload/image", path_or_bytes, filename, fields))

    async def upload_mask(
        self, path_or_bytes: Any, original_ref: Mapping[str, Any], subfolder: str = "", overwrite: bool = False,
        type: str = "input", *, filename: str | None = None,
    ) -> dict[str, Any]:
        fields = _http.mask_fields(original_ref, subfolder, overwrite, type)
        return await self._call(await asyncio.to_thread(_http.upload, "/upload/mask", path_or_bytes, filename, fields))

    async def get_image(self, filename: str, subfolder: str = "", folder_type: str = "output") -> bytes:
        call = _http.view(filename, subfolder, folder_type)
        return (await self._request(call.method, call.path, limit=call.limit, **call.options)).content

    @asynccontextmanager
    async def stream_view(
        self, filename: str, subfolder: str = "", folder_type: str = "output", *, offset: int = 0
    ) -> AsyncIterator[httpx.Response]:
        """Stream ``/view`` (``async for chunk in response.aiter_bytes()``); with ``offset`` a Range request (206).

        As :meth:`comfykit.ComfyUIClient.stream_view`: an error answer raises its comfykit
        error, and network errors, also those raised while the body is read inside the
        ``async with`` block, are raised as :class:`RequestTimeout` or :class:`ServerUnreachable`.
        """
        call = _http.view(filename, subfolder, folder_type)
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        response = await self._open(call.method, call.path, headers=headers, **call.options)
        try:
            if response.status_code >= 300:
                await self._read(call.method, self.base_url + call.path, response, MAX_ERROR_BYTES, self.timeout)
            try:
                yield response
            except httpx.TransportError as exc:
                raise _http.download_error(filename, exc, started=True) from None
        finally:
            await response.aclose()
