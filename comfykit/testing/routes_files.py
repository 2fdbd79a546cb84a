"""The file routes: ``/upload/image`` and ``/upload/mask``, ``/view`` (with the transfer faults), ``/userdata``."""

from __future__ import annotations

import io
import json
import mimetypes
import re
from typing import Any

from aiohttp import web

from comfykit.testing.files import FOLDER_TYPES, PathEscape
from comfykit.testing.replies import Routes, crash, json_response, mirror, too_large
from comfykit.testing.server import SimServer

__all__ = ["add_file_routes"]


def add_file_routes(server: SimServer, routes: Routes) -> None:
    """Add the routes that store, serve and list files to ``routes``."""
    route = mirror(routes)

    async def upload(request: web.Request, *, mask: bool) -> web.Response:
        try:
            form = await request.post()
        except web.HTTPRequestEntityTooLarge:
            return await too_large(request)
        image = form.get("image")
        if not image:
            return web.Response(status=400)
        if not isinstance(image, web.FileField):
            return crash()  # a part with filename="" is a plain field: ComfyUI fails reading its .filename
        folder_type = str(form.get("type", "input") or "input")
        if folder_type not in FOLDER_TYPES:
            return crash()
        filename = str(image.filename or "")
        if not filename:
            return crash()
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
            return crash()  # "a/b.png": ComfyUI only creates the subfolder, so writing the file fails
        if mask:
            data = _apply_mask(server, form, data)
        name = filename
        if target.exists() and not overwrite:
            if target.read_bytes() == data:
                return json_response({"name": name, "subfolder": subfolder, "type": folder_type})
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
        return json_response({"name": name, "subfolder": subfolder, "type": folder_type})

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
        return json_response(sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()))

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

            return json_response({"path": relative, "size": stat.st_size, "modified": stamp(stat.st_mtime),
                          "created": stamp(stat.st_ctime)})
        return json_response(relative)

    @route("DELETE", "/userdata/{file}")
    async def userdata_delete(request: web.Request) -> web.Response:
        path = userdata_path(request)
        if not path.is_file():
            return web.Response(status=404)
        path.unlink()
        return web.Response(status=204)


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
    files = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]
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
