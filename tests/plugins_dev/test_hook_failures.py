"""A hook that raises is named in the log, and what it breaks is only what the hook reference says."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from comfykit import JobStatus, QueueManager, hookimpl, load_config
from comfykit.testing import ComfyUISimulator, Knobs

WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 1}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "fail"}},
}


class BrokenEvents:
    @hookimpl
    def comfykit_handle_event(self, event: Any) -> None:
        raise RuntimeError("no events for me")


class CountingEvents:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def comfykit_handle_event(self, event: Any) -> None:
        self.seen.append(event.type)


class BrokenRetry:
    @hookimpl
    def comfykit_should_retry(self, error: BaseException) -> bool:
        raise RuntimeError("cannot decide")


def _queue(url: str, tmp_path: Any, *plugins: object) -> QueueManager:
    config = load_config(overrides={"output.output_dir": str(tmp_path), "batch.retry_delay": 0.01}, use_file=False)
    return QueueManager(servers=[url], config=config, plugins=list(plugins))


def test_a_raising_event_hook_is_logged_once_by_name_and_the_others_still_see_every_event(
    comfyui_simulator: ComfyUISimulator, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    counting = CountingEvents()
    with caplog.at_level(logging.DEBUG, logger="comfykit.plugins"), \
            _queue(comfyui_simulator.url, tmp_path, BrokenEvents(), counting) as queue:
        job_id = queue.add_job(WORKFLOW)
        queue.run(timeout=60)
        assert queue.get_job_status(job_id) is JobStatus.COMPLETED
    assert "execution_success" in counting.seen
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "comfykit_handle_event" in r.getMessage()]
    assert len(errors) == 1 and "(BrokenEvents object)" in errors[0].getMessage()
    assert errors[0].exc_info is not None


def test_a_raising_retry_decision_is_logged_by_name_and_means_no_retry(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with ComfyUISimulator(port=0, knobs=Knobs(fail_nodes_next=1)) as simulator, \
            caplog.at_level(logging.ERROR, logger="comfykit.plugins"), \
            _queue(simulator.url, tmp_path, BrokenRetry()) as queue:
        job_id = queue.add_job(WORKFLOW)
        stats = queue.run(timeout=60)
    assert stats["failed"] == 1 and stats["retries"] == 0
    assert queue.get_job_status(job_id) is JobStatus.FAILED
    assert any("(BrokenRetry object) failed in comfykit_should_retry" in r.getMessage() for r in caplog.records)
