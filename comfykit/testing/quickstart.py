"""``python -m comfykit.testing.quickstart``: run a text-to-image workflow end to end on the simulator.

Starts a simulator on a free loopback port, submits the classic text-to-image graph
(checkpoint loader, two prompts, empty latent, KSampler, VAE decode, SaveImage) with a
client-chosen prompt id, follows its progress on the WebSocket, and downloads the PNG
files it saved into ``./outputs`` (or the folder given as the first argument).
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import websocket

from comfykit.testing.simulator import ComfyUISimulator

TXT2IMG: dict[str, Any] = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse at dusk, oil painting", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 2}},
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 42, "steps": 20, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
            "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0],
        },
    },
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "quickstart/txt2img", "images": ["8", 0]}},
}


def run(output_dir: Path) -> list[Path]:
    """Run the graph and return the files written (inside ``output_dir``)."""
    written: list[Path] = []
    with ComfyUISimulator(port=0) as sim:
        client_id = str(uuid.uuid4())
        prompt_id = str(uuid.uuid4())
        ws = websocket.create_connection(sim.url.replace("http://", "ws://") + f"/ws?clientId={client_id}", timeout=60)
        try:
            with httpx.Client(base_url=sim.url, timeout=60) as http:
                answer = http.post("/prompt", json={"prompt": TXT2IMG, "client_id": client_id, "prompt_id": prompt_id})
                answer.raise_for_status()
                print(f"queued {prompt_id} on the simulator at {sim.url}")
                while True:
                    frame = ws.recv()
                    if isinstance(frame, bytes):
                        continue
                    message = json.loads(frame)
                    data = message["data"]
                    if data.get("prompt_id") != prompt_id:
                        continue
                    if message["type"] == "progress":
                        print(f"  node {data['node']}: step {data['value']}/{data['max']}", end="\r")
                    elif message["type"] == "execution_error":
                        raise SystemExit(f"the job failed: {data['exception_message']}")
                    elif message["type"] == "executing" and data["node"] is None:
                        break
                print()
                entry = http.get(f"/history/{prompt_id}").json()[prompt_id]
                output_dir.mkdir(parents=True, exist_ok=True)
                for ui in entry["outputs"].values():
                    for image in ui.get("images", []):
                        params = {"filename": image["filename"], "subfolder": image["subfolder"], "type": image["type"]}
                        target = output_dir / Path(image["filename"]).name
                        target.write_bytes(http.get("/view", params=params).content)
                        written.append(target)
        finally:
            ws.close()
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    output_dir = Path(args[0] if args else "outputs")
    for path in run(output_dir):
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
