"""The information routes: ``/object_info``, ``/system_stats``, ``/features``, ``/models``, ``/internal``.

Also the small routes the editor reads (``/settings``, ``/users``, ...) and, on 0.33, the
assets routes of a server started without ``--enable-assets``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from comfykit.testing.files import FOLDER_TYPES
from comfykit.testing.replies import MAX_UPLOAD, Routes, json_response, mirror
from comfykit.testing.server import SimServer

__all__ = ["add_info_routes", "add_static_routes", "server_features"]


def add_info_routes(server: SimServer, routes: Routes) -> None:
    """Add the routes that describe the server (catalogue, versions, model folders, logs) to ``routes``."""
    route = mirror(routes)

    @route("GET", "/object_info")
    async def object_info(request: web.Request) -> web.Response:
        return json_response(_with_inputs(server))

    @route("GET", "/object_info/{node_class}")
    async def object_info_one(request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        catalogue = _with_inputs(server) if name == "LoadImage" else server.object_info
        return json_response({name: catalogue[name]} if name in catalogue else {})

    @route("GET", "/system_stats")
    async def system_stats(request: web.Request) -> web.Response:
        return json_response(_system_stats(server))

    @route("GET", "/features")
    async def features(request: web.Request) -> web.Response:
        return json_response(server_features(server))

    @route("GET", "/embeddings")
    async def embeddings(request: web.Request) -> web.Response:
        return json_response([])

    @route("GET", "/extensions")
    async def extensions(request: web.Request) -> web.Response:
        return json_response(["/extensions/core/websocket_image_save.js"])

    @route("GET", "/models")
    async def models(request: web.Request) -> web.Response:
        return json_response(sorted(_model_folders(server)))

    @route("GET", "/models/{folder}")
    async def models_folder(request: web.Request) -> web.Response:
        folders = _model_folders(server)
        folder = request.match_info["folder"]
        if folder not in folders:
            return web.Response(status=404)
        return json_response(folders[folder])

    @route("GET", "/view_metadata/{folder}")
    async def view_metadata(request: web.Request) -> web.Response:
        return web.Response(status=404)  # the simulator has no safetensors files to read headers from

    @route("GET", "/experiment/models/{folder}")
    async def experiment_models(request: web.Request) -> web.Response:
        return json_response([]) if request.match_info["folder"] in _model_folders(server) else web.Response(status=404)

    async def internal_logs(request: web.Request) -> web.Response:
        return json_response(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} - comfykit simulator posing as ComfyUI {server.version}\n")

    async def internal_logs_raw(request: web.Request) -> web.Response:
        line = {"t": time.strftime("%Y-%m-%dT%H:%M:%S"), "m": f"comfykit simulator {server.version}\n"}
        return json_response({"entries": [line], "size": {"cols": 80, "rows": 24}})

    async def internal_folder_paths(request: web.Request) -> web.Response:
        names = list(MODEL_FOLDERS_NEW if server.is_new else MODEL_FOLDERS_OLD)
        return json_response({name: [f"SIMULATOR/models/{name}"] for name in names})

    async def internal_files(request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        if kind not in FOLDER_TYPES:
            return json_response({"error": "Invalid directory type"}, 400)
        folder = server.files.folder(kind)
        files = sorted((p for p in folder.iterdir() if p.is_file()), key=lambda p: p.stat().st_mtime, reverse=True)
        return json_response([p.name for p in files])

    # /internal is a sub-application in ComfyUI: it is not mirrored under /api.
    routes.append(("GET", "/internal/logs", internal_logs))
    routes.append(("GET", "/internal/logs/raw", internal_logs_raw))
    routes.append(("GET", "/internal/folder_paths", internal_folder_paths))
    routes.append(("GET", "/internal/files/{kind}", internal_files))


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


def server_features(server: SimServer) -> dict[str, Any]:
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


def add_static_routes(server: SimServer, app: web.Application) -> None:
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
            return json_response(value)

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
        return json_response(ASSETS_DISABLED, 503)

    for path in ("/api/assets", "/api/assets/{tail:.*}", "/api/tags"):
        app.router.add_route("*", path, disabled)
