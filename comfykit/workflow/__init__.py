"""Workflows: loading (API, YAML, UI-format, PNG), editing, validation, templates and sweeps."""

from __future__ import annotations

from comfykit.workflow.problems import Problem, Severity

__all__ = ["Problem", "Severity"]
