"""Runs one prompt the way ComfyUI's executor does, emitting the same events in the same order.

The executor owns the node-output cache (identical node + inputs = cached, as in
ComfyUI), interrupt semantics (checked when a node starts and inside progress steps),
and the 0.33 progress throttling.  Routing events to sockets is the server's job: the
executor hands every event of a job to a sink.
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

    def free_memory(self) -> None:
        with self._lock:
            self._cache.clear()

    # -- graph helpers -------------------------------------------------

    def _order(self, prompt: Mapping[str, Any], outputs: list[str]) -> list[str]:
        """Nodes needed by ``outputs`` in ComfyUI's execution order.

        Like ComfyUI's execution list: among the nodes whose inputs are ready, output
        nodes run first, then nodes feeding an output node, then the rest in the order
        they were staged (depth-first from the outputs).
        """
        staged: list[str] = []
        seen: set[str] = set()

        def visit(node_id: str) -> None:
            if node_id in seen:
                return
            seen.add(node_id)
            for value in prompt[node_id].get("inputs", {}).values():
                if _is_link(value):
                    visit(value[0])
            staged.append(node_id)

        for output in sorted(outputs, key=lambda n: (len(n), n)):
            visit(output)
        deps = {n: {v[0] for v in prompt[n].get("inputs", {}).values() if _is_link(v)} for n in staged}
        is_output = {n: bool(self.object_info[prompt[n]["class_type"]].get("output_node")) for n in staged}
        feeds_output = {n: any(n in deps[m] and is_output[m] for m in staged) for n in staged}
        order: list[str] = []
        done: set[str] = set()
        while len(order) < len(staged):
            ready = [n for n in staged if n not in done and deps[n] <= done]
            pick = next((n for n in ready if is_output[n]), None) or next(
                (n for n in ready if feeds_output[n]), ready[0]
            )
            order.append(pick)
            done.add(pick)
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

        order = self._order(prompt, job.outputs_to_execute)
        keys = self._keys(prompt, order)
        with self._lock:
            cached = [n for n in order if keys[n] in self._cache]
        record("execution_start", {"prompt_id": pid, "timestamp": _now_ms()})
        record("execution_cached", {"nodes": cached, "prompt_id": pid, "timestamp": _now_ms()})

        states: dict[str, dict[str, Any]] = {}
        results: dict[str, NodeResult] = {}
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
                with self._lock:
                    hit = self._cache.get(key)
                if hit is not None:
                    result, ui = hit
                    results[node_id] = result
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
                set_state(node_id, "finished", 1.0, 1.0)
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
            "current_inputs": {name: [repr(value)[:200]] for name, value in self.inputs.items()},
            "current_outputs": list(self.executed),
            "timestamp": _now_ms(),
        }


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
        if preview is None and self.executor.knobs.preview_method == "latent2rgb":
            preview = (_sampler_preview(self.executor.knobs.preview_size, value), "JPEG")
        if not self.throttle.allow(value, maximum, preview is not None):
            return
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
