"""Which stored files are flushed to disk: those a journal will record, or all of them with ``output.fsync: true``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from comfykit import QueueManager, hookimpl
from comfykit.config import load_config
from comfykit.jobs import Job
from comfykit.queue.finish import durable_outputs
from comfykit.testing import ComfyUISimulator

from .conftest import workflow


def _flushed_files(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the files fsync'd from now on (by descriptor, looked up as they are flushed)."""
    flushed: list[str] = []
    real = os.fsync

    def fsync(descriptor: int) -> None:
        flushed.append(os.readlink(f"/proc/self/fd/{descriptor}") if os.path.isdir("/proc/self/fd") else "?")
        real(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    return flushed


class _Recorder:
    """A third-party sink: what the queue told it about durability."""

    def __init__(self) -> None:
        self.durable: list[bool] = []

    @hookimpl
    def comfykit_store_outputs(self, job: Job, durable: bool) -> None:
        self.durable.append(durable)


@pytest.mark.parametrize(
    ("fsync", "journaled", "flushed"),
    [(None, False, False), (None, True, True), (True, False, True), (False, True, False)],
)
def test_outputs_are_flushed_when_a_journal_records_them_or_when_asked(
    sim: ComfyUISimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync: bool | None, journaled: bool,
    flushed: bool,
) -> None:
    out = tmp_path / "out"
    overrides: dict[str, Any] = {"output.output_dir": str(out)}
    if fsync is not None:
        overrides["output.fsync"] = fsync
    config = load_config(overrides=overrides, use_file=False)
    recorder = _Recorder()
    journal = tmp_path / "batch.sqlite" if journaled else None
    with QueueManager(servers=[sim.url], config=config, journal=journal) as queue, monkeypatch.context() as patch:
        queue.plugin_manager.register(recorder, name="recorder")
        files = _flushed_files(patch)
        queue.add_jobs_from_list([workflow("invert_save")])
        stats = queue.run(timeout=60)
    assert stats["completed"] == 1 and recorder.durable == [flushed]
    stored = sorted(str(path.resolve()) for path in out.rglob("*") if path.is_file() and path.suffix in (".png", ".json"))
    assert len(stored) == 2  # the image and its sidecar
    # Flushed before the rename: the descriptor names the part file beside each stored file.
    ours = [name for name in files if str(out.resolve()) in name]
    assert len(ours) == (2 if flushed else 0) and all(".part" in name for name in ours)


def test_the_rule_itself() -> None:
    assert durable_outputs(None, journaled=True) and not durable_outputs(None, journaled=False)
    assert durable_outputs(True, journaled=False) and not durable_outputs(False, journaled=True)
