"""The node catalogues (``/object_info``) of the two recorded ComfyUI versions, shipped as package data."""

from __future__ import annotations

import copy
import functools
import gzip
import json
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

__all__ = ["DEFAULT_MODELS", "DEFAULT_VERSION", "SUPPORTED_VERSIONS", "load_object_info"]

SUPPORTED_VERSIONS = ("0.3.64", "0.33.0")
DEFAULT_VERSION = "0.33.0"

#: Model names advertised by default, per input name, so typical user workflows validate.
DEFAULT_MODELS: dict[str, list[str]] = {
    "ckpt_name": ["sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly.safetensors"],
    "lora_name": ["detail_tweaker.safetensors"],
    "vae_name": ["sdxl_vae.safetensors"],
    "unet_name": ["tiny_sd3.safetensors"],
    "clip_name": ["tiny_clip_l.safetensors"],
    "model_name": ["RealESRGAN_x4plus.pth"],
    "control_net_name": ["control_canny.safetensors"],
}


@functools.cache
def _raw_catalogue(version: str) -> dict[str, Any]:
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"unsupported ComfyUI version {version!r}; choose one of {', '.join(SUPPORTED_VERSIONS)}")
    data = resources.files("comfykit.testing").joinpath("data").joinpath(f"object_info-{version}.json.gz").read_bytes()
    return dict(json.loads(gzip.decompress(data)))


def load_object_info(version: str, *, models: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """A fresh copy of a version's catalogue, with model-file combos listing ``models`` (by input name)."""
    catalogue = copy.deepcopy(_raw_catalogue(version))
    names = {**DEFAULT_MODELS, **(dict(models) if models else {})}
    for entry in catalogue.values():
        for section in ("required", "optional"):
            inputs = entry.get("input", {}).get(section, {})
            for input_name, spec in inputs.items():
                if input_name in names and isinstance(spec, list) and spec and isinstance(spec[0], list):
                    spec[0] = list(names[input_name])
    return catalogue
