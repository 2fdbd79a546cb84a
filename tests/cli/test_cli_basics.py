"""The ``comfykit`` entry point: version, help, usage errors, and ``serve`` running the simulator."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx

from comfykit_cli import main


def _run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "comfykit", *args], capture_output=True, text=True, timeout=timeout)


def test_version_is_fast_and_does_not_import_httpx() -> None:
    code = "import sys; from comfykit.__main__ import main; main(['--version']); print('httpx' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.stdout.splitlines() == [f"comfykit, version {__import__('comfykit').__version__}", "False"]


def test_unknown_command_is_a_usage_error() -> None:
    result = _run("no-such-command")
    assert result.returncode == 2
    assert "No such command" in result.stderr


def test_main_returns_exit_codes_in_process(capsys: object) -> None:
    assert main(["--help"]) == 0
    assert main(["serve", "--port", "not-a-number"]) == 2


def test_serve_runs_the_simulator_with_knobs() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "comfykit", "serve", "--port", str(port), "--comfyui-version", "0.3.64", "--fail-next", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                first = httpx.get(f"http://127.0.0.1:{port}/system_stats", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, process.stderr.read() if process.poll() is not None else ""
                time.sleep(0.1)
        assert first.status_code == 500  # --fail-next 1
        stats = httpx.get(f"http://127.0.0.1:{port}/system_stats", timeout=2).json()
        assert stats["system"]["comfyui_version"] == "0.3.64"
    finally:
        process.terminate()
        process.wait(10)


def test_every_simulator_knob_is_a_serve_option() -> None:
    import attrs
    from click.testing import CliRunner

    from comfykit.testing import Knobs
    from comfykit_cli import build_cli

    text = CliRunner().invoke(build_cli(), ["serve", "--help"], terminal_width=200).output
    knobs = [field.name for field in attrs.fields(Knobs) if not field.name.startswith("_")]
    assert knobs and all("--" + name.replace("_", "-") in text for name in knobs)
