"""A throw-away PostgreSQL cluster for the journal tests, started with the machine's own binaries.

``python tests/journal/pgcluster.py start [OWNER_PID]`` creates a cluster in a new temporary
folder, starts it on a free loopback port and prints the folder and the DSN; ``... stop FOLDER``
stops it and removes the folder; ``... available`` exits 0 when the binaries exist.  ``.ci/run``
uses these; the ``postgres_cluster`` fixture does the same for a plain ``pytest`` run, and
:func:`restart` crashes and restarts a cluster for the fault tests.  With an owner, a watchdog
(:func:`watch`) stops the cluster once the owner process has exited: a run killed by a signal
never gets to its ``stop``, and its cluster would run on.  PostgreSQL refuses to run as root, so
under root the server runs as ``nobody`` (``runuser``) and owns only its folder.
"""

from __future__ import annotations

import glob
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATABASE = "comfykit"
USER = "comfykit"


def find_binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: on PATH, else Debian's versioned folders (newest first)."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "nobody", "--", *command] if os.geteuid() == 0 else command


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(command: list[str], folder: Path) -> None:
    done = subprocess.run(_as_server_user(command), cwd=folder, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(command[0]).name} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")


def start(owner: int | None = None) -> tuple[Path, str]:
    """Create and start a cluster in a new folder; return it and a DSN (its password is ignored: trust auth).

    ``owner``: a process id; the cluster is stopped and its folder removed once that process exits.
    """
    binaries = find_binaries()
    if binaries is None:
        raise RuntimeError("no PostgreSQL binaries (initdb, pg_ctl) found on PATH or under /usr/lib/postgresql")
    # Under the system's temporary folder (which every user may enter): the server user must reach it.
    folder = Path(tempfile.mkdtemp(prefix="comfykit-pg-", dir="/tmp" if os.path.isdir("/tmp") else None))
    if os.geteuid() == 0:
        os.chown(folder, 65534, 65534)
    try:
        dsn = _start_in(folder, binaries)
        if owner is not None:
            watch(owner, folder)
        return folder, dsn
    except BaseException:
        stop(folder)
        raise


def watch(owner: int, folder: Path) -> subprocess.Popen[bytes]:
    """A process (in its own session: the owner's signals do not reach it) that stops the cluster once ``owner`` exits.

    It does nothing more when the cluster was stopped already.
    """
    return subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "watch", str(owner), str(folder)], start_new_session=True,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def _wait_for_exit(pid: int) -> None:
    try:
        handle = os.pidfd_open(pid)  # Linux 5.3+: readable once the process has exited
    except ProcessLookupError:
        return
    except (AttributeError, OSError):  # no pidfd here: look once a second
        while _alive(pid):
            time.sleep(1)
        return
    try:
        select.select([handle], [], [])
    finally:
        os.close(handle)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user
        return True
    return True


def _start_in(folder: Path, binaries: Path) -> str:
    data = folder / "data"
    _run([str(binaries / "initdb"), "-D", str(data), "-U", USER, "-A", "trust", "--no-sync", "-E", "UTF8"], folder)
    port = _free_port()
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    _run([str(binaries / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-o", options, "-w", "-t", "60",
          "start"], folder)
    _run([str(binaries / "createdb"), "-h", str(folder), "-p", str(port), "-U", USER, DATABASE], folder)
    return f"postgresql://{USER}:not-a-real-secret@127.0.0.1:{port}/{DATABASE}"


def restart(folder: Path) -> None:
    """Stop the cluster abruptly (as a crash would) and start it again on the same port."""
    binaries = find_binaries()
    assert binaries is not None
    _run([str(binaries / "pg_ctl"), "-D", str(folder / "data"), "-l", str(folder / "server.log"), "-m", "immediate",
          "-w", "-t", "60", "restart"], folder)


def stop(folder: Path) -> None:
    """Stop the cluster in ``folder`` (if it runs) and remove the folder."""
    binaries = find_binaries()
    if binaries is not None and (folder / "data" / "postmaster.pid").exists():
        subprocess.run(_as_server_user([str(binaries / "pg_ctl"), "-D", str(folder / "data"), "-m", "immediate", "-w",
                                        "stop"]), capture_output=True, cwd=folder, check=False)
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1] == "start":
        print(*start(int(sys.argv[2]) if len(sys.argv) > 2 else None))
    elif sys.argv[1] == "available":
        sys.exit(0 if find_binaries() is not None else 1)
    elif sys.argv[1] == "watch":
        _wait_for_exit(int(sys.argv[2]))
        stop(Path(sys.argv[3]))
    else:
        stop(Path(sys.argv[2]))
