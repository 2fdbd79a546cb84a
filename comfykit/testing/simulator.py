"""``ComfyUISimulator``: the simulated server running on its own event loop in a background thread.

Use it as a context manager in tests (``with ComfyUISimulator(port=0) as sim: sim.url``)
or block on ``serve()`` (what ``comfykit serve`` runs: it stops cleanly on Ctrl-C and on
SIGTERM, removing its temporary folder).
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from comfykit.testing.app import build_app
from comfykit.testing.catalog import DEFAULT_VERSION, SUPPORTED_VERSIONS
from comfykit.testing.files import SimFiles
from comfykit.testing.knobs import Knobs
from comfykit.testing.pauses import Pause
from comfykit.testing.server import SimServer
from comfykit.testing.startup import SimulatorError, port_in_use

__all__ = ["ComfyUISimulator", "serve"]


class ComfyUISimulator:
    """A ComfyUI-compatible server on loopback, posing as ComfyUI 0.3.64 or 0.33.0."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        comfyui_version: str = DEFAULT_VERSION,
        root: str | Path | None = None,
        knobs: Knobs | None = None,
        models: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        if comfyui_version not in SUPPORTED_VERSIONS:
            raise ValueError(f"comfyui_version must be one of {', '.join(SUPPORTED_VERSIONS)}, not {comfyui_version!r}")
        self.host = host
        self.port = port
        self.comfyui_version = comfyui_version
        self._own_root = root is None
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="comfykit-sim-"))
        self.knobs = knobs or Knobs()
        self.files = SimFiles(self.root)
        self.server = SimServer(
            version=comfyui_version,
            files=self.files,
            knobs=self.knobs,
            models={k: list(v) for k, v in models.items()} if models else None,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def execution_counts(self) -> dict[str, int]:
        """How many times each prompt_id was executed (proves that no work ran twice)."""
        with self.server.lock:
            return dict(self.server.execution_counts)

    def pause(self, *, node: str | None = None, step: int | None = None, prompt_id: str | None = None) -> Pause:
        """Hold the executor once it reaches ``node`` (any node when None), or that node's sampler ``step``.

        Ask before posting the job; ``wait()`` on the answer, act, then ``release()`` it (or use it
        as a context manager, which releases on exit). See :mod:`comfykit.testing.pauses`.
        """
        return self.server.executor.pauses.add(Pause(node=node, step=step, prompt_id=prompt_id))

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> ComfyUISimulator:
        self._thread = threading.Thread(target=self._run, name="comfykit-simulator", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        error = self._startup_error
        if error is not None:
            self.stop()
            clear = port_in_use(error, self.host, self.port)
            if clear is not None:
                raise clear from error
            raise SimulatorError(f"simulator failed to start: {error}") from error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self.server.loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._open())
        except BaseException as exc:
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        watcher = loop.create_task(self._watch_refusal())
        loop.run_forever()
        watcher.cancel()
        loop.run_until_complete(self._close())
        loop.close()

    async def _open(self) -> None:
        self._runner = web.AppRunner(
            build_app(self.server), access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        await self._listen()

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await self._site.start()
        listening = getattr(self._site._server, "sockets", None)
        if self.port == 0 and listening:
            self.port = int(listening[0].getsockname()[1])

    async def _watch_refusal(self) -> None:
        # Closing the listening socket makes new connections fail with "connection refused".
        refusing = False
        while True:
            await asyncio.sleep(0.02)
            if self.knobs.refuse_connections and not refusing and self._site is not None:
                await self._site.stop()
                refusing = True
            elif not self.knobs.refuse_connections and refusing:
                await self._listen()
                refusing = False

    async def _close(self) -> None:
        # Open WebSockets would hold the shutdown for its whole grace period: a dying server just drops them.
        with self.server.lock:
            sockets = list(self.server.all_sockets)
        for socket in sockets:
            await socket.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        self.server.shutdown()
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
        self.server.frame_log.close()  # after the loop's writers are gone
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def restart(self) -> None:
        """Act like the server process restarted: queue, history, caches and temp files are gone."""
        self.server.restart()

    def __enter__(self) -> ComfyUISimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8188,
    comfyui_version: str = DEFAULT_VERSION,
    root: str | Path | None = None,
    **knob_values: Any,
) -> None:
    """Run a simulator in the foreground until Ctrl-C or SIGTERM, then stop it and remove its temporary folder.

    Raises ``SimulatorError`` (with a hint) when the port is taken.
    """
    knobs = Knobs(**knob_values)
    simulator = ComfyUISimulator(host=host, port=port, comfyui_version=comfyui_version, root=root, knobs=knobs)
    stopping = threading.Event()
    # Before start(): a SIGTERM at any moment from here on stops the simulator through stop(), which cleans up.
    previous = _on_sigterm(lambda *_: stopping.set())
    try:
        simulator.start()
        try:
            print(f"comfykit simulator posing as ComfyUI {comfyui_version} at {simulator.url} "
                  f"(files in {simulator.root})", flush=True)
            stopping.wait()
        except KeyboardInterrupt:
            pass
        finally:
            simulator.stop()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _on_sigterm(handler: Any) -> Any:
    """Install ``handler`` for SIGTERM and return the previous one; None where that is impossible (not the main thread)."""
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # signal handlers can only be set from the main thread; Ctrl-C still works there
        return None
