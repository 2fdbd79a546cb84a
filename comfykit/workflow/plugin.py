"""Core implementations of the workflow hooks (reading, conversion, validation), registered trylast."""

from __future__ import annotations
