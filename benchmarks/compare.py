"""Two or more checkouts of comfykit on the same batch, interleaved: which one costs the client less.

    git archive REV comfykit plugins | (mkdir -p /tmp/rev && tar -x -C /tmp/rev)
    python benchmarks/compare.py [--jobs 2000] [--rounds 3] [--ram] [--options JSON] NAME=DIR [NAME=DIR ...]

Each NAME=DIR is a folder holding ``comfykit/`` and ``plugins/`` (``NAME=`` alone: this
checkout).  Every round runs each of them once, in turn, as a fresh ``tasks.py
comfykit_queue`` child against a fresh simulator, so a machine that drifts (a disk
still busy with a deletion, a neighbour on the host) drifts for all of them; the
medians are printed.  ``--ram`` stores the outputs in tmpfs, which leaves the disk's
share out of a comparison of the client's own code.

A job's end is timed from the server's ``execution_success`` three ways: from the stamp in
the frame ("end seen"), split into the server's delay in sending the frame after stamping it
and the client's in seeing the end after it was sent (the simulator's ``frame_log`` knob).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import frame_log_path, quantiles_ms, run_child, seen_after_sent, simulator, success_frames, table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkouts", nargs="+", metavar="NAME=DIR")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ram", action="store_true", help="store the outputs in tmpfs (/dev/shm)")
    parser.add_argument("--options", default="{}", help="options of tasks.comfykit_queue, as JSON")
    args = parser.parse_args()
    options: dict[str, Any] = {**json.loads(args.options), **({"ram": True} if args.ram else {})}
    checkouts = [(name, Path(folder) if folder else None) for name, _, folder in (c.partition("=") for c in args.checkouts)]
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in checkouts}
    for _ in range(args.rounds):
        for name, code in checkouts:
            frames = frame_log_path()
            with simulator(frame_log=frames) as url:
                params = {"url": url, "n": args.jobs, "offset": 0, "save": True, "options": {**options, "ends": True}}
                result = run_child("comfykit_queue", params, code=code)
            # The simulator has stopped: its log is complete.
            successes = success_frames(frames)
            result["sent_ms"] = quantiles_ms(seen_after_sent(successes, result.pop("ended")))
            result["server_ms"] = quantiles_ms([sent - stamp for stamp, sent in successes.values()])
            samples[name].append(result)
    rows = []
    for name, results in samples.items():
        cpu = [1000 * r["batch_cpu"] / args.jobs for r in results]
        rate = [args.jobs / r["batch_wall"] for r in results]
        seen = [r["seen_ms"][0] for r in results if r.get("seen_ms")]
        sent = [r["sent_ms"][0] for r in results if r.get("sent_ms")]
        server = [r["server_ms"][0] for r in results if r.get("server_ms")]
        rows.append([name, statistics.median(cpu), min(cpu), max(cpu), statistics.median(rate),
                     *(statistics.median(figures) if figures else "-" for figures in (seen, server, sent))])
    print(table(["checkout", "CPU ms/job (median)", "min", "max", "jobs/s", "end seen p50 ms",
                 "frame sent after its stamp p50 ms", "end seen after frame sent p50 ms"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
