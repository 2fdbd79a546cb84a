"""The hook specifications: every seam where a plugin can change what comfykit does.

Hooks are grouped by phase, in the order a job meets them.  Each hook is
named ``comfykit_<verb>...``; call them with keyword arguments only (the
typed facade in :mod:`comfykit.plugins` does that for you).  Hooks marked
*firstresult* stop at the first implementation that returns something other
than ``None``; core defaults for those are registered ``trylast`` so any
plugin can take over.  Notification hooks return ``None``.

Plugins implement hooks with :data:`comfykit.hookimpl`::

    from comfykit import hookimpl

    @hookimpl
    def comfykit_job_completed(job, client):
        print("done:", job.job_id)

and are found through the ``comfykit`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from comfykit.config import Config, ConfigRegistry
    from comfykit.events import Event
    from comfykit.jobs import Job
    from comfykit.outputs import OutputFile, StoredOutput
    from comfykit.protocols import Client, EventSource, Queue
    from comfykit.workflow.problems import Problem

PROJECT_NAME = "comfykit"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# ---------------------------------------------------------------------------
# Configuration and session
# ---------------------------------------------------------------------------


@hookspec(historic=True)
def comfykit_add_config(registry: ConfigRegistry) -> None:
    """Declare the configuration keys a plugin reads, with defaults and help.

    Call ``registry.add(section, key, default, help=..., type=...)`` for each
    key.  Declared keys are accepted in config files, get a ``COMFYKIT_*``
    environment variable, can be set with ``comfykit -o KEY=VALUE``, and appear
    in ``comfykit config`` and ``comfykit config --describe`` (the generated
    configuration reference lists the bundled plugins' keys).  Called each time
    a session builds its registry; a declaration that fails unloads the plugin
    and is reported as its load failure.  Marked historic for compatibility.

    :param registry: the :class:`comfykit.config.ConfigRegistry` being built.
    :return: nothing.
    """


@hookspec
def comfykit_configure(config: Config) -> None:
    """Read the effective configuration once it is known.

    Called once per session (a client, a queue, a CLI run) after config files,
    environment variables and explicit arguments have been merged; in the CLI
    before any plugin's command runs.  A plugin stores what it needs from its
    own section here (the most recently configured session wins).

    :param config: the effective, read-only :class:`comfykit.config.Config`.
    :return: nothing.
    """


@hookspec
def comfykit_session_start(client: Client) -> None:
    """A client has been created and is about to talk to its server.

    Called once per client, before the first request.  Good for opening
    connections or files a plugin keeps for the client's lifetime.

    :param client: the :class:`comfykit.ComfyUIClient` starting.
    :return: nothing.
    """


@hookspec
def comfykit_session_finish(client: Client) -> None:
    """A client is closing: release what ``comfykit_session_start`` opened.

    Called once per client from ``client.close()``, also after errors.

    :param client: the :class:`comfykit.ComfyUIClient` closing.
    :return: nothing.
    """


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


@hookspec
def comfykit_register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``comfykit`` command.

    Use ``@cli.command()`` or ``cli.add_command(...)``.  A name that another
    plugin already registered keeps its first owner; the clash is logged and
    listed by ``comfykit plugins``.  A command's context object (``@click.pass_obj``)
    is the run's state: ``config()``, ``client()``, ``server()``, ``json()``.  Keep
    heavy imports inside the command function so ``comfykit --help`` stays fast.

    :param cli: the root :class:`click.Group`.
    :return: nothing.
    """


# ---------------------------------------------------------------------------
# Workflows: reading, conversion, validation
# ---------------------------------------------------------------------------


@hookspec(firstresult=True)
def comfykit_read_workflow(path: Path) -> Any | None:
    """Read a workflow file whose format comfykit does not know.

    Core reads JSON, YAML and ComfyUI PNG files itself (registered
    ``trylast``); a plugin can read other containers (a zip, a WebP with
    metadata...).  Stops at the first non-None result.

    :param path: the file to read.
    :return: the decoded data (usually a dict), or ``None`` if not this plugin's format.
    """


@hookspec(firstresult=True)
def comfykit_convert_workflow(
    data: Any, source: str | None, object_info: Mapping[str, Any] | None, frontend_version: str | None
) -> dict[str, Any] | None:
    """Turn loaded workflow data into an API-format graph ``{node_id: {class_type, inputs}}``.

    Core handles API format and ``{"prompt": ...}`` wrappers; the bundled
    ``convert`` plugin handles editor (UI-format) workflows.  A plugin can add
    another format.  Never mutate ``data``.  Stops at the first non-None result.

    :param data: what was read from the file (dict, list...).
    :param source: where it came from (a path or ``"<memory>"``), for error messages.
    :param object_info: the server's node catalogue, when one is available;
        UI-format conversion needs it.
    :param frontend_version: the editor version whose conversion rules apply (the
        server's ``required_frontend_version``), or ``None`` when unknown.
    :return: a new API-format graph, or ``None`` if not this plugin's format.
    :raise comfykit.errors.ConversionError: when the data is this plugin's
        format but cannot be converted.
    """


@hookspec
def comfykit_validate_workflow(
    workflow: Mapping[str, Any], object_info: Mapping[str, Any] | None
) -> Sequence[Problem] | None:
    """Check an API-format workflow and report problems.

    Every implementation runs; their problems are concatenated.  Core
    implements structural checks (offline) and schema checks against
    ``object_info`` (skipped when it is ``None``).  Never mutate ``workflow``.

    :param workflow: the API-format graph.
    :param object_info: the server's node catalogue, or ``None`` offline.
    :return: a list of :class:`comfykit.workflow.Problem` (empty or ``None`` when fine).
    """


# ---------------------------------------------------------------------------
# Submission
# ---------------------------------------------------------------------------


@hookspec
def comfykit_prepare_prompt(prompt: dict[str, Any], job: Job, client: Client) -> None:
    """Change a prompt just before it is posted, in place.

    Runs after templating, before validate-before-send, for every job a
    :class:`comfykit.QueueManager` submits (retries included) and for
    ``comfykit send``; a bare ``ComfyUIClient.queue_prompt`` posts exactly
    what it is given.  Mutate ``prompt`` (the API graph) and
    ``job.extra_data`` in place; the return value is ignored.

    :param prompt: the API graph about to be sent; mutate it in place.
    :param job: the :class:`comfykit.jobs.Job` being submitted.
    :param client: the client that will post it.
    :return: nothing.
    """


# ---------------------------------------------------------------------------
# Live events
# ---------------------------------------------------------------------------


@hookspec(firstresult=True)
def comfykit_event_source(client: Client) -> EventSource | None:
    """Provide the object that delivers the server's live events to ``client``.

    The bundled ``monitor`` plugin returns a WebSocket source; core's
    polling source is registered ``trylast`` and answers when no plugin
    does.  The source must call ``client.dispatch_event(event)`` for each
    event it receives.  Stops at the first non-None result.

    :param client: the client that needs events.
    :return: an :class:`comfykit.events.EventSource`, or ``None`` to let another plugin answer.
    """


@hookspec
def comfykit_handle_event(event: Event, client: Client) -> None:
    """See every live event a client receives, typed.

    Called from the event source's thread for every event, before
    ``client.on(...)`` callbacks.  Keep it quick: a slow implementation
    delays every event after it.

    :param event: one :class:`comfykit.events.Event` record (frozen).
    :param client: the client that received it.
    :return: nothing.
    """


# ---------------------------------------------------------------------------
# Job lifecycle
# ---------------------------------------------------------------------------


@hookspec
def comfykit_job_submitted(job: Job, client: Client) -> None:
    """A job was accepted by a server (``POST /prompt`` answered 200).

    Runs on the queue's submit thread that posted the job, after the journal
    recorded it.  Like every ``job_*`` hook, an implementation that raises is
    logged with its plugin's name and changes nothing about the job.

    :param job: the job; ``job.prompt_id`` and ``job.server`` are set.
    :param client: the client that posted it.
    :return: nothing.
    """


@hookspec
def comfykit_job_started(job: Job, client: Client) -> None:
    """The server began executing a job (``execution_start``).

    Runs on the event source's thread (the monitor's WebSocket reader, or the
    polling thread); on the submit thread when the start came before the POST
    answered; or on a finisher thread just before ``job_completed`` when the
    start was never seen (a socket gap, a job resumed from a journal).

    :param job: the job.
    :param client: the client that watches it.
    :return: nothing.
    """


@hookspec
def comfykit_job_completed(job: Job, client: Client) -> None:
    """A job finished successfully; its outputs are known (``job.outputs``).

    Called after the output sinks ran, so ``job.stored`` lists what they stored,
    and after the journal recorded the job as completed.  Runs on the queue's
    finisher thread that ran the sinks.

    :param job: the finished job.
    :param client: the client that ran it.
    :return: nothing.
    """


@hookspec
def comfykit_job_failed(job: Job, error: BaseException, client: Client | None) -> None:
    """A job failed for good (no retry left, or the retry hook said no).

    Runs on whichever queue thread saw the failure: a submit thread (the
    prompt was rejected), a finisher thread (the execution failed), or a
    supervisor thread (a timeout, or every server gone too long).

    :param job: the job; ``job.error`` holds a readable reason.
    :param error: the exception that ended it.
    :param client: the client that ran it, or ``None`` if it never reached a server.
    :return: nothing.
    """


@hookspec(firstresult=True)
def comfykit_should_retry(job: Job, error: BaseException, attempt: int) -> bool | None:
    """Decide whether a failed attempt is tried again.

    Core's default (``trylast``) retries transport errors, timeouts, 5xx
    answers, lost jobs and execution errors that look transient (out of
    memory, connection problems); never validation errors or interrupts.
    The retry limit (``max_retries``) is enforced on top of this answer.
    Stops at the first non-None result.

    :param job: the job.
    :param error: the exception of the failed attempt.
    :param attempt: how many attempts were made so far (1 after the first).
    :return: ``True`` to retry, ``False`` not to, ``None`` to let another plugin decide.
    """


@hookspec
def comfykit_job_retrying(job: Job, error: BaseException, delay: float) -> None:
    """A failed attempt will be retried after ``delay`` seconds.

    Runs on the queue thread that saw the failure (submit, finisher or supervisor).

    :param job: the job (``job.attempts`` counts the attempts made).
    :param error: why the attempt failed.
    :param delay: seconds until the next attempt.
    :return: nothing.
    """


@hookspec
def comfykit_job_cancelled(job: Job) -> None:
    """A job was cancelled (dropped before sending, deleted from a server queue, or interrupted).

    Runs on the thread that called :meth:`comfykit.QueueManager.cancel_job` (or ``stop``).

    :param job: the job.
    :return: nothing.
    """


@hookspec
def comfykit_queue_empty(queue: Queue) -> None:
    """A :class:`comfykit.QueueManager` has no job left waiting or in flight.

    Runs on the thread that ended the last job, after that job's own hook.

    :param queue: the queue manager.
    :return: nothing.
    """


# ---------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------


@hookspec
def comfykit_store_outputs(
    job: Job, outputs: Sequence[OutputFile], client: Client, durable: bool
) -> Sequence[StoredOutput] | None:
    """Store a finished job's outputs somewhere (disk, S3, a database, a webhook...).

    Every sink runs, each in isolation: one that raises is reported and the
    others still run.  ``job.stored`` grows as each sink returns, so a sink
    registered ``trylast`` (the bundled ``metadata`` sidecar) sees the records
    of the sinks that ran before it.  A sink that fails because the server went
    away (a comfykit transport error, a timeout, a 5xx) makes the queue wait
    for the server and run the sinks again; the job is not completed until
    they succeed.  Any other error fails the job with ``OutputsNotStored``
    (its prompt id kept, so a resume fetches the outputs again).  The bundled
    ``download`` and ``metadata`` plugins are sinks too.  Runs on the queue's
    finisher thread; an implementation may name only the arguments it uses.

    :param job: the finished job (prompt, metadata, timings).
    :param outputs: every output the server reported, as :class:`comfykit.outputs.OutputFile`.
    :param client: a client connected to the server that holds the files.
    :param durable: whether what the sink stores must survive a power loss once it returns (a
        batch with a journal, or ``output.fsync: true``): pass it on as the ``durable`` of
        :func:`comfykit.paths.atomic_file`, :func:`~comfykit.paths.atomic_write` and
        :func:`~comfykit.paths.finish_file`, or flush what is written another way.
    :return: a list of :class:`comfykit.outputs.StoredOutput`, one per thing stored, or ``None``.
    """
