"""Node implementations of the simulator: real Pillow nodes for the recorded workflows, generic ones for the rest.

Every node is a function ``(ctx, inputs) -> NodeResult``.  Images travel as lists of
Pillow images (a batch), latents as small dicts, model-like values as opaque handles.
Classes without a real implementation run generically from their ``/object_info`` entry,
so any workflow built from the real catalogue executes and saves real files.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import attrs
from PIL import Image, ImageChops, ImageFilter, ImageOps

__all__ = ["NODES", "NodeContext", "NodeFailure", "NodeResult", "run_node"]


class NodeContext(Protocol):
    """What a node may ask of the executor."""

    def save(self, folder_type: str, prefix: str, ext: str, data: bytes) -> dict[str, Any]: ...
    def input_image(self, name: str) -> Image.Image: ...
    def progress(self, value: int, maximum: int, preview: tuple[bytes, str] | None = None) -> None: ...
    def work(self) -> None: ...


class NodeFailure(Exception):
    """A node raised while executing; ``exception_type`` is the name ComfyUI would report."""

    def __init__(self, message: str, exception_type: str = "RuntimeError") -> None:
        super().__init__(message)
        self.exception_type = exception_type


@attrs.frozen
class NodeResult:
    outputs: tuple[Any, ...] = ()
    ui: dict[str, Any] | None = None


@attrs.frozen
class Handle:
    """An opaque MODEL/CLIP/VAE/CONDITIONING value: its type and a digest of what made it."""

    kind: str
    digest: str


def _png(image: Image.Image, text: Mapping[str, str] | None = None) -> bytes:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=1)
    return buffer.getvalue()


def _batch(value: Any) -> list[Image.Image]:
    return list(value) if isinstance(value, list) else [value]


def empty_image(ctx: NodeContext, i: Mapping[str, Any]) -> NodeResult:
    color = int(i.get("color", 0))
    rgb = ((color >> 16) & 255, (color >> 8) & 255, color & 255)
    images = [Image.new("RGB", (int(i["width"]), int(i["height"])), rgb) for _ in range(int(i.get("batch_size", 1)))]
    return NodeResult((images,))


def load_image(ctx: NodeContext, i: Mapping[str, Any]) -> NodeResult:
    image = ctx.input_image(str(i["image"]))
    mask = image.getchannel("A") if "A" in image.getbands() else Image.new("L", image.size, 0)
    return NodeResult(([image.convert("RGB")], [mask]))


def image_invert(ctx: NodeContext, i: Mapping[str, Any]) -> NodeResult:
    return NodeResult(([ImageOps.invert(img.convert("RGB")) for img in _batch(i["image"])],))


_RESAMPLE = {
    "nearest-exact": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "area": Image.Resampling.BOX,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def image_scale(ctx: NodeContext, i: Mapping[str, Any]) -> NodeResult:
    method = _RESAMPLE.get(str(i.get("upscale_method")), Image.Resampling.BILINEAR)
    images = []
    for img in _batch(i["image"]):
        width = int(i["width"]) or img.width
        height = int(i["height"]) or img.height
        images.append(img.resize((width, height), method))
    return NodeResult((images,))


def image_blur(ctx: NodeContext, i: Mapping[str, Any]) -> NodeResult:
    radius = float(i.get("sigma", 1.0))
    return NodeResult(([img.filter(ImageFilter.GaussianBlur(radius)) for img in _batch(i["image"])],))


def image_sharpen(ctx: NodeContext, i: Mapping[str, Any]) -> NodeResult:
    return NodeResult(([img.filter(ImageFilter.SHARPEN) for img in _batch(i["image"])],))


def image_add_noise(ctx: NodeContext, i: Mapping[str, Any]) -> NodeResult:
    rng = random.Random(int(i.get("seed", 0)))
    images = []
    for img in _batch(i["image"]):
        noise = Image.frombytes("RGB", img.size, rng.randbytes(img.width * img.height * 3))
        images.append(Image.blend(img.convert("RGB"), noise, min(1.0, float(i.get("strength", 0.5)))))
    return NodeResult((images,))


def canny(ctx: NodeContext, i: Mapping[str, Any]) -> NodeResult:
    if float(i["low_threshold"]) > float(i["high_threshold"]):
        raise NodeFailure(
            "Invalid input thresholds. low_threshold should be smaller than or equal to the high_threshold. "
            f"Got: {float(i['low_threshold'])}>{float(i['high_threshold'])}",
            "kornia.core.exceptions.BaseError",
        )
    return NodeResult(([img.convert("L").filter(ImageFilter.FIND_EDGES).convert("RGB") for img in _batch(i["image"])],))


def image_batch(ctx: NodeContext, i: Mapping[str, Any]) -> NodeResult:
    first = _batch(i["image1"])
    size = first[0].size
    second = [img if img.size == size else img.resize(size, Image.Resampling.BILINEAR) for img in _batch(i["image2"])]
    return NodeResult((first + second,))


def _save_images(ctx: NodeContext, images: list[Image.Image], prefix: str, folder_type: str) -> NodeResult:
    return NodeResult((images,), {"images": [ctx.save(folder_type, prefix, "png", _png(img)) for img in images]})


def save_image(ctx: NodeContext, i: Mapping[str, Any]) -> NodeResult:
    return _save_images(ctx, _batch(i["images"]), str(i.get("filename_prefix", "ComfyUI")), "output")


def preview_image(ctx: NodeContext, i: Mapping[str, Any]) -> NodeResult:
    suffix = "".join(random.choice("abcdefghijklmnopqrstupvxyz") for _ in range(5))
    return _save_images(ctx, _batch(i["images"]), f"ComfyUI_temp_{suffix}", "temp")


def save_image_websocket(ctx: NodeContext, i: Mapping[str, Any]) -> NodeResult:
    images = _batch(i["images"])
    for index, img in enumerate(images):
        ctx.progress(index, len(images), (_png(img), "PNG"))
    return NodeResult(())


def string_concatenate(ctx: NodeContext, i: Mapping[str, Any]) -> NodeResult:
    return NodeResult((f"{i.get('string_a', '')}{i.get('delimiter', '')}{i.get('string_b', '')}",))


def preview_any(ctx: NodeContext, i: Mapping[str, Any]) -> NodeResult:
    value = i.get("source")
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return NodeResult((text,), {"text": [text]})


def primitive(ctx: NodeContext, i: Mapping[str, Any]) -> NodeResult:
    return NodeResult((i.get("value"),))


def empty_latent(ctx: NodeContext, i: Mapping[str, Any]) -> NodeResult:
    shape = [int(i.get("batch_size", 1)), 4, int(i.get("height", 512)) // 8, int(i.get("width", 512)) // 8]
    return NodeResult(({"shape": shape, "seed": 0},))


def latent_concat(ctx: NodeContext, i: Mapping[str, Any]) -> NodeResult:
    a, b = i["samples1"]["shape"], i["samples2"]["shape"]
    axis = {"x": 3, "-x": 3, "y": 2, "-y": 2, "t": 1, "-t": 1}.get(str(i.get("dim", "x")), 3)
    for dim in range(4):
        if dim != axis and a[dim] != b[dim]:
            raise NodeFailure(
                f"Sizes of tensors must match except in dimension {axis}. "
                f"Expected size {a[dim]} but got size {b[dim]} for tensor number 1 in the list.",
                "RuntimeError",
            )
    shape = list(a)
    shape[axis] = a[axis] + b[axis]
    return NodeResult(({"shape": shape, "seed": 0},))


def save_latent(ctx: NodeContext, i: Mapping[str, Any]) -> NodeResult:
    data = json.dumps(i["samples"], default=str).encode()
    saved = ctx.save("output", str(i.get("filename_prefix", "latents/ComfyUI")), "latent", data)
    return NodeResult((), {"latents": [saved]})


NODES: dict[str, Callable[[NodeContext, Mapping[str, Any]], NodeResult]] = {
    "EmptyImage": empty_image,
    "LoadImage": load_image,
    "ImageInvert": image_invert,
    "ImageScale": image_scale,
    "ImageBlur": image_blur,
    "ImageSharpen": image_sharpen,
    "ImageAddNoise": image_add_noise,
    "Canny": canny,
    "ImageBatch": image_batch,
    "SaveImage": save_image,
    "PreviewImage": preview_image,
    "SaveImageWebsocket": save_image_websocket,
    "StringConcatenate": string_concatenate,
    "PreviewAny": preview_any,
    "PrimitiveString": primitive,
    "PrimitiveStringMultiline": primitive,
    "PrimitiveInt": primitive,
    "PrimitiveFloat": primitive,
    "PrimitiveBoolean": primitive,
    "EmptyLatentImage": empty_latent,
    "LatentConcat": latent_concat,
    "SaveLatent": save_latent,
}


def _digest(class_type: str, inputs: Mapping[str, Any]) -> str:
    text = json.dumps({"class": class_type, "inputs": inputs}, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _synthetic_image(width: int, height: int, digest: str) -> Image.Image:
    rng = random.Random(digest)
    start = tuple(rng.randrange(256) for _ in range(3))
    end = tuple(rng.randrange(256) for _ in range(3))
    gradient = Image.linear_gradient("L").resize((width, height))
    return ImageOps.colorize(gradient, start, end)


def _latent_batch(inputs: Mapping[str, Any]) -> int:
    for value in inputs.values():
        if isinstance(value, dict) and "shape" in value:
            return int(value["shape"][0])
    return 1


def _latent_size(inputs: Mapping[str, Any]) -> tuple[int, int]:
    for value in inputs.values():
        if isinstance(value, dict) and "shape" in value:
            shape = value["shape"]
            return int(shape[3]) * 8, int(shape[2]) * 8
    return int(inputs.get("width", 512) or 512), int(inputs.get("height", 512) or 512)


def run_generic(ctx: NodeContext, class_type: str, entry: Mapping[str, Any], i: Mapping[str, Any]) -> NodeResult:
    """Run a class from its catalogue entry: synthetic outputs of the declared types, progress for samplers."""
    digest = _digest(class_type, {k: v for k, v in i.items() if not isinstance(v, Image.Image | list)})
    steps = i.get("steps")
    if isinstance(steps, int) and steps > 0:
        for step in range(1, steps + 1):
            ctx.work()
            ctx.progress(step, steps, None)
    outputs: list[Any] = []
    for output_type in entry.get("output", []):
        if output_type == "IMAGE":
            images = [img for v in i.values() if isinstance(v, list) for img in v if isinstance(img, Image.Image)]
            if images:
                outputs.append([ImageChops.offset(img, 1, 1) for img in images])
            else:
                width, height = _latent_size(i)
                outputs.append([_synthetic_image(width, height, f"{digest}:{n}") for n in range(_latent_batch(i))])
        elif output_type == "LATENT":
            width, height = _latent_size(i)
            batch = int(i.get("batch_size", 0) or 0) or _latent_batch(i)
            outputs.append({"shape": [batch, 4, height // 8, width // 8], "seed": digest})
        elif output_type == "MASK":
            width, height = _latent_size(i)
            outputs.append([Image.new("L", (width, height), 255)])
        elif output_type in ("INT", "FLOAT"):
            outputs.append(0)
        elif output_type == "STRING":
            outputs.append(f"{class_type}:{digest}")
        else:
            outputs.append(Handle(str(output_type), digest))
    ui = None
    if entry.get("output_node"):
        images = [img for v in i.values() if isinstance(v, list) for img in v if isinstance(img, Image.Image)]
        if images:
            prefix = str(i.get("filename_prefix", "ComfyUI"))
            ui = {"images": [ctx.save("output", prefix, "png", _png(img)) for img in images]}
    return NodeResult(tuple(outputs), ui)


def run_node(ctx: NodeContext, class_type: str, entry: Mapping[str, Any], inputs: Mapping[str, Any]) -> NodeResult:
    implementation = NODES.get(class_type)
    if implementation is not None:
        return implementation(ctx, inputs)
    return run_generic(ctx, class_type, entry, inputs)
