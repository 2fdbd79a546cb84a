"""One coordinator of a shared batch, run by test_coordinator_faults.py in a process it kills or stops.

``coordinator_child.py JOURNAL LEASE OUTPUT_DIR SERVER...``: prints ``coordinator NAME`` once it
has joined the batch, runs jobs until the batch is done, storing their outputs (downloads and
sidecars) in ``OUTPUT_DIR``, which every coordinator shares, and prints ``done N``, N being the
jobs this coordinator completed.  The log goes to stderr.
"""

from __future__ import annotations

import logging
import sys

from comfykit import QueueManager
from comfykit.config import load_config
from comfykit.queue.journals import ClaimingJournal


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(threadName)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("comfykit.download").setLevel(logging.WARNING)
    journal, lease, output_dir, servers = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    config = load_config(overrides={"batch.lease_seconds": float(lease), "output.output_dir": output_dir,
                                    "output.fsync": False}, use_file=False)
    with QueueManager(servers=servers, journal=journal, config=config) as queue:
        assert isinstance(queue.journal, ClaimingJournal)
        print("coordinator", queue.journal.coordinator, flush=True)
        for event in ("job_submitted", "job_completed", "job_retrying"):
            queue.on(event, lambda job, name=event: logging.info("%s %s %s %s", name, job.job_id, job.prompt_id, job.server))
        stats = queue.run(timeout=900)
        print("done", stats["completed"], flush=True)


if __name__ == "__main__":
    main()
