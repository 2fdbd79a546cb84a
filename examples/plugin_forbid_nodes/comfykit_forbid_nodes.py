"""comfykit plugin: refuse workflows that use forbidden node classes.

``comfykit validate`` and ``validate_workflow()`` report each forbidden node as an error,
and a ``QueueManager`` (so ``comfykit batch``) fails such a job before it is posted,
without retrying it.  The forbidden classes are the ``forbid_nodes.classes`` config key
(``COMFYKIT_FORBID_NODES_CLASSES=PreviewImage,SaveAnimatedWEBP``); by default only
``PreviewImage``, whose temp outputs a headless batch never collects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from comfykit import hookimpl
from comfykit.errors import WorkflowError
from comfykit.workflow import Problem

DEFAULT_FORBIDDEN = ["PreviewImage"]

# The validation hook gets no client, so it reads the list remembered by comfykit_configure
# (the most recently configured session wins; the CLI has just one).
_forbidden: frozenset[str] = frozenset(DEFAULT_FORBIDDEN)


def forbidden_nodes(workflow: Mapping[str, Any], forbidden: frozenset[str]) -> list[tuple[str, str]]:
    """The (node id, class) pairs of ``workflow`` whose class is forbidden, in node order."""
    return [
        (str(node_id), str(node.get("class_type")))
        for node_id, node in workflow.items()
        if isinstance(node, Mapping) and node.get("class_type") in forbidden
    ]


@hookimpl
def comfykit_add_config(registry: Any) -> None:
    registry.add("forbid_nodes", "classes", DEFAULT_FORBIDDEN, type="list",
                 help="Node classes a workflow may not use (comfykit_forbid_nodes plugin).")


@hookimpl
def comfykit_configure(config: Any) -> None:
    global _forbidden
    _forbidden = frozenset(config["forbid_nodes.classes"])


@hookimpl
def comfykit_validate_workflow(workflow: Mapping[str, Any]) -> list[Problem]:
    return [
        Problem(
            code="forbidden_node",
            message=f"{class_type} nodes are not allowed here",
            node_id=node_id,
            class_type=class_type,
            hint="Remove the node, or change forbid_nodes.classes.",
        )
        for node_id, class_type in forbidden_nodes(workflow, _forbidden)
    ]


@hookimpl
def comfykit_prepare_prompt(prompt: dict[str, Any], client: Any) -> None:
    # Each client carries its own config, so this check needs no module state.
    found = forbidden_nodes(prompt, frozenset(client.config["forbid_nodes.classes"]))
    if found:
        node_id, class_type = found[0]
        raise WorkflowError(
            f"node {node_id} is a {class_type}, which forbid_nodes.classes does not allow",
            node_id=node_id,
            hint="Remove the node, or change forbid_nodes.classes.",
        )
