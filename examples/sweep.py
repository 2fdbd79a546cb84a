"""A parameter sweep: every combination of template parameters run as a resumable batch.

    python examples/sweep.py --server http://127.0.0.1:8188 --sweep color=0..3 --sweep size=16,32 \
        --journal sweep.sqlite [--output-dir outputs]

The sweep axes name template parameters (``color``, ``size``) or node inputs
(``Background.width``, ``2.image``...); values are ranges ``A..B``/``A..B..STEP`` or lists
``a,b,c``.  Files are named from the parameters (``output.naming``).  With ``--journal``,
running the same command again after an interruption runs only what had not finished;
after a complete run it runs nothing.  The server comes from ``--server``, else
``COMFYKIT_URL``, else http://127.0.0.1:8188.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from graphs import solid_image

from comfykit import QueueManager, load_config
from comfykit.workflow import apply_sweep_point, create_template, expand_sweep

WORKFLOW = solid_image("examples/sweep")

TEMPLATE = create_template(
    WORKFLOW,
    {
        "color": {"targets": ["Background.color"], "type": "int", "default": 0, "min": 0, "max": 0xFFFFFF},
        "size": {"targets": ["Background.width", "Background.height"], "type": "int", "default": 64, "min": 1},
    },
    name="solid",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get("COMFYKIT_URL", "http://127.0.0.1:8188"))
    parser.add_argument("--sweep", action="append", metavar="NAME=VALUES", help="repeatable; default color=0..3 size=16,32")
    parser.add_argument("--journal", type=Path, help="SQLite journal that makes the sweep resumable")
    parser.add_argument("--output-dir", default="outputs", type=Path)
    args = parser.parse_args()

    points = expand_sweep(args.sweep or ["color=0..3", "size=16,32"])
    config = load_config(overrides={
        "output.output_dir": str(args.output_dir),
        "output.naming": "sweep/color{color}_size{size}_{filename}",  # unknown names come from the job's params
    })
    with QueueManager(servers=[args.server], journal=args.journal, config=config) as queue:
        for point in points:
            # With a journal and no job_id, a job's id is derived from its content, so adding the
            # same sweep again finds the journaled jobs instead of adding new ones.
            queue.add_job(apply_sweep_point(TEMPLATE, point), params=point)
        done_before = sum(1 for job in queue.get_all_jobs() if job.done)
        print(f"{len(points)} sweep points, {done_before} already finished in the journal")
        stats = queue.run(timeout=600)
        ran = stats["completed"] + stats["failed"] - done_before
        print(f"ran {ran} job(s): {stats['completed']} completed, {stats['failed']} failed in total")
        for job in sorted(queue.get_all_jobs(), key=lambda j: (j.params["color"], j.params["size"])):
            files = [s.location for s in job.stored if s.sink == "download"]
            print(f"  {job.params} -> {job.status}: {', '.join(files) or job.error or '-'}")
    return 0 if stats["failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
