"""Run the benchmarks and print markdown tables; ``--quick`` runs a reduced set in under a minute.

    python benchmarks/run.py [--quick] [--json results.json]

Every client runs in a fresh child process (CPU time and peak RSS are its own) against a
simulator in another process.  Ratios are measured in the same run; absolute times are
this machine's.  Measured: trivial-job throughput of the QueueManager, the plain client and
``comfykit batch`` (a subprocess on a folder of workflow files) against the two baselines in
``baselines.py`` (with completion latency), pool scaling over 1/2/4 simulators, 10,000
queued jobs, and command start-up time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import machine, run_child, simulator, table

#: row name -> (task in tasks.py, its options)
CLIENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "raw_pipelined": ("raw_pipelined", {}),
    "comfykit_queue": ("comfykit_queue", {}),
    "comfykit_queue (no sinks)": ("comfykit_queue", {"store_outputs": False}),
    "comfykit_client": ("comfykit_client", {}),
    "comfykit batch (CLI, --no-download)": ("comfykit_cli", {}),
    "naive_sequential": ("naive_sequential", {}),
}
LONG_CLIENTS = ("raw_pipelined", "comfykit_queue", "naive_sequential")


def throughput(quick: bool) -> tuple[str, list[dict[str, Any]]]:
    sizes = [200] if quick else [200, 2000]
    node_seconds = [0.0, 0.0025] if quick else [0.0, 0.0025, 0.025]  # 2 nodes: job times 0, 5 ms, 50 ms
    rows: list[dict[str, Any]] = []
    for n in sizes:
        for seconds in node_seconds:
            # 2,000 x 50 ms is 100 s of server time per client: there only the limit, the queue and the naive loop run.
            clients = {name: CLIENTS[name] for name in LONG_CLIENTS} if n > 200 and seconds > 0.01 else CLIENTS
            with simulator(node_seconds=seconds) as url:
                # Each client gets its own colours: the server's cache must not serve one client's jobs
                # from another's.
                results = {
                    name: run_child(task, {"url": url, "n": n, "offset": index * 1_000_000, "options": options})
                    for index, (name, (task, options)) in enumerate(clients.items())
                }
            limit = results["raw_pipelined"]["wall"]
            server_minimum = n * seconds * 2
            for client, result in results.items():
                rows.append({
                    "jobs": n, "job_ms": seconds * 2000, "client": client, "wall_s": result["wall"],
                    "jobs_per_s": n / result["wall"], "ratio_to_limit": result["wall"] / limit,
                    "ratio_to_server_minimum": result["wall"] / server_minimum if server_minimum else None,
                    "cpu_ms_per_job": 1000 * result["cpu"] / n, "peak_rss_mb": result["rss_mb"],
                    "latency_ms": result.get("latency_ms"), "seen_ms": result.get("seen_ms"),
                    # QueueManager only: first submission to last completion (process start-up excluded)
                    "batch_s": result.get("elapsed"),
                })
    headers = ["jobs", "job ms", "client", "wall s", "jobs/s", "x limit", "x server minimum", "batch s",
               "batch x server minimum", "client CPU ms/job", "peak RSS MB"]
    text = table(headers, [[
        r["jobs"], r["job_ms"], r["client"], r["wall_s"], r["jobs_per_s"], r["ratio_to_limit"],
        r["ratio_to_server_minimum"] or "-", r["batch_s"] or "-",
        r["batch_s"] / (r["jobs"] * r["job_ms"] / 1000) if r["batch_s"] and r["job_ms"] else "-",
        r["cpu_ms_per_job"], r["peak_rss_mb"],
    ] for r in rows])
    latency = [r for r in rows if r["latency_ms"]]
    text += (
        "\n\nLatency after the server's execution_success (QueueManager): when the client saw "
        "executing {node: null}, and when job_completed fired (history read, sinks run):\n\n"
    ) + table(
        ["jobs", "job ms", "client", "seen p50 ms", "seen p90 ms", "seen p99 ms", "completed p50 ms", "completed p90 ms",
         "completed p99 ms"],
        [[r["jobs"], r["job_ms"], r["client"], *r["seen_ms"], *r["latency_ms"]] for r in latency],
    )
    return text, rows


def pool(quick: bool) -> tuple[str, list[dict[str, Any]]]:
    """The same batch on 1, 2 and 4 simulators (50 ms jobs): throughput should scale with the servers."""
    n = 120 if quick else 400
    rows: list[dict[str, Any]] = []
    for size in (1, 2, 4):
        with contextlib.ExitStack() as stack:
            urls = [stack.enter_context(simulator(node_seconds=0.025)) for _ in range(size)]
            result = run_child("comfykit_queue", {"url": urls, "n": n, "offset": size * 1_000_000})
        # Batch time (first submission to last completion): process start-up is not the pool's doing.
        rows.append({"servers": size, "wall_s": result["wall"], "batch_s": result["elapsed"],
                     "jobs_per_s": n / result["elapsed"]})
    base = rows[0]["jobs_per_s"]
    for row in rows:
        row["speedup"] = row["jobs_per_s"] / base
    text = table(["servers", "jobs", "process wall s", "batch s", "jobs/s", "x one server"],
                 [[r["servers"], n, r["wall_s"], r["batch_s"], r["jobs_per_s"], r["speedup"]] for r in rows])
    return text, rows


def resilience(quick: bool) -> tuple[str, list[dict[str, Any]]]:
    """200 jobs while the simulator misbehaves: every job must complete, each executed once."""
    n = 200
    scenarios = {
        "no faults": {},
        "WebSocket dropped every 0.5 s": {"drop_websocket_after": 0.5},
        "history written 50 ms late": {"history_delay": 0.05},
    }
    rows: list[dict[str, Any]] = []
    for name, knobs in scenarios.items():
        with simulator(node_seconds=0.0025, **knobs) as url:
            result = run_child("comfykit_queue", {"url": url, "n": n, "options": {"store_outputs": False}})
        rows.append({"scenario": name, "jobs": n, "completed": result["completed"], "failed": result["failed"],
                     "executions": result["executions"], "batch_s": result["elapsed"]})
    text = table(["scenario", "jobs", "completed", "failed", "server executions", "batch s"],
                 [[r["scenario"], r["jobs"], r["completed"], r["failed"], r["executions"], r["batch_s"]] for r in rows])
    return text, rows


def enqueue() -> tuple[str, list[dict[str, Any]]]:
    """10,000 jobs held by a QueueManager before any is sent: time to add them and peak RSS."""
    with simulator() as url:
        result = run_child("queue_enqueue", {"url": url, "n": 10_000})
    rows = [{"jobs": 10_000, "enqueue_s": result["enqueue_s"], "peak_rss_mb": result["rss_mb"]}]
    return table(["jobs", "enqueue s", "peak RSS MB"], [[r["jobs"], r["enqueue_s"], r["peak_rss_mb"]] for r in rows]), rows


def download(quick: bool) -> tuple[str, list[dict[str, Any]]]:
    """Peak RSS growth while streaming one large output to disk (the bar: 1 GB grows RSS by <= 32 MB)."""
    import download_memory

    megabytes = 256 if quick else 1024
    result = download_memory.measure(megabytes)
    rows = [{"megabytes": megabytes, "seconds": result["seconds"], "mb_per_s": result["bytes"] / result["seconds"] / 1e6,
             "rss_growth_mb": result["rss_growth_mb"]}]
    return table(["download MB", "seconds", "MB/s", "peak RSS growth MB"],
                 [[r["megabytes"], r["seconds"], r["mb_per_s"], r["rss_growth_mb"]] for r in rows]), rows


def validation() -> tuple[str, list[dict[str, Any]]]:
    """Validating a 2,000-node workflow against a cached /object_info (the bar: <= 50 ms)."""
    import validate_large

    result = validate_large.measure()
    rows = [result]
    return table(["nodes", "runs", "median ms", "best ms"],
                 [[r["nodes"], r["runs"], r["median_ms"], r["best_ms"]] for r in rows]), rows


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
    benches = (
        ("throughput", lambda: throughput(args.quick)),
        ("pool", lambda: pool(args.quick)),
        ("resilience", lambda: resilience(args.quick)),
        ("enqueue", enqueue),
        ("download", lambda: download(args.quick)),
        ("validation", validation),
        ("startup", startup),
    )
    for name, bench in benches:
        text, rows = bench()
        report[name] = rows
        print(f"## {name}\n\n{text}\n")
    Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
