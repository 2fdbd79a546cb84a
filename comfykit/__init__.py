"""comfykit: a plugin-extensible SDK and CLI for driving ComfyUI servers.

The public names are imported lazily, so ``import comfykit`` (and
``comfykit --version``) stays fast: httpx, the simulator and the workflow
tools load only when first used.  ``__all__`` is the list of public names;
``_LAZY`` says where each lazy one lives and the ``TYPE_CHECKING`` imports
tell type checkers the same (``tests/test_public_names.py`` keeps the three in step).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from comfykit._lazy import lazy_exports
from comfykit._version import __version__
from comfykit.hookspecs import hookimpl

if TYPE_CHECKING:
    from comfykit.aio import AsyncComfyUIClient
    from comfykit.client import ComfyUIClient
    from comfykit.config import Config, load_config
    from comfykit.errors import ComfyKitError
    from comfykit.jobs import Job, JobStatus
    from comfykit.outputs import OutputFile, StoredOutput
    from comfykit.plugin_loader import get_plugin_manager
    from comfykit.plugins import PluginManager
    from comfykit.queue import QueueManager
    from comfykit.workflow import WorkflowManager

__all__ = [
    "AsyncComfyUIClient",
    "ComfyKitError",
    "ComfyUIClient",
    "Config",
    "Job",
    "JobStatus",
    "OutputFile",
    "PluginManager",
    "QueueManager",
    "StoredOutput",
    "WorkflowManager",
    "__version__",
    "get_plugin_manager",
    "hookimpl",
    "load_config",
]

#: public name -> the module it is imported from on first use
_LAZY = {
    "AsyncComfyUIClient": "comfykit.aio",
    "ComfyKitError": "comfykit.errors",
    "ComfyUIClient": "comfykit.client",
    "Config": "comfykit.config",
    "Job": "comfykit.jobs",
    "JobStatus": "comfykit.jobs",
    "OutputFile": "comfykit.outputs",
    "PluginManager": "comfykit.plugins",
    "QueueManager": "comfykit.queue",
    "StoredOutput": "comfykit.outputs",
    "WorkflowManager": "comfykit.workflow",
    "get_plugin_manager": "comfykit.plugin_loader",
    "load_config": "comfykit.config",
}


__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)
