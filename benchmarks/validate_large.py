"""Validation speed: a valid 2,000-node workflow checked against a cached ``/object_info``.

``python benchmarks/validate_large.py [NODES] [RUNS]`` (defaults 2000 and 20) builds a
chain of model-free image nodes from the simulator's 0.33.0 catalogue (every fourth node
also blends in an earlier image, so links branch), times
``validate_workflow(workflow, object_info=cached)`` and prints the median as a markdown
table row.  The bar: at most 50 ms for 2,000 nodes.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

BAR_MS = 50.0


def build_workflow(nodes: int = 2000) -> dict[str, Any]:
    """A valid API graph of ``nodes`` nodes: EmptyImage, a chain of image filters, SaveImage."""
    graph: dict[str, Any] = {"1": {"class_type": "EmptyImage",
                                   "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}}}
    filters: list[tuple[str, dict[str, Any]]] = [
        ("ImageInvert", {}),
        ("ImageScale", {"upscale_method": "bilinear", "width": 64, "height": 64, "crop": "disabled"}),
        ("ImageBlur", {"blur_radius": 1, "sigma": 1.0}),
        ("ImageFlip", {"flip_method": "x-axis: vertically"}),
    ]
    for index in range(2, nodes):
        previous = [str(index - 1), 0]
        if index % 4 == 0:
            graph[str(index)] = {"class_type": "ImageBlend", "inputs": {
                "image1": previous, "image2": [str(max(1, index - 3)), 0], "blend_factor": 0.5, "blend_mode": "normal"}}
            continue
        class_type, widgets = filters[index % len(filters)]
        graph[str(index)] = {"class_type": class_type, "inputs": {"image": previous, **widgets}}
    graph[str(nodes)] = {"class_type": "SaveImage", "inputs": {"images": [str(nodes - 1), 0], "filename_prefix": "bench"}}
    return graph


def measure(nodes: int = 2000, runs: int = 20) -> dict[str, float]:
    """Median and best validation time in milliseconds over ``runs`` runs (after one warm-up run)."""
    from comfykit.testing.catalog import load_object_info
    from comfykit.workflow import validate_workflow

    info = load_object_info("0.33.0")
    workflow = build_workflow(nodes)
    ok, problems = validate_workflow(workflow, object_info=info)
    if not ok:
        raise SystemExit(f"the benchmark workflow is invalid: {[str(p) for p in problems[:3]]}")
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        validate_workflow(workflow, object_info=info)
        times.append((time.perf_counter() - start) * 1000)
    return {"nodes": nodes, "runs": runs, "median_ms": statistics.median(times), "best_ms": min(times)}


def main(argv: list[str]) -> int:
    nodes = int(argv[0]) if argv else 2000
    runs = int(argv[1]) if len(argv) > 1 else 20
    result = measure(nodes, runs)
    print("| nodes | runs | median ms | best ms | bar ms |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| {nodes} | {runs} | {result['median_ms']:.1f} | {result['best_ms']:.1f} | {BAR_MS:.0f} |")
    verdict = "within" if result["median_ms"] <= BAR_MS else "OVER"
    print(f"\n{verdict} the bar: median {result['median_ms']:.1f} ms, bar {BAR_MS:.0f} ms")
    return 0 if result["median_ms"] <= BAR_MS else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
