"""The promises every batch journal keeps, checked on SQLite and on a real PostgreSQL alike."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from comfykit.errors import JournalError
from comfykit.jobs import Job, JobStatus
from comfykit.outputs import OutputFile
from comfykit.queue.journals import BatchJournal, ClaimingJournal, open_journal

WORKFLOW = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}}


def held(journal: BatchJournal) -> list[Job]:
    """The jobs this process may change: all of them, or, in a shared journal, the ones it claims."""
    return journal.claim(100) if isinstance(journal, ClaimingJournal) else list(journal.jobs())


def test_jobs_come_back_in_order_with_their_state(journal_target: str) -> None:
    journal = open_journal(journal_target)
    assert isinstance(journal, BatchJournal)
    for index in range(3):
        journal.add(Job(workflow=WORKFLOW, job_id=f"job_{index}", metadata={"i": index}, params={"seed": index}))
    journal.add(Job(workflow={"other": "graph"}, job_id="job_0"))  # an id already journaled is ignored
    done = next(job for job in held(journal) if job.job_id == "job_1")
    done.move(JobStatus.PENDING, prompt_id="p-1", server="http://127.0.0.1:1", attempts=1)
    done.move(JobStatus.QUEUED)
    done.move(JobStatus.RUNNING)
    done.outputs = [OutputFile(node_id="9", kind="images", filename="a.png")]
    done.move(JobStatus.COMPLETED, finished_at=12.5)
    journal.update(done)
    journal.close()

    reopened = open_journal(journal_target)
    jobs = list(reopened.jobs())
    assert [job.job_id for job in jobs] == ["job_0", "job_1", "job_2"]
    assert jobs[0].workflow == WORKFLOW and jobs[0].metadata == {"i": 0} and jobs[2].params == {"seed": 2}
    assert (jobs[1].status, jobs[1].prompt_id, jobs[1].attempts, jobs[1].finished_at) == (JobStatus.COMPLETED, "p-1", 1, 12.5)
    assert jobs[1].outputs == done.outputs
    assert len(reopened) == 3 and "job_2" in reopened and "job_9" not in reopened
    reopened.close()


def test_servers_are_remembered_without_credentials(journal_target: str) -> None:
    journal = open_journal(journal_target)
    assert journal.servers == []
    journal.remember_servers(["http://alice:hunter22@127.0.0.1:8188", "http://127.0.0.1:8189"])
    journal.close()
    reopened = open_journal(journal_target)
    assert reopened.servers == ["http://127.0.0.1:8188", "http://127.0.0.1:8189"]
    reopened.close()


def test_one_process_owns_a_journal_file_until_it_closes_it(tmp_path: Path) -> None:
    journal_target = str(tmp_path / "run.sqlite")
    first = open_journal(journal_target)
    with pytest.raises(JournalError, match="in use by pid") as refused:
        open_journal(journal_target)
    assert "hunter" not in str(refused.value) and "not-a-real-secret" not in str(refused.value)
    first.close()
    open_journal(journal_target).close()


def test_a_recorded_prompt_id_survives_the_process_being_killed(journal_target: str) -> None:
    """The write-ahead rule: once update() returns, a SIGKILL loses nothing, and leaves no owner behind."""
    child = textwrap.dedent(f"""
        import os, signal
        from comfykit.jobs import Job, JobStatus
        from comfykit.queue.journals import open_journal
        journal = open_journal({journal_target!r})
        journal.add(Job(workflow={WORKFLOW!r}, job_id="posted"))
        job = journal.claim(1)[0] if hasattr(journal, "claim") else next(journal.jobs())
        job.move(JobStatus.PENDING, prompt_id="prompt-before-post", server="http://127.0.0.1:1", attempts=1)
        journal.update(job)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    killed = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60, check=False)
    assert killed.returncode == -9, killed.stderr
    journal = open_journal(journal_target)
    [job] = list(journal.jobs())
    assert (job.prompt_id, job.attempts, job.server) == ("prompt-before-post", 1, "http://127.0.0.1:1")
    journal.close()


def test_a_look_at_a_journal_creates_nothing(journal_target: str) -> None:
    """``create=False`` (what ``comfykit jobs`` opens with): a missing journal is an error, and stays missing."""
    with pytest.raises(JournalError, match=r"no journal file|no batch"):
        open_journal(journal_target, create=False)
    assert not Path(journal_target).exists()
    journal = open_journal(journal_target)
    journal.add(Job(workflow=WORKFLOW, job_id="only"))
    journal.close()
    looked = open_journal(journal_target, create=False)
    try:
        assert [job.job_id for job in looked.jobs()] == ["only"]
    finally:
        looked.close()
