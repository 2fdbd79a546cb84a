"""Peak memory of the downloader: stream one large output from the simulator and report RSS growth.

``python benchmarks/download_memory.py [MEGABYTES]`` (default 1024) writes a sparse file of
that size into a simulator's output folder, then downloads it with
``comfykit_download.download_outputs`` in a child process (the simulator's memory stays out
of the figure) and prints the child's peak RSS growth and throughput.  The bar: a 1 GB
download grows RSS by at most 32 MB.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from comfykit import ComfyUIClient
from comfykit.outputs import OutputFile
from comfykit_download import download_outputs

url, out_dir = sys.argv[1], sys.argv[2]
def peak_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with ComfyUIClient(url=url, plugin_options=["no:monitor"]) as client:
    download_outputs(client, [OutputFile(node_id="0", kind="images", filename="warmup.bin")], out_dir)
    before = peak_kb()
    start = time.perf_counter()
    [stored] = download_outputs(client, [OutputFile(node_id="1", kind="images", filename="big.bin")], out_dir)
    seconds = time.perf_counter() - start
    print(json.dumps({"bytes": stored.bytes, "seconds": seconds, "rss_growth_mb": (peak_kb() - before) / 1024}))
"""


def measure(megabytes: int) -> dict[str, float]:
    """Download a ``megabytes`` file in a child process; return its size, time and peak RSS growth."""
    from comfykit.testing import ComfyUISimulator

    with tempfile.TemporaryDirectory(prefix="comfykit-dl-bench-") as scratch, ComfyUISimulator(
        port=0, root=Path(scratch) / "sim"
    ) as sim:
        (sim.files.output_dir / "warmup.bin").write_bytes(b"w" * 4 * 1024 * 1024)
        with open(sim.files.output_dir / "big.bin", "wb") as handle:
            handle.truncate(megabytes * 1024 * 1024)
        answer = subprocess.run(
            [sys.executable, "-c", CHILD, sim.url, str(Path(scratch) / "out")],
            check=True, capture_output=True, text=True,
        )
        result: dict[str, float] = json.loads(answer.stdout.strip().splitlines()[-1])
        return result


def main(argv: list[str]) -> int:
    megabytes = int(argv[0]) if argv else 1024
    result = measure(megabytes)
    rate = result["bytes"] / result["seconds"] / 1e6
    print(f"| download MB | seconds | MB/s | peak RSS growth MB |\n| --- | --- | --- | --- |\n"
          f"| {megabytes} | {result['seconds']:.2f} | {rate:.0f} | {result['rss_growth_mb']:.1f} |")
    return 0 if result["rss_growth_mb"] <= 32 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
