"""The metadata sink: sidecar content, no secrets, manifest lines, PNG text chunks, and sink selection."""

from __future__ import annotations

import hashlib
import json
import struct
import threading
import zlib
from pathlib import Path
from typing import Any

from PIL import Image

from comfykit import ComfyUIClient
from comfykit.config import load_config
from comfykit.jobs import Job
from comfykit.testing import ComfyUISimulator
from comfykit_metadata import embed_png_text, find_seeds, strip_secrets

from .conftest import RunJob, make_client

API_KEY = "comfyui-0123456789abcdef"
TOKEN = "bearer-secret-token-42"


def _secret_client(sim: ComfyUISimulator, out_dir: Path, **settings: Any) -> ComfyUIClient:
    config = load_config(overrides={"output.output_dir": str(out_dir), **settings}, use_file=False)
    return ComfyUIClient(url=sim.url, config=config, api_key=API_KEY, token=TOKEN, plugin_options=["no:monitor"])


def _sidecar(results: list[Any]) -> tuple[dict[str, Any], str]:
    [result] = [r for r in results if r.plugin == "metadata"]
    assert result.error is None
    record = next(r for r in result.stored if r.kind == "metadata")
    text = Path(record.location).read_text()
    assert record.sha256 == hashlib.sha256(text.encode()).hexdigest()
    return json.loads(text), text


def test_the_sidecar_describes_the_job_without_secrets(sim: ComfyUISimulator, out_dir: Path, run_job: RunJob) -> None:
    with _secret_client(sim, out_dir) as client:
        job = run_job(client, "two_outputs", params={"prompt": "a cat", "password": "hunter2"})
        job.started_at = job.submitted_at
        job.cached_nodes = ["1"]
        job.metadata = {"note": f"uses {API_KEY}", "Authorization": "Bearer x"}
        results = client.plugin_manager.store_outputs(job, job.outputs, client)
    document, text = _sidecar(results)
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
    download = next(r for r in results if r.plugin == "download")
    stored_image = next(r for r in download.stored if r.kind == "images")
    assert image["sha256"] == stored_image.sha256 and image["path"] == stored_image.location
    text_output = next(o for o in document["outputs"] if o["kind"] == "text")
    assert text_output["value"] == "hello from comfykit" and text_output["sha256"]
    assert Path(next(r for r in results if r.plugin == "metadata").stored[0].location) == out_dir.resolve() / (
        job.job_id + ".json"
    )


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
        threads = [threading.Thread(target=client.plugin_manager.store_outputs, args=(j, j.outputs, client)) for j in jobs]
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
        results = client.plugin_manager.store_outputs(job, job.outputs, client)
        [output] = job.outputs
        assert output.filename is not None
        original = client.get_image(output.filename, output.subfolder)
    [stored] = next(r for r in results if r.plugin == "download").stored
    with Image.open(stored.location) as image:
        embedded = json.loads(image.text["comfykit"])
        pixels = image.tobytes()
    assert embedded["params"] == {"subject": "lighthouse"} and embedded["job_id"] == job.job_id
    with Image.open(__import__("io").BytesIO(original)) as image:
        assert image.tobytes() == pixels
    document, _ = _sidecar(results)
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
