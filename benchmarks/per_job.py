"""What one job costs the client: a batch of trivial unique jobs, every configuration side by side in one run.

    python benchmarks/per_job.py [--jobs 2000] [--rounds 1] [--profile] [--before DIR] [--json per_job.json]

Every job is a unique two-node prompt (EmptyImage -> SaveImage) and the simulator runs
it in 0 s, so the client's own work decides the throughput.  Each row is a fresh child
process against a fresh simulator in another process (``comfykit.testing.serve``): CPU
(``time.process_time()``, every thread) and peak RSS are the client's alone.  Rows:

- **raw pipelined**: plain httpx + one WebSocket, every prompt posted at once; each end
  read from the socket, then its history and its file fetched and written (no fsync);
- **naive loop**: post, wait, read history, fetch the file, next;
- **QueueManager** with the sinks off, download only, download + metadata (the
  defaults), the defaults with the SQLite journal (whose outputs are flushed to disk), the
  defaults flushing every file (``output.fsync: true``), and the defaults storing into RAM
  (tmpfs, Linux): the last leaves the disk's share out.

"end seen" is the median time from the server's ``execution_success`` to the client seeing
``executing null``: from the frame's own stamp (whole milliseconds, taken before the frame
waits for the server's event loop), and from when the simulator wrote the frame to the socket
(its ``frame_log`` knob), which leaves the server's delay out.

Nothing a row writes is deleted before the run ends (``harness.scratch_folder``).

With ``--rounds N`` the rows are run N times interleaved and the median of each figure
is printed.  ``--profile`` runs the QueueManager with the defaults and with the sinks
off once more under yappi (CPU clock, every thread; ``pip install -e '.[bench]'``) and
prints the ten functions that spent the most CPU (own time, and inclusive time in comfykit's code).
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    RAM_FOLDER,
    ROOT,
    frame_log_path,
    machine,
    quantiles_ms,
    run_child,
    seen_after_sent,
    simulator,
    success_frames,
    table,
)

#: row name -> (task in tasks.py, its options)
ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    "raw pipelined (httpx + WebSocket)": ("raw_pipelined", {"download": True}),
    "naive loop": ("naive_sequential", {"download": True}),
    "QueueManager, sinks off": ("comfykit_queue", {"store_outputs": False}),
    "QueueManager, download only": ("comfykit_queue", {"overrides": {"output.save_metadata": False}}),
    "QueueManager, download + metadata (defaults)": ("comfykit_queue", {}),
    "QueueManager, defaults + journal": ("comfykit_queue", {"journal": True}),
    # Flushed to disk as a journaled batch's outputs are (without a journal they are not, by default).
    "QueueManager, defaults, output.fsync on": ("comfykit_queue", {"overrides": {"output.fsync": True}}),
    # The same work with no disk below it (tmpfs): what the client costs, apart from the file system's share.
    "QueueManager, defaults, outputs in RAM": ("comfykit_queue", {"ram": True}),
}
if not Path(RAM_FOLDER).is_dir():  # not Linux
    del ROWS["QueueManager, defaults, outputs in RAM"]
RAW, NAIVE = "raw pipelined (httpx + WebSocket)", "naive loop"
PROFILED = ("QueueManager, download + metadata (defaults)", "QueueManager, sinks off")


def measure(n: int, rounds: int, before: Path | None = None) -> list[dict[str, Any]]:
    """Every row ``rounds`` times, interleaved; with ``before`` (an older checkout) its QueueManager rows too."""
    rows_run = [(name, task, options, None) for name, (task, options) in ROWS.items()]
    if before is not None:
        # output.fsync is newer than the code of before: that row would be the defaults again.
        rows_run += [(f"{name} [before]", task, options, before) for name, (task, options) in ROWS.items()
                     if task == "comfykit_queue" and "fsync" not in name and "RAM" not in name]
    samples: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for _ in range(rounds):
        for name, task, options, code in rows_run:
            # A fresh simulator per row: a server whose history already holds the rows before would be slower.
            queue = task == "comfykit_queue"
            frames = frame_log_path() if queue else None
            with simulator(frame_log=frames) as url:
                asked = {**options, "ends": True} if queue else options
                params = {"url": url, "n": n, "offset": 0, "save": True, "options": asked}
                result = run_child(task, params, code=code)
            if frames is not None:  # complete now that the simulator has stopped
                result["sent_ms"] = quantiles_ms(seen_after_sent(success_frames(frames), result.pop("ended")))
            samples[name].append(result)
    rows = []
    for name, results in samples.items():
        # The QueueManager's own window (add_jobs to the end of run()); the baselines' whole call.
        wall = statistics.median(r.get("batch_wall", r["wall"]) for r in results)
        cpu = statistics.median(r.get("batch_cpu", r["cpu"]) for r in results)
        seen = [r["seen_ms"][0] for r in results if r.get("seen_ms")]
        sent = [r["sent_ms"][0] for r in results if r.get("sent_ms")]
        done = [r["latency_ms"][0] for r in results if r.get("latency_ms")]
        rows.append({
            "client": name, "jobs": n, "wall_s": wall, "jobs_per_s": n / wall, "cpu_ms_per_job": 1000 * cpu / n,
            "peak_rss_mb": statistics.median(r["rss_mb"] for r in results),
            "seen_p50_ms": statistics.median(seen) if seen else None,
            "sent_p50_ms": statistics.median(sent) if sent else None,
            "completed_p50_ms": statistics.median(done) if done else None,
        })
    by_name = {row["client"]: row for row in rows}
    for row in rows:
        row["x_naive"] = row["jobs_per_s"] / by_name[NAIVE]["jobs_per_s"]
        row["x_raw"] = row["jobs_per_s"] / by_name[RAW]["jobs_per_s"]
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    def figure(value: float | None) -> float | str:
        return value if value is not None else "-"

    return table(
        ["client", "jobs", "jobs/s", "x naive", "x raw", "CPU ms/job", "peak RSS MB", "end seen p50 ms",
         "end seen after frame sent p50 ms", "job_completed p50 ms"],
        [[r["client"], r["jobs"], r["jobs_per_s"], r["x_naive"], r["x_raw"], r["cpu_ms_per_job"], r["peak_rss_mb"],
          figure(r["seen_p50_ms"]), figure(r["sent_p50_ms"]), figure(r["completed_p50_ms"])] for r in rows],
    )


def profile(n: int, name: str, top: int = 10, code: Path | None = None) -> str:
    """Run one QueueManager row under yappi (CPU clock, every thread) and list its costliest functions.

    ``code``: the older checkout of ``--before`` to profile instead.
    """
    try:
        import yappi  # noqa: F401  (the child imports it; fail here with the hint instead)
    except ImportError:
        return "yappi is not installed: pip install -e '.[bench]'"
    task, options = ROWS[name]
    with simulator() as url, tempfile.TemporaryDirectory() as folder:
        stats_file = Path(folder) / "batch.json"
        params = {"url": url, "n": n, "save": True, "options": {**options, "profile": str(stats_file)}}
        result = run_child(task, params, code=code)
        entries = json.loads(stats_file.read_text())  # [function, calls, own s, inclusive s]
    profiled = sum(entry[2] for entry in entries)

    def rows(index: int, keep: Any) -> list[list[Any]]:
        ranked = sorted((e for e in entries if keep(e[0])), key=lambda e: e[index], reverse=True)[:top]
        return [[e[0].replace(str(ROOT) + "/", "").split("site-packages/")[-1], e[1], 1e6 * e[index] / n,
                 100 * e[index] / profiled] for e in ranked]

    headers = ["function", "calls", "CPU µs per job", "% of profiled CPU"]
    return (f"yappi, CPU clock, every thread, {n} jobs: {1000 * result['batch_cpu'] / n:.2f} ms CPU per job while "
            "profiled (the profiler's own cost included)\n\nOwn time:\n\n" + table(headers, rows(2, lambda _: True))
            + "\n\nInclusive time, comfykit's functions:\n\n"
            + table(headers, rows(3, lambda where: "comfykit" in where and "benchmarks" not in where)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds; medians are printed")
    parser.add_argument("--profile", action="store_true", help="also print a CPU profile of two QueueManager rows")
    parser.add_argument("--json", default=None, help="write the raw figures here")
    parser.add_argument("--before", type=Path, default=None,
                        help="a folder with an older comfykit/ and plugins/ (git archive REV comfykit plugins): "
                             "its QueueManager rows run in the same session, marked [before]")
    args = parser.parse_args()
    print(f"Machine: {machine()}\n")
    rows = measure(args.jobs, args.rounds, args.before)
    print(render(rows))
    if args.profile:
        for name in PROFILED:
            print(f"\n## profile: {name}, {args.jobs} jobs\n\n{profile(args.jobs, name)}")
            if args.before is not None:
                print(f"\n## profile: {name} [before], {args.jobs} jobs\n\n{profile(args.jobs, name, code=args.before)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
