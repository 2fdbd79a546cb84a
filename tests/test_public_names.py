"""comfykit's public face: ``__all__``, the lazy table and the type-checking imports name the same things."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import comfykit

SOURCE = Path(comfykit.__file__)


def _type_checking_imports() -> dict[str, str]:
    """name -> module of every ``from module import name`` under ``if TYPE_CHECKING:``."""
    tree = ast.parse(SOURCE.read_text(encoding="utf-8"))
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom) and statement.module, ast.dump(statement)
                for alias in statement.names:
                    found[alias.asname or alias.name] = statement.module
    return found


def _eager_names() -> set[str]:
    """Names ``__init__`` imports at run time (cheap ones, not worth deferring)."""
    tree = ast.parse(SOURCE.read_text(encoding="utf-8"))
    return {
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module not in ("__future__", "typing", "comfykit._lazy")
        for alias in node.names
    }


def test_all_is_sorted_and_is_the_lazy_table_plus_the_eager_names() -> None:
    assert comfykit.__all__ == sorted(comfykit.__all__)
    assert set(comfykit.__all__) == set(comfykit._LAZY) | _eager_names()
    assert not set(comfykit._LAZY) & _eager_names()
    assert {"__version__", "hookimpl"} <= _eager_names()


def test_type_checkers_see_each_lazy_name_where_it_is_loaded_from() -> None:
    assert _type_checking_imports() == dict(comfykit._LAZY)


def test_every_public_name_resolves_in_a_fresh_interpreter() -> None:
    code = (
        "import comfykit, sys\n"
        "assert 'httpx' not in sys.modules, 'import comfykit must stay light'\n"
        "missing = [n for n in comfykit.__all__ if getattr(comfykit, n, None) is None]\n"
        "assert not missing, missing\n"
        "assert set(comfykit.__all__) <= set(dir(comfykit))\n"
        "print(comfykit.__version__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == comfykit.__version__
