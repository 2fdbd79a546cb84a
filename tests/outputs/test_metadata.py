"""The metadata sink: sidecar content from job.stored, the job as it ended in one clock, no secrets,
manifest lines, PNG text chunks, and sink selection."""

from __future__ import annotations

import datetime
import hashlib
import json
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import comfykit_download
import comfykit_metadata
from comfykit import ComfyUIClient, QueueManager
from comfykit.config import load_config
from comfykit.jobs import Job, JobStatus
from comfykit.outputs import OutputFile, StoredOutput
from comfykit.testing import ComfyUISimulator
from comfykit_metadata import embed_png_text, find_seeds, strip_secrets

from .conftest import RunJob, make_client, workflow

API_KEY = "comfyui-0123456789abcdef"
TOKEN = "bearer-secret-token-42"


def _secret_client(sim: ComfyUISimulator, out_dir: Path, **settings: Any) -> ComfyUIClient:
    config = load_config(overrides={"output.output_dir": str(out_dir), **settings}, use_file=False)
    return ComfyUIClient(url=sim.url, config=config, api_key=API_KEY, token=TOKEN, plugin_options=["no:monitor"])


def _sidecar(results: list[Any]) -> tuple[dict[str, Any], str]:
    [result] = [r for r in results if r.plugin == "metadata"]
    assert result.error is None
    return _read_sidecar(result.stored)


def _read_sidecar(records: Any) -> tuple[dict[str, Any], str]:
    record = next(r for r in records if r.kind == "metadata")
    text = Path(record.location).read_text()
    assert record.sha256 == hashlib.sha256(text.encode()).hexdigest()
    return json.loads(text), text


def _store_in_turn(client: ComfyUIClient, job: Job) -> tuple[list[StoredOutput], list[StoredOutput]]:
    """The download sink, then the metadata sink with the download's records already in ``job.stored``."""
    downloaded = comfykit_download.comfykit_store_outputs(job=job, outputs=job.outputs, client=client, durable=False)
    job.stored.extend(downloaded)
    return downloaded, comfykit_metadata.comfykit_store_outputs(job=job, outputs=job.outputs, client=client, durable=False)


def test_the_sidecar_describes_the_job_without_secrets(sim: ComfyUISimulator, out_dir: Path, run_job: RunJob) -> None:
    with _secret_client(sim, out_dir) as client:
        job = run_job(client, "two_outputs", params={"prompt": "a cat", "password": "hunter2"})
        job.started_at = job.submitted_at
        job.cached_nodes = ["1"]
        job.metadata = {"note": f"uses {API_KEY}", "Authorization": "Bearer x"}
        downloaded, written = _store_in_turn(client, job)
    document, text = _read_sidecar(written)
    assert API_KEY not in text and TOKEN not in text and "hunter2" not in text and "api_key_comfy_org" not in text
    assert document["job_id"] == job.job_id and document["prompt_id"] == job.prompt_id
    assert document["server"] == sim.url and document["comfykit_version"]
    assert document["params"] == {"prompt": "a cat"}
    assert document["metadata"] == {"note": "uses ***"}
    assert document["cached_nodes"] == ["1"]
    assert document["times"]["finished"] is not None and document["durations"]["total"] >= 0
    assert document["prompt"]["2"]["class_type"] == "SaveImage"
    assert document["extra_data"]["client_id"] == client.client_id
    image = next(o for o in document["outputs"] if o["kind"] == "images")
    stored_image = next(r for r in downloaded if r.kind == "images")
    assert image["sha256"] == stored_image.sha256 and image["path"] == stored_image.location
    assert image["sha256"] == hashlib.sha256(Path(stored_image.location).read_bytes()).hexdigest()
    text_output = next(o for o in document["outputs"] if o["kind"] == "text")
    assert text_output["value"] == "hello from comfykit" and text_output["sha256"]
    assert Path(written[0].location) == out_dir.resolve() / (job.job_id + ".json")


def test_seeds_are_found_per_node() -> None:
    prompt = {
        "3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": 20}},
        "4": {"class_type": "SamplerCustom", "inputs": {"noise_seed": 7, "seed": ["9", 0]}},
        "5": {"class_type": "X", "inputs": {"seed": True}},
        "6": "garbage",
    }
    assert find_seeds(prompt) == {"3": {"seed": 42}, "4": {"noise_seed": 7}}


def test_secret_keys_are_removed_everywhere() -> None:
    data = {"extra_data": {"api_key_comfy_org": "k", "auth_token_comfy_org": "t", "client_id": "c"},
            "nested": [{"X-API-Key": 1, "apikey": 2, "Secret": 3, "ok": "contains s3cr3t"}]}
    assert strip_secrets(data, ["s3cr3t"]) == {"extra_data": {"client_id": "c"}, "nested": [{"ok": "contains ***"}]}


def test_manifest_lines_from_concurrent_jobs(sim: ComfyUISimulator, out_dir: Path, run_job: RunJob, tmp_path: Path) -> None:
    manifest = tmp_path / "batch" / "manifest.jsonl"
    with make_client(sim, out_dir, **{"output.manifest": str(manifest)}) as client:
        jobs = [run_job(client, "invert_save", params={"n": n}) for n in range(4)]
        threads = [threading.Thread(target=_store_in_turn, args=(client, j)) for j in jobs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert sorted(line["params"]["n"] for line in lines) == [0, 1, 2, 3]
    assert all(line["outputs"][0]["sha256"] and Path(line["sidecar"]).is_file() for line in lines)


def test_png_metadata_is_embedded_without_touching_the_image(
    sim: ComfyUISimulator, out_dir: Path, run_job: RunJob
) -> None:
    with make_client(sim, out_dir, **{"output.embed_png_metadata": True}) as client:
        job = run_job(client, "invert_save", params={"subject": "lighthouse"})
        downloaded, written = _store_in_turn(client, job)
        [output] = job.outputs
        assert output.filename is not None
        original = client.get_image(output.filename, output.subfolder)
    [stored] = downloaded
    with Image.open(stored.location) as image:
        embedded = json.loads(image.text["comfykit"])
        pixels = image.tobytes()
    assert embedded["params"] == {"subject": "lighthouse"} and embedded["job_id"] == job.job_id
    with Image.open(__import__("io").BytesIO(original)) as image:
        assert image.tobytes() == pixels
    document, _ = _read_sidecar(written)
    # The text chunk changed the file after the download stored it: the sidecar hashes what is on disk now.
    assert document["outputs"][0]["sha256"] == hashlib.sha256(Path(stored.location).read_bytes()).hexdigest()
    assert embed_png_text(Path(stored.location), "comfykit", "{}") is False  # already there: not added twice


def test_embedding_refuses_files_that_are_not_png(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(b"GIF89a")
    assert embed_png_text(path, "comfykit", "{}") is False
    body = b"IHDR"
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 0) + body + struct.pack(">I", zlib.crc32(body))
    path.write_bytes(png)  # no IEND: left alone
    assert embed_png_text(path, "comfykit", "{}") is False and path.read_bytes() == png


def test_save_metadata_false_and_sink_selection(sim: ComfyUISimulator, out_dir: Path, run_job: RunJob) -> None:
    with make_client(sim, out_dir, **{"output.save_metadata": False}) as client:
        job = run_job(client, "invert_save")
        results = client.plugin_manager.store_outputs(job, job.outputs, client)
        assert next(r for r in results if r.plugin == "metadata").stored == ()
    with make_client(sim, out_dir, **{"output.sinks": ["metadata"]}) as client:
        job = run_job(client, "invert_save")
        results = client.plugin_manager.store_outputs(job, job.outputs, client, sinks=client.config["output.sinks"])
    assert [r.plugin for r in results] == ["metadata"]
    document, _ = _sidecar(results)
    assert "sha256" not in document["outputs"][0]  # nothing was downloaded, so nothing to hash


def test_a_job_without_history_records_its_workflow(client: ComfyUIClient, out_dir: Path) -> None:
    job = Job(workflow={"1": {"class_type": "KSampler", "inputs": {"seed": 5}}}, extra_data={"api_key_comfy_org": "k"})
    [result] = [r for r in client.plugin_manager.store_outputs(job, [], client) if r.plugin == "metadata"]
    document = json.loads(Path(result.stored[0].location).read_text())
    assert document["prompt"] == job.workflow and document["seeds"] == {"1": {"seed": 5}}
    assert document["extra_data"] == {} and document["outputs"] == []


# --------------------------------------------------------------------------- what other sinks stored


def test_the_metadata_plugin_does_not_know_the_download_plugin() -> None:
    source = Path(comfykit_metadata.__file__).read_text()
    assert "comfykit_download" not in source and "plan_output_paths" not in source


def test_the_sidecar_lists_what_the_sinks_before_it_stored(client: ComfyUIClient, out_dir: Path) -> None:
    # Locations no naming template would give: the sidecar must take them from job.stored, not re-plan them.
    first = OutputFile(node_id="9", kind="images", filename="a.png", index=0)
    second = OutputFile(node_id="9", kind="images", filename="b.png", index=1)
    job = Job(workflow={}, job_id="j1", outputs=[first, second])
    job.stored = [
        StoredOutput(sink="download", node_id="9", kind="images", index=1, location="/elsewhere/b.png", bytes=3,
                     sha256="bb"),
        StoredOutput(sink="s3", node_id="9", kind="images", index=1, location="s3://bucket/b.png", bytes=3,
                     sha256="bb"),
        StoredOutput(sink="other", node_id="", kind="report", location="/elsewhere/report.txt"),
    ]
    written = comfykit_metadata.comfykit_store_outputs(job=job, outputs=job.outputs, client=client, durable=False)
    document, _ = _read_sidecar(written)
    unstored, stored = document["outputs"]
    assert unstored["filename"] == "a.png" and "path" not in unstored and "stored" not in unstored
    assert stored["path"] == "/elsewhere/b.png" and stored["sha256"] == "bb" and stored["bytes"] == 3
    assert [r["sink"] for r in stored["stored"]] == ["download", "s3"]


def _stamp(when: float) -> int:
    return int(when * 1000)


def test_the_sidecar_describes_the_ended_job_in_one_clock(client: ComfyUIClient) -> None:
    now = time.time()
    skew = 3600.0  # the server's clock is an hour ahead of ours
    job = Job(workflow={}, job_id="j2", status=JobStatus.RUNNING, created_at=now - 5)
    job.submitted_at, job.started_at, job.finished_at = now - 4, now - 3, now
    job.history = {"status": {"status_str": "success", "completed": True, "messages": [
        ["execution_start", {"prompt_id": "p", "timestamp": _stamp(now - 3 + skew)}],
        ["execution_cached", {"prompt_id": "p", "nodes": [], "timestamp": _stamp(now - 3 + skew)}],
        ["execution_success", {"prompt_id": "p", "timestamp": _stamp(now - 0.5 + skew)}],
    ]}, "outputs": {}}
    written = comfykit_metadata.comfykit_store_outputs(job=job, outputs=[], client=client, durable=False)
    document, _ = _read_sidecar(written)
    assert document["status"] == "completed"
    times = {name: datetime.datetime.fromisoformat(text) for name, text in document["times"].items()}
    assert all(t.utcoffset() == datetime.timedelta(0) for t in times.values())
    assert [times[name].timestamp() for name in ("created", "submitted", "started", "finished")] == pytest.approx(
        [now - 5, now - 4, now - 3, now], abs=0.01
    )
    server = {name: datetime.datetime.fromisoformat(text).timestamp() for name, text in document["server_times"].items()}
    assert set(server) == {"execution_start", "execution_cached", "execution_success"}
    assert server["execution_success"] == pytest.approx(now - 0.5 + skew, abs=0.01)
    assert document["durations"] == {"queued": pytest.approx(1.0), "running": pytest.approx(3.0),
                                     "total": pytest.approx(4.0)}


def _sidecars(out_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(out_dir.glob("*.json"))]


def test_a_batch_writes_sidecars_of_completed_jobs_in_our_clock(
    sim: ComfyUISimulator, out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import comfykit.testing.executor as executor

    skew_ms = 3_600_000
    monkeypatch.setattr(executor, "_now_ms", lambda: int(time.time() * 1000) + skew_ms)
    before = time.time()
    with make_client(sim, out_dir) as client:
        queue = QueueManager(client, max_concurrent=2)
        queue.add_jobs_from_list([workflow("invert_save") for _ in range(2)])
        stats = queue.run(timeout=60)
        queue.close()
    after = time.time()
    assert stats["completed"] == 2
    documents = _sidecars(out_dir)
    assert len(documents) == 2
    for document in documents:
        assert document["status"] == "completed"
        ours = [datetime.datetime.fromisoformat(document["times"][n]).timestamp() for n in ("submitted", "finished")]
        assert before - 1 <= ours[0] <= ours[1] <= after + 1
        theirs = datetime.datetime.fromisoformat(document["server_times"]["execution_success"]).timestamp()
        assert theirs == pytest.approx(ours[1] + skew_ms / 1000, abs=30)
        assert 0 <= document["durations"]["total"] <= after - before + 1


def test_a_batch_sidecar_lists_the_downloaded_files(sim: ComfyUISimulator, out_dir: Path) -> None:
    with make_client(sim, out_dir) as client:
        queue = QueueManager(client, max_concurrent=1)
        [job_id] = queue.add_jobs_from_list([workflow("invert_save")])
        queue.run(timeout=60)
        queue.close()
    job = queue.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED
    [downloaded] = [record for record in job.stored if record.sink == "download"]
    [document] = _sidecars(out_dir)
    [output] = document["outputs"]
    assert output["path"] == downloaded.location and output["sha256"] == downloaded.sha256


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


@given(_json_values, st.integers(min_value=0, max_value=4))
def test_the_sidecar_layout_is_the_same_json(value: Any, levels: int) -> None:
    text = comfykit_metadata.readable_json(value, levels)
    assert json.loads(text) == value
    if levels and isinstance(value, dict) and value:
        assert text.count("\n") >= len(value) + 1  # one top-level item per line
