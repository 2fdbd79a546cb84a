"""A ComfyUI-compatible simulator for tests, the quickstart, and users' own CI.

Modules, from the outside in:

- ``simulator``  ``ComfyUISimulator`` (a background-thread server) and ``serve()`` (foreground)
- ``startup``    the clear errors of a simulator that cannot start (missing extra, port taken)
- ``app``        the aiohttp application: middlewares (the HTTP faults) and the route groups:
  ``routes_prompt`` (queue, history), ``routes_files`` (upload, view, userdata),
  ``routes_info`` (catalogue, versions, models), ``jobs_api`` (``/api/jobs`` of 0.33), ``websocket``
- ``server``     ``SimServer``: the queue, the history, the sockets and the executor thread
- ``validation`` ``POST /prompt`` validation with the recorded error shapes
- ``executor``   runs a prompt node by node, with ComfyUI's cache and event order
- ``pauses``     where a test holds the executor to act at an exact moment
- ``nodes``      Pillow implementations of core nodes and generic execution of any other class
- ``catalog``    the recorded ``/object_info`` catalogues of both versions
- ``files``      input/output/temp folders and ComfyUI's file naming
- ``knobs``      fault injection (5xx, slow answers, dropped sockets, restarts, hostile names)
- ``pytest_plugin`` the ``comfyui_simulator`` fixture

Importing this package needs only comfykit's own dependencies (``Knobs`` is plain attrs);
``ComfyUISimulator`` and ``serve`` need the ``[simulator]`` extra (aiohttp, Pillow) and say
so, with what to install, when it is missing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from comfykit.testing.knobs import Knobs

if TYPE_CHECKING:
    from comfykit.testing.simulator import ComfyUISimulator, serve

__all__ = ["ComfyUISimulator", "Knobs", "serve"]

#: the names that need the extra, imported on first use
_NEEDS_EXTRA = {"ComfyUISimulator": "comfykit.testing.simulator", "serve": "comfykit.testing.simulator"}


def __getattr__(name: str) -> Any:
    module_name = _NEEDS_EXTRA.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from comfykit.testing.startup import require_extra

    require_extra()
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NEEDS_EXTRA))
