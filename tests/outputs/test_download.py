"""The download sink end to end against the simulator: streaming, atomic writes, resume, skips, hostile names."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from comfykit import ComfyUIClient
from comfykit.errors import OutputError, UnsafePathError
from comfykit.hookspecs import hookimpl
from comfykit.jobs import Job
from comfykit.outputs import OutputFile, StoredOutput
from comfykit.testing import ComfyUISimulator
from comfykit_download import DownloadError, download_outputs

from .conftest import RunJob, make_client


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _sink(results: list[Any], name: str) -> Any:
    [result] = [r for r in results if r.plugin == name]
    return result


def test_the_download_sink_stores_files_and_text(client: ComfyUIClient, out_dir: Path, run_job: RunJob) -> None:
    job = run_job(client, "two_outputs")
    results = client.plugin_manager.store_outputs(job, job.outputs, client)
    download = _sink(results, "download")
    assert download.error is None
    by_kind = {record.kind: record for record in download.stored}
    image, text = by_kind["images"], by_kind["text"]
    image_output = next(o for o in job.outputs if o.kind == "images")
    assert image_output.filename is not None
    expected = client.get_image(image_output.filename, image_output.subfolder)
    assert Path(image.location) == out_dir.resolve() / job.job_id / f"2_{image_output.filename}"
    assert Path(image.location).read_bytes() == expected
    assert image.bytes == len(expected) and image.sha256 == hashlib.sha256(expected).hexdigest()
    assert image.sink == "download" and image.node_id == "2" and not image.skipped
    assert Path(text.location).read_text() == "hello from comfykit" and text.location.endswith("5_text_0.txt")
    # The preview (temp) image is not downloaded by default; no temp files are left behind.
    assert _files(out_dir / job.job_id) == sorted([Path(image.location), Path(text.location)])


def test_temp_outputs_when_configured(sim: ComfyUISimulator, out_dir: Path, run_job: RunJob) -> None:
    with make_client(sim, out_dir, **{"output.include_temp": True}) as client:
        job = run_job(client, "preview_image")
        from comfykit.outputs import discover_outputs

        assert job.history is not None
        outputs = discover_outputs(job.history["outputs"], include_temp=True)
        [stored] = _sink(client.plugin_manager.store_outputs(job, outputs, client), "download").stored
        assert Path(stored.location).read_bytes().startswith(b"\x89PNG")


def test_download_results_false_stores_nothing(sim: ComfyUISimulator, out_dir: Path, run_job: RunJob) -> None:
    with make_client(sim, out_dir, **{"output.download_results": False}) as client:
        job = run_job(client, "invert_save")
        assert _sink(client.plugin_manager.store_outputs(job, job.outputs, client), "download").stored == ()
    assert [p.name for p in _files(out_dir)] == [f"{job.job_id}.json"]  # only the metadata sidecar


def test_a_broken_transfer_resumes_with_range(
    client: ComfyUIClient, sim: ComfyUISimulator, out_dir: Path, run_job: RunJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = run_job(client, "invert_save")
    [output] = job.outputs
    assert output.filename is not None
    expected = client.get_image(output.filename, output.subfolder)
    offsets: list[int] = []
    original = client.stream_view

    def spy(*args: Any, offset: int = 0, **kwargs: Any) -> Any:
        offsets.append(offset)
        return original(*args, offset=offset, **kwargs)

    monkeypatch.setattr(client, "stream_view", spy)
    sim.knobs.break_view_after = 100
    sim.knobs.break_views = 1
    [stored] = download_outputs(client, job, out_dir)
    assert offsets == [0, 100]
    assert Path(stored.location).read_bytes() == expected
    assert stored.sha256 == hashlib.sha256(expected).hexdigest()


def test_a_server_without_range_gets_a_restart(
    client: ComfyUIClient, sim: ComfyUISimulator, out_dir: Path, run_job: RunJob
) -> None:
    job = run_job(client, "invert_save")
    sim.knobs.view_ignore_range = True
    sim.knobs.break_view_after = 100
    sim.knobs.break_views = 1
    [stored] = download_outputs(client, job, out_dir)
    [output] = job.outputs
    assert output.filename is not None
    assert Path(stored.location).read_bytes() == client.get_image(output.filename, output.subfolder)


def test_no_partial_file_when_retries_run_out(
    client: ComfyUIClient, sim: ComfyUISimulator, out_dir: Path, run_job: RunJob
) -> None:
    job = run_job(client, "invert_save")
    sim.knobs.break_view_after = 10
    sim.knobs.break_views = 1000
    with pytest.raises(DownloadError, match="failed after 3 attempts") as info:
        download_outputs(client, job, out_dir, attempts=3)
    assert info.value.stored == [] and len(info.value.errors) == 1
    assert isinstance(info.value.errors[0], OutputError)
    assert _files(out_dir) == []  # neither the final name nor a .part file


def test_existing_identical_files_are_skipped(client: ComfyUIClient, out_dir: Path, run_job: RunJob) -> None:
    job = run_job(client, "batch_save")
    first = download_outputs(client, job, out_dir)
    assert len(first) == 4 and not any(r.skipped for r in first)
    inodes = {r.location: os.stat(r.location).st_ino for r in first}
    second = download_outputs(client, job, out_dir, max_concurrent=2)
    assert all(r.skipped for r in second)
    assert [(r.location, r.sha256, r.bytes) for r in second] == [(r.location, r.sha256, r.bytes) for r in first]
    assert {r.location: os.stat(r.location).st_ino for r in second} == inodes
    # A file of another size is replaced.
    Path(first[0].location).write_bytes(b"stale")
    third = download_outputs(client, job, out_dir)
    assert not third[0].skipped and Path(third[0].location).read_bytes() != b"stale"


def test_download_by_prompt_id_and_missing_history(client: ComfyUIClient, out_dir: Path, run_job: RunJob) -> None:
    job = run_job(client, "invert_save")
    assert job.prompt_id is not None
    [stored] = download_outputs(client, job.prompt_id, out_dir, naming="{prompt_id}/{filename}")
    assert Path(stored.location).parent.name == job.prompt_id
    with pytest.raises(OutputError, match="no history"):
        download_outputs(client, "0" * 8, out_dir)


def test_a_missing_file_is_a_clear_error(client: ComfyUIClient, out_dir: Path) -> None:
    gone = OutputFile(node_id="7", kind="images", filename="gone.png")
    with pytest.raises(DownloadError, match=r"no file 'gone\.png' \(node 7\)"):
        download_outputs(client, [gone], out_dir)


HOSTILE = ["../../etc/x.png", "/abs/p.png", "C:\\x.png", "a\x00b.png", "é" * 150 + ".png", "CON.png", ".."]


@pytest.mark.parametrize("filename", HOSTILE)
def test_hostile_names_never_leave_the_output_folder(
    client: ComfyUIClient, sim: ComfyUISimulator, out_dir: Path, run_job: RunJob, tmp_path: Path, filename: str
) -> None:
    sim.knobs.output_filename = filename
    sim.knobs.output_subfolder = "../.."
    sim.knobs.view_any_name = True
    job = run_job(client, "batch_save")
    assert {o.filename for o in job.outputs} == {filename}
    stored = download_outputs(client, job, out_dir, naming="{subfolder}/{job_id}/../{filename}")
    assert len(stored) == 4 and len({r.location for r in stored}) == 4
    root = out_dir.resolve()
    for record in stored:
        path = Path(record.location)
        assert os.path.commonpath([path, root]) == str(root)
        assert all(len(part.encode()) <= 200 and "\x00" not in part for part in path.relative_to(root).parts)
        assert path.read_bytes().startswith(b"\x89PNG")
    # Nothing anywhere else in the test area, nor at the absolute path the server named.
    assert [p for p in _files(tmp_path / "area") if root not in p.resolve().parents] == []
    assert not Path("/abs/p.png").exists()


def test_a_symlink_escape_is_refused_with_a_clear_error(
    client: ComfyUIClient, out_dir: Path, run_job: RunJob, tmp_path: Path
) -> None:
    job = run_job(client, "invert_save")
    elsewhere = tmp_path / "area" / "elsewhere"
    elsewhere.mkdir(parents=True)
    out_dir.mkdir(parents=True)
    os.symlink(elsewhere, out_dir / job.job_id)
    with pytest.raises(DownloadError) as info:
        download_outputs(client, job, out_dir)
    assert isinstance(info.value.errors[0], UnsafePathError)
    assert "outside the output folder" in str(info.value)
    assert _files(elsewhere) == []


class _BrokenSink:
    """A third-party sink that always fails."""

    @hookimpl
    def comfykit_store_outputs(self, job: Job, outputs: list[OutputFile], client: ComfyUIClient) -> list[StoredOutput]:
        raise RuntimeError("the bucket is on fire")


def test_one_failing_sink_does_not_stop_the_others(
    sim: ComfyUISimulator, out_dir: Path, run_job: RunJob
) -> None:
    config_client = make_client(sim, out_dir)
    config = config_client.config
    config_client.close()
    with ComfyUIClient(url=sim.url, config=config, plugins=[_BrokenSink()], plugin_options=["no:monitor"]) as client:
        job = run_job(client, "invert_save")
        results = client.plugin_manager.store_outputs(job, job.outputs, client)
    broken = [r for r in results if isinstance(r.error, RuntimeError)]
    assert len(broken) == 1 and "on fire" in str(broken[0].error)
    [stored] = _sink(results, "download").stored
    assert Path(stored.location).is_file()


def test_a_large_file_is_streamed_not_held_in_memory(client: ComfyUIClient, sim: ComfyUISimulator, out_dir: Path) -> None:
    import tracemalloc

    size = 48 * 1024 * 1024
    with open(sim.files.output_dir / "big.bin", "wb") as handle:
        handle.truncate(size)
    tracemalloc.start()
    try:
        [stored] = download_outputs(client, [OutputFile(node_id="1", kind="images", filename="big.bin")], out_dir)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stored.bytes == size and stored.sha256 == hashlib.sha256(bytes(size)).hexdigest()
    assert peak < 8 * 1024 * 1024  # a few network reads at a time, never the file


@pytest.mark.skipif(os.name != "posix", reason="file modes and the umask are POSIX")
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_files_and_sidecars_are_created_under_the_umask(
    sim: ComfyUISimulator, out_dir: Path, run_job: RunJob, umask: int, mode: int
) -> None:
    with make_client(sim, out_dir, **{"output.embed_png_metadata": True}) as client:
        job = run_job(client, "two_outputs")
        previous = os.umask(umask)
        try:
            results = client.plugin_manager.store_outputs(job, job.outputs, client)
        finally:
            os.umask(previous)
    written = [Path(r.location) for result in results for r in result.stored]
    assert {p.suffix for p in written} == {".png", ".txt", ".json"}
    assert {p: p.stat().st_mode & 0o777 for p in written} == {p: mode for p in written}
