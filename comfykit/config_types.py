"""The types a config key can declare, and how a value given as text (a file, a variable, ``-o``) becomes one.

``bool`` reads yes/no/true/false/on/off/1/0, ``int`` and ``float`` read numbers, ``list`` and
``names`` read comma-separated text, ``mapping`` reads ``NAME=VALUE,...``; a converter raises
``TypeError`` or ``ValueError``, which the config turns into an error naming the file, line and key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

__all__ = ["CONVERTERS", "ConfigType", "guess_type"]


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in {"1", "true", "yes", "on"}:
            return True
        if text in {"0", "false", "no", "off", ""}:
            return False
    raise ValueError(f"expected true or false, got {value!r}")


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return int(value.strip())
    raise ValueError(f"expected a whole number, got {value!r}")


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        return float(value.strip())
    raise ValueError(f"expected a number, got {value!r}")


def _to_str(value: Any) -> str:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"expected text, got {value!r}")


def _to_list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return list(value)
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    raise ValueError(f"expected a list, got {value!r}")


def _to_names(value: Any) -> list[str]:
    names = _to_list(value)
    odd = [name for name in names if not isinstance(name, str) or not name.strip()]
    if odd:
        raise ValueError(f"expected a list of names, got {odd[0]!r} in it")
    return [name.strip() for name in names]


def _to_mapping(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, str):
        # Environment form: "Name=value,Other=value".
        result: dict[str, Any] = {}
        for part in value.split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise ValueError(f"expected NAME=VALUE pairs, got {part!r}")
            key, _, item = part.partition("=")
            result[key.strip()] = item.strip()
        return result
    raise ValueError(f"expected a mapping, got {value!r}")


#: The type names a key can declare; mypy checks them at every ``registry.add(type=...)``.
ConfigType = Literal["bool", "int", "float", "str", "list", "names", "mapping", "any"]

#: converters by declared type name
CONVERTERS: dict[ConfigType, Callable[[Any], Any]] = {
    "bool": _to_bool,
    "int": _to_int,
    "float": _to_float,
    "str": _to_str,
    "list": _to_list,
    "names": _to_names,
    "mapping": _to_mapping,
    "any": lambda value: value,
}


def guess_type(default: Any) -> ConfigType:
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    if isinstance(default, str):
        return "str"
    if isinstance(default, list):
        return "list"
    if isinstance(default, Mapping):
        return "mapping"
    return "any"
