"""``comfykit plugin new NAME``: write a ready plugin package (entry point, one hook of each family, tests).

The package passes its own tests right after ``pip install -e '.[test]'``, and also
uninstalled (``pytest`` in its folder: ``src/`` is on pytest's path and the tests name the
module).  The files are kept here as data; ``__NAME__``-style placeholders are filled in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import click

__all__ = ["PluginNames", "plugin", "plugin_names", "write_plugin_package"]

_PYPROJECT = '''\
[build-system]
requires = ["hatchling>=1.18"]
build-backend = "hatchling.build"

[project]
name = "__DIST__"
version = "0.1.0"
description = "A comfykit plugin"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["comfykit"]

[project.optional-dependencies]
# The comfyui_simulator and comfykit_cli fixtures need the simulator extra.
test = ["comfykit[simulator]", "pytest"]

# The line that makes it a plugin: comfykit loads every entry point of the "comfykit" group.
# The name (left) is the plugin's name in `comfykit plugins` and for `-p no:__NAME__`.
[project.entry-points.comfykit]
__NAME__ = "__MODULE__"

[tool.hatch.build]
# An editable install puts src/ on the path (no extra build dependency).
dev-mode-dirs = ["src"]

[tool.hatch.build.targets.wheel]
packages = ["src/__MODULE__"]

[tool.pytest.ini_options]
# Lets the tests run before the package is installed, too.
pythonpath = ["src"]
testpaths = ["tests"]
'''

_README = '''\
# __DIST__

A comfykit plugin. Develop it with:

```bash
pip install -e '.[test]'
pytest
comfykit plugins          # lists __NAME__ with its hooks
comfykit __NAME__-hello
```

The hooks are documented in comfykit's hook reference (docs/plugins/hooks.md).
'''

_MODULE = '''\
"""comfykit plugin __NAME__: one hook of each family, ready to change.

Installed, it loads by itself (entry point ``__NAME__`` of the ``comfykit`` group).
Its setting is ``__SECTION__.max_nodes`` (``COMFYKIT___ENV___MAX_NODES``, or
``comfykit -o __SECTION__.max_nodes=5 ...``).
"""

from __future__ import annotations

import json

import click

from comfykit import StoredOutput, hookimpl
from comfykit.events import ExecutionSuccessEvent
from comfykit.workflow import Problem

PLUGIN = "__NAME__"

# Hooks without a client read the settings comfykit_configure remembered.
_settings = {"max_nodes": 100}

#: job ids this plugin saw complete, and prompt ids whose success event it saw (for the tests)
completed_jobs: list[str] = []
finished_prompts: list[str] = []


# -- configuration --------------------------------------------------------------------------

@hookimpl
def comfykit_add_config(registry):
    """Declare the keys this plugin reads; they are accepted in comfykit.yaml, the environment and -o."""
    registry.add("__SECTION__", "max_nodes", 100, type="int",
                 help="Most nodes a workflow may have (__NAME__ plugin).")


@hookimpl
def comfykit_configure(config):
    """Remember the effective settings (called before any command or client of a session runs)."""
    _settings["max_nodes"] = config["__SECTION__.max_nodes"]


# -- command line ---------------------------------------------------------------------------

@hookimpl
def comfykit_register_commands(cli):
    """Add `comfykit __NAME__-hello`; the context object (`run`) gives the run's config, client and --json."""

    @cli.command("__NAME__-hello")
    @click.pass_obj
    def hello(run):
        """Say hello with this plugin's settings."""
        max_nodes = run.config()["__SECTION__.max_nodes"]
        if run.json():
            click.echo(json.dumps({"plugin": PLUGIN, "max_nodes": max_nodes}))
        else:
            click.echo(f"hello from {PLUGIN}: max_nodes={max_nodes}")


# -- workflows ------------------------------------------------------------------------------

@hookimpl
def comfykit_validate_workflow(workflow):
    """Report problems with an API-format workflow (comfykit validate, validate_workflow, before sending)."""
    limit = _settings["max_nodes"]
    if len(workflow) <= limit:
        return []
    return [Problem(code="too_many_nodes", message=f"{len(workflow)} nodes is more than {limit}",
                    hint="Raise __SECTION__.max_nodes, or split the workflow.")]


# -- submission -----------------------------------------------------------------------------

@hookimpl
def comfykit_prepare_prompt(prompt, job, client):
    """Change the prompt (in place) or the job just before it is posted (QueueManager, batch, send --wait)."""
    job.metadata["__SECTION__"] = {"server": client.base_url, "nodes": len(prompt)}


# -- live events ----------------------------------------------------------------------------

@hookimpl
def comfykit_handle_event(event):
    """See every live event a client receives; runs on the event source's thread, so keep it quick."""
    if isinstance(event, ExecutionSuccessEvent):
        finished_prompts.append(event.prompt_id)


# -- job lifecycle --------------------------------------------------------------------------

@hookimpl
def comfykit_job_completed(job):
    """A job finished; its outputs are stored (job.stored)."""
    completed_jobs.append(job.job_id)


# -- outputs --------------------------------------------------------------------------------

@hookimpl
def comfykit_store_outputs(job, outputs, client):
    """An output sink: store a finished job's files somewhere and say where (StoredOutput records)."""
    return [
        StoredOutput(sink=PLUGIN, node_id=output.node_id, kind=output.kind,
                     location=f"{client.base_url}/view?filename={output.filename}")
        for output in outputs if output.is_file
    ]
'''

_TESTS = '''\
"""Tests of the __NAME__ plugin against comfykit's simulator, through the SDK and the CLI, installed or not."""

from __future__ import annotations

import pytest

import __MODULE__
from comfykit import ComfyUIClient, JobStatus, QueueManager, load_config
from comfykit.workflow import validate_workflow

WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "__SECTION__"}},
}


def test_a_workflow_with_too_many_nodes_is_a_problem(comfyui_simulator, monkeypatch):
    monkeypatch.setenv("COMFYKIT___ENV___MAX_NODES", "1")
    # plugins= registers the module before it is installed; once installed it is not registered twice.
    with ComfyUIClient(url=comfyui_simulator.url, plugins=[__MODULE__]) as client:
        ok, problems = validate_workflow(WORKFLOW, client=client)
    assert not ok and [p.code for p in problems] == ["too_many_nodes"]


def test_a_job_runs_the_hooks_and_the_sink(comfyui_simulator, tmp_path):
    config = load_config(overrides={"output.output_dir": str(tmp_path)}, use_file=False)
    with QueueManager(servers=[comfyui_simulator.url], config=config, plugins=[__MODULE__]) as queue:
        job_id = queue.add_job(WORKFLOW)
        queue.run(timeout=60)
        job = queue.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED
    assert job_id in __MODULE__.completed_jobs and job.prompt_id in __MODULE__.finished_prompts
    assert [s.sink for s in job.stored if s.sink == "__NAME__"] == ["__NAME__"]


@pytest.mark.comfykit_plugins("__MODULE__")
def test_the_command_reads_the_config(comfykit_cli):
    result = comfykit_cli("__NAME__-hello")
    assert result.exit_code == 0, result
    assert "max_nodes=100" in result.stdout
    result = comfykit_cli("-o", "__SECTION__.max_nodes=5", "--json", "__NAME__-hello")
    assert result.json == {"plugin": "__NAME__", "max_nodes": 5}


@pytest.mark.comfykit_plugins("__MODULE__")
def test_the_plugin_is_listed_with_its_hooks(comfykit_cli):
    listed = {p["name"]: p for p in comfykit_cli("--json", "plugins").json["plugins"]}
    mine = [p for name, p in listed.items() if name in ("__NAME__", "__MODULE__")]
    assert len(mine) == 1 and "comfykit_store_outputs" in mine[0]["hooks"]
'''

_FILES: Mapping[str, str] = {
    "pyproject.toml": _PYPROJECT,
    "README.md": _README,
    "src/__MODULE__/__init__.py": _MODULE,
    "tests/test___MODULE__.py": _TESTS,
}

_VALID_NAME = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")


class PluginNames:
    """The names one plugin goes by: its plugin name, distribution, module, config section and env prefix."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dist = f"comfykit-{name.replace('_', '-')}"
        self.module = f"comfykit_{name.replace('-', '_')}"
        self.section = name.replace("-", "_")
        self.env = self.section.upper()

    def fill(self, text: str) -> str:
        for placeholder, value in (("__MODULE__", self.module), ("__DIST__", self.dist), ("__NAME__", self.name),
                                   ("__SECTION__", self.section), ("__ENV__", self.env)):
            text = text.replace(placeholder, value)
        return text


def plugin_names(name: str) -> PluginNames:
    """The names of plugin ``name`` (``comfykit-`` or ``comfykit_`` in front is dropped); a usage error if unusable."""
    bare = re.sub(r"^comfykit[-_]", "", name.strip().lower())
    if not _VALID_NAME.match(bare):
        raise click.BadParameter(
            f"{name!r} is not a usable plugin name: use lowercase letters and digits, words joined by - or _ "
            "(e.g. watermark, s3-upload)", param_hint="NAME")
    return PluginNames(bare)


def write_plugin_package(name: str, directory: Path, *, force: bool = False) -> list[Path]:
    """Write plugin ``name``'s package under ``directory/comfykit-NAME``; return the files written."""
    names = plugin_names(name)
    root = directory / names.dist
    if root.exists() and any(root.iterdir()) and not force:
        raise click.ClickException(f"{root} already exists and is not empty (use --force to write over it)")
    written = []
    for relative, template in _FILES.items():
        path = root / names.fill(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(names.fill(template), encoding="utf-8")
        written.append(path)
    return written


@click.group()
def plugin() -> None:
    """Start a plugin of your own (see also `comfykit plugins`)."""


@plugin.command("new")
@click.argument("name")
@click.option("--directory", "-d", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Where to create the comfykit-NAME folder.")
@click.option("--force", is_flag=True, help="Write into an existing, non-empty folder.")
def new(name: str, directory: Path, force: bool) -> None:
    """Write a ready plugin package: pyproject with the entry point, one hook of each family, tests."""
    written = write_plugin_package(name, directory, force=force)
    root = written[0].parent
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(f"\nNext: cd {root} && pip install -e '.[test]' && pytest")
