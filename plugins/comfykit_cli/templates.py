"""``comfykit templates list|show|create``: workflow templates, named parameters mapped onto node inputs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from comfykit_cli.options import emit, json_option, open_client, server_option
from comfykit_cli.targets import TEMPLATE_SUFFIXES, load_target, templates_dir

if TYPE_CHECKING:
    from comfykit.workflow.templates import Template

__all__ = ["create_command", "list_command", "show_command", "templates"]


def _parse_param(text: str) -> tuple[str, str, str | None, str | None]:
    """``NAME=NODE.INPUT[:TYPE][=DEFAULT]`` as (name, target, type, default text); a quoted title may hold ':' or '='."""
    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not name or "." in name:
        raise click.BadParameter(
            f"{text!r} is not NAME=NODE.INPUT[:TYPE][=DEFAULT] (NAME without dots)",
            param_hint="--param")
    skip = 0
    if rest.lstrip().startswith('"'):
        opening = rest.index('"')
        closing = rest.find('"', opening + 1)
        if closing < 0:
            raise click.BadParameter(f"{text!r}: unclosed quote in the node title", param_hint="--param")
        skip = closing + 1
    head, eq, default = rest[skip:].partition("=")
    target_text, colon, kind = (rest[:skip] + head).rpartition(":") if ":" in head else (rest[:skip] + head, "", "")
    target = target_text.strip()
    if "." not in target:
        raise click.BadParameter(f"{text!r}: the target {target!r} names no input; write NODE.INPUT, e.g. "
                                 "KSampler.seed or \"Positive Prompt\".text", param_hint="--param")
    return name, target, (kind.strip() or None) if colon else None, default if eq else None


def _default_value(text: str, kind: str | None) -> Any:
    if kind in ("str", "choice"):
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return float(value) if kind == "float" and isinstance(value, int) and not isinstance(value, bool) else value


def _parameters(specs: Sequence[str], required: Sequence[str], descriptions: Sequence[str],
                choices: Sequence[str]) -> dict[str, dict[str, Any]]:
    params: dict[str, dict[str, Any]] = {}
    for text in specs:
        name, target, kind, default = _parse_param(text)
        param = params.setdefault(name, {"targets": []})
        param["targets"].append(target)
        if kind is not None:
            param["type"] = kind
        if default is not None:
            param["default"] = _default_value(default, param.get("type"))
    for option, values in (("--describe", descriptions), ("--choices", choices), ("--required", required)):
        for text in values:
            name, _, value = text.partition("=") if option != "--required" else (text, "", "")
            if name not in params:
                raise click.BadParameter(f"{name!r} is not a parameter given with --param", param_hint=option)
            if option == "--describe":
                params[name]["description"] = value
            elif option == "--choices":
                params[name]["type"] = "choice"
                params[name]["choices"] = [_default_value(item.strip(), None) for item in value.split(",") if item.strip()]
            else:
                params[name]["required"] = True
    return params


def _complete(workflow: Mapping[str, Any], params: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Fill each parameter's type and default from the workflow's current value where they were not given."""
    from comfykit.workflow.templates import create_template

    # Bare targets make create_template infer the type and take the current value as default.
    inferred = create_template(workflow, {name: spec["targets"] for name, spec in params.items()}).parameters
    result: dict[str, Any] = {}
    for name, spec in params.items():
        spec = dict(spec)
        required = spec.pop("required", False)
        spec.setdefault("type", inferred[name].type)
        if required:
            spec.pop("default", None)
        elif "default" not in spec:
            current = inferred[name].default
            spec["default"] = float(current) if spec["type"] == "float" and isinstance(current, int) else current
        result[name] = spec
    return result


def _template_data(template: Template) -> dict[str, Any]:
    return {
        "name": template.name, "description": template.description, "source": template.source,
        "workflow_file": template.workflow_file, "nodes": len(template.workflow),
        "parameters": {name: {**param.to_dict(), "required": param.required} for name, param in template.parameters.items()},
    }


@click.group()
def templates() -> None:
    """List, show and create workflow templates (named parameters mapped onto node inputs)."""


@templates.command("list")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None,
              help="Folder to list (default: workflow.templates_dir).")
@server_option
@json_option
def list_command(directory: str | None, servers: tuple[str, ...], as_json: bool) -> None:
    """List the templates in the templates folder, with their descriptions and parameters."""
    from comfykit.errors import ComfyKitError
    from comfykit.workflow.templates import list_templates, load_template

    folder = Path(directory) if directory else templates_dir()
    entries: list[dict[str, Any]] = []
    with open_client(servers) as client:
        for name in list_templates(folder):
            file = next(p for p in (folder / f"{name}{s}" for s in TEMPLATE_SUFFIXES) if p.is_file())
            try:
                template = load_template(file, client=client)
            except ComfyKitError as exc:
                # One broken template must not hide the others; it is listed with its error.
                entries.append({"name": name, "file": str(file), "error": str(exc)})
                continue
            entries.append({"name": template.name, "file": str(file), "description": template.description,
                            "parameters": list(template.parameters)})
    lines = [f"{e['name']:24} " + (f"ERROR {e['error']}" if "error" in e else
                                   f"{e['description'] or '-'}  [{', '.join(e['parameters'])}]") for e in entries]
    emit({"dir": str(folder), "templates": entries}, as_json,
          "\n".join(lines) or f"no templates in {folder}")


@templates.command("show")
@click.argument("name")
@server_option
@json_option
def show_command(name: str, servers: tuple[str, ...], as_json: bool) -> None:
    """Show a template (by name or *.template.yaml path): its parameters, types and defaults."""
    from comfykit.workflow.templates import Template

    with open_client(servers) as client:
        template = load_target(name, client)
    if not isinstance(template, Template):
        raise click.BadParameter(f"{name} is a workflow, not a template", param_hint="NAME")
    lines = [f"{template.name}: {template.description or '-'}", f"  file: {template.source}"]
    lines += [f"  {line}" for line in template.describe()]
    for pname, param in template.parameters.items():
        lines.append(f"  {pname} -> {', '.join(param.targets)}")
    emit(_template_data(template), as_json, "\n".join(lines))


@templates.command("create")
@click.argument("workflow", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", required=True, help="The template's name (its file is NAME.template.yaml).")
@click.option("--param", "params", multiple=True, required=True, metavar="NAME=NODE.INPUT[:TYPE][=DEFAULT]",
              help='A parameter: seed=KSampler.seed, prompt="Positive Prompt".text:str, cfg=3.cfg:float=7. '
                   "Repeat a NAME to give it more targets. Type and default come from the workflow when left out.")
@click.option("--describe", "descriptions", multiple=True, metavar="NAME=TEXT", help="Describe a parameter.")
@click.option("--choices", "choices", multiple=True, metavar="NAME=A,B,...",
              help="Make a parameter a choice among these values.")
@click.option("--required", "required", multiple=True, metavar="NAME", help="The parameter has no default.")
@click.option("--description", default="", help="What the template is for.")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None,
              help="Where to write the template (default: workflow.templates_dir).")
@click.option("--link", is_flag=True,
              help="Refer to WORKFLOW by path instead of copying the (API-format) graph into the template.")
@click.option("--force", is_flag=True, help="Replace an existing template of that name.")
@server_option
@json_option
def create_command(workflow: str, name: str, params: tuple[str, ...], descriptions: tuple[str, ...],
                   choices: tuple[str, ...], required: tuple[str, ...], description: str, directory: str | None,
                   link: bool, force: bool, servers: tuple[str, ...], as_json: bool) -> None:
    """Make a template from WORKFLOW: each --param maps a name onto node inputs; written as NAME.template.yaml."""
    from comfykit.workflow import load_workflow
    from comfykit.workflow.templates import TEMPLATE_SUFFIX, create_template, save_template

    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise click.BadParameter(f"{name!r} cannot be a file name", param_hint="--name")
    folder = Path(directory) if directory else templates_dir()
    target = folder / f"{name}{TEMPLATE_SUFFIX}"
    if target.exists() and not force:
        raise click.UsageError(f"{target} exists; give --force to replace it, or another --name")
    specs = _parameters(params, required, descriptions, choices)
    with open_client(servers) as client:
        graph = load_workflow(workflow, client=client)
    template = create_template(graph, _complete(graph, specs), name=name, description=description)
    written = save_template(template, target, workflow_file=Path(workflow).resolve() if link else None)
    data = {**_template_data(template), "source": str(written)}
    emit(data, as_json, f"wrote {written} ({len(template.parameters)} parameter(s))")
