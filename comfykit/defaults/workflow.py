"""Core implementations of the workflow hooks (reading, conversion, validation), registered trylast."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from comfykit.hookspecs import hookimpl
from comfykit.workflow.loader import read_workflow_file, to_api_graph
from comfykit.workflow.problems import Problem
from comfykit.workflow.validate import check_schema, check_structure


@hookimpl(trylast=True)
def comfykit_read_workflow(path: Path) -> Any:
    return read_workflow_file(path)


@hookimpl(trylast=True)
def comfykit_convert_workflow(data: Any, source: str | None) -> dict[str, Any] | None:
    # API-format graphs only; editor (UI-format) workflows are the bundled `convert` plugin's.
    return to_api_graph(data, source)


@hookimpl(trylast=True)
def comfykit_validate_workflow(workflow: Mapping[str, Any], object_info: Mapping[str, Any] | None) -> list[Problem]:
    problems = check_structure(workflow)
    if object_info is not None and not any(p.code in ("empty_workflow", "invalid_node") for p in problems):
        problems += check_schema(workflow, object_info)
    return problems
