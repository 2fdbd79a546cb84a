"""1,000 concurrent ``AsyncComfyUIClient.run()`` calls in one process: wall time, threads and RSS.

``python benchmarks/async_concurrency.py [JOBS]`` (default 1000) starts a simulator, then in a
child process (the simulator's memory and threads stay out of the figures) runs ``JOBS``
unique two-node jobs at once with ``asyncio.gather`` through one async client (each job
prepared and validated as a queue's, the download and metadata sinks on), and prints the wall
time, the peak thread count next to the count before the jobs, the RSS before and at its peak,
and the files stored.  The bar: every job completes, each
output is stored once, and the thread count stays flat (a few pool threads, not one per job).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import asyncio, json, resource, sys, threading, time
from comfykit import AsyncComfyUIClient
from comfykit.config import load_config

url, out_dir, jobs = sys.argv[1], sys.argv[2], int(sys.argv[3])

def workflow(i):
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": i}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": f"bench/{i}"}}}

async def main():
    config = load_config(overrides={"output.output_dir": out_dir}, use_file=False)
    async with AsyncComfyUIClient(url=url, config=config) as client:
        await client.run(workflow(jobs))
        threads_before = threading.active_count()
        peak_threads = threads_before
        async def watch():
            nonlocal peak_threads
            while True:
                peak_threads = max(peak_threads, threading.active_count())
                await asyncio.sleep(0.05)
        watcher = asyncio.create_task(watch())
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        done = await asyncio.gather(*(client.run(workflow(i)) for i in range(jobs)))
        seconds = time.perf_counter() - start
        watcher.cancel()
    stored = [s.location for job in done for s in job.stored if s.sink == "download"]
    print(json.dumps({
        "jobs": jobs, "completed": sum(job.status.value == "completed" for job in done), "seconds": seconds,
        "threads_before": threads_before, "peak_threads": peak_threads, "stored": len(stored),
        "distinct_stored": len(set(stored)), "rss_before_mb": rss_before / 1024,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))

asyncio.run(main())
"""


def measure(jobs: int) -> dict[str, float]:
    """Run ``jobs`` concurrent run() calls in a child process; return its figures."""
    from comfykit.testing import ComfyUISimulator

    with tempfile.TemporaryDirectory(prefix="comfykit-aio-bench-") as scratch, ComfyUISimulator(
        port=0, root=Path(scratch) / "sim"
    ) as sim:
        answer = subprocess.run(
            [sys.executable, "-c", CHILD, sim.url, str(Path(scratch) / "out"), str(jobs)],
            capture_output=True, text=True,
        )
        if answer.returncode:
            raise SystemExit(f"the benchmark's child failed:\n{answer.stderr}")
        result: dict[str, float] = json.loads(answer.stdout.strip().splitlines()[-1])
        return result


def main(argv: list[str]) -> int:
    jobs = int(argv[0]) if argv else 1000
    r = measure(jobs)
    print("| jobs | completed | wall s | jobs/s | threads before | peak threads | stored (distinct) | RSS before MB "
          "| peak RSS MB |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
          f"| {r['jobs']} | {r['completed']} | {r['seconds']:.2f} | {r['jobs'] / r['seconds']:.0f} | {r['threads_before']} "
          f"| {r['peak_threads']} | {r['stored']} ({r['distinct_stored']}) | {r['rss_before_mb']:.1f} "
          f"| {r['peak_rss_mb']:.1f} |")
    return 0 if r["completed"] == r["jobs"] == r["distinct_stored"] else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
