"""``comfykit work`` and ``comfykit jobs``: coordinators that share one PostgreSQL batch, and a look at its state.

A producer adds jobs (``comfykit batch ... --journal postgresql://...?batch=NAME --enqueue-only``);
any number of ``comfykit work`` processes, on any hosts, claim and run them until the batch is
done (or, with ``--follow``, wait for more).  ``comfykit jobs`` shows the batch: counts per
status, per coordinator and per server, and the lease that runs out first.
"""

from __future__ import annotations

from typing import Any

import click

from comfykit_cli.options import emit, json_option, server_option
from comfykit_cli.state import get_state

__all__ = ["jobs", "work"]


def _shared_journal(journal: str) -> str:
    from comfykit.queue.journals import is_database_url

    if not is_database_url(journal):
        raise click.BadParameter("a shared batch lives in PostgreSQL: postgresql://user@host/db?batch=NAME",
                                 param_hint="--journal")
    return journal


journal_option = click.option("--journal", required=True, metavar="URL",
                              callback=lambda ctx, param, value: _shared_journal(value),
                              help="The shared batch: postgresql://user@host/db?batch=NAME.")


@click.command()
@journal_option
@click.option("--follow", is_flag=True, help="When the batch is done, wait for producers to add more (until Ctrl-C).")
@click.option("--concurrency", type=click.IntRange(min=1), default=None,
              help="Jobs in flight per server (default: batch.max_concurrent).")
@click.option("--retry-failed", is_flag=True, help="Run the batch's failed jobs again too (completed ones never).")
@click.option("--output-dir", type=click.Path(file_okay=False), default=None,
              help="Where this coordinator downloads what it finished (default: output.output_dir).")
@click.option("--no-download", is_flag=True, help="Do not download outputs (nor write metadata sidecars).")
@server_option
@json_option
def work(journal: str, follow: bool, concurrency: int | None, retry_failed: bool, output_dir: str | None,
         no_download: bool, servers: tuple[str, ...], as_json: bool) -> None:
    """Run the jobs of a shared batch with other coordinators until it is done.

    Without --server the batch's servers are used (every server its coordinators ran on).
    Jobs are claimed a few at a time under a lease (batch.lease_seconds) that a heartbeat
    renews; a coordinator that dies leaves its jobs to the others once its leases run out.
    Exit 1 when a job this coordinator ran failed, 130 on Ctrl-C (its claims go back at once).
    A batch the database does not hold is an error naming the batches it does, unless --follow:
    a follower may start before any producer, so it creates the batch and waits for jobs.
    """
    from comfykit import QueueManager
    from comfykit.queue.journals import open_journal
    from comfykit_cli.progress import BatchReporter, emit_event
    from comfykit_cli.run import JOB_EVENTS, check_servers, log_job_events, output_overrides

    if not follow:
        open_journal(journal, create=False).close()  # a mistyped batch name must not become an empty batch
    state = get_state()
    as_json = state.json(as_json)
    config = state.config().with_overrides(output_overrides(output_dir, no_download))
    queue = QueueManager(servers=state.server_list(servers) or None, config=config, max_concurrent=concurrency,
                         journal=journal, follow=follow, retry_failed=retry_failed, plugin_manager=state.plugin_manager())
    location = queue.journal.location if queue.journal is not None else journal
    try:
        check_servers(queue.clients)
        log_job_events(queue)
        if as_json:
            # Job events arrive on the queue's threads, which have no click context: the reporter holds the state.
            reporter = BatchReporter(0, "json")
            for event in JOB_EVENTS:
                queue.on(event, lambda job, name=event: reporter.job_event(name, job))
            emit_event("work_started", journal=location, servers=queue.servers)
        try:
            queue.start()
            while not queue.wait_for_completion(0.5):
                pass
        except KeyboardInterrupt:
            queue.stop(wait=False, requeue=True)
            click.echo(f"Interrupted: this coordinator's unfinished jobs go back to {location}.", err=True)
            raise click.exceptions.Exit(130) from None
        stats = queue.get_statistics()
    finally:
        queue.close()
    summary = {key: stats[key] for key in ("total", "completed", "failed", "cancelled", "retries", "elapsed")}
    if as_json:
        emit_event("summary", **summary, servers=stats["servers"])
    else:
        click.echo(f"this coordinator: {stats['completed']} completed, {stats['failed']} failed of {stats['total']} "
                   f"in {stats['elapsed']:.1f} s")
    if stats["failed"]:
        raise click.exceptions.Exit(1)


@click.command()
@journal_option
@json_option
def jobs(journal: str, as_json: bool) -> None:
    """Show a shared batch: jobs per status, per coordinator and per server, and the oldest lease.

    It only reads: a batch the database does not hold is an error naming the batches it does.
    """
    from comfykit.queue.journals import ClaimingJournal, open_journal

    opened = open_journal(journal, create=False)
    try:
        assert isinstance(opened, ClaimingJournal)
        summary = opened.summary()
    finally:
        opened.close()
    emit(summary, as_json, _describe(summary, opened.location))


def _describe(summary: dict[str, Any], location: str) -> str:
    def counts(by_status: dict[str, int]) -> str:
        return ", ".join(f"{count} {status}" for status, count in sorted(by_status.items())) or "none"

    lines = [f"batch {summary['batch']} ({location}): {summary['total']} job(s): {counts(summary['statuses'])}"]
    for title, key in (("coordinator", "coordinators"), ("server", "servers")):
        for name, by_status in sorted(summary[key].items()):
            lines.append(f"  {title} {name}: {counts(by_status)}")
    lease = summary["oldest_lease"]
    if lease is not None:
        lines.append(f"  oldest lease: job {lease['job_id']} held by {lease['coordinator']}, "
                     f"runs out in {lease['expires_in']:.1f} s")
    return "\n".join(lines)
