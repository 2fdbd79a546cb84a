"""A resumed journal goes back to the servers its batch ran on, unless told otherwise."""

from __future__ import annotations

from pathlib import Path

from batching.workloads import unique_workflows
from comfykit import QueueManager
from comfykit.queue.journal import Journal
from comfykit.testing import ComfyUISimulator


def test_resume_without_servers_uses_the_journals_servers(new_sim: ComfyUISimulator, tmp_path: Path) -> None:
    journal = tmp_path / "run.sqlite"
    url = new_sim.url.replace("http://", "http://ann:pw-s3cret@")
    with QueueManager(servers=[url], journal=journal, store_outputs=False) as queue:
        queue.add_jobs_from_list(unique_workflows(3))  # journaled, not run
    recorded = Journal(journal)
    assert recorded.servers == [new_sim.url]  # without the credentials
    recorded.close()
    with QueueManager(journal=journal, store_outputs=False) as resumed:
        assert [client.base_url for client in resumed.clients] == [new_sim.url]
        stats = resumed.run(timeout=60)
    assert stats["completed"] == 3
    assert sum(new_sim.execution_counts.values()) >= 3


def test_servers_given_on_resume_win(new_sim: ComfyUISimulator, tmp_path: Path) -> None:
    journal = tmp_path / "run.sqlite"
    with QueueManager(servers=["http://127.0.0.1:9"], journal=journal, store_outputs=False) as queue:
        queue.add_jobs_from_list(unique_workflows(2, offset=50))
    with QueueManager(servers=[new_sim.url], journal=journal, store_outputs=False) as resumed:
        assert resumed.run(timeout=60)["completed"] == 2
    recorded = Journal(journal)
    assert recorded.servers == [new_sim.url]
    recorded.close()
