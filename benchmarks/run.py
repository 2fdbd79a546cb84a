"""Run the benchmarks and print markdown tables; ``--quick`` runs a reduced set in under a minute.

    python benchmarks/run.py [--quick] [--json results.json]

Every client runs in a fresh child process (CPU time and peak RSS are its own) against a
simulator in another process.  Ratios are measured in the same run; absolute times are
this machine's.  What is measured so far: trivial-job throughput of comfykit's client
against the two baselines in ``baselines.py``, and command start-up time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import machine, run_child, simulator, table


def throughput(quick: bool) -> tuple[str, list[dict[str, Any]]]:
    sizes = [200] if quick else [200, 2000]
    node_seconds = [0.0, 0.0025] if quick else [0.0, 0.0025, 0.025]  # 2 nodes: job times 0, 5 ms, 50 ms
    rows: list[dict[str, Any]] = []
    for n in sizes:
        for seconds in node_seconds:
            with simulator(node_seconds=seconds) as url:
                # Each client gets its own colours: the server's cache must not serve one client's jobs
                # from another's.
                results = {
                    client: run_child(client, {"url": url, "n": n, "offset": index * 1_000_000})
                    for index, client in enumerate(("raw_pipelined", "comfykit_client", "naive_sequential"))
                }
            limit = results["raw_pipelined"]["wall"]
            for client, result in results.items():
                rows.append({
                    "jobs": n, "job_ms": seconds * 2000, "client": client, "wall_s": result["wall"],
                    "jobs_per_s": n / result["wall"], "ratio_to_limit": result["wall"] / limit,
                    "cpu_ms_per_job": 1000 * result["cpu"] / n, "peak_rss_mb": result["rss_mb"],
                })
    headers = ["jobs", "job ms", "client", "wall s", "jobs/s", "x limit", "client CPU ms/job", "peak RSS MB"]
    text = table(headers, [[r["jobs"], r["job_ms"], r["client"], r["wall_s"], r["jobs_per_s"], r["ratio_to_limit"],
                            r["cpu_ms_per_job"], r["peak_rss_mb"]] for r in rows])
    return text, rows


def startup() -> tuple[str, list[dict[str, Any]]]:
    def timed(args: list[str]) -> float:
        samples = []
        for _ in range(5):
            started = time.perf_counter()
            subprocess.run(args, check=True, capture_output=True)
            samples.append(time.perf_counter() - started)
        return statistics.median(samples)

    version = timed([sys.executable, "-m", "comfykit", "--version"])
    httpx_import = timed([sys.executable, "-c", "import httpx"])
    rows = [{"command": "comfykit --version", "median_s": version, "ratio": version / httpx_import},
            {"command": "python -c 'import httpx'", "median_s": httpx_import, "ratio": 1.0}]
    return table(["command", "median s", "x import httpx"], [[r["command"], r["median_s"], r["ratio"]] for r in rows]), rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a reduced set that runs in under a minute")
    parser.add_argument("--json", default="benchmarks/results.json", help="where to write the raw figures")
    args = parser.parse_args()
    report: dict[str, Any] = {"machine": machine(), "quick": args.quick}
    print(f"Machine: {report['machine']}\n")
    for name, bench in (("throughput", lambda: throughput(args.quick)), ("startup", startup)):
        text, rows = bench()
        report[name] = rows
        print(f"## {name}\n\n{text}\n")
    Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
