"""Workflows: loading (API JSON, YAML, ComfyUI PNGs), editing, and validation through the hooks.

Modules: ``loader`` (files to data to API graphs), ``convert`` (editor workflows to API
graphs), ``validate`` (structural and schema checks), ``edit`` (``NODE.INPUT=VALUE``
updates), ``manager`` (``WorkflowManager``), ``problems`` (the ``Problem`` record), ``plugin`` (core hook implementations).
"""

from __future__ import annotations

from comfykit.workflow.convert import ui_to_api
from comfykit.workflow.edit import Update, apply_updates, find_node, parse_update
from comfykit.workflow.manager import WorkflowInfo, WorkflowManager, load_workflow, validate_workflow
from comfykit.workflow.problems import Problem, Severity

__all__ = [
    "Problem",
    "Severity",
    "Update",
    "WorkflowInfo",
    "WorkflowManager",
    "apply_updates",
    "find_node",
    "load_workflow",
    "parse_update",
    "ui_to_api",
    "validate_workflow",
]
