"""The measured clients, one per child process: ``python benchmarks/tasks.py TASK '{"url": ..., "n": ...}'``.

Each prints one JSON line: wall seconds, client CPU seconds and peak RSS in MiB.
Every job is a unique two-node prompt (EmptyImage -> PreviewImage with its own colour,
offset per client), so the server's cache never shortcuts it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines import naive_sequential, raw_pipelined, saver
from harness import RAM_FOLDER, SCRATCH_ENV, cpu_seconds, peak_rss_mb, quantiles_ms


@contextlib.contextmanager
def output_folder(*, ram: bool = False) -> Iterator[str]:
    """A new folder for what a task writes: in the run's scratch folder, left for the run's end to remove
    (see ``harness.scratch_folder``: deleting a row's files would slow the next row's); a temporary one outside a run.

    ``ram``: in ``/dev/shm`` (tmpfs: no disk below it), to tell the client's own cost from the disk's.
    """
    if ram:
        with tempfile.TemporaryDirectory(dir=RAM_FOLDER) as folder:  # freeing tmpfs slows nothing
            yield folder
        return
    scratch = os.environ.get(SCRATCH_ENV)
    if scratch:
        yield tempfile.mkdtemp(dir=scratch)
        return
    with tempfile.TemporaryDirectory() as folder:
        yield folder


def prompts(n: int, offset: int, *, save: bool = False) -> list[dict[str, Any]]:
    """``n`` unique jobs; ``save`` makes their image an output the download sink stores (else a temp preview)."""
    saver = {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bench/job"}}
    return [
        {
            "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": offset + i}},
            "2": saver if save else {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        }
        for i in range(n)
    ]


def comfykit_client(url: str, jobs: list[dict[str, Any]]) -> None:
    """Submit everything through ComfyUIClient (WebSocket monitor on), then wait for each job."""
    from comfykit import ComfyUIClient

    with ComfyUIClient(url=url) as client:
        ids = [client.queue_prompt(prompt)["prompt_id"] for prompt in jobs]
        for prompt_id in ids:
            client.wait_for_completion(prompt_id, timeout=600)


def comfykit_queue(
    url: str | list[str], jobs: list[dict[str, Any]], *, journal: bool = False, overrides: dict[str, Any] | None = None,
    profile: str | None = None, ram: bool = False, ends: bool = False, **options: Any,
) -> dict[str, Any]:
    """The batch engine: QueueManager on one server or a pool, output sinks on (temp previews are skipped).

    ``overrides`` are config keys (``output.save_metadata: false`` for "download only"); ``journal``
    writes an SQLite journal; ``ram`` stores the outputs in tmpfs (see :func:`output_folder`).
    Besides the process totals it answers ``batch_cpu``/``elapsed``: CPU and wall from adding
    the jobs to the end of ``run()`` (imports, plugin loading and the duplicate check afterwards
    excluded: they are paid once, not per job).  With ``profile`` (a file), yappi records the
    CPU time of every thread in that window into it.  With ``ends``, it answers ``ended`` too: when
    each job's end was seen, by prompt id (see ``harness.seen_after_sent``).
    """
    from comfykit import QueueManager, load_config

    latencies: list[float] = []  # execution_success (server clock) -> job_completed (after history and sinks)
    seen_after: list[float] = []  # execution_success (server clock) -> the client saw executing {node: null}
    succeeded: dict[str, float] = {}
    ended: dict[str, float] = {}  # prompt id -> when the client saw executing {node: null}

    def completed(job: Any) -> None:
        # Server clock and ours are the same machine's.
        for name, data in (job.history or {}).get("status", {}).get("messages", []):
            if name == "execution_success":
                latencies.append(time.time() - data["timestamp"] / 1000)

    def on_success(event: Any) -> None:
        if event.timestamp is not None:
            succeeded[event.prompt_id] = event.timestamp / 1000

    def on_executing(event: Any) -> None:
        if event.is_done and event.prompt_id in succeeded:
            ended[event.prompt_id] = now = time.time()
            seen_after.append(now - succeeded.pop(event.prompt_id))

    with output_folder(ram=ram) as out:
        config = load_config(use_file=False, overrides={"output.output_dir": out, **(overrides or {})})
        servers = url if isinstance(url, list) else [url]
        journal_path = str(Path(out) / "journal.sqlite") if journal else None
        with QueueManager(servers=servers, config=config, journal=journal_path, **options) as queue:
            queue.on("job_completed", completed)
            for client in queue.clients:
                client.on("execution_success", on_success)
                client.on("executing", on_executing)
            profiler = _Profiler(profile) if profile else None
            cpu_before, wall_before = time.process_time(), time.perf_counter()
            queue.add_jobs_from_list(jobs)
            stats = queue.run(timeout=3600)
            batch_cpu, batch_wall = time.process_time() - cpu_before, time.perf_counter() - wall_before
            # Every submission the server ran left one history entry: more entries than jobs = duplicates.
            executions = sum(len(client.get_history()) for client in queue.clients)
        if profiler is not None:
            profiler.stop()  # after close(): every profiled thread has ended, so its record is complete
        files = sum(1 for path in Path(out).rglob("*") if path.is_file())
    return {
        "latency_ms": quantiles_ms(latencies),
        "seen_ms": quantiles_ms(seen_after),
        **({"ended": ended} if ends else {}),
        "elapsed": stats["elapsed"],
        "batch_cpu": batch_cpu,
        "batch_wall": batch_wall,
        "files": files,
        "executions": executions,
        "completed": stats["completed"],
        "failed": stats["failed"],
    }


class _Profiler:
    """yappi, CPU clock, every thread; ``stop`` writes the functions' own and inclusive CPU time as JSON."""

    def __init__(self, output: str) -> None:
        import yappi

        self.output = output
        yappi.set_clock_type("cpu")
        yappi.start(builtins=True)

    def stop(self) -> None:
        import yappi

        yappi.stop()
        rows = [[f"{stat.name} ({stat.module}:{stat.lineno})", stat.ncall, stat.tsub, stat.ttot]
                for stat in yappi.get_func_stats()]
        Path(self.output).write_text(json.dumps(rows))


def comfykit_cli(url: str, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """``comfykit batch DIR --no-download`` in its own process, on a folder with one workflow file per job.

    The files are written before the clock starts (a user has them already); wall,
    CPU and peak RSS are the ``comfykit`` process's own.
    """
    import resource
    import subprocess

    with output_folder() as folder:
        flows = Path(folder) / "flows"
        flows.mkdir()
        for index, prompt in enumerate(jobs):
            (flows / f"job{index:06d}.json").write_text(json.dumps(prompt), encoding="utf-8")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        # cwd is the temporary folder, so no ./comfykit.yaml of the checkout changes the run.
        done = subprocess.run(
            [sys.executable, "-m", "comfykit", "-q", "--server", url, "batch", str(flows), "--no-download"],
            capture_output=True, text=True, cwd=folder,
        )
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"comfykit batch exited {done.returncode}:\n{done.stderr[-4000:]}")
    if f"{len(jobs)} completed, 0 failed" not in done.stdout:
        raise RuntimeError(f"comfykit batch did not complete every job:\n{done.stdout[-2000:]}")
    return {
        "wall": wall,
        "cpu": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        "rss_mb": after.ru_maxrss / 1024,
    }


def queue_enqueue(url: str, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """Memory and time to hold many jobs queued (nothing is sent)."""
    from comfykit import QueueManager

    started = time.perf_counter()
    with QueueManager(servers=[url]) as queue:
        queue.add_jobs_from_list(jobs)
        return {"enqueue_s": time.perf_counter() - started}


def _saving(baseline: Callable[..., Any], url: str, jobs: list[dict[str, Any]], download: bool) -> Any:
    """Run a baseline; with ``download`` it writes every saved output into a temporary folder."""
    if not download:
        return baseline(url, jobs)
    with output_folder() as folder:
        return baseline(url, jobs, download=saver(Path(folder)))


#: tasks whose answer adds figures to the result line (the baselines' answers are their own business)
REPORTING_TASKS = ("comfykit_queue", "queue_enqueue", "comfykit_cli")

TASKS: dict[str, Callable[..., Any]] = {
    "comfykit_queue": comfykit_queue,
    "queue_enqueue": queue_enqueue,
    "raw_pipelined": lambda url, jobs, download=False: _saving(raw_pipelined, url, jobs, download),
    "naive_sequential": lambda url, jobs, download=False: _saving(naive_sequential, url, jobs, download),
    "comfykit_client": comfykit_client,
    "comfykit_cli": comfykit_cli,
}


def main() -> int:
    task, params = sys.argv[1], json.loads(sys.argv[2])
    jobs = prompts(int(params["n"]), int(params.get("offset", 0)), save=bool(params.get("save")))
    started = time.perf_counter()
    cpu_before = cpu_seconds()
    answer = TASKS[task](params["url"], jobs, **params.get("options", {}))
    # A reporting task's own figures (the CLI's: its child process's wall, CPU, RSS) replace the defaults.
    extra: dict[str, Any] = answer if task in REPORTING_TASKS else {}
    result = {"wall": time.perf_counter() - started, "cpu": cpu_seconds() - cpu_before, "rss_mb": peak_rss_mb(), **extra}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
