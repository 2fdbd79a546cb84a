"""A ComfyUI-compatible simulator for tests, the quickstart, and users' own CI.

Modules, from the outside in:

- ``simulator``  ``ComfyUISimulator`` (a background-thread server) and ``serve()`` (foreground)
- ``server``     the HTTP + WebSocket routes, the queue, the history and event routing
- ``jobs_api``   the ``/api/jobs`` routes of ComfyUI 0.33
- ``validation`` ``POST /prompt`` validation with the recorded error shapes
- ``executor``   runs a prompt node by node, with ComfyUI's cache and event order
- ``nodes``      Pillow implementations of core nodes and generic execution of any other class
- ``catalog``    the recorded ``/object_info`` catalogues of both versions
- ``files``      input/output/temp folders and ComfyUI's file naming
- ``knobs``      fault injection (5xx, slow answers, dropped sockets, restarts, hostile names)
- ``pytest_plugin`` the ``comfyui_simulator`` fixture
"""

from __future__ import annotations

from comfykit.testing.knobs import Knobs
from comfykit.testing.simulator import ComfyUISimulator, serve

__all__ = ["ComfyUISimulator", "Knobs", "serve"]
