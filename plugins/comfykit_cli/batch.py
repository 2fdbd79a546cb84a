"""``comfykit batch``: many workflows (times a parameter sweep) on one server or a pool, through a QueueManager.

Ctrl-C cancels what is in flight on the servers, puts the cancelled jobs back
to pending in the journal, and exits 130, so ``--resume JOURNAL`` later runs
exactly the jobs that had not finished.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from comfykit_cli.commands import json_option, parse_assignment, server_option
from comfykit_cli.state import get_state

if TYPE_CHECKING:
    from comfykit.queue import QueueManager
    from comfykit.tracking import JobProgress

#: Files a directory given to ``batch`` contributes, in name order.
WORKFLOW_SUFFIXES = (".json", ".yaml", ".yml", ".png")


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


def apply_sweep_values(workflow: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``workflow`` with each sweep value set.

    ``NODE.INPUT`` (node by id, title or unique class) sets one input; a bare
    input name (``seed``) sets that input on every node that has it.
    """
    from comfykit.errors import WorkflowError
    from comfykit.workflow import apply_updates
    from comfykit.workflow.edit import Update

    updates: list[Update] = []
    for name, value in values.items():
        node, dot, input_name = name.rpartition(".")
        if dot and node:
            updates.append(Update(node=node.strip('"'), input=input_name, value=value))
            continue
        targets = [nid for nid, data in workflow.items() if name in (data.get("inputs") or {})]
        if not targets:
            raise WorkflowError(f"--sweep {name}: no node of this workflow has an input called {name!r}",
                                hint="Name the node too, e.g. --sweep 3.seed=1..10 or --sweep \"KSampler.cfg=5,7\".")
        updates.extend(Update(node=nid, input=name, value=value) for nid in targets)
    return apply_updates(workflow, updates)


def _running_progress(queue: QueueManager) -> dict[str, JobProgress]:
    """Where each running job is (node, sampler step), from the tracker of the client it runs on."""
    clients = {client.base_url: client for client in queue.clients}
    found: dict[str, JobProgress] = {}
    for job in queue.get_jobs_by_status("running"):
        client = clients.get(job.server or "")
        if client is not None and job.prompt_id is not None:
            found[job.job_id] = client.tracker.progress(job.prompt_id)
    return found


def _check_servers(queue: QueueManager) -> None:
    """Fail early (exit 3) when no server of the pool answers; warn about the ones that do not."""
    from comfykit.errors import TransportError

    errors: list[TransportError] = []
    for client in queue.clients:
        try:
            client.get_system_stats()
        except TransportError as exc:
            errors.append(exc)
            click.echo(f"warning: {exc.message}", err=True)
    if errors and len(errors) == len(queue.clients):
        raise errors[0]


def register(cli: click.Group) -> None:
    @cli.command()
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
    @click.option("--journal", type=click.Path(dir_okay=False), default=None,
                  help="SQLite journal that makes the batch resumable.")
    @click.option("--resume", type=click.Path(exists=True, dir_okay=False), default=None,
                  help="Continue the batch of this journal; finished jobs are not run again.")
    @click.option("--retry-failed", is_flag=True,
                  help="With --resume: run the journal's failed jobs again too (completed ones never).")
    @click.option("--output-dir", type=click.Path(file_okay=False), default=None,
                  help="Where outputs are downloaded (default: output.output_dir).")
    @click.option("--no-download", is_flag=True, help="Do not download outputs (nor write metadata sidecars).")
    @click.option("--vary-seeds", is_flag=True, help="Give every job fresh seeds, so identical jobs really run.")
    @server_option
    @json_option
    def batch(sources: tuple[str, ...], sweeps: tuple[str, ...], updates: tuple[str, ...], sets: tuple[str, ...],
              random_seeds: bool, inputs: tuple[str, ...],
              concurrency: int | None, timeout: float | None, retries: int | None, journal: str | None,
              resume: str | None, retry_failed: bool, output_dir: str | None, no_download: bool, vary_seeds: bool,
              servers: tuple[str, ...], as_json: bool) -> None:
        """Run workflows in bulk on one server or a pool (--server repeated), with progress.

        DIR|FILES are workflow files, or folders whose .json/.yaml/.png files are
        all run, or templates (*.template.yaml, or a name from
        workflow.templates_dir) whose parameters --set and --sweep name. Every
        workflow runs once per --sweep combination. Exit 1 when any
        job failed, 130 on Ctrl-C (in-flight jobs are cancelled; with a journal,
        `--resume JOURNAL` runs what is left).
        """
        from comfykit.queue import QueueManager
        from comfykit.workflow.sweep import expand_sweep
        from comfykit_cli.progress import emit_event, make_batch_reporter
        from comfykit_cli.templates import build_graph, load_target, split_sets

        state = get_state()
        as_json = state.json(as_json)
        if not sources and not resume:
            raise click.UsageError("give workflow files or folders, or --resume JOURNAL")
        if retry_failed and not (resume or journal):
            raise click.UsageError("--retry-failed applies to a journal: give --resume JOURNAL")
        if resume and journal and Path(resume).resolve() != Path(journal).resolve():
            raise click.UsageError("--journal and --resume name different files; give one of them")
        from comfykit.errors import WorkflowError

        try:
            combos = expand_sweep(list(sweeps))
        except WorkflowError as exc:
            raise click.BadParameter(str(exc), param_hint="--sweep") from None
        files = dict(parse_assignment(text, "--input") for text in inputs)
        node_sets, params = split_sets(sets)
        edits = [*updates, *node_sets]
        paths = workflow_files(sources)
        overrides: dict[str, Any] = {"output.output_dir": output_dir}
        base = state.config()
        if no_download:
            # Only the switches of sinks this run loaded: a disabled sink declares no key.
            switches = ("output.download_results", "output.save_metadata")
            overrides.update({key: False for key in switches if key in base.registry})
        config = base.with_overrides(overrides)
        pool = state.server_list(servers)
        queue = QueueManager(
            servers=pool or None, config=config, max_concurrent=concurrency, max_retries=retries,
            journal=resume or journal, timeout=timeout, vary_seeds=vary_seeds, plugin_manager=state.plugin_manager(),
            retry_failed=retry_failed,
        )
        try:
            _check_servers(queue)
            loader = queue.clients[0]
            rng = random.SystemRandom()
            for path in paths:
                target = load_target(path, loader)
                for values in combos:
                    graph = build_graph(target, params=params, updates=edits, point=values, random_seeds=random_seeds,
                                        rng=rng, source=path)
                    queue.add_job(graph, metadata={"source": str(path)}, params=values, inputs=files)
            total = len(queue.get_all_jobs())
            reporter = make_batch_reporter(total, as_json)
            for event in ("job_submitted", "job_started", "job_completed", "job_failed", "job_retrying",
                          "job_cancelled"):
                queue.on(event, lambda job, name=event: reporter.job_event(name, job))
            if as_json:
                emit_event("batch_started", total=total, servers=queue.servers, journal=resume or journal)
            try:
                queue.start()
                while not queue.wait_for_completion(0.25):
                    reporter.tick(queue.get_statistics(), _running_progress(queue) if reporter.mode == "rich" else None)
            except KeyboardInterrupt:
                reporter.mode = "quiet"  # the cancellations below are not news
                cancelled = queue.stop(wait=False, requeue=True)
                requeued = cancelled if queue.journal is not None else 0
                stats = queue.get_statistics()
                reporter.close(stats)
                where = resume or journal
                if as_json:
                    emit_event("interrupted", completed=stats["completed"], failed=stats["failed"],
                               requeued=requeued, journal=where)
                click.echo(f"Interrupted: in-flight jobs cancelled; {stats['completed']} completed, "
                           f"{stats['failed']} failed.", err=True)
                if where:
                    click.echo(f"Resume with: comfykit batch --resume {where}", err=True)
                raise click.exceptions.Exit(130) from None
            stats = queue.get_statistics()
            reporter.close(stats)
            jobs = queue.get_all_jobs()
        finally:
            queue.close()
        failed = [job for job in jobs if job.status.value == "failed"]
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
