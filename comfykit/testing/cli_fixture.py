"""The ``comfykit_cli`` pytest fixture and the ``comfykit_plugins`` marker (loaded by comfykit's pytest plugin).

Kept apart from :mod:`comfykit.testing.cli_runner` so the runner works without
pytest, and light (no simulator import) so registering it never breaks a pytest run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from comfykit.testing.cli_runner import CliRunner

# No __all__: this module is a pytest plugin, its fixture is found by pytest, not imported.

MARKER = "comfykit_plugins"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(*names): hermetic mode: load only these third-party comfykit plugins "
        "(entry-point or module names) in the test, for clients, queues and comfykit_cli alike.",
    )


@pytest.fixture
def comfykit_cli(request: pytest.FixtureRequest, comfyui_simulator: Any, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """Run ``comfykit`` in-process against this test's ``comfyui_simulator``: ``comfykit_cli("send", "f.json")``.

    Returns a :class:`comfykit.testing.cli_runner.CliRunner`; each call gives a
    ``CliResult`` with ``exit_code``, ``stdout``, ``stderr``, ``json`` (stdout as one
    document) and ``events`` (the NDJSON lines of ``--json``).  Runs start in
    ``tmp_path``, so ``./comfykit.yaml`` and ``./outputs`` are the test's own.
    ``@pytest.mark.comfykit_plugins("name", ...)`` loads only those third-party
    plugins, in the CLI and (through ``COMFYKIT_PLUGINS``) in every client of the test.
    """
    marker = request.node.get_closest_marker(MARKER)
    only = None if marker is None else [str(name) for name in marker.args]
    if only is not None:
        monkeypatch.setenv("COMFYKIT_PLUGINS", ",".join(only))
    return CliRunner(server=comfyui_simulator.url, only_plugins=only, cwd=tmp_path)
