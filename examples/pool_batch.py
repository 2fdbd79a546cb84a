"""Run a batch over a pool of two (or more) ComfyUI servers with one QueueManager.

    python examples/pool_batch.py --server http://gpu1:8188 --server http://gpu2:8188 [--jobs 12]

Each server keeps up to ``--concurrency`` jobs in flight; the dispatcher gives each job
to the least-loaded healthy server.  Servers come from ``--server`` (repeat it), else
``COMFYKIT_SERVERS`` (comma-separated), else ``COMFYKIT_URL``.  The graphs need no model,
so this runs on two simulators (``comfykit serve --port 8188`` and ``--port 8189``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from graphs import solid_image

from comfykit import QueueManager, load_config


def workflow(index: int) -> dict[str, object]:
    """A distinct model-free graph per job (ComfyUI would serve identical ones from its cache)."""
    return solid_image(f"examples/pool_{index}", size=32, color=index * 4099)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", action="append", dest="servers", metavar="URL")
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--concurrency", type=int, default=2, help="jobs in flight per server")
    parser.add_argument("--output-dir", default="outputs", type=Path)
    args = parser.parse_args()
    servers = args.servers or [s for s in os.environ.get("COMFYKIT_SERVERS", "").split(",") if s.strip()]
    if not servers:
        servers = [os.environ.get("COMFYKIT_URL", "http://127.0.0.1:8188")]

    config = load_config(overrides={"output.output_dir": str(args.output_dir)})
    with QueueManager(servers=servers, max_concurrent=args.concurrency, config=config) as queue:
        queue.on("job_failed", lambda job: print(f"job {job.job_id} failed: {job.error}"))
        for index in range(args.jobs):
            queue.add_job(workflow(index), job_id=f"pool-{index:03d}")
        stats = queue.run(timeout=600)
        print(f"{stats['completed']}/{stats['total']} completed in {stats['elapsed']:.2f} s "
              f"({stats['throughput']:.1f} jobs/s), {stats['retries']} retries")
        for url, server in stats["servers"].items():
            print(f"  {url}: {server['completed']} completed, {server['failed']} failed, window {server['window']}")
        files = sorted(s.location for job in queue.get_all_jobs() for s in job.stored if s.sink == "download")
        print(f"{len(files)} files under {args.output_dir}")
    return 0 if stats["failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
