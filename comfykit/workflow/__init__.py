"""Workflows: loading (API JSON, YAML, ComfyUI PNGs), editing, and validation through the hooks.

Modules: ``loader`` (files to data to API graphs), ``convert`` (editor workflows to API
graphs), ``validate`` (structural and schema checks), ``edit`` (``NODE.INPUT=VALUE``
updates), ``manager`` (``WorkflowManager``), ``templates`` (named parameters), ``sweep``
(parameter sweeps), ``problems`` (the ``Problem`` record), ``plugin`` (core hook implementations).
"""

from __future__ import annotations

from comfykit.workflow.convert import ui_to_api
from comfykit.workflow.edit import Update, apply_updates, find_node, merge_workflows, node_address, parse_update
from comfykit.workflow.manager import (
    WorkflowInfo,
    WorkflowManager,
    check_workflow,
    get_workflow_info,
    load_workflow,
    read_object_info,
    validate_before_send,
    validate_workflow,
)
from comfykit.workflow.problems import Problem, Severity
from comfykit.workflow.sweep import SweepAxis, apply_sweep_point, expand_sweep, parse_sweep
from comfykit.workflow.templates import (
    Parameter,
    Template,
    create_template,
    find_template,
    instantiate,
    list_templates,
    load_template,
    save_template,
)

__all__ = [
    "Parameter",
    "Problem",
    "Severity",
    "SweepAxis",
    "Template",
    "Update",
    "WorkflowInfo",
    "WorkflowManager",
    "apply_sweep_point",
    "apply_updates",
    "check_workflow",
    "create_template",
    "expand_sweep",
    "find_node",
    "find_template",
    "get_workflow_info",
    "instantiate",
    "list_templates",
    "load_template",
    "load_workflow",
    "merge_workflows",
    "node_address",
    "parse_sweep",
    "parse_update",
    "read_object_info",
    "save_template",
    "ui_to_api",
    "validate_before_send",
    "validate_workflow",
]
