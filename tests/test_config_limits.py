"""A config file whose YAML aliases expand exponentially is refused before anything walks it."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfykit.config import load_config
from comfykit.errors import ConfigError


def test_an_alias_bomb_in_the_headers_is_a_config_error(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["xxxxxxxxxx", "xxxxxxxxxx", "xxxxxxxxxx", "xxxxxxxxxx", "xxxxxxxxxx"]']
    for level in range(1, 12):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 5) + "]")
    lines.append("comfyui:\n  headers:\n    X-Bomb: *a11")
    path = tmp_path / "comfykit.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="aliases expand") as caught:
        load_config(path=path)
    assert str(path) in str(caught.value)


def test_a_config_with_a_reused_anchor_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "comfykit.yaml"
    path.write_text("comfyui:\n  timeout: &t 45\n  connect_timeout: *t\n")
    config = load_config(path=path)
    assert config["comfyui.timeout"] == 45 and config["comfyui.connect_timeout"] == 45
