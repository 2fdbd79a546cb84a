"""A hostile or broken server: 100 MB JSON bodies, bodies that never end, garbage WebSocket frames,
output names that try to escape the output folder.  The client must fail clearly, in bounded memory
and time, and write nothing outside its output folder.
"""

from __future__ import annotations

import os
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from batching.workloads import unique_workflows

import comfykit.client as client_module
from comfykit import ComfyUIClient, JobStatus, QueueManager
from comfykit.config import load_config
from comfykit.errors import ProtocolError, RequestTimeout
from comfykit.testing import ComfyUISimulator
from faults.conftest import GarbageProbe

MB = 1024 * 1024
READERS: dict[str, Callable[[ComfyUIClient], Any]] = {
    "/history": lambda client: client.get_history(),
    "/history/{id}": lambda client: client.get_history(str(uuid.uuid4())),
    "/object_info": lambda client: client.get_object_info(),
}


def _peak_while(action: Callable[[], Any]) -> int:
    """Peak Python allocation (bytes, in this whole process: client and simulator) while ``action`` runs."""
    tracemalloc.start()
    try:
        action()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("path", sorted(READERS))
def test_a_100_mb_json_body_is_refused_before_it_is_read(sim: ComfyUISimulator, path: str) -> None:
    sim.knobs.hostile_body = "huge"
    with ComfyUIClient(url=sim.url) as client:
        client.get_queue()  # the session's own start-up allocations are not the body's

        def read() -> None:
            with pytest.raises(ProtocolError, match="too large"):
                READERS[path](client)

        peak = _peak_while(read)
        assert peak < 8 * MB, f"{peak / MB:.1f} MB allocated for a body that should have been refused unread"
        sim.knobs.hostile_body = None
        assert client.get_history() == {}  # the connection pool is still usable


def test_a_chunked_100_mb_body_is_cut_at_the_limit(sim: ComfyUISimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    # Without a Content-Length the client must read to find out: it stops at the limit, not at the end.
    monkeypatch.setattr(client_module, "MAX_JSON_BYTES", 4 * MB)
    sim.knobs.hostile_body = "huge_chunked"
    with ComfyUIClient(url=sim.url) as client:
        client.get_queue()

        def read() -> None:
            with pytest.raises(ProtocolError, match="too large"):
                client.get_history()

        peak = _peak_while(read)
    assert peak < 16 * MB, f"{peak / MB:.1f} MB allocated while the limit is 4 MB"


def test_a_body_just_under_the_limit_is_read(sim: ComfyUISimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "MAX_JSON_BYTES", 2 * MB)
    sim.knobs.hostile_body = "huge_chunked"
    sim.knobs.hostile_bytes = 2 * MB
    with ComfyUIClient(url=sim.url) as client:
        assert client.get_object_info() == {"padding": 0}


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("kind", "error"), [("short", RequestTimeout), ("trickle", RequestTimeout), ("flood", ProtocolError)])
def test_a_body_that_never_ends_fails_within_the_timeout(
    sim: ComfyUISimulator, monkeypatch: pytest.MonkeyPatch, kind: str, error: type[Exception]
) -> None:
    monkeypatch.setattr(client_module, "MAX_JSON_BYTES", 4 * MB)
    sim.knobs.hostile_body = kind
    sim.knobs.hostile_bytes = 4096  # what "short" promises and never sends
    with ComfyUIClient(url=sim.url, timeout=0.5) as client:
        with pytest.raises(error):
            client.get_history()
        with pytest.raises(error):
            client.get_object_info()
        sim.knobs.hostile_body = None
        assert client.get_history() == {}


# ---------------------------------------------------------------- WebSocket garbage


def test_garbage_frames_never_stop_the_reader_thread(sim: ComfyUISimulator) -> None:
    probe = GarbageProbe(sim)
    with ComfyUIClient(url=sim.url) as client:
        client.on("status", probe.on_status)
        source = client.ensure_event_source()
        assert source is not None and source.connected
        probe.run()
        assert source.connected and getattr(source, "reconnects", 0) == 0
        # And a real job after all that still completes from its events.
        prompt_id = client.queue_prompt(unique_workflows(1)[0])["prompt_id"]
        assert client.wait_for_completion(prompt_id, timeout=30)["status"]["status_str"] == "success"


# ---------------------------------------------------------------- escaping names through a whole batch


def _files(root: Path) -> list[Path]:
    return [Path(folder) / name for folder, _, names in os.walk(root) for name in names]


@pytest.mark.parametrize("filename", ["../../../escape.png", "/tmp/comfykit-hostile-{}.png", "..\\..\\escape.png", ".."])
def test_escaping_output_names_through_a_batch_stay_in_the_output_folder(
    sim: ComfyUISimulator, tmp_path: Path, filename: str
) -> None:
    filename = filename.format(uuid.uuid4().hex)
    area = tmp_path / "area"
    out_dir = area / "deep" / "out"
    sim.knobs.output_filename = filename
    sim.knobs.output_subfolder = "../../.."
    sim.knobs.view_any_name = True
    config = load_config(overrides={"output.output_dir": str(out_dir)}, use_file=False)
    with ComfyUIClient(url=sim.url, config=config) as client:
        queue = QueueManager(client, max_concurrent=2)
        queue.add_jobs_from_list(unique_workflows(4))
        queue.run(timeout=60)
        queue.close()
    jobs = queue.get_all_jobs()
    assert all(job.status is JobStatus.COMPLETED for job in jobs), [(job.status, job.error) for job in jobs]
    root = out_dir.resolve()
    stored = [Path(record.location) for job in jobs for record in job.stored]
    assert stored, "the download sink stored nothing"
    for path in stored:
        assert root in path.resolve().parents
    images = [path for path in stored if path.suffix == ".png" or path.read_bytes().startswith(b"\x89PNG")]
    assert len(images) >= len(jobs)
    assert [p for p in _files(area) if root not in p.resolve().parents] == []
    if filename.startswith("/"):
        assert not Path(filename).exists()


def test_hostile_paths_given_as_text_like_the_serve_option(sim: ComfyUISimulator) -> None:
    sim.knobs.hostile_body = "huge"
    sim.knobs.hostile_paths = "/queue, /embeddings"
    with ComfyUIClient(url=sim.url) as client:
        assert client.get_history() == {}
        with pytest.raises(ProtocolError, match="too large"):
            client.get_queue()
        with pytest.raises(ProtocolError, match="too large"):
            client.get_embeddings()
