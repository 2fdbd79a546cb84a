"""One job path with one owner of job state: the allowed moves, hooks that cannot change a job's fate,
sinks that see each other's records, and outputs that a vanished server kept from being stored.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batching.workloads import unique_workflows
from comfykit import ComfyUIClient, JobStatus, QueueManager, hookimpl, load_config
from comfykit.errors import ServerError, ServerUnreachable
from comfykit.jobs import MOVES, IllegalMove, Job
from comfykit.outputs import OutputFile, StoredOutput
from comfykit.queue.finish import is_server_trouble
from comfykit.queue.workers import Listener
from comfykit.testing import ComfyUISimulator

# -- the table of moves ------------------------------------------------------------------------------


@given(st.lists(st.sampled_from(list(JobStatus)), max_size=12))
def test_a_job_makes_only_the_moves_the_table_allows(path: list[JobStatus]) -> None:
    job = Job(workflow={})
    for target in path:
        before = job.status
        if target in MOVES[before]:
            job.move(target)
            assert job.status is target
        else:
            with pytest.raises(IllegalMove, match=f"{before.value} -> {target.value}"):
                job.move(target)
            assert job.status is before
    if job.done and job.status is not JobStatus.FAILED:
        assert not MOVES[job.status]  # completed and cancelled are the ends


def test_a_move_sets_its_fields_and_refuses_unknown_ones() -> None:
    job = Job(workflow={})
    job.move(JobStatus.QUEUED, prompt_id="p", server="http://s")
    assert (job.status, job.prompt_id, job.server) == (JobStatus.QUEUED, "p", "http://s")
    with pytest.raises(TypeError, match="no field"):
        job.move(JobStatus.RUNNING, colour="red")
    with pytest.raises(IllegalMove):
        job.move(JobStatus.COMPLETED)  # completed only from running: job_started always comes first


# -- hooks and callbacks cannot change a job's fate ------------------------------------------------------


class RaisingHooks:
    """A plugin whose lifecycle hooks all raise."""

    @hookimpl
    def comfykit_job_submitted(self, job: Job) -> None:
        raise RuntimeError("submitted hook broke")

    @hookimpl
    def comfykit_job_started(self, job: Job) -> None:
        raise RuntimeError("started hook broke")

    @hookimpl
    def comfykit_job_completed(self, job: Job) -> None:
        raise RuntimeError("completed hook broke")

    @hookimpl
    def comfykit_queue_empty(self) -> None:
        raise RuntimeError("empty hook broke")


def test_raising_hooks_and_callbacks_are_logged_and_change_nothing(
    new_sim: ComfyUISimulator, caplog: pytest.LogCaptureFixture
) -> None:
    completed: list[str] = []
    with ComfyUIClient(url=new_sim.url, plugins=[RaisingHooks()]) as client:
        queue = QueueManager(client, store_outputs=False)
        queue.on("job_submitted", lambda job: 1 / 0)
        queue.on("job_completed", lambda job: completed.append(job.job_id))
        ids = queue.add_jobs_from_list(unique_workflows(3))
        with caplog.at_level(logging.ERROR):
            stats = queue.run(timeout=60)  # before: job_completed raising hung here until the timeout
        queue.close()
    assert stats["completed"] == 3 and stats["failed"] == 0
    assert sorted(completed) == sorted(ids)
    assert new_sim.execution_counts == {queue.get_job(i).prompt_id: 1 for i in ids}  # type: ignore[union-attr]
    messages = [record.getMessage() for record in caplog.records]
    plugin_name = client.plugin_manager.pm.get_name(next(p for _, p in client.plugin_manager.plugins()
                                                         if isinstance(p, RaisingHooks)))
    for hook in ("comfykit_job_submitted", "comfykit_job_started", "comfykit_job_completed", "comfykit_queue_empty"):
        assert any(f"plugin {plugin_name!r} failed in {hook}" in m for m in messages), hook
    assert any("on('job_submitted') callback" in m for m in messages)
    assert any("RaisingHooks.comfykit_job_completed" in m for m in messages)  # findable even with a bare-id name


# -- an end the tracker saw reaches a finisher exactly once --------------------------------------------


def test_an_end_whose_listener_call_was_lost_is_finished_by_the_supervisor(
    new_sim: ComfyUISimulator, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Listener, "prompt_finished", lambda self, prompt_id: None)  # every end call is lost
    with ComfyUIClient(url=new_sim.url) as client:
        queue = QueueManager(client, store_outputs=False)
        [job_id] = queue.add_jobs_from_list(unique_workflows(1))
        with caplog.at_level(logging.WARNING, logger="comfykit.queue"):
            stats = queue.run(timeout=60)
        queue.close()
    prompt_id = queue.get_job(job_id).prompt_id  # type: ignore[union-attr]
    assert stats["completed"] == 1 and new_sim.execution_counts == {prompt_id: 1}
    assert [r.getMessage() for r in caplog.records if "ended without being finished" in r.getMessage()] == [
        f"job {prompt_id} ended without being finished; finishing it now"]


def test_an_end_whose_listener_call_is_under_way_is_not_taken_for_a_lost_one(
    new_sim: ComfyUISimulator, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The supervisor looks between the tracker marking the prompt ended and its listener call arriving;
    # its later looks come after that call (until then they see the prompt running: they hold the
    # queue's lock, which the call needs).  Before: the first look already warned.
    looked, forwarded = threading.Event(), threading.Event()
    deliver = Listener.prompt_finished

    def late_listener(self: Listener, prompt_id: str) -> None:
        assert looked.wait(30), "the supervisor never looked at the ended prompt"
        deliver(self, prompt_id)
        forwarded.set()

    monkeypatch.setattr(Listener, "prompt_finished", late_listener)
    with ComfyUIClient(url=new_sim.url) as client:
        ended = client.tracker.is_finished

        def is_finished(prompt_id: str) -> bool:
            if not ended(prompt_id) or (looked.is_set() and not forwarded.is_set()):
                return False
            looked.set()
            return True

        monkeypatch.setattr(client.tracker, "is_finished", is_finished)
        queue = QueueManager(client, store_outputs=False)
        queue.add_jobs_from_list(unique_workflows(1))
        with caplog.at_level(logging.WARNING, logger="comfykit.queue"):
            stats = queue.run(timeout=60)
        queue.close()
    assert stats["completed"] == 1 and looked.is_set()
    assert not [r for r in caplog.records if "ended without being finished" in r.getMessage()]


# -- the sinks -----------------------------------------------------------------------------------------


class FirstSink:
    @hookimpl
    def comfykit_store_outputs(self, job: Job, outputs: list[OutputFile]) -> list[StoredOutput]:
        # Names two of the three arguments: pluggy calls an implementation with the ones it names.
        return [StoredOutput(sink="first", node_id=o.node_id, kind=o.kind, location=f"mem://{o.filename}") for o in outputs]


class LastSink:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl(trylast=True)
    def comfykit_store_outputs(self, job: Job) -> None:
        self.seen = [stored.sink for stored in job.stored]


def test_a_trylast_sink_sees_what_the_others_stored(new_sim: ComfyUISimulator, tmp_path: Path) -> None:
    last = LastSink()
    config = load_config(use_file=False, overrides={"output.output_dir": str(tmp_path / "out")})
    with ComfyUIClient(url=new_sim.url, plugins=[FirstSink(), last], config=config) as client:
        queue = QueueManager(client)
        job = queue.run_one(unique_workflows(1)[0], job_id="one", timeout=60)
        queue.close()
    assert job.status is JobStatus.COMPLETED, job.error
    assert "first" in last.seen and "download" in last.seen
    assert {stored.sink for stored in job.stored} >= {"first", "download", "metadata"}
    # run_one is the batch's path: output folders are named by job id, as for a batch.
    download = next(stored for stored in job.stored if stored.sink == "download")
    assert Path(download.location).parent.name == "one"


class VanishingServerSink:
    """A sink that fails as if the server vanished, ``failures`` times, then stores."""

    def __init__(self, failures: int) -> None:
        self.left = failures
        self.calls = 0
        self.lock = threading.Lock()

    @hookimpl
    def comfykit_store_outputs(self, job: Job, outputs: list[OutputFile]) -> list[StoredOutput]:
        with self.lock:
            self.calls += 1
            if self.left:
                self.left -= 1
                raise ServerUnreachable("cannot download: connection refused")
        return [StoredOutput(sink="vanishing", node_id=o.node_id, kind=o.kind, location="x") for o in outputs]


def _one_job(sim: ComfyUISimulator, sink: Any, *, max_retries: int = 3) -> Job:
    events: list[str] = []
    config = load_config(use_file=False, overrides={"output.output_dir": str(sim.files.output_dir.parent / "got")})
    with ComfyUIClient(url=sim.url, plugins=[sink], config=config) as client:
        queue = QueueManager(client, max_retries=max_retries)
        queue.on("job_completed", lambda job: events.append(f"completed with {len(job.stored)}"))
        job = queue.run_one(unique_workflows(1)[0], timeout=60)
        queue.close()
    assert sim.execution_counts == {job.prompt_id: 1}  # the server ran it once: only the storing was redone
    return job


def test_outputs_lost_to_a_vanished_server_are_stored_again_before_the_job_completes(new_sim: ComfyUISimulator) -> None:
    sink = VanishingServerSink(failures=2)
    job = _one_job(new_sim, sink)
    assert job.status is JobStatus.COMPLETED, job.error
    assert sink.calls == 3
    assert [stored.sink for stored in job.stored].count("vanishing") == 1
    assert not any("vanishing" in warning for warning in job.warnings)


def test_outputs_that_never_reach_storage_fail_the_job_with_the_reason(new_sim: ComfyUISimulator) -> None:
    sink = VanishingServerSink(failures=100)
    job = _one_job(new_sim, sink, max_retries=1)
    assert job.status is JobStatus.FAILED
    assert job.error is not None and "could not be stored" in job.error and "connection refused" in job.error
    assert sink.calls == 2


def test_a_sink_that_breaks_on_its_own_fails_the_job_with_its_prompt_id_kept(new_sim: ComfyUISimulator) -> None:
    class Broken:
        @hookimpl
        def comfykit_store_outputs(self) -> None:
            raise OSError("disk full")

    job = _one_job(new_sim, Broken())
    # Not complete: its outputs are not all stored.  Not retried either: the server's part is done,
    # and resuming the journal fetches the outputs with the prompt id kept here.
    assert job.status is JobStatus.FAILED and job.error_type == "OutputsNotStored"
    assert "disk full" in (job.error or "") and job.prompt_id is not None


def test_server_trouble_is_told_from_a_sinks_own_bug() -> None:
    wrapped = ValueError("download failed")
    wrapped.__cause__ = ServerUnreachable("refused")
    assert is_server_trouble(ServerUnreachable("refused"))
    assert is_server_trouble(ServerError("bad gateway", status_code=502))
    assert is_server_trouble(wrapped)
    assert not is_server_trouble(ServerError("no such file", status_code=404))
    assert not is_server_trouble(OSError("disk full"))


# -- retries are counted in the journal --------------------------------------------------------------------


def test_a_resumed_journal_does_not_grant_the_retries_again(new_sim: ComfyUISimulator, tmp_path: Path) -> None:
    journal = tmp_path / "run.sqlite"
    with ComfyUIClient(url=new_sim.url) as client:
        first = QueueManager(client, journal=journal, store_outputs=False, max_retries=1)
        job_id = first.add_job(unique_workflows(1)[0], job_id="j")
        first.close()
    # Pretend the first run used up its attempts: the journal says so, and the next run must believe it.
    from comfykit.queue.journal import Journal

    record = Journal(journal)
    job = next(record.jobs())
    job.attempts = 2
    record.update(job)
    record.close()
    with ComfyUIClient(url=new_sim.url) as client:
        second = QueueManager(client, journal=journal, store_outputs=False, max_retries=1)
        second.retry_delay = 0.01
        new_sim.knobs.fail_nodes_next = 1  # "CUDA error: out of memory" once: transient, retried if allowed
        second.run(timeout=60)
        resumed = second.get_job(job_id)
        second.close()
    assert resumed is not None and resumed.status is JobStatus.FAILED and resumed.attempts == 3
