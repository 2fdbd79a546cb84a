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
    """A fresh copy of a version's catalogue with model names filled in, keyed by input name.

    By default the recorded names are kept and :data:`DEFAULT_MODELS` added, so recorded
    workflows and typical user workflows both validate; ``models`` replaces the list of
    each input it names (to test what happens when the server lacks a model).
    """
    catalogue = copy.deepcopy(_raw_catalogue(version))
    chosen = dict(models) if models else {}
    for entry in catalogue.values():
        for section in ("required", "optional"):
            inputs = entry.get("input", {}).get(section, {})
            for input_name, spec in inputs.items():
                if not (isinstance(spec, list) and spec and isinstance(spec[0], list)):
                    continue
                if input_name in chosen:
                    spec[0] = list(chosen[input_name])
                elif input_name in DEFAULT_MODELS:
                    spec[0] = list(dict.fromkeys([*spec[0], *DEFAULT_MODELS[input_name]]))
    return catalogue
