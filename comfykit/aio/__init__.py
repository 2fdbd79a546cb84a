"""The asyncio API: :class:`AsyncComfyUIClient`, the :class:`AsyncJob` handles it returns, and :func:`run_queue`.

For services (a FastAPI or aiohttp backend, a chat bot) that wait on many jobs at once::

    async with AsyncComfyUIClient(url="http://127.0.0.1:8188") as client:
        job = await client.run(workflow, timeout=600)      # history, outputs, stored files
        handle = await client.submit(workflow)
        async for event in handle.events():                # typed events, as the sync API's
            ...
        await handle.cancel()                               # off the queue, or interrupted

What the server is asked and how its answers are checked comes from
:mod:`comfykit._http`, how a job is prepared and finished from :mod:`comfykit.queue`
(``submit.prepare``, ``finish.collect``/``store``), as for the sync client and the queue;
the config, plugins, errors, secret masking, caps and deadlines are the same.

Which code runs where (so that nothing blocks the event loop):

- on the loop: the HTTP requests of the endpoints, the WebSocket (one per client, shared by
  every job), the tracker folding each event into its job's state, timeouts and cancellation;
- on one event thread, in arrival order: every ``comfykit_handle_event`` hook, the ``on()``
  callbacks and the lifecycle hooks (``comfykit_job_submitted/started/completed/failed/cancelled``);
- in a worker thread: ``comfykit_session_start`` (before the first request) and
  ``comfykit_session_finish`` (in :meth:`AsyncComfyUIClient.aclose`);
- in ``asyncio.to_thread`` (the loop's default executor, a few threads however many jobs
  wait): each job's preparation (``comfykit_prepare_prompt``, input uploads,
  ``comfykit_validate_workflow``), the output sinks (``comfykit_store_outputs``: download,
  metadata) and the reconciliation with ``/queue`` and ``/history`` after a socket drop or while polling.

The package: :mod:`~comfykit.aio.client` (the client and its jobs), :mod:`~comfykit.aio.endpoints`
(the HTTP endpoints), :mod:`~comfykit.aio.handle` (a job's handle), :mod:`~comfykit.aio.waiting`
(the jobs a client waits for), :mod:`~comfykit.aio.finishing` (results and outputs),
:mod:`~comfykit.aio.outages` (waiting out a server's absence), :mod:`~comfykit.aio.event_socket`
(the WebSocket) and :mod:`~comfykit.aio.batch` (:func:`run_queue`).
"""

from __future__ import annotations

from comfykit.aio.batch import run_queue
from comfykit.aio.client import AsyncComfyUIClient
from comfykit.aio.event_socket import AsyncEventSocket, RedirectRefused
from comfykit.aio.handle import AsyncJob

__all__ = ["AsyncComfyUIClient", "AsyncEventSocket", "AsyncJob", "RedirectRefused", "run_queue"]
