"""Runs one prompt the way ComfyUI's executor does, emitting the same events in the same order.

The executor owns the node-output cache (identical node + inputs = cached, as in
ComfyUI), interrupt semantics (checked when a node starts and inside progress steps),
and the 0.33 progress throttling.  Routing events to sockets is the server's job: the
executor hands every event of a job to a sink.  At each node start and sampler step it
checks its ``pauses``, where a test may hold it (see ``pauses.py``).
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
import traceback
from collections.abc import Mapping
from typing import Any, Protocol

import attrs
from PIL import Image

from comfykit.testing.files import SimFiles
from comfykit.testing.knobs import Knobs
from comfykit.testing.nodes import NodeFailure, NodeResult, run_node
from comfykit.testing.pauses import Pauses

__all__ = ["EventSink", "ExecJob", "ExecOutcome", "Executor"]


class EventSink(Protocol):
    def send(self, event_type: str, data: dict[str, Any]) -> None: ...
    def send_preview(self, image: bytes, image_format: str, metadata: dict[str, Any]) -> None: ...
    def interrupted(self) -> bool: ...


@attrs.frozen
class ExecJob:
    prompt_id: str
    number: float
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs_to_execute: list[str]


@attrs.frozen
class ExecOutcome:
    status_str: str
    completed: bool
    outputs: dict[str, Any]
    messages: list[Any]
    meta: dict[str, Any]


class _Interrupted(Exception):
    pass


def _now_ms() -> int:
    return int(time.time() * 1000)


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


class Executor:
    """Executes prompts one at a time; keeps ComfyUI's cache between them."""

    def __init__(self, object_info: Mapping[str, Any], files: SimFiles, knobs: Knobs, version: str) -> None:
        self.object_info = object_info
        self.files = files
        self.knobs = knobs
        self.version = version
        self._cache: dict[str, tuple[NodeResult, dict[str, Any] | None]] = {}
        self._lock = threading.Lock()
        self.current_node: tuple[str, str] | None = None
        #: where tests hold this thread (see ``pauses``)
        self.pauses = Pauses()

    def free_memory(self) -> None:
        with self._lock:
            self._cache.clear()

    # -- graph helpers -------------------------------------------------

    def _needed(self, prompt: Mapping[str, Any], outputs: list[str]) -> list[str]:
        """Every node ``outputs`` depend on, each after its inputs."""
        needed: list[str] = []
        seen: set[str] = set()

        def visit(node_id: str) -> None:
            if node_id in seen:
                return
            seen.add(node_id)
            for value in prompt[node_id].get("inputs", {}).values():
                if _is_link(value):
                    visit(value[0])
            needed.append(node_id)

        for output in outputs:
            visit(output)
        return needed

    def _order(self, prompt: Mapping[str, Any], outputs: list[str], cached: set[str]) -> list[str]:
        """The nodes to run for ``outputs``, in ComfyUI's execution order.

        As ComfyUI's execution list: each output is staged depth-first with a stack (inputs that
        are cached are not staged), and among the staged nodes whose inputs are ready, in staging
        order, an output node runs first, then one that feeds an output node, then one two links
        before an output node, else the first.  So a sampler's latent and model loaders run before
        its text encoders.
        """
        pending: dict[str, None] = {}
        blocking: dict[str, dict[str, None]] = {}
        block_count: dict[str, int] = {}
        for output in sorted(outputs, key=lambda n: (len(n), n)):
            stack = [output]
            links: list[tuple[str, str]] = []
            while stack:
                node_id = stack.pop()
                if node_id in pending:
                    continue
                pending[node_id] = None
                block_count.setdefault(node_id, 0)
                blocking.setdefault(node_id, {})
                for value in prompt[node_id].get("inputs", {}).values():
                    if _is_link(value):
                        if value[0] not in cached:
                            stack.append(value[0])
                        links.append((value[0], node_id))
            for source, target in links:
                if source not in cached and target not in blocking[source]:
                    blocking[source][target] = None
                    block_count[target] += 1

        def is_output(node_id: str) -> bool:
            return bool(self.object_info[prompt[node_id]["class_type"]].get("output_node"))

        def pick(ready: list[str]) -> str:
            for node_id in ready:
                if is_output(node_id):
                    return node_id
            for node_id in ready:
                if any(is_output(blocked) for blocked in blocking[node_id]):
                    return node_id
            for node_id in ready:
                if any(is_output(after) for blocked in blocking[node_id] for after in blocking[blocked]):
                    return node_id
            return ready[0]

        order: list[str] = []
        while pending:
            ready = [node_id for node_id in pending if block_count[node_id] == 0]
            if not ready:
                raise RuntimeError("dependency cycle among " + ", ".join(pending))  # validation refuses cycles first
            node_id = pick(ready)
            order.append(node_id)
            del pending[node_id]
            for blocked in blocking[node_id]:
                block_count[blocked] -= 1
        return order

    def _keys(self, prompt: Mapping[str, Any], order: list[str]) -> dict[str, str]:
        keys: dict[str, str] = {}
        for node_id in order:
            node = prompt[node_id]
            inputs = {
                name: ["link", keys[value[0]], value[1]] if _is_link(value) else value
                for name, value in node.get("inputs", {}).items()
            }
            text = json.dumps([node["class_type"], inputs], sort_keys=True, default=repr)
            keys[node_id] = hashlib.sha256(text.encode()).hexdigest()
        return keys

    # -- running -------------------------------------------------------

    def run(self, job: ExecJob, sink: EventSink) -> ExecOutcome:
        prompt = job.prompt
        pid = job.prompt_id
        messages: list[Any] = []

        def record(event: str, data: dict[str, Any]) -> None:
            messages.append([event, data])
            sink.send(event, data)

        needed = self._needed(prompt, job.outputs_to_execute)
        keys = self._keys(prompt, needed)
        results: dict[str, NodeResult] = {}
        with self._lock:
            hits = {n: self._cache[keys[n]] for n in needed if keys[n] in self._cache}
        for node_id, (cached_result, _) in hits.items():
            results[node_id] = cached_result
        # ComfyUI lists the cached nodes in prompt order.
        cached = [n for n in prompt if n in hits]
        order = self._order(prompt, job.outputs_to_execute, set(hits))
        record("execution_start", {"prompt_id": pid, "timestamp": _now_ms()})
        record("execution_cached", {"nodes": cached, "prompt_id": pid, "timestamp": _now_ms()})

        states: dict[str, dict[str, Any]] = {}
        outputs: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        executed: list[str] = []
        throttle = _Throttle(enabled=self.version != "0.3.64")

        def send_state() -> None:
            sink.send("progress_state", {"prompt_id": pid, "nodes": {k: dict(v) for k, v in states.items()}})

        def set_state(node_id: str, state: str, value: float, maximum: float) -> None:
            states[node_id] = {
                "value": value,
                "max": maximum,
                "state": state,
                "node_id": node_id,
                "prompt_id": pid,
                "display_node_id": node_id,
                "parent_node_id": None,
                "real_node_id": node_id,
            }

        def report_output(node_id: str, ui: dict[str, Any]) -> None:
            outputs[node_id] = ui
            meta[node_id] = _meta(node_id)
            sink.send("executed", {"node": node_id, "display_node": node_id, "output": ui, "prompt_id": pid})

        try:
            for node_id in order:
                node = prompt[node_id]
                class_type = node["class_type"]
                key = keys[node_id]
                hit = hits.get(node_id)
                if hit is not None:  # a cached output node: its UI output is sent again
                    result, ui = hit
                    if ui is not None:
                        report_output(node_id, ui)
                        set_state(node_id, "finished", 1, 1)
                        send_state()
                    continue
                set_state(node_id, "running", 0.0, 1.0)
                send_state()
                sink.send("executing", {"node": node_id, "display_node": node_id, "prompt_id": pid})
                self.current_node = (pid, node_id)
                if sink.interrupted():
                    raise _Interrupted(node_id)
                self.pauses.reach(pid, node_id)
                inputs = {
                    name: results[value[0]].outputs[value[1]] if _is_link(value) else value
                    for name, value in node.get("inputs", {}).items()
                }
                context = _Context(self, sink, pid, node_id, class_type, throttle, set_state, send_state)
                try:
                    if self.knobs.node_seconds:
                        time.sleep(self.knobs.node_seconds)
                    forced = self.knobs.take_node_failure()
                    if forced is not None:
                        raise NodeFailure(*forced)
                    result = run_node(context, class_type, self.object_info[class_type], inputs)
                except _Interrupted:
                    raise
                except Exception as exc:
                    raise _NodeError(node_id, class_type, exc, inputs, executed) from exc
                ui = self._report_names(result.ui)
                results[node_id] = result
                executed.append(node_id)
                with self._lock:
                    self._cache[key] = (result, ui)
                if ui is not None:
                    report_output(node_id, ui)
                # ComfyUI finishes a node at value = max: 1.0 of the start state, or the last progress max (an int).
                maximum = states[node_id]["max"]
                set_state(node_id, "finished", maximum, maximum)
                send_state()
        except _Interrupted as stop:
            node_id = str(stop.args[0])
            data = {
                "prompt_id": pid,
                "node_id": node_id,
                "node_type": prompt[node_id]["class_type"],
                "executed": list(executed),
                "timestamp": _now_ms(),
            }
            record("execution_interrupted", data)
            return ExecOutcome("error", False, {}, messages, meta)
        except _NodeError as failure:
            record("execution_error", failure.payload(pid))
            return ExecOutcome("error", False, {}, messages, meta)
        finally:
            self.current_node = None
        record("execution_success", {"prompt_id": pid, "timestamp": _now_ms()})
        return ExecOutcome("success", True, outputs, messages, meta)

    def _report_names(self, ui: dict[str, Any] | None) -> dict[str, Any] | None:
        """Apply the hostile-name knobs: report chosen filenames/subfolders instead of the real ones."""
        if ui is None or (self.knobs.output_filename is None and self.knobs.output_subfolder is None):
            return ui
        changed: dict[str, Any] = {}
        for kind, items in ui.items():
            new_items = []
            for item in items:
                if isinstance(item, dict) and "filename" in item:
                    item = dict(item)
                    if self.knobs.output_filename is not None:
                        item["filename"] = self.knobs.output_filename
                    if self.knobs.output_subfolder is not None:
                        item["subfolder"] = self.knobs.output_subfolder
                new_items.append(item)
            changed[kind] = new_items
        return changed


def _meta(node_id: str) -> dict[str, Any]:
    return {"node_id": node_id, "display_node": node_id, "parent_node": None, "real_node_id": node_id}


class _NodeError(Exception):
    def __init__(self, node_id: str, class_type: str, exc: Exception, inputs: Mapping[str, Any], executed: list[str]):
        super().__init__(str(exc))
        self.node_id = node_id
        self.class_type = class_type
        self.exc = exc
        self.inputs = inputs
        self.executed = list(executed)

    def payload(self, prompt_id: str) -> dict[str, Any]:
        exc_type = self.exc.exception_type if isinstance(self.exc, NodeFailure) else type(self.exc).__name__
        frames = traceback.format_tb(self.exc.__traceback__)
        return {
            "prompt_id": prompt_id,
            "node_id": self.node_id,
            "node_type": self.class_type,
            "executed": self.executed,
            "exception_message": f"{self.exc}\n",
            "exception_type": exc_type,
            "traceback": frames,
            # ComfyUI keeps JSON primitives and sends everything else (tensors, latents) as its str().
            "current_inputs": {name: [_formatted(value)] for name, value in self.inputs.items()},
            "current_outputs": list(self.executed),
            "timestamp": _now_ms(),
        }


def _formatted(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)[:200]


class _Throttle:
    """ComfyUI 0.33 sends a progress step only after 100 ms and a 0.5 % change (first, last and previews always)."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self.last_time = 0.0
        self.last_value: float | None = None

    def allow(self, value: float, maximum: float, has_preview: bool) -> bool:
        now = time.monotonic()
        if not self.enabled or self.last_value is None or has_preview or value >= maximum:
            self.last_time, self.last_value = now, value
            return True
        if now - self.last_time >= 0.1 and abs(value - self.last_value) / max(maximum, 1) >= 0.005:
            self.last_time, self.last_value = now, value
            return True
        return False


class _Context:
    """The ``NodeContext`` handed to one node while it runs."""

    def __init__(self, executor: Executor, sink: EventSink, prompt_id: str, node_id: str, class_type: str,
                 throttle: _Throttle, set_state: Any, send_state: Any) -> None:
        self.executor = executor
        self.sink = sink
        self.prompt_id = prompt_id
        self.node_id = node_id
        self.class_type = class_type
        self.throttle = throttle
        self.set_state = set_state
        self.send_state = send_state
        self.throttle.last_value = None

    def save(self, folder_type: str, prefix: str, ext: str, data: bytes) -> dict[str, Any]:
        filename, subfolder = self.executor.files.save(folder_type, prefix, ext, data)
        return {"filename": filename, "subfolder": subfolder, "type": folder_type}

    def input_image(self, name: str) -> Image.Image:
        with Image.open(self.executor.files.input_path(name)) as image:
            image.load()
            return image.copy()

    def work(self) -> None:
        if self.executor.knobs.step_seconds:
            time.sleep(self.executor.knobs.step_seconds)
        if self.sink.interrupted():
            raise _Interrupted(self.node_id)

    def progress(self, value: int, maximum: int, preview: tuple[bytes, str] | None = None) -> None:
        # ComfyUI's progress hook raises on a pending interrupt before it sends anything.
        if self.sink.interrupted():
            raise _Interrupted(self.node_id)
        if preview is None and self.executor.knobs.preview_method == "latent2rgb":
            preview = (_sampler_preview(self.executor.knobs.preview_size, value), "JPEG")
        if self.throttle.allow(value, maximum, preview is not None):
            self._send_step(value, maximum, preview)
        self.executor.pauses.reach(self.prompt_id, self.node_id, value)

    def _send_step(self, value: int, maximum: int, preview: tuple[bytes, str] | None) -> None:
        metadata = {
            "node_id": self.node_id,
            "prompt_id": self.prompt_id,
            "display_node_id": self.node_id,
            "parent_node_id": None,
            "real_node_id": self.node_id,
            "image_type": "image/png" if preview and preview[1] == "PNG" else "image/jpeg",
        }
        self.set_state(self.node_id, "running", value, maximum)
        self.send_state()
        if preview is not None:
            self.sink.send_preview(preview[0], preview[1], metadata)
        self.sink.send("progress", {"value": value, "max": maximum, "prompt_id": self.prompt_id, "node": self.node_id})


def _sampler_preview(size: int, step: int) -> bytes:
    side = max(8, min(size, 64))
    image = Image.new("RGB", (side, side), ((step * 40) % 256, 128, 200))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=60)
    return buffer.getvalue()
