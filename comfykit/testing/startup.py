"""Why the simulator could not start, said plainly: its ``[simulator]`` extra is missing, or its port is taken.

Both are a user's situation, not a bug, so each is a ``SimulatorError`` (a ``ComfyKitError``,
which ``comfykit serve`` prints as one paragraph with its hint) instead of a traceback.
``comfykit.errors`` is the one module of comfykit the simulator imports: the exception tree
alone (standard library only), so the simulator still shares no behaviour with the client.
"""

from __future__ import annotations

import errno
import importlib

from comfykit.errors import ComfyKitError

__all__ = ["EXTRA_MODULES", "SimulatorError", "port_in_use", "require_extra"]

#: what the simulator imports beyond comfykit's own dependencies: (module, distribution)
EXTRA_MODULES = (("aiohttp", "aiohttp"), ("PIL", "Pillow"))


class SimulatorError(ComfyKitError, RuntimeError):
    """The simulator could not start (also a ``RuntimeError``, what ``ComfyUISimulator.start`` raised before)."""


def require_extra() -> None:
    """Raise ``SimulatorError`` naming what to install when aiohttp or Pillow cannot be imported."""
    missing = []
    for module, distribution in EXTRA_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(distribution)
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise SimulatorError(
            f"the ComfyUI simulator needs {' and '.join(missing)}, which {verb} not installed",
            hint="install the simulator extra: pip install 'comfykit[simulator]'",
        )


def port_in_use(error: BaseException, host: str, port: int) -> SimulatorError | None:
    """The ``SimulatorError`` for a listening socket that failed because ``host:port`` is taken, else None."""
    if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
        return SimulatorError(
            f"cannot listen on {host}:{port}: the port is already in use (another ComfyUI or simulator?)",
            hint=f"stop what listens on port {port}, choose another port (comfykit serve --port {port + 1}), "
            "or use port 0 (--port 0) to take any free port",
        )
    return None
