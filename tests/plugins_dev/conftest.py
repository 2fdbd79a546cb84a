"""Plugins "installed" for one test: a dist-info folder with a ``comfykit`` entry point, as pip writes it."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

Install = Callable[[str, str, str, str], None]


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Install]:
    """``install(dist, entry_point_name, module, source)``: make ``module`` importable and found as a plugin."""
    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    modules: list[str] = []

    def install(dist: str, name: str, module: str, source: str) -> None:
        info = site / f"{dist.replace('-', '_')}-2.5.dist-info"  # as pip names it: one dash, before the version
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 2.5\n")
        (info / "entry_points.txt").write_text(f"[comfykit]\n{name} = {module}\n")
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        modules.append(module)

    yield install
    for module in modules:
        sys.modules.pop(module, None)
