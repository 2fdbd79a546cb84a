"""The original tool's ``src/utils`` import path, kept so its scripts run unchanged.

``from comfykit.utils import extract_output_images`` is how the original README's
call form reads here; the function lives in :mod:`comfykit.outputs`, which is
where new code imports it from (or :func:`comfykit.outputs.image_outputs`, for
records instead of dicts).
"""

from comfykit.outputs import extract_output_images

__all__ = ["extract_output_images"]
