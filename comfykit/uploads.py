"""Moved to :mod:`comfykit.queue.inputs`; this name stays so existing imports keep working."""

from comfykit.queue.inputs import UploadCache, apply_inputs, input_targets, output_as_input

__all__ = ["UploadCache", "apply_inputs", "input_targets", "output_as_input"]
