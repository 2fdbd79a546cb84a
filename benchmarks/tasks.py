"""The measured clients, one per child process: ``python benchmarks/tasks.py TASK '{"url": ..., "n": ...}'``.

Each prints one JSON line: wall seconds, client CPU seconds and peak RSS in MiB.
Every job is a unique two-node prompt (EmptyImage -> PreviewImage with its own colour,
offset per client), so the server's cache never shortcuts it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines import naive_sequential, raw_pipelined
from harness import cpu_seconds, peak_rss_mb


def prompts(n: int, offset: int) -> list[dict[str, Any]]:
    return [
        {
            "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": offset + i}},
            "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        }
        for i in range(n)
    ]


def comfykit_client(url: str, jobs: list[dict[str, Any]]) -> None:
    """Submit everything through ComfyUIClient (WebSocket monitor on), then wait for each job."""
    from comfykit import ComfyUIClient

    with ComfyUIClient(url=url) as client:
        ids = [client.queue_prompt(prompt)["prompt_id"] for prompt in jobs]
        for prompt_id in ids:
            client.wait_for_completion(prompt_id, timeout=600)


TASKS = {
    "raw_pipelined": lambda url, jobs: raw_pipelined(url, jobs),
    "naive_sequential": lambda url, jobs: naive_sequential(url, jobs),
    "comfykit_client": comfykit_client,
}


def main() -> int:
    task, params = sys.argv[1], json.loads(sys.argv[2])
    jobs = prompts(int(params["n"]), int(params.get("offset", 0)))
    started = time.perf_counter()
    cpu_before = cpu_seconds()
    TASKS[task](params["url"], jobs)
    result = {"wall": time.perf_counter() - started, "cpu": cpu_seconds() - cpu_before, "rss_mb": peak_rss_mb()}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
