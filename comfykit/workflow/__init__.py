"""Workflows: loading (API JSON, YAML, ComfyUI PNGs), editing, and validation through the hooks.

Modules, lowest first: ``problems`` (the ``Problem`` record), ``loader`` (files to data
to API graphs), ``edit`` (``NODE.INPUT=VALUE`` updates, merging), ``validate`` (structural
and schema checks), ``api`` (loading and validation through the hooks), ``info`` (what a graph
contains), ``templates`` (named parameters), ``sweep`` (parameter sweeps) and ``compat``
(``WorkflowManager``, the original tool's class).  Editor (UI-format) workflows are
converted to API graphs by the bundled ``comfykit_convert`` plugin, through the
``comfykit_convert_workflow`` hook; the core defaults live in ``comfykit.defaults``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from comfykit._lazy import lazy_exports

if TYPE_CHECKING:
    from comfykit.workflow.api import (
        check_workflow,
        load_workflow,
        read_object_info,
        validate_before_send,
        validate_workflow,
    )
    from comfykit.workflow.compat import WorkflowManager
    from comfykit.workflow.edit import (
        Update,
        apply_updates,
        find_node,
        merge_workflows,
        node_address,
        parse_update,
        set_node_input,
    )
    from comfykit.workflow.info import WorkflowInfo, get_workflow_info
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
    "set_node_input",
    "validate_before_send",
    "validate_workflow",
]

# Imported on first use: every client loads the core workflow plugin, which must stay cheap.
_LAZY = {
    "Parameter": "comfykit.workflow.templates",
    "Problem": "comfykit.workflow.problems",
    "Severity": "comfykit.workflow.problems",
    "SweepAxis": "comfykit.workflow.sweep",
    "Template": "comfykit.workflow.templates",
    "Update": "comfykit.workflow.edit",
    "WorkflowInfo": "comfykit.workflow.info",
    "WorkflowManager": "comfykit.workflow.compat",
    "apply_sweep_point": "comfykit.workflow.sweep",
    "apply_updates": "comfykit.workflow.edit",
    "check_workflow": "comfykit.workflow.api",
    "create_template": "comfykit.workflow.templates",
    "expand_sweep": "comfykit.workflow.sweep",
    "find_node": "comfykit.workflow.edit",
    "find_template": "comfykit.workflow.templates",
    "get_workflow_info": "comfykit.workflow.info",
    "instantiate": "comfykit.workflow.templates",
    "list_templates": "comfykit.workflow.templates",
    "load_template": "comfykit.workflow.templates",
    "load_workflow": "comfykit.workflow.api",
    "merge_workflows": "comfykit.workflow.edit",
    "node_address": "comfykit.workflow.edit",
    "parse_sweep": "comfykit.workflow.sweep",
    "parse_update": "comfykit.workflow.edit",
    "read_object_info": "comfykit.workflow.api",
    "save_template": "comfykit.workflow.templates",
    "set_node_input": "comfykit.workflow.edit",
    "validate_before_send": "comfykit.workflow.api",
    "validate_workflow": "comfykit.workflow.api",
}


__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)
