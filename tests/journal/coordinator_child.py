"""One coordinator of a shared batch, run by test_coordinator_faults.py in a process it kills or stops."""

from __future__ import annotations

import sys

from comfykit import QueueManager
from comfykit.config import load_config
from comfykit.queue.journals import ClaimingJournal


def main() -> None:
    journal, lease, servers = sys.argv[1], sys.argv[2], sys.argv[3:]
    config = load_config(overrides={"batch.lease_seconds": float(lease)}, use_file=False)
    with QueueManager(servers=servers, journal=journal, config=config, store_outputs=False) as queue:
        assert isinstance(queue.journal, ClaimingJournal)
        print("coordinator", queue.journal.coordinator, flush=True)
        stats = queue.run(timeout=120)
        print("done", stats["completed"], flush=True)


if __name__ == "__main__":
    main()
