"""Plumbing for the benchmarks: simulators in their own processes, measured children, markdown tables.

Every measured client runs in a fresh child process so its CPU time and peak RSS are
its own, and every simulator runs in another process so the client and the server do
not share a GIL: what is measured is what a user on one machine would see.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent

#: set in children: the folder where they leave what they write (see :func:`scratch_folder`)
SCRATCH_ENV = "COMFYKIT_BENCH_SCRATCH"
#: a file system in memory (Linux), for the row that leaves the disk out
RAM_FOLDER = "/dev/shm"


@functools.cache
def scratch_folder() -> Path:
    """One folder for everything the benchmark's children and simulators write, removed when the run ends.

    Nothing is deleted while rows are measured: on ext4 without a journal (this VM's disk)
    the kernel will not reuse an inode freed in the last minute, and every new file scans
    past those (``recently_deleted``), so a row created its files up to 0.8 ms per job
    slower when the row before it had just deleted its 4,000.
    """
    folder = Path(tempfile.mkdtemp(prefix="comfykit-bench-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


def frame_log_path() -> str:
    """A new file name in the run's scratch folder for a simulator's ``frame_log`` knob."""
    handle, path = tempfile.mkstemp(prefix="frames-", suffix=".jsonl", dir=scratch_folder())
    os.close(handle)
    return path


def success_frames(frame_log: str) -> dict[str, tuple[float, float]]:
    """Each job's ``execution_success`` frame in a simulator's ``frame_log`` (read after it stopped), by prompt id:
    (its own stamp, when it was written to the socket), in seconds.
    """
    found: dict[str, tuple[float, float]] = {}
    with open(frame_log, encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            frame = record.get("frame") or {}
            if frame.get("type") == "execution_success":
                found[frame["data"]["prompt_id"]] = (frame["data"]["timestamp"] / 1000, record["sent"])
    return found


def seen_after_sent(successes: dict[str, tuple[float, float]], ended: dict[str, float]) -> list[float]:
    """Seconds from the simulator writing each job's ``execution_success`` frame to the client seeing the job end.

    ``successes``: :func:`success_frames`; ``ended``: when the client saw each end, by prompt id
    (``tasks.comfykit_queue(ends=True)``).  Unlike the frame's own ``timestamp`` (whole
    milliseconds, taken before the frame waited for the server's event loop), this leaves the
    server's delay out: what remains is the client's.
    """
    return [seen - successes[prompt_id][1] for prompt_id, seen in ended.items() if prompt_id in successes]


def quantiles_ms(values: list[float]) -> list[float]:
    """p50, p90 and p99 of ``values`` (seconds), in milliseconds; empty for no values."""
    values = sorted(values)
    return [1000 * values[int(q * (len(values) - 1))] for q in (0.5, 0.9, 0.99)] if values else []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def simulator(
    *, version: str = "0.33.0", root: Path | None = None, **knobs: Any
) -> Iterator[str]:
    """Run ``comfykit.testing.serve`` in a child process; yield its URL; stop it afterwards."""
    port = free_port()
    args = {"host": "127.0.0.1", "port": port, "comfyui_version": version, **knobs}
    # Its files stay until the run ends (see scratch_folder).
    args["root"] = str(root if root is not None else tempfile.mkdtemp(prefix="sim-", dir=scratch_folder()))
    code = "import json,sys; from comfykit.testing import serve; serve(**json.loads(sys.argv[1]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"simulator exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            try:
                httpx.get(url + "/system_stats", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("simulator did not start within 30 s")
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_child(
    task: str, params: dict[str, Any], *, timeout: float = 900, code: Path | None = None
) -> dict[str, Any]:
    """Run ``benchmarks/tasks.py TASK PARAMS`` in a fresh interpreter and return its JSON result.

    ``code``: a folder with another ``comfykit/`` and ``plugins/`` (an older checkout) to import instead.
    """
    env = {**os.environ, SCRATCH_ENV: str(scratch_folder())}
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(code), str(code / "plugins")])
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "tasks.py"), task, json.dumps(params)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )
    if result.returncode != 0:
        raise RuntimeError(f"benchmark task {task} failed:\n{result.stderr[-4000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def peak_rss_mb() -> float:
    """Peak resident set size of this process, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


def cpu_seconds() -> float:
    """CPU seconds of this whole process, every thread (user + system)."""
    return time.process_time()


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
