"""The client's own keep-alive HTTP path (comfykit._wire): when it is used, and what it does at the edges.

Each test runs a small HTTP server on 127.0.0.1 that answers exactly as scripted, so what
the client does with a kept-alive connection the server gave up, a body cut short, or a
proxy setting can be seen on a real socket.
"""

from __future__ import annotations

import base64
import socket
import threading
from collections.abc import Callable, Iterator
from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from comfykit import ComfyUIClient
from comfykit._wire import _query, usable
from comfykit.errors import ConfigError, ProtocolError, ServerUnreachable

Handler = Callable[[socket.socket, bytes], bool]  # (connection, request head) -> keep the connection open?


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(rest) < length:
        rest += conn.recv(65536)
    return head


@pytest.fixture
def scripted() -> Iterator[Callable[[Handler], tuple[str, list[bytes], list[int]]]]:
    """Start a server answering with ``handler``; yields (url, request heads seen, connections accepted)."""
    listener = socket.create_server(("127.0.0.1", 0))
    heads: list[bytes] = []
    accepted: list[int] = []
    stop = threading.Event()

    def serve(handler: Handler) -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(1)
            with conn:
                while True:
                    head = _read_request(conn)
                    if not head:
                        break
                    heads.append(head)
                    if not handler(conn, head):
                        break

    def start(handler: Handler) -> tuple[str, list[bytes], list[int]]:
        threading.Thread(target=serve, args=(handler,), daemon=True).start()
        return f"http://127.0.0.1:{listener.getsockname()[1]}", heads, accepted

    yield start
    stop.set()
    listener.close()


def _json_answer(conn: socket.socket, body: bytes = b'{"ok": true}') -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def test_requests_share_one_kept_alive_connection(scripted) -> None:
    def keep(conn: socket.socket, head: bytes) -> bool:
        _json_answer(conn)
        return True

    url, heads, accepted = scripted(keep)
    with ComfyUIClient(url=url) as client:
        for _ in range(5):
            assert client.get_system_stats() == {"ok": True}
    assert len(heads) == 5 and len(accepted) == 1


def test_a_connection_the_server_closed_while_idle_is_replaced_without_an_error(scripted) -> None:
    def answer_once(conn: socket.socket, head: bytes) -> bool:
        _json_answer(conn)  # announced as kept alive, then closed: what a server's idle timeout does
        return False

    url, heads, accepted = scripted(answer_once)
    with ComfyUIClient(url=url) as client:
        for _ in range(3):
            assert client.get_system_stats() == {"ok": True}
    assert len(heads) == 3 and len(accepted) == 3


def test_a_body_shorter_than_announced_is_a_protocol_error(scripted) -> None:
    def short(conn: socket.socket, head: bytes) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\":")
        return False

    url, _, _ = scripted(short)
    with ComfyUIClient(url=url) as client, pytest.raises(ProtocolError, match="broke off"):
        client.get_system_stats()


def test_a_server_that_closes_without_answering_is_unreachable(scripted) -> None:
    url, _, _ = scripted(lambda conn, head: False)
    with ComfyUIClient(url=url) as client, pytest.raises(ServerUnreachable):
        client.get_system_stats()


def test_headers_and_basic_auth_reach_the_server_on_the_wire(scripted) -> None:
    def keep(conn: socket.socket, head: bytes) -> bool:
        _json_answer(conn, b'{"prompt_id": "p1", "number": 1, "node_errors": {}}')
        return True

    url, heads, _ = scripted(keep)
    with ComfyUIClient(url=url, auth=("ann", "pw"), headers={"X-Team": "render"}) as client:
        client.post_prompt({"1": {"class_type": "X", "inputs": {}}}, prompt_id="p1")
    head = heads[0].decode("latin-1").lower()
    assert head.startswith("post /prompt http/1.1")
    assert "x-team: render" in head
    assert "authorization: basic " + base64.b64encode(b"ann:pw").decode().lower() in head
    assert "content-type: application/json" in head
    assert "accept-encoding: identity" in head  # the wire does not inflate: no compressed answers


def test_which_clients_use_the_wire(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY",
                 "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert usable("http://127.0.0.1:8188", transport=None, auth=None)
    assert usable("https://comfy.example", transport=None, auth=httpx.BasicAuth("a", "b"))
    assert not usable("http://127.0.0.1:8188", transport=httpx.MockTransport(lambda r: httpx.Response(200)), auth=None)
    assert not usable("http://127.0.0.1:8188", transport=None, auth=httpx.DigestAuth("a", "b"))
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    assert not usable("http://comfy.example:8188", transport=None, auth=None)  # httpx would use the proxy
    monkeypatch.setenv("NO_PROXY", "comfy.example")
    assert usable("http://comfy.example:8188", transport=None, auth=None)


def test_chunked_informational_and_close_delimited_answers_are_read_whole(scripted) -> None:
    answers = iter([
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\n{\"a\":\r\n3\r\n 1}\r\n0\r\nX-Trailer: t\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"b\": 2}",  # no length: ends at close
    ])

    def scripted_answer(conn: socket.socket, head: bytes) -> bool:
        answer = next(answers)
        conn.sendall(answer)
        return b"chunked" in answer  # the chunked one keeps the connection, the other ends it

    url, heads, accepted = scripted(scripted_answer)
    with ComfyUIClient(url=url) as client:
        assert client.get_system_stats() == {"a": 1}
        assert client.get_system_stats() == {"b": 2}
    assert len(heads) == 2 and len(accepted) == 1


def test_an_answer_that_is_not_http_is_a_protocol_error(scripted) -> None:
    def garbage(conn: socket.socket, head: bytes) -> bool:
        conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        return False

    url, _, _ = scripted(garbage)
    with ComfyUIClient(url=url) as client, pytest.raises(ServerUnreachable, match="not an HTTP"):
        client.get_system_stats()


def test_a_header_with_a_line_break_is_never_sent() -> None:
    with pytest.raises(ConfigError, match="X-Evil") as caught:
        ComfyUIClient(url="http://127.0.0.1:9", headers={"X-Evil": "a\r\nInjected: yes"})
    assert "Injected" not in str(caught.value)  # the value may be a secret


def test_a_base_path_is_sent_percent_encoded(scripted) -> None:
    def keep(conn: socket.socket, head: bytes) -> bool:
        _json_answer(conn)
        return True

    url, heads, _ = scripted(keep)
    with ComfyUIClient(url=url + "/my comfy/") as client:
        client.get_system_stats()
    assert heads[0].startswith(b"GET /my%20comfy/system_stats HTTP/1.1")


@given(st.dictionaries(st.text(max_size=8), st.one_of(st.text(max_size=12), st.integers(), st.booleans(), st.none()),
                       max_size=4))
def test_query_strings_are_written_as_urlencode_writes_them(params: dict[str, object]) -> None:
    def text(value: object) -> str:
        return str(value).lower() if isinstance(value, bool) else "" if value is None else str(value)

    assert _query(params) == urlencode([(key, text(value)) for key, value in params.items()], quote_via=quote)
