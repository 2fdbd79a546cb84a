"""Run the ``comfykit`` command in-process, for tests: exit code, stdout, stderr, and the JSON it printed.

    from comfykit.testing.cli_runner import CliRunner

    run = CliRunner(server=simulator.url, only_plugins=["forbid_nodes"])
    result = run("--json", "validate", "flow.json")
    assert result.exit_code == 1 and result.json[0]["ok"] is False

The command runs exactly as the console script would (the same plugins, config
search and exit codes), with stdout and stderr captured apart.  ``server`` is
given as ``COMFYKIT_URL``, so a ``--server`` on the command line still wins;
``only_plugins`` is the hermetic mode (``COMFYKIT_PLUGINS``): of the
third-party plugins only those named load.  In pytest, the ``comfykit_cli``
fixture gives a runner bound to a ``comfyui_simulator``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

__all__ = ["CliResult", "CliRunner"]


@attrs.frozen
class CliResult:
    """What one in-process ``comfykit`` run did."""

    args: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str
    #: the exception that escaped the command, if any (not an exit)
    exception: BaseException | None = None

    @property
    def json(self) -> Any:
        """stdout as one JSON document (``comfykit --json plugins``); a clear error when it is not one."""
        try:
            return json.loads(self.stdout)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"`comfykit {' '.join(self.args)}` did not print one JSON document: {exc}\n"
                                 f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}") from None

    @property
    def events(self) -> list[dict[str, Any]]:
        """The NDJSON objects of stdout, one per line (``--json`` of ``send --wait`` and ``batch``)."""
        found = []
        for line in self.stdout.splitlines():
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise AssertionError(f"stdout line is not JSON ({exc}): {line!r}\nstderr:\n{self.stderr}") from None
            if isinstance(item, dict):
                found.append(item)
        return found

    def __str__(self) -> str:
        return (f"comfykit {' '.join(self.args)} -> exit {self.exit_code}\n"
                f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}")


def _build_cli(plugins: Sequence[object]) -> Any:
    """The root ``comfykit`` group, from the bundled ``cli`` plugin (found by its entry point, as the core finds plugins)."""
    from importlib import metadata

    from comfykit.errors import PluginError
    from comfykit.plugin_loader import ENTRY_POINT_GROUP

    found = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == "cli"]
    if not found:
        raise PluginError("the bundled `cli` plugin is not installed", hint="Reinstall comfykit (pip install comfykit).")
    return found[0].load().build_cli(plugins=plugins)


@contextmanager
def _working_directory(path: Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


class CliRunner:
    """Runs ``comfykit`` command lines in this process.

    :param server: the server commands talk to by default (set as ``COMFYKIT_URL``).
    :param plugins: plugin objects to add to every run (an uninstalled plugin's module).
    :param only_plugins: load only these third-party plugins (entry-point or module names);
        ``None`` loads what is installed.
    :param env: more environment variables for every run.
    :param cwd: the working directory of every run (where ``./comfykit.yaml`` is looked up).
    """

    def __init__(
        self,
        server: str | None = None,
        *,
        plugins: Sequence[object] = (),
        only_plugins: Iterable[str] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        self.server = server
        self.plugins = tuple(plugins)
        self.only_plugins = None if only_plugins is None else tuple(only_plugins)
        self.env = dict(env or {})
        self.cwd = Path(cwd) if cwd is not None else None

    def environment(self) -> dict[str, str]:
        """The variables every run sets on top of the process environment."""
        env = dict(self.env)
        if self.server is not None:
            env.setdefault("COMFYKIT_URL", self.server)
        if self.only_plugins is not None:
            env["COMFYKIT_PLUGINS"] = ",".join(self.only_plugins)
        return env

    def __call__(self, *args: str | os.PathLike[str], input: str | None = None,
                 env: Mapping[str, str] | None = None) -> CliResult:
        """Run ``comfykit ARGS...``; ``input`` is its stdin, ``env`` extra variables for this run only."""
        from click.testing import CliRunner as ClickRunner

        words = tuple(os.fspath(arg) for arg in args)
        runner = ClickRunner()
        with _working_directory(self.cwd):
            outcome = runner.invoke(_build_cli(plugins=self.plugins), list(words), input=input,
                                    env={**self.environment(), **(env or {})}, prog_name="comfykit")
        escaped = outcome.exception if not isinstance(outcome.exception, SystemExit) else None
        return CliResult(args=words, exit_code=outcome.exit_code, stdout=outcome.stdout, stderr=outcome.stderr,
                         exception=escaped)
