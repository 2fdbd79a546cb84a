"""What the CLI prints never carries a credential or a terminal escape sequence a server sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from comfykit_cli import main


class _EchoingFailure(BaseHTTPRequestHandler):
    """Answers every request with a 500 whose message repeats the request headers, plus escape sequences."""

    def do_GET(self) -> None:  # http.server names its handlers so
        headers = "; ".join(f"{k}: {v}" for k, v in self.headers.items())
        body = json.dumps({"error": f"\x1b[2J\x1b]0;owned\x07\x1b[31mboom\x1b[0m, you sent {headers}"}).encode()
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet


@pytest.fixture
def hostile_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoingFailure)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_error_page_with_escapes_and_echoed_credentials_is_shown_clean(
    hostile_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "comfykit.yaml"
    config.write_text("comfyui:\n  token: tok-s3cret-value\n  headers:\n    X-Team-Key: team-s3cret-value\n")
    code = main(["--config", str(config), "--server", hostile_url, "-vv", "queue"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "boom" in err
    for leaked in ("tok-s3cret-value", "team-s3cret-value", "\x1b", "\x07"):
        assert leaked not in out + err


def test_a_password_in_the_server_url_stays_out_of_logs_and_errors(
    hostile_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = hostile_url.replace("http://", "http://ann:url-pa55word@")
    code = main(["--server", url, "-vv", "queue"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "url-pa55word" not in out + err
    assert "127.0.0.1" in err


def test_a_numeric_filename_in_the_history_does_not_break_the_report(capsys: pytest.CaptureFixture[str]) -> None:
    import click

    from comfykit.jobs import Job
    from comfykit.outputs import discover_outputs
    from comfykit_cli.run import _report_completed

    history = {"outputs": {"9": {"images": [{"filename": 12345, "subfolder": "", "type": "output"},
                                            {"filename": "fine\x1b[31m.png", "subfolder": "", "type": "output"}]}}}
    job = Job(workflow={}, job_id="job_0")
    job.prompt_id, job.history = "p-1", history
    job.outputs = discover_outputs(history["outputs"])
    with click.Context(click.Command("send")).scope():
        _report_completed(job, "plain")
        _report_completed(job, "json")
    out = capsys.readouterr().out
    assert "completed p-1: fine.png" in out
    assert json.loads(out.splitlines()[-1])["images"] == [
        {"filename": "fine\x1b[31m.png", "subfolder": "", "type": "output", "node_id": "9"}]


def test_an_update_of_an_input_the_node_lacks_is_an_error_with_a_suggestion(comfyui_simulator, tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
             "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    flow = tmp_path / "flow.json"
    flow.write_text(json.dumps(graph))
    assert main(["--server", comfyui_simulator.url, "send", str(flow), "--update", "1.widht=16"]) == 1
    err = capsys.readouterr().err
    assert "node 1 (EmptyImage) has no input 'widht'" in err and "Did you mean 'width'?" in err
    assert comfyui_simulator.execution_counts == {}  # nothing was sent
    assert main(["--server", comfyui_simulator.url, "send", str(flow), "--update", "1.width=16"]) == 0
