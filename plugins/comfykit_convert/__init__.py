"""comfykit's bundled converter: editor (UI-format) workflows to the API prompt the editor exports.

Implements ``comfykit_convert_workflow`` for UI-format files, following the rules of the frontend
the server expects (``/system_stats`` → ``system.required_frontend_version``) or the one named
with ``frontend_version=`` / ``--frontend``; without either, the newest rules, with a
:class:`FrontendGuessWarning` saying so.  Modules: ``rules`` (per-frontend tables), ``widgets``
(one node's widgets and saved values), ``graph`` (subgraphs, links, modes), ``prompts``
(dynamic prompts).  Disable it with ``-p no:convert``.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from comfykit import hookimpl
from comfykit.errors import ConversionError
from comfykit.workflow.loader import is_ui_workflow
from comfykit_convert.graph import FRONTEND_ONLY_TYPES, flatten
from comfykit_convert.rules import DEFAULT_FRONTEND, FRONTENDS, FrontendRules, rules_for

__all__ = [
    "DEFAULT_FRONTEND",
    "FRONTENDS",
    "FRONTEND_ONLY_TYPES",
    "FrontendGuessWarning",
    "FrontendRules",
    "comfykit_convert_workflow",
    "rules_for",
    "ui_to_api",
]


class FrontendGuessWarning(UserWarning):
    """A workflow was converted with rules of another frontend than the one it is for, or unknown one.

    Nothing named the frontend (the newest rules were used), or comfykit has no rules for the
    one named (those of the closest older frontend were used).
    """


def ui_to_api(
    ui: Mapping[str, Any],
    object_info: Mapping[str, Any],
    *,
    source: str | None = None,
    frontend_version: str | None = None,
    virtual_types: Iterable[str] = (),
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """Convert an editor workflow to a new API-format graph, as that frontend's "Export (API)" would.

    :param ui: the saved workflow (``nodes``, ``links``, ...); not modified.
    :param object_info: the server's ``/object_info`` (every class the workflow uses).
    :param source: the file name, for error messages.
    :param frontend_version: whose rules to follow (the server's ``required_frontend_version``);
        ``None`` uses the newest known rules, and a version without rules of its own those of the
        closest older one, each with a :class:`FrontendGuessWarning` saying which were used.
    :param virtual_types: more frontend-only node types (from editor extensions) to pass through.
    :param rng: picks the options of ``{a|b}`` dynamic prompts, as the editor does at random.
    :raise ConversionError: naming the node, its class and title, for an unknown class, a link to a
        missing node, a group node or a malformed file.
    """
    rules = rules_for(frontend_version)
    if frontend_version is None:
        warnings.warn(
            f"{source or 'workflow'}: no frontend version given; converted with the rules of frontend {rules.version}",
            FrontendGuessWarning, stacklevel=2,
        )
    elif rules.version != frontend_version:
        warnings.warn(
            f"{source or 'workflow'}: comfykit has no rules for frontend {frontend_version}; converted with those of "
            f"frontend {rules.version}, the closest older one", FrontendGuessWarning, stacklevel=2,
        )
    return flatten(ui, object_info, rules, source=source, virtual_types=virtual_types, rng=rng)


@hookimpl
def comfykit_convert_workflow(
    data: Any, source: str | None, object_info: Mapping[str, Any] | None, frontend_version: str | None,
) -> dict[str, Any] | None:
    # No default on frontend_version: older pluggy releases pass only arguments without one.
    if not is_ui_workflow(data):
        return None
    if object_info is None:
        raise ConversionError(
            "this is an editor (UI-format) workflow; converting it needs the server's node catalogue (/object_info)",
            path=source,
            hint="Pass a client or an object_info dict: load_workflow(path, client=ComfyUIClient(url)) or "
                 "load_workflow(path, object_info=...); on the command line add --server URL. "
                 "Or save it from ComfyUI with Workflow > Export (API).",
        )
    return ui_to_api(data, object_info, source=source, frontend_version=frontend_version)
