"""Moved to :mod:`comfykit.queue.journal`; this name stays so existing imports keep working."""

from comfykit.queue.journal import Journal

__all__ = ["Journal"]
