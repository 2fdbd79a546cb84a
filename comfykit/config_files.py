"""Where the config file is, and what it says: the search order, and YAML read into flat dotted keys with line numbers.

The search, first found wins: the path given (``--config``) or ``COMFYKIT_CONFIG``
(either must exist), ``./comfykit.yaml``, ``./config.yaml`` when it has a
``comfyui:`` section (the name the original tool used), then ``comfykit.yaml`` in
the user config directory.  Reading keeps the line of every key, so that
:mod:`comfykit.config` can name the file and line of a bad value.  Nothing here
knows which keys exist: checking and converting values is the registry's job.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from comfykit.errors import ConfigError
from comfykit.parsing import load_yaml

__all__ = ["find_config_file", "read_config_file"]


def _user_config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME")
    if base:
        return Path(base) / "comfykit"
    if os.name == "nt":
        return Path(os.environ.get("APPDATA", Path.home())) / "comfykit"
    return Path.home() / ".config" / "comfykit"


def find_config_file(
    explicit: str | os.PathLike[str] | None = None, *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> Path | None:
    """The config file to use, or ``None``; an explicit path that does not exist is an error.

    ``env`` is the environment whose ``COMFYKIT_CONFIG`` counts (default: ``os.environ``).
    """
    chosen = explicit or (os.environ if env is None else env).get("COMFYKIT_CONFIG")
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"config file {path} does not exist",
                path=str(path),
                hint="Check --config / COMFYKIT_CONFIG, or run `comfykit config` to see what is used.",
            )
        return path
    here = cwd or Path.cwd()
    candidate = here / "comfykit.yaml"
    if candidate.is_file():
        return candidate
    legacy = here / "config.yaml"
    if legacy.is_file() and _has_comfyui_section(legacy):
        return legacy
    user = _user_config_dir() / "comfykit.yaml"
    if user.is_file():
        return user
    return None


def _has_comfyui_section(path: Path) -> bool:
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError, RecursionError):
        return False  # not a usable config file, so not the legacy one: the search goes on
    return isinstance(data, dict) and "comfyui" in data


def _mapping_lines(node: yaml.Node, prefix: str, lines: dict[str, int]) -> None:
    if not isinstance(node, yaml.MappingNode):
        return
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            continue
        dotted = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
        lines[dotted] = key_node.start_mark.line + 1
        if not prefix:
            _mapping_lines(value_node, dotted, lines)


def read_config_file(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """Parse a YAML config file into (flat dotted values, dotted key -> line number)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file: {exc}", path=str(path))
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(f"invalid YAML: {exc}", path=str(path), line=line, hint="Fix the YAML syntax.")
    except RecursionError:
        raise ConfigError("the YAML is nested too deeply to read", path=str(path), hint="Fix the YAML syntax.") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(
            "a config file must be a mapping of sections (comfyui:, output:, ...)",
            path=str(path),
            line=1,
        )
    lines: dict[str, int] = {}
    if node is not None:
        _mapping_lines(node, "", lines)
    flat: dict[str, Any] = {}
    for section, body in data.items():
        section = str(section)
        if isinstance(body, dict):
            for key, value in body.items():
                flat[f"{section}.{key}"] = value
        else:
            flat[section] = body
    return flat, lines
