"""A tour of comfykit's Python API: client, workflows, templates, live events, outputs and the queue.

    python examples/example_usage.py --server http://127.0.0.1:8188 [--output-dir outputs]

Every step prints what it did.  The workflow needs no model (an empty image, inverted,
saved), so the tour runs on the simulator (``comfykit serve``) and on a real ComfyUI.
The server comes from ``--server``, else ``COMFYKIT_URL``, else http://127.0.0.1:8188.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from graphs import solid_image

from comfykit import ComfyUIClient, QueueManager, WorkflowManager, load_config
from comfykit.events import Event, ExecutingEvent
from comfykit.outputs import discover_outputs

WORKFLOW = solid_image("examples/tour")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get("COMFYKIT_URL", "http://127.0.0.1:8188"))
    parser.add_argument("--output-dir", default="outputs", type=Path)
    args = parser.parse_args()

    # The output sinks (download, metadata) read output.* from the client's config.
    config = load_config(overrides={"comfyui.url": args.server, "output.output_dir": str(args.output_dir)})
    with ComfyUIClient(config=config) as client:
        # 1. The server.
        if not client.ping():
            raise SystemExit(f"no ComfyUI answers at {client.base_url}; start one with `comfykit serve`")
        info = client.server_info()
        print(f"1. server {client.base_url}: ComfyUI {info.version}, jobs API: {info.has_jobs_api}, "
              f"{len(client.get_object_info())} node classes")

        # 2. Workflows: edit by node title, inspect, validate against the server's /object_info.
        workflows = WorkflowManager(client=client)
        # update_node_input edits in place; on a shallow copy it leaves WORKFLOW itself as it was.
        workflow = workflows.update_node_input(WORKFLOW.copy(), "Background", "color", 0xFF8800)
        summary = workflows.get_workflow_info(workflow)
        ok, problems = workflows.validate_workflow(workflow)
        print(f"2. workflow of {len(workflow)} nodes, output nodes {summary.outputs}, valid: {ok} {problems}")

        # 3. Templates: named, typed parameters mapped onto node inputs.
        template = workflows.create_template(
            WORKFLOW,
            {"color": "Background.color", "size": {"targets": ["Background.width", "Background.height"], "type": "int",
                                                   "default": 64, "min": 8, "max": 512}},
            name="solid",
        )
        small = workflows.instantiate_template(template, {"color": 0x00AA00, "size": "32"})  # text is converted
        print(f"3. template {template.name!r}: {'; '.join(template.describe())}; "
              f"size 32 gives width {small['1']['inputs']['width']}")

        # 4. Live events while one job runs, then its history entry.
        def on_executing(event: Event) -> None:
            if isinstance(event, ExecutingEvent) and event.node is not None:
                print(f"   executing node {event.node}")

        client.on("executing", on_executing)
        prompt_id = client.queue_prompt(workflow)["prompt_id"]
        print(f"4. queued {prompt_id}")
        entry = client.wait_for_completion(prompt_id, timeout=600)
        client.off("executing", on_executing)
        progress = client.tracker.progress(prompt_id)
        print(f"   finished: {progress.nodes_done}/{progress.nodes_total} nodes, fraction {progress.fraction:.0%}")

        # 5. Outputs: every file the job reported, downloaded.
        args.output_dir.mkdir(parents=True, exist_ok=True)
        for output in discover_outputs(entry):
            assert output.filename is not None
            target = args.output_dir / Path(output.filename).name
            target.write_bytes(client.get_image(output.filename, output.subfolder, output.folder_type))
            print(f"5. node {output.node_id} {output.kind}: saved {target} ({target.stat().st_size} bytes)")

        # 6. A small batch through the queue: pipelined, retried, and stored by the output sinks.
        with QueueManager(client, max_concurrent=2) as queue:
            for color in (0x111111, 0x777777, 0xEEEEEE):
                graph = workflows.instantiate_template(template, {"color": color})
                queue.add_job(graph, metadata={"color": color}, params={"color": color})
            queue.on("job_completed", lambda job: print(f"   job {job.job_id[:8]} done: {len(job.stored)} stored"))
            stats = queue.run(timeout=600)
            print(f"6. batch: {stats['completed']} completed, {stats['failed']} failed "
                  f"in {stats['elapsed']:.2f} s")
            for job in queue.get_all_jobs():
                for stored in job.stored:
                    print(f"   {stored.sink}: {stored.location}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
