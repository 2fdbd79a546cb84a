"""A pytest plugin (entry point ``pytest11``) giving every project a ``comfyui_simulator`` fixture.

    def test_my_automation(comfyui_simulator):
        run_my_script(server=comfyui_simulator.url)

Parametrize the version indirectly: ``@pytest.mark.parametrize("comfyui_simulator", ["0.3.64"], indirect=True)``.

pytest loads this module in every environment where comfykit is installed, so it imports
nothing of the simulator: a project without the ``[simulator]`` extra runs its tests as
usual, and only a test that uses the fixture fails, saying what to install.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# The in-process CLI runner fixture (comfykit_cli) and its marker; that module imports nothing heavy.
pytest_plugins = ["comfykit.testing.cli_fixture"]


@pytest.fixture
def comfyui_simulator(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from comfykit.testing.startup import require_extra

    require_extra()
    from comfykit.testing.catalog import DEFAULT_VERSION
    from comfykit.testing.simulator import ComfyUISimulator

    version = getattr(request, "param", DEFAULT_VERSION)
    root = tmp_path_factory.mktemp("comfyui-simulator")
    with ComfyUISimulator(port=0, comfyui_version=version, root=root) as simulator:
        yield simulator
