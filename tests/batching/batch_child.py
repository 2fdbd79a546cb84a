"""Run by test_resume.py in a subprocess that gets SIGKILLed: a journaled batch of unique jobs."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from workloads import unique_workflows

from comfykit import ComfyUIClient, QueueManager


def main() -> None:
    url, journal, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with ComfyUIClient(url=url) as client, QueueManager(client, journal=journal, store_outputs=False) as queue:
        for workflow in unique_workflows(count):
            queue.add_job(workflow)
        print("running", flush=True)
        queue.run(timeout=120)
        print("done", flush=True)


if __name__ == "__main__":
    main()
