"""Shared pytest setup: keep user config and third-party plugins out of the tests."""

from __future__ import annotations

import pytest
from hypothesis import settings

# No per-example deadline: it is a timing assertion, and the suite must pass on a machine that is busy
# (a 5000-digit sweep bound took 576 ms of a 200 ms deadline while other work shared the two cores).
settings.register_profile("comfykit", deadline=None)
settings.load_profile("comfykit")


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    # A developer's own ~/.config/comfykit or COMFYKIT_* variables must not change test results.
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    import os

    for name in list(os.environ):
        if name.startswith("COMFYKIT_"):
            monkeypatch.delenv(name, raising=False)
