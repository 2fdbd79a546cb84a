"""What the original README's scripts expect around them: its files, its config.yaml, and what the server received.

The README's scripts name ``workflows/my_workflow.json``, ``workflows/base.json``,
``workflow.json``, ``input_image.png`` and a ``config.yaml``; the ``readme_folder``
fixture (conftest) creates each of them in a temporary folder and makes it the current
directory.  Every workflow is the classic text-to-image graph, whose KSampler is
node "3" and whose prompts are nodes "6" and "7", as the README's examples expect.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

from comfykit.testing import ComfyUISimulator

WORKFLOW_FILES = ("workflows/my_workflow.json", "workflows/base.json", "workflow.json")


def tiny_png() -> bytes:
    """A valid 1x1 grey PNG, written with struct and zlib."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0\x80"))
            + chunk(b"IEND", b""))


def readme_config(port: int = 8188) -> str:
    """The README's ``config.yaml`` (its Configuration section), laid out as users have it; ``port``: the server's."""
    return f"""\
comfyui:
  host: "127.0.0.1"
  port: {port}
  protocol: "http"
  timeout: 300

websocket:
  enable: true
  reconnect_attempts: 5
  reconnect_delay: 2

workflow:
  validate_before_send: true
  auto_queue: true

output:
  download_results: true
  output_dir: "./outputs"
  save_metadata: true

batch:
  max_concurrent: 3
  retry_on_failure: true
  max_retries: 3

logging:
  level: "INFO"
  file: "./comfyui_api.log"
  console: true
"""



def received_prompts(simulator: ComfyUISimulator) -> list[dict[str, Any]]:
    """The graphs the simulator ran, in the order it received them (from its history)."""
    return [entry["prompt"][2] for entry in list(simulator.server.history.values())]
