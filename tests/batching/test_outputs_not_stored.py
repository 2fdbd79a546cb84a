"""A job is complete only when its outputs are stored; resuming fetches what is missing without running it again."""

from __future__ import annotations

from pathlib import Path

from batching.workloads import unique_workflows
from comfykit import JobStatus, QueueManager, load_config
from comfykit.testing import ComfyUISimulator


def _queue(sim: ComfyUISimulator, journal: Path, out: Path) -> QueueManager:
    config = load_config(use_file=False, overrides={"output.output_dir": str(out), "batch.retry_delay": 0.05})
    return QueueManager(servers=[sim.url], journal=journal, config=config, max_retries=1)


def test_outputs_that_cannot_be_written_fail_the_job_and_the_resume_stores_them(
    new_sim: ComfyUISimulator, tmp_path: Path
) -> None:
    journal, out = tmp_path / "run.sqlite", tmp_path / "out"
    out.write_text("a file where the output folder should be")  # every write under it fails, as on a full disk
    with _queue(new_sim, journal, out) as queue:
        ids = queue.add_jobs_from_list(unique_workflows(4, offset=700))
        stats = queue.run(timeout=60)
        failed = [queue.get_job(job_id) for job_id in ids]
    assert stats["completed"] == 0 and stats["failed"] == 4
    assert all(job is not None and job.error_type == "OutputsNotStored" for job in failed)
    assert all(job is not None and "could not be stored" in (job.error or "") for job in failed)

    out.unlink()
    with _queue(new_sim, journal, out) as resumed:
        stats = resumed.run(timeout=60)
        jobs = resumed.get_all_jobs()
    assert stats["completed"] == 4
    assert all(job.status is JobStatus.COMPLETED and any(s.sink == "download" for s in job.stored) for job in jobs)
    assert len(list(out.rglob("*.png"))) == 4
    # Each job ran once: the resume read the outputs from the server's history.
    assert sorted(new_sim.execution_counts.values()) == [1] * 4
