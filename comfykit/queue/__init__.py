"""``QueueManager``: run many workflows on one server or a pool, pipelined, retried without duplicates, resumable.

How a job moves: ``add_job`` records it (in the journal first, when there is one);
a free submit thread takes it for the least-loaded healthy server that has a free
slot in its in-flight window, chooses the prompt id, journals it, starts watching
it and posts it.  Completion arrives from the client's tracker
(live events, or polling, both reconciled against the server), and a finisher
thread fetches the history, runs the output sinks and records the result.

Never running a job twice where the server kept its history rests on two rules:
a prompt id is journaled before it is posted, and after any doubt (a lost
answer, a timeout, a dropped server, a killed process) the server is asked
about that prompt id before anything is resubmitted.  Only a server that lost
the job (it restarted) or a server gone for longer than ``batch.down_timeout``
leads to a second submission: delivery is at-least-once, never silently zero.

The parts: :mod:`~comfykit.queue.manager` (the public class, its state and its
lock), :mod:`~comfykit.queue.table` (adding and looking up jobs),
:mod:`~comfykit.queue.transitions` (the one place a job changes: move, journal,
hook, callbacks), :mod:`~comfykit.queue.callbacks` (the ``on()`` callbacks),
:mod:`~comfykit.queue.state` (one ``Attempt`` per prompt, one ``ServerState`` per server),
:mod:`~comfykit.queue.pool`, :mod:`~comfykit.queue.submit`,
:mod:`~comfykit.queue.finish` and :mod:`~comfykit.queue.schedule` (which decide
and answer with values), :mod:`~comfykit.queue.workers` (the threads' loops),
:mod:`~comfykit.queue.stats`, :mod:`~comfykit.queue.inputs` (local files uploaded
per server) and :mod:`~comfykit.queue.journal` (the durable record).
"""

from comfykit.queue.callbacks import QUEUE_EVENTS
from comfykit.queue.manager import QueueManager
from comfykit.queue.pool import ServerSpec

__all__ = ["QUEUE_EVENTS", "QueueManager", "ServerSpec"]
