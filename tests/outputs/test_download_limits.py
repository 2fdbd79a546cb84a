"""A download has a size cap, a total deadline and a free-space floor, and leaves no partial file behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfykit import ComfyUIClient
from comfykit.paths import part_prefix, temp_file_beside
from comfykit.testing import ComfyUISimulator
from comfykit_download import DownloadError, DownloadLimits, download_outputs

from .conftest import RunJob


def _parts(folder: Path) -> list[Path]:
    return list(folder.rglob("*.part"))


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("body", "limits", "message"),
    [
        ("flood", DownloadLimits(max_bytes=1024 * 1024), "larger than output.max_bytes"),
        ("huge", DownloadLimits(max_bytes=1024 * 1024), "larger than output.max_bytes"),
        ("trickle", DownloadLimits(deadline=0.5), "took longer than output.download_timeout"),
        ("huge", DownloadLimits(min_free_bytes=2**62), "not enough disk space"),
    ],
)
def test_a_hostile_view_body_is_cut_off_with_a_clear_error_and_no_partial_file(
    client: ComfyUIClient, sim: ComfyUISimulator, out_dir: Path, run_job: RunJob, body: str,
    limits: DownloadLimits, message: str,
) -> None:
    job = run_job(client, "invert_save")
    sim.knobs.hostile_paths = ("/view",)
    sim.knobs.hostile_body = body
    sim.knobs.hostile_bytes = 8 * 1024 * 1024
    with pytest.raises(DownloadError) as caught:
        download_outputs(client, job, out_dir, limits=limits)
    assert message in str(caught.value.errors[0])
    assert _parts(out_dir) == []


def test_partial_files_left_by_a_killed_run_are_removed(
    client: ComfyUIClient, out_dir: Path, run_job: RunJob
) -> None:
    job = run_job(client, "invert_save")
    [planned] = download_outputs(client, job, out_dir)
    target = Path(planned.location)
    target.unlink()
    leftover = target.parent / f"{part_prefix(target)}0123456789ab.part"
    leftover.write_bytes(b"half a file")
    older = target.parent / f".{target.name}.0123456789ab.part"  # as versions before the name tag wrote them
    older.write_bytes(b"half a file")
    another = target.parent / ".another.png.0123456789ab.part"  # maybe another process's transfer: left alone
    another.write_bytes(b"in progress")
    # The next run (a new client) finds what the killed one left.
    with ComfyUIClient(url=client.base_url, config=client.config) as next_run:
        download_outputs(next_run, job, out_dir)
    assert target.is_file() and not leftover.exists() and not older.exists() and another.exists()


def test_a_transfer_of_a_name_sharing_the_first_40_characters_is_left_alone(
    client: ComfyUIClient, sim: ComfyUISimulator, out_dir: Path, run_job: RunJob
) -> None:
    # A long filename_prefix with a counter: ComfyUI's names differ only after the 40th character.
    stem = "portrait_series_highres_upscaled_variant_"
    sim.knobs.output_filename = f"{stem}00001_.png"
    sim.knobs.view_any_name = True
    job = run_job(client, "invert_save")
    [planned] = download_outputs(client, job, out_dir)
    target = Path(planned.location)
    target.unlink()
    sibling = target.with_name(target.name.replace("00001_", "00002_"))
    assert sibling.name[:40] == target.name[:40]
    handle, in_progress = temp_file_beside(sibling)  # another download, still writing beside it
    with handle:
        handle.write(b"half of the sibling")
    with ComfyUIClient(url=client.base_url, config=client.config) as next_run:
        download_outputs(next_run, job, out_dir)
    assert target.is_file() and in_progress.read_bytes() == b"half of the sibling"


def test_the_limits_are_config_keys_of_the_download_plugin() -> None:
    from comfykit import load_config

    config = load_config(use_file=False, overrides={"output.max_bytes": 10, "output.download_timeout": 2.5,
                                                    "output.min_free_bytes": 0})
    assert DownloadLimits.from_config(config.section("output")) == DownloadLimits(10, 2.5, 0)


def test_free_space_is_asked_once_a_second_far_from_the_floor_and_every_time_near_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shutil

    import comfykit_download

    asked: list[Path] = []
    free = {"bytes": 10 * 2**30}

    def disk_usage(path: Path) -> shutil._ntuple_diskusage:
        asked.append(path)
        return shutil._ntuple_diskusage(2**40, 2**40 - free["bytes"], free["bytes"])

    monkeypatch.setattr(comfykit_download.shutil, "disk_usage", disk_usage)
    monkeypatch.setattr(comfykit_download, "_FREE_SPACE_TTL", 3600.0)  # no answer ages while the test runs
    space = comfykit_download._FreeSpace()
    for _ in range(100):  # far above the floor: the first answer serves the second, less what was announced
        space.take(tmp_path, tmp_path / "job", 1024, keep=2**20)
    assert len(asked) == 1
    assert space.take(tmp_path, tmp_path, 0, keep=2**20) == free["bytes"] - 100 * 1024
    free["bytes"] = 2**20 + 4096  # within the margin of the floor: asked every time, so a full disk is seen at once
    near = comfykit_download._FreeSpace()
    assert [near.take(tmp_path, tmp_path, 1024, keep=2**20) for _ in range(3)] == [2**20 + 3072] * 3
    assert len(asked) == 4
    monkeypatch.setattr(comfykit_download, "_FREE_SPACE_TTL", 0.0)  # any answer is older than the TTL now: asked again
    free["bytes"] = 10 * 2**30
    space.take(tmp_path, tmp_path, 0, keep=2**20)
    space.take(tmp_path, tmp_path, 0, keep=2**20)
    assert len(asked) == 6
