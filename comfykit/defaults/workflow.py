"""Core implementations of the workflow hooks (reading, conversion, validation), registered trylast."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from comfykit.errors import ConversionError
from comfykit.hookspecs import hookimpl
from comfykit.workflow.loader import is_ui_workflow, read_workflow_file, to_api_graph
from comfykit.workflow.problems import Problem
from comfykit.workflow.validate import check_schema, check_structure


@hookimpl(trylast=True)
def comfykit_read_workflow(path: Path) -> Any:
    return read_workflow_file(path)


@hookimpl(trylast=True)
def comfykit_convert_workflow(data: Any, source: str | None, object_info: Mapping[str, Any] | None) -> dict[str, Any] | None:
    graph = to_api_graph(data, source)
    if graph is not None or not is_ui_workflow(data):
        return graph
    if object_info is None:
        raise ConversionError(
            "this is an editor (UI-format) workflow; converting it needs the server's node catalogue (/object_info)",
            path=source,
            hint="Pass a client or an object_info dict: load_workflow(path, client=ComfyUIClient(url)) or "
                 "load_workflow(path, object_info=...); on the command line add --server URL. "
                 "Or save it from ComfyUI with Workflow > Export (API).",
        )
    from comfykit.workflow.convert import ui_to_api  # only UI-format files pay for importing the converter

    return ui_to_api(data, object_info, source=source)


@hookimpl(trylast=True)
def comfykit_validate_workflow(workflow: Mapping[str, Any], object_info: Mapping[str, Any] | None) -> list[Problem]:
    problems = check_structure(workflow)
    if object_info is not None and not any(p.code in ("empty_workflow", "invalid_node") for p in problems):
        problems += check_schema(workflow, object_info)
    return problems
