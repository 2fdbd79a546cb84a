"""``comfykit send`` and ``comfykit batch``: workflows run through a :class:`comfykit.QueueManager`.

``send --wait`` is a batch of one job: the same preparation, hooks, validation,
output sinks (download, metadata sidecar, any plugin's) and output folders as
``batch``.  ``send`` without ``--wait`` only queues the prompt and prints its id.

Ctrl-C cancels what is in flight on the servers.  In a batch it also puts the
cancelled jobs back to pending in the journal and exits 130, so ``--resume
JOURNAL`` later runs exactly the jobs that had not finished.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from comfykit_cli.options import emit, json_option, open_client, parse_assignment, server_option
from comfykit_cli.state import get_state
from comfykit_cli.targets import build_graph, load_target, split_sets

if TYPE_CHECKING:
    from comfykit import Job, QueueManager
    from comfykit.client import ComfyUIClient
    from comfykit.tracking import JobProgress

__all__ = ["WORKFLOW_SUFFIXES", "batch", "check_servers", "log_job_events", "output_overrides", "send", "workflow_files"]

log = logging.getLogger("comfykit.cli")

#: Files a directory given to ``batch`` contributes, in name order.
WORKFLOW_SUFFIXES = (".json", ".yaml", ".yml", ".png")

#: The queue events a run reports, in the order a job meets them.
JOB_EVENTS = ("job_submitted", "job_started", "job_completed", "job_failed", "job_retrying", "job_cancelled")

#: Exit codes of a failed job, by the type of its error (anything else: 1).
SERVER_TROUBLE = {"ServerUnreachable": 3, "RequestTimeout": 3}


def workflow_files(sources: Sequence[str]) -> list[Path]:
    """The workflow files named by ``sources``: files as given, directories expanded (not recursively).

    A source that is no file or folder is kept as given: it may be a template name.
    """
    files: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in WORKFLOW_SUFFIXES)
            if not found:
                raise click.BadParameter(f"{source} holds no workflow files ({', '.join(WORKFLOW_SUFFIXES)})",
                                         param_hint="DIR|FILES")
            files.extend(found)
        else:
            files.append(path)
    return files


def check_servers(clients: Sequence[ComfyUIClient]) -> None:
    """Fail early (exit 3) when no server answers; warn about the ones that do not."""
    from comfykit.errors import TransportError

    errors: list[TransportError] = []
    for client in clients:
        try:
            client.get_system_stats()
        except TransportError as exc:
            errors.append(exc)
            if len(clients) > 1:
                click.echo(f"warning: {exc.message}", err=True)
    if errors and len(errors) == len(clients):
        raise errors[0]


def log_job_events(queue: QueueManager) -> None:
    """Log each job's progress at INFO (``logging.level: INFO`` puts a run's story in ``logging.file``)."""

    def record(event: str, job: Job) -> None:
        detail = job.error if job.error and event in ("job_failed", "job_retrying") else ", ".join(
            stored.location for stored in job.stored)
        log.info("job %s %s (prompt %s on %s)%s", job.job_id, event.removeprefix("job_"), job.prompt_id, job.server,
                 f": {detail}" if detail else "")

    for event in JOB_EVENTS:
        queue.on(event, lambda job, name=event: record(name, job))


def _running_progress(queue: QueueManager) -> dict[str, JobProgress]:
    """Where each running job is (node, sampler step), from the tracker of the client it runs on."""
    clients = {client.base_url: client for client in queue.clients}
    found: dict[str, JobProgress] = {}
    for job in queue.get_jobs_by_status("running"):
        client = clients.get(job.server or "")
        if client is not None and job.prompt_id is not None:
            found[job.job_id] = client.tracker.progress(job.prompt_id)
    return found


def output_overrides(output_dir: str | None, no_download: bool) -> dict[str, Any]:
    """Config overrides for ``--output-dir`` and ``--no-download``."""
    overrides: dict[str, Any] = {"output.output_dir": output_dir} if output_dir else {}
    if no_download:
        # Only the switches of sinks this run loaded: a disabled sink declares no key.
        registry = get_state().config().registry
        overrides.update({key: False for key in ("output.download_results", "output.save_metadata") if key in registry})
    return overrides


# --------------------------------------------------------------------------- send


@click.command()
@click.argument("workflow", type=click.Path(dir_okay=False))
@click.option("--update", "updates", multiple=True, metavar="NODE.INPUT=VALUE",
              help='Change an input: 3.seed=42 or "Positive Prompt".text=a cat (repeatable).')
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
              help='A template parameter (prompt=a cat), or an input by node title or class: '
                   '"Positive Prompt.text=a cat" (repeatable).')
@click.option("--random-seeds", is_flag=True,
              help="Fresh random seeds for every seed not set explicitly (template seed parameters too).")
@click.option("--input", "inputs", multiple=True, metavar="INPUT=FILE",
              help="Upload a local file and use it: image=cat.png or 10.image=cat.png (repeatable).")
@click.option("--wait/--no-wait", default=False,
              help="Run the job as a batch of one: wait for it, then store its outputs through every output sink.")
@click.option("--timeout", type=float, default=None, help="Seconds the job may take with --wait before it fails.")
@click.option("--output-dir", type=click.Path(file_okay=False), default=None,
              help="Where outputs are downloaded (default: output.output_dir).")
@click.option("--no-download", is_flag=True, help="With --wait, do not download the outputs (nor write metadata).")
@server_option
@json_option
def send(workflow: str, updates: tuple[str, ...], sets: tuple[str, ...], random_seeds: bool, inputs: tuple[str, ...],
         wait: bool, timeout: float | None, output_dir: str | None, no_download: bool, servers: tuple[str, ...],
         as_json: bool) -> None:
    """Queue a workflow (API or editor format, or a template by name or path) on the server, and optionally wait.

    A template's parameters are given with --set NAME=VALUE; a NAME with a
    dot addresses a node input instead.

    With --wait, the job runs as a batch of one job (the same hooks and output
    sinks, and output folders named by job id); progress is shown while it runs
    (NDJSON events with --json); exit 1 when the job fails, 3 when it failed
    because the server could not be reached.
    """
    as_json = get_state().json(as_json)
    node_sets, params = split_sets(sets)
    files = dict(parse_assignment(text, "--input") for text in inputs)
    with open_client(servers, output_overrides(output_dir, no_download) or None) as client:
        graph = build_graph(load_target(workflow, client), params=params, updates=[*updates, *node_sets],
                            random_seeds=random_seeds, source=workflow, object_info=_catalogue_for_checks(client))
        if wait:
            _run_one(client, graph, files, source=workflow, timeout=timeout, as_json=as_json)
        else:
            _queue_only(client, graph, files, source=workflow, as_json=as_json)


def _catalogue_for_checks(client: ComfyUIClient) -> dict[str, Any] | None:
    """The server's node catalogue for checking --update targets (cached per client), unless validation is off."""
    from comfykit.errors import ComfyKitError

    if not client.config["workflow.validate_before_send"]:
        return None
    try:
        return client.get_object_info()
    except ComfyKitError as exc:
        log.warning("the node catalogue of %s could not be read (%s); --update targets are not checked",
                    client.base_url, exc)
        return None


def _queue_only(client: ComfyUIClient, graph: dict[str, Any], files: Mapping[str, str], *, source: str,
                as_json: bool) -> None:
    """Prepare (uploads, hooks), validate and post ``graph``; print the prompt id without waiting."""
    from comfykit import Job
    from comfykit.queue.inputs import UploadCache, apply_inputs
    from comfykit.workflow import validate_before_send

    if files:
        apply_inputs(graph, files, client, UploadCache())
    job = Job(workflow=graph, metadata={"source": source})
    client.plugin_manager.prepare_prompt(graph, job, client)
    validate_before_send(graph, client=client, path=source)
    answer = client.queue_prompt(graph, extra_data=job.extra_data or None)
    emit(answer, as_json, f"queued {answer['prompt_id']}")


def _run_one(client: ComfyUIClient, graph: dict[str, Any], files: Mapping[str, str], *, source: str,
             timeout: float | None, as_json: bool) -> None:
    """Run ``graph`` as a one-job queue on ``client``, showing its progress; exit non-zero when it fails."""
    from comfykit import JobStatus, QueueManager
    from comfykit_cli.progress import job_mode

    check_servers([client])
    mode = job_mode(as_json)
    # No retries: `send` runs a job once, as it always did; `batch --retries` is for retrying.
    queue = QueueManager(client, max_retries=0, timeout=timeout)
    try:
        job = queue.get_job(queue.add_job(graph, metadata={"source": source}, inputs=dict(files)))
        assert job is not None
        log_job_events(queue)
        _follow(queue, client, job, mode)
    finally:
        queue.close()
    if job.status is JobStatus.COMPLETED:
        _report_completed(job, mode)
        return
    _report_failed(job, mode)
    raise click.exceptions.Exit(SERVER_TROUBLE.get(job.error_type or "", 1))


def _follow(queue: QueueManager, client: ComfyUIClient, job: Job, mode: str) -> None:
    """Run the queue until ``job`` ended, drawing its progress; Ctrl-C cancels it on the server."""
    from comfykit import JobStatus
    from comfykit_cli.progress import JobView, emit_event

    view: JobView | None = None
    try:
        queue.start()
        while True:
            finished = queue.wait_for_completion(0.1)
            # Announced from this thread only, so "queued" always comes before the progress lines.
            if view is None and job.prompt_id is not None and job.status is not JobStatus.PENDING:
                if mode == "json":
                    emit_event("queued", prompt_id=job.prompt_id, job_id=job.job_id, server=job.server)
                else:
                    click.echo(f"queued {job.prompt_id}")
                view = JobView(job.prompt_id, mode)
            if finished:
                return
            if view is not None:
                view.update(client.tracker.progress(view.prompt_id))
    except KeyboardInterrupt:
        queue.stop(wait=False)
        if mode == "json":
            emit_event("cancelled", prompt_id=job.prompt_id)
        raise
    finally:
        if view is not None:
            view.close()


def _report_completed(job: Job, mode: str) -> None:
    from comfykit_cli.progress import emit_event, job_record

    # From the checked outputs, not the raw history: a server may report any JSON as a filename.
    images = [{"filename": o.filename, "subfolder": o.subfolder, "type": o.folder_type, "node_id": o.node_id}
              for o in job.outputs if o.kind == "images" and o.is_file]
    shown = get_state().shown
    for warning in job.warnings:
        click.echo(shown(f"warning: {warning}"), err=True)
    if mode == "json":
        emit_event("completed", **job_record(job), images=images)
        return
    click.echo(shown(f"completed {job.prompt_id}: " + (", ".join(str(i["filename"]) for i in images) or "no images")))
    for stored in job.stored:
        click.echo(shown(f"  {stored.location}"))


def _report_failed(job: Job, mode: str) -> None:
    from comfykit_cli.progress import emit_event, job_record

    if mode == "json":
        emit_event("failed", **job_record(job))
    click.echo(get_state().shown(f"Error: {job.error}"), err=True)


# --------------------------------------------------------------------------- batch


@click.command()
@click.argument("sources", nargs=-1, metavar="DIR|FILES|TEMPLATES...")
@click.option("--sweep", "sweeps", multiple=True, metavar="NAME=VALUES",
              help="Run every combination: seed=1..100, cfg=5,7, 3.steps=10..30..10; a NAME is a template "
                   "parameter, NODE.INPUT, or an input name set on every node having it (repeatable).")
@click.option("--update", "updates", multiple=True, metavar="NODE.INPUT=VALUE",
              help="Change an input in every workflow (repeatable).")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
              help='A template parameter (prompt=a cat), or a node input: "Positive Prompt.text=a cat" (repeatable).')
@click.option("--random-seeds", is_flag=True,
              help="Give each job its own random seeds when it is created (recorded in the journal, so a resumed "
                   "job keeps them); seeds set or swept explicitly win.")
@click.option("--input", "inputs", multiple=True, metavar="INPUT=FILE",
              help="Upload a local file to each server once and use it: image=cat.png (repeatable).")
@click.option("--concurrency", type=click.IntRange(min=1), default=None,
              help="Jobs in flight per server (default: batch.max_concurrent).")
@click.option("--timeout", type=float, default=None, help="Seconds one job may take before it fails.")
@click.option("--retries", type=click.IntRange(min=0), default=None,
              help="Retries per failed job (default: batch.max_retries).")
@click.option("--journal", default=None, metavar="FILE|URL",
              help="Journal that makes the batch resumable: an SQLite file, or postgresql://user@host/db?batch=NAME.")
@click.option("--resume", default=None, metavar="FILE|URL", callback=lambda ctx, param, value: _existing_journal(value),
              help="Continue the batch of this journal; finished jobs are not run again.")
@click.option("--retry-failed", is_flag=True,
              help="With --resume: run the journal's failed jobs again too (completed ones never).")
@click.option("--enqueue-only", is_flag=True,
              help="With a PostgreSQL --journal: add the jobs to the shared batch and return; `comfykit work` runs them.")
@click.option("--output-dir", type=click.Path(file_okay=False), default=None,
              help="Where outputs are downloaded (default: output.output_dir).")
@click.option("--no-download", is_flag=True, help="Do not download outputs (nor write metadata sidecars).")
@click.option("--vary-seeds", is_flag=True, help="Give every job fresh seeds, so identical jobs really run.")
@server_option
@json_option
def batch(sources: tuple[str, ...], sweeps: tuple[str, ...], updates: tuple[str, ...], sets: tuple[str, ...],
          random_seeds: bool, inputs: tuple[str, ...],
          concurrency: int | None, timeout: float | None, retries: int | None, journal: str | None,
          resume: str | None, retry_failed: bool, enqueue_only: bool, output_dir: str | None, no_download: bool,
          vary_seeds: bool, servers: tuple[str, ...], as_json: bool) -> None:
    """Run workflows in bulk on one server or a pool (--server repeated), with progress.

    DIR|FILES are workflow files, or folders whose .json/.yaml/.png files are
    all run, or templates (*.template.yaml, or a name from
    workflow.templates_dir) whose parameters --set and --sweep name. Every
    workflow runs once per --sweep combination. Exit 1 when any
    job failed, 130 on Ctrl-C (in-flight jobs are cancelled; with a journal,
    `--resume JOURNAL` runs what is left).
    """
    from comfykit import QueueManager

    state = get_state()
    as_json = state.json(as_json)
    _check_batch_options(sources, resume, journal, retry_failed, enqueue_only)
    combos = _sweep_points(sweeps)
    files = dict(parse_assignment(text, "--input") for text in inputs)
    node_sets, params = split_sets(sets)
    paths = workflow_files(sources)
    config = state.config().with_overrides({"output.output_dir": output_dir, **output_overrides(None, no_download)})
    queue = QueueManager(
        servers=state.server_list(servers) or None, config=config, max_concurrent=concurrency, max_retries=retries,
        journal=resume or journal, timeout=timeout, vary_seeds=vary_seeds, plugin_manager=state.plugin_manager(),
        retry_failed=retry_failed,
    )
    try:
        if not enqueue_only:
            check_servers(queue.clients)
        rng = random.SystemRandom()
        catalogue = _catalogue_for_checks(queue.clients[0]) if updates or node_sets else None
        for path in paths:
            target = load_target(path, queue.clients[0])
            for values in combos:
                graph = build_graph(target, params=params, updates=[*updates, *node_sets], point=values,
                                    random_seeds=random_seeds, rng=rng, source=path, object_info=catalogue)
                queue.add_job(graph, metadata={"source": str(path)}, params=values, inputs=files)
        if enqueue_only:
            _report_enqueued(queue, as_json)
            return
        stats = _run_batch(queue, as_json, queue.journal.location if queue.journal is not None else None)
        jobs = queue.get_all_jobs()
    finally:
        queue.close()
    _report_batch(stats, [job for job in jobs if job.status.value == "failed"], as_json)


def _existing_journal(value: str | None) -> str | None:
    """``--resume``'s value: a journal file must exist (a database batch is checked when it is opened)."""
    from comfykit.queue.journals import is_database_url

    if value is None or is_database_url(value):
        return value
    path = Path(value)
    if not path.exists():
        raise click.BadParameter(f"{value!r} does not exist", param_hint="--resume")
    if path.is_dir():
        raise click.BadParameter(f"{value!r} is a folder, not a journal file", param_hint="--resume")
    return value


def _same_journal(first: str, second: str) -> bool:
    from comfykit.queue.journals import is_database_url

    if is_database_url(first) or is_database_url(second):
        return first == second
    return Path(first).resolve() == Path(second).resolve()


def _report_enqueued(queue: QueueManager, as_json: bool) -> None:
    from comfykit.queue.journals import ClaimingJournal

    assert isinstance(queue.journal, ClaimingJournal)
    total, unfinished = len(queue.journal), queue.journal.unfinished()
    emit({"event": "enqueued", "journal": queue.journal.location, "total": total, "unfinished": unfinished}, as_json,
         f"{total} job(s) in {queue.journal.location}, {unfinished} not finished; run them with: comfykit work "
         f"--journal '{queue.journal.location}'")


def _check_batch_options(sources: Sequence[str], resume: str | None, journal: str | None, retry_failed: bool,
                         enqueue_only: bool = False) -> None:
    from comfykit.queue.journals import is_database_url

    if enqueue_only and not is_database_url(resume or journal or ""):
        raise click.UsageError("--enqueue-only adds jobs to a shared batch: give --journal postgresql://...?batch=NAME")
    if not sources and not resume:
        raise click.UsageError("give workflow files or folders, or --resume JOURNAL")
    if retry_failed and not (resume or journal):
        raise click.UsageError("--retry-failed applies to a journal: give --resume JOURNAL")
    if resume and journal and not _same_journal(resume, journal):
        raise click.UsageError("--journal and --resume name different journals; give one of them")


def _sweep_points(sweeps: Sequence[str]) -> list[dict[str, Any]]:
    from comfykit.errors import WorkflowError
    from comfykit.workflow.sweep import expand_sweep

    try:
        return list(expand_sweep(list(sweeps)))
    except WorkflowError as exc:
        raise click.BadParameter(str(exc), param_hint="--sweep") from None


def _run_batch(queue: QueueManager, as_json: bool, journal: str | None) -> dict[str, Any]:
    """Run every job with a progress display, exit 130 on Ctrl-C.

    With a journal, Ctrl-C posts nothing more and leaves the posted jobs on their servers, their
    prompt ids journaled: ``--resume`` asks about each and runs only what never ran.  Without
    one, the in-flight jobs are cancelled on the servers.
    """
    from comfykit.queue.journals import ClaimingJournal
    from comfykit_cli.progress import emit_event, make_batch_reporter

    # A shared batch's jobs are claimed as they run: count what is left of the whole batch.
    total = queue.journal.unfinished() if isinstance(queue.journal, ClaimingJournal) else len(queue.get_all_jobs())
    reporter = make_batch_reporter(total, as_json)
    for event in JOB_EVENTS:
        queue.on(event, lambda job, name=event: reporter.job_event(name, job))
    log_job_events(queue)
    if as_json:
        emit_event("batch_started", total=total, servers=queue.servers, journal=journal)
    try:
        queue.start()
        while not queue.wait_for_completion(0.25):
            reporter.tick(queue.get_statistics(), _running_progress(queue) if reporter.mode == "rich" else None)
    except KeyboardInterrupt:
        reporter.mode = "quiet"  # the cancellations below are not news
        left = queue.stop(wait=False, requeue=True)
        requeued = left if queue.journal is not None else 0
        stats = queue.get_statistics()
        reporter.close(stats)
        if as_json:
            emit_event("interrupted", completed=stats["completed"], failed=stats["failed"],
                       requeued=requeued, journal=journal)
        if queue.journal is not None:
            click.echo(f"Interrupted: {stats['completed']} completed, {stats['failed']} failed; {left} left for the "
                       "resume (jobs already on a server keep running there, and the resume collects them).", err=True)
        else:
            click.echo(f"Interrupted: in-flight jobs cancelled; {stats['completed']} completed, "
                       f"{stats['failed']} failed.", err=True)
        if journal:
            click.echo(f"Resume with: comfykit batch --resume {journal}", err=True)
        raise click.exceptions.Exit(130) from None
    stats = queue.get_statistics()
    reporter.close(stats)
    return stats


def _report_batch(stats: Mapping[str, Any], failed: Sequence[Job], as_json: bool) -> None:
    from comfykit_cli.progress import emit_event

    summary = {key: stats[key] for key in ("total", "completed", "failed", "cancelled", "retries", "elapsed",
                                           "throughput", "mean_duration")}
    if as_json:
        emit_event("summary", **summary, servers=stats["servers"])
    else:
        click.echo(f"{stats['completed']} completed, {stats['failed']} failed, {stats['cancelled']} cancelled "
                   f"of {stats['total']} in {stats['elapsed']:.1f} s")
        for job in failed:
            click.echo(f"  failed {job.job_id} ({job.metadata.get('source')}): {job.error}")
    if failed:
        if not as_json:
            click.echo(f"{len(failed)} job(s) failed.", err=True)
        raise click.exceptions.Exit(1)
