"""Send one workflow, wait for it, save its images: the smallest useful comfykit script.

    python examples/simple_script.py --server http://127.0.0.1:8188 [workflow_api.json] [--output-dir outputs]

Without a workflow file it sends a three-node graph that needs no model (an empty image,
inverted, saved), so it runs on the simulator (``comfykit serve``) and on any real ComfyUI.
The server comes from ``--server``, else the ``COMFYKIT_URL`` environment variable, else
http://127.0.0.1:8188.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from comfykit import ComfyUIClient
from comfykit.outputs import extract_output_images
from comfykit.workflow import load_workflow

WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0x3366CC}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "examples/simple"}},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workflow", nargs="?", help="an API-format workflow file (default: a built-in model-free graph)")
    parser.add_argument("--server", default=os.environ.get("COMFYKIT_URL", "http://127.0.0.1:8188"))
    parser.add_argument("--output-dir", default="outputs", type=Path)
    args = parser.parse_args()

    with ComfyUIClient(url=args.server) as client:
        workflow = load_workflow(args.workflow, client=client) if args.workflow else WORKFLOW
        prompt_id = client.queue_prompt(workflow)["prompt_id"]
        print(f"queued {prompt_id} on {client.base_url}")
        entry = client.wait_for_completion(prompt_id, timeout=600)  # raises ExecutionError if a node failed
        args.output_dir.mkdir(parents=True, exist_ok=True)
        for image in extract_output_images(entry):
            target = args.output_dir / Path(image["filename"]).name
            target.write_bytes(client.get_image(image["filename"], image["subfolder"], image["type"]))
            print(f"saved {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
