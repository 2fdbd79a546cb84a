"""``WorkflowManager``: the original tool's workflow class, as a thin layer over comfykit's module functions.

Scripts written for that tool keep their calls (load_workflow, save_workflow,
validate_workflow, register_workflow, get_workflow, update_node_input,
find_nodes_by_type, create_template, instantiate_template, get_workflow_info,
merge_workflows) with the argument orders and results they expect.  Each method
forwards to the function of the same job in ``api``, ``edit``, ``info`` or
``templates``, with the catalogue, client and plugins this manager was given.
"""

from __future__ import annotations

import copy
import difflib
import json
import random
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from comfykit.errors import TemplateError, WorkflowError
from comfykit.paths import atomic_write
from comfykit.plugins import PluginManager, open_session
from comfykit.workflow.api import Catalogue, check_workflow, load_workflow, saved_object_info
from comfykit.workflow.edit import find_node, merge_workflows, node_address, set_node_input
from comfykit.workflow.info import WorkflowInfo, get_workflow_info
from comfykit.workflow.loader import dump_yaml
from comfykit.workflow.problems import Problem
from comfykit.workflow.templates import Template, create_template, find_template, instantiate, list_templates, save_template

__all__ = ["WorkflowManager"]


class WorkflowManager:
    """Load, check, edit, template and keep named workflows (the original tool's method names).

    ``object_info`` is the node catalogue used for conversion and schema checks: a
    mapping or the path of a saved ``/object_info`` file.  Without it (and without a
    ``client``), the config's ``workflow.object_info`` is used when set.
    """

    def __init__(
        self,
        workflows_dir: str | Path = "workflows",
        *,
        templates_dir: str | Path | None = None,
        client: Any = None,
        object_info: Catalogue | None = None,
        plugin_manager: PluginManager | None = None,
    ) -> None:
        self.workflows_dir = Path(workflows_dir)
        self.templates_dir = Path(templates_dir) if templates_dir is not None else self.workflows_dir
        self.client = client
        if plugin_manager is None and client is not None:
            plugin_manager = client.plugin_manager
        if plugin_manager is None:
            plugin_manager, config = open_session()
            if object_info is None and client is None:
                object_info = config["workflow.object_info"]
        self.plugin_manager: PluginManager = plugin_manager
        self.object_info: Mapping[str, Any] | None = (
            object_info if isinstance(object_info, Mapping) or object_info is None else saved_object_info(object_info)
        )
        self._registry: dict[str, dict[str, Any]] = {}
        self._templates: dict[str, Template] = {}

    # -- files -------------------------------------------------------------------------------

    def load_workflow(
        self, path: str | Path, *, client: Any = None, object_info: Catalogue | None = None,
        frontend_version: str | None = None,
    ) -> dict[str, Any]:
        """A new API graph from a file; a bare name is also looked up in ``workflows_dir``."""
        candidate = Path(path)
        if not candidate.exists() and (self.workflows_dir / candidate).exists():
            candidate = self.workflows_dir / candidate
        return load_workflow(candidate, client=client or self.client, object_info=object_info or self.object_info,
                             plugin_manager=self.plugin_manager, frontend_version=frontend_version)

    def save_workflow(self, workflow: Mapping[str, Any], path: str | Path) -> Path:
        """Write the API graph as JSON, or YAML for ``.yaml``/``.yml``; a reader sees the old file or the new one."""
        target = Path(path)
        if target.suffix.lower() in (".yaml", ".yml"):
            text = dump_yaml(dict(workflow))
        else:
            text = json.dumps(workflow, indent=2, ensure_ascii=False) + "\n"
        atomic_write(target, text.encode("utf-8"))
        return target

    # -- checks --------------------------------------------------------------------------------

    def check(
        self, workflow: Mapping[str, Any], *, client: Any = None, object_info: Catalogue | None = None
    ) -> list[Problem]:
        """Every problem as a :class:`Problem` record (node, input, severity, message, hint)."""
        return check_workflow(workflow, client=client or self.client, object_info=object_info or self.object_info,
                              plugin_manager=self.plugin_manager)

    def validate_workflow(
        self, workflow: Mapping[str, Any], *, client: Any = None, object_info: Catalogue | None = None,
        detailed: bool = False,
    ) -> tuple[bool, list[Any]]:
        """The original shape: ``(is_valid, messages)``, one readable line per problem.

        The messages are text, as the original tool returned them (so ``"\\n".join(errors)``
        works); ``detailed=True`` gives the :class:`Problem` records instead, like
        :func:`comfykit.workflow.validate_workflow`.  Without a catalogue the lines include
        the ``schema_not_checked`` warning.
        """
        problems = self.check(workflow, client=client, object_info=object_info)
        ok = not any(p.is_error for p in problems)
        return (ok, list(problems)) if detailed else (ok, [str(p) for p in problems])

    # -- named workflows ----------------------------------------------------------------------

    def register_workflow(self, name: str, workflow: Mapping[str, Any]) -> None:
        self._registry[name] = copy.deepcopy(dict(workflow))

    def get_workflow(self, name: str) -> dict[str, Any]:
        """A copy of a registered workflow, else ``<name>.json``/``.yaml`` from ``workflows_dir``."""
        if name in self._registry:
            return copy.deepcopy(self._registry[name])
        for suffix in (".json", ".yaml", ".yml"):
            path = self.workflows_dir / f"{name}{suffix}"
            if path.exists():
                return self.load_workflow(path)
        known = sorted({*self._registry, *(p.stem for p in self.workflows_dir.glob("*.json"))})
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"Did you mean {', '.join(close)}?" if close else f"Register it or put {name}.json in {self.workflows_dir}."
        raise WorkflowError(f"no workflow named {name!r}", hint=hint)

    # -- editing -----------------------------------------------------------------------------

    def update_node_input(
        self, workflow: MutableMapping[str, Any], node: str, input_name: str, value: Any
    ) -> MutableMapping[str, Any]:
        """Set ``node``'s input in ``workflow`` itself and return it; ``node`` is an id, a title or a unique class.

        The node's entry is replaced by an updated copy, so after ``modified = workflow.copy()``
        changing ``modified`` leaves ``workflow`` as it was.  For a new graph instead, use
        :func:`comfykit.workflow.apply_updates`.
        """
        return set_node_input(workflow, node, input_name, value)

    def find_nodes_by_type(self, workflow: Mapping[str, Any], class_type: str) -> list[str]:
        return [nid for nid, node in workflow.items() if node.get("class_type") == class_type]

    def find_nodes_by_title(self, workflow: Mapping[str, Any], title: str) -> list[str]:
        return [nid for nid, node in workflow.items() if (node.get("_meta") or {}).get("title") == title]

    def find_node(self, workflow: Mapping[str, Any], node: str) -> str:
        return find_node(workflow, node)

    def node_address(self, workflow: Mapping[str, Any], node_id: str) -> str:
        return node_address(workflow, node_id)

    def get_workflow_info(self, workflow: Mapping[str, Any], *, object_info: Mapping[str, Any] | None = None) -> WorkflowInfo:
        """A :class:`WorkflowInfo`, readable as ``info.nodes`` or ``info["total_nodes"]``."""
        return get_workflow_info(workflow, object_info=object_info or self.object_info)

    def merge_workflows(
        self, first: Mapping[str, Any], second: Mapping[str, Any], node_id_prefix: str | None = None, *,
        prefix_a: str | None = None, prefix_b: str | None = "b_",
    ) -> dict[str, Any]:
        """One graph holding both; the second graph's ids get ``node_id_prefix`` (default ``b_``)."""
        return merge_workflows(first, second, node_id_prefix, prefix_a=prefix_a, prefix_b=prefix_b)

    # -- templates -----------------------------------------------------------------------------

    def create_template(
        self,
        *args: Any,
        name: str | None = None,
        workflow: Mapping[str, Any] | str | None = None,
        parameters: Mapping[str, Any] | None = None,
        description: str = "",
        register: bool = True,
    ) -> Template:
        """A checked template over ``workflow`` (a graph or a registered/saved workflow name), kept under ``name``.

        Both argument orders work: the original tool's ``create_template(name, workflow,
        parameters)`` and comfykit's ``create_template(workflow, parameters, name=...)``,
        positionally or by keyword.  A parameter is written in any form
        :func:`comfykit.workflow.create_template` takes, including the original
        ``{"node_id": "6", "input_name": "text"}``.
        """
        name, workflow, parameters = _template_arguments(args, name, workflow, parameters)
        graph = self.get_workflow(workflow) if isinstance(workflow, str) else workflow
        template = create_template(graph, parameters, name=name, description=description)
        if register:
            self._templates[name] = template
        return template

    def get_template(self, name: str | Template) -> Template:
        """A template created here, or ``<name>.template.yaml`` from ``templates_dir``."""
        if isinstance(name, Template):
            return name
        if name not in self._templates:
            self._templates[name] = find_template(name, self.templates_dir, client=self.client, object_info=self.object_info)
        return self._templates[name]

    def save_template(self, template: Template | str, path: str | Path | None = None, **options: Any) -> Path:
        return save_template(self.get_template(template), path if path is not None else self.templates_dir, **options)

    def list_templates(self) -> list[str]:
        return sorted({*self._templates, *list_templates(self.templates_dir)})

    def instantiate_template(
        self, template: Template | str, values: Mapping[str, Any] | None = None, *, random_seeds: bool = False,
        rng: random.Random | None = None,
    ) -> dict[str, Any]:
        """A new API graph from a template (object or name) and parameter values (checked)."""
        return instantiate(self.get_template(template), values, random_seeds=random_seeds, rng=rng)


def _template_arguments(
    args: tuple[Any, ...], name: str | None, workflow: Mapping[str, Any] | str | None, parameters: Mapping[str, Any] | None
) -> tuple[str, Mapping[str, Any] | str, Mapping[str, Any]]:
    """(name, workflow, parameters) from a create_template call in either argument order."""
    usage = ("Call create_template(name, workflow, parameters) as the original tool did, "
             "or create_template(workflow, parameters, name=...).")
    if len(args) == 3:
        given = dict(zip(("name", "workflow", "parameters"), args, strict=True))
    elif len(args) == 1 and workflow is not None:
        given = {"name": args[0]}  # create_template("t2i", workflow=..., parameters=...)
    elif len(args) == 2 and parameters is not None:
        given = {"name": args[0], "workflow": args[1]}  # create_template("t2i", graph, parameters=...)
    elif len(args) <= 2:
        given = dict(zip(("workflow", "parameters"), args, strict=False))
    else:
        raise TemplateError(f"create_template takes at most 3 positional arguments, not {len(args)}", hint=usage)
    for key, value in (("name", name), ("workflow", workflow), ("parameters", parameters)):
        if value is not None:
            if key in given:
                raise TemplateError(f"create_template got {key} twice (by position and by keyword)", hint=usage)
            given[key] = value
    chosen_name = given.get("name", "template")
    if not isinstance(chosen_name, str):
        raise TemplateError(f"the template name must be a text, not {type(chosen_name).__name__}", hint=usage)
    if not isinstance(given.get("workflow"), (Mapping, str)):
        raise TemplateError("create_template needs a workflow (an API graph or a workflow name)", hint=usage)
    if not isinstance(given.get("parameters"), Mapping):
        raise TemplateError("create_template needs parameters: a mapping of parameter name to target", hint=usage)
    return chosen_name, given["workflow"], given["parameters"]
