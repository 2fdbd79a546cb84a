"""Starting the simulator fails politely: a taken port and a missing ``[simulator]`` extra are clear errors, and
``comfykit serve`` cleans up after itself when it is told to stop (SIGTERM)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from comfykit.errors import ComfyKitError
from comfykit.testing import ComfyUISimulator

#: run first in a child interpreter: aiohttp and Pillow cannot be imported there, as without the extra
WITHOUT_EXTRA = "import sys; sys.modules['aiohttp'] = None; sys.modules['PIL'] = None; "
HINT = "pip install 'comfykit[simulator]'"


def _python(code: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 that something else is listening on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


def test_a_taken_port_is_a_clear_error_naming_it(taken_port: int, tmp_path: Path) -> None:
    simulator = ComfyUISimulator(port=taken_port, root=tmp_path)
    with pytest.raises(ComfyKitError) as caught:
        simulator.start()
    text = str(caught.value)
    assert f"127.0.0.1:{taken_port}" in text and "already in use" in text
    assert "--port 0" in text and caught.value.hint
    assert isinstance(caught.value, RuntimeError)  # what start() raised before, for callers that caught that


def test_comfykit_serve_on_a_taken_port_says_so_without_a_traceback(taken_port: int) -> None:
    result = subprocess.run([sys.executable, "-m", "comfykit", "serve", "--port", str(taken_port)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert f"127.0.0.1:{taken_port}" in result.stderr and "already in use" in result.stderr
    assert "--port 0" in result.stderr
    assert "Traceback" not in result.stderr


def test_comfykit_serve_without_the_extra_says_what_to_install() -> None:
    result = _python(WITHOUT_EXTRA + "from comfykit.__main__ import main; sys.exit(main(['serve', '--port', '0']))")
    assert result.returncode == 1, result.stderr
    assert HINT in result.stderr and "aiohttp and Pillow" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_simulator_without_the_extra_is_a_clear_error_and_knobs_still_import() -> None:
    code = WITHOUT_EXTRA + textwrap.dedent("""
        from comfykit.errors import ComfyKitError
        from comfykit.testing import Knobs
        Knobs(fail_next=1)
        try:
            from comfykit.testing import ComfyUISimulator
        except ComfyKitError as exc:
            print(exc)
        """)
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert HINT in result.stdout


def test_pytest_runs_without_the_extra_and_the_fixture_says_what_to_install(tmp_path: Path) -> None:
    """The ``pytest11`` plugin loads in every environment with comfykit; only the fixture needs the extra."""
    (tmp_path / "test_user.py").write_text(textwrap.dedent("""
        def test_plain():
            assert True

        def test_with_simulator(comfyui_simulator):
            pass
        """))
    code = WITHOUT_EXTRA + "import pytest; sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', 'test_user.py']))"
    result = _python(code, cwd=tmp_path)
    assert "1 passed, 1 error" in result.stdout, result.stdout + result.stderr
    assert HINT in result.stdout


def test_serve_removes_its_temporary_folder_on_sigterm() -> None:
    process = subprocess.Popen([sys.executable, "-m", "comfykit", "serve", "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()  # printed once the simulator listens and its SIGTERM handler is set
        match = re.search(r"\(files in (.+)\)$", banner.strip())
        assert match, banner + (process.stderr.read() if process.stderr else "")
        root = Path(match.group(1))
        assert root.is_dir()
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert not root.exists()
