"""Shared pytest setup: keep user config and third-party plugins out of the tests."""

from __future__ import annotations

import pytest


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
