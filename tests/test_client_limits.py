"""Every answer has a size cap and a deadline; redirects, Retry-After and credentials are handled strictly."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import httpx
import pytest

from comfykit import ComfyUIClient
from comfykit.errors import ConfigError, ProtocolError, RequestTimeout, ServerError


def _endless() -> Iterator[bytes]:
    while True:
        yield b"x" * 65536


def _trickle() -> Iterator[bytes]:
    while True:
        time.sleep(0.01)  # the hostile server's pace, not a wait of the test's
        yield b" "


def _client(handler, **options) -> ComfyUIClient:
    return ComfyUIClient(url="http://comfy.test", transport=httpx.MockTransport(handler), **options)


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.interrupt_execution(),
        lambda c: c.delete_from_queue(["x"]),
        lambda c: c.clear_queue(),
        lambda c: c.delete_history(["x"]),
        lambda c: c.free_memory(unload_models=True),
    ],
    ids=["interrupt", "delete_from_queue", "clear_queue", "delete_history", "free_memory"],
)
def test_endless_answers_to_commands_are_cut_off(call) -> None:
    client = _client(lambda request: httpx.Response(200, content=_endless()))
    with pytest.raises(ProtocolError, match="too large"):
        call(client)


def test_a_trickling_answer_ends_at_the_deadline() -> None:
    client = _client(lambda request: httpx.Response(200, content=_trickle()), timeout=0.3)
    with pytest.raises(RequestTimeout, match=r"did not end within 0\.3 s"):
        client.interrupt_execution()


def test_ping_is_false_for_an_endless_system_stats() -> None:
    client = _client(lambda request: httpx.Response(200, content=_endless()))
    assert client.ping() is False


def test_get_image_has_a_cap_too() -> None:
    declared = {"Content-Length": str(10 * 1024**3)}
    client = _client(lambda request: httpx.Response(200, headers=declared, content=b"x"))
    with pytest.raises(ProtocolError, match="too large"):
        client.get_image("huge.png")


def test_json_that_would_explode_in_memory_is_refused() -> None:
    flood = b"[" + b",".join([b"{}"] * 1_100_000) + b"]"  # 3 MB on the wire, a million dicts parsed
    client = _client(lambda request: httpx.Response(200, content=flood))
    with pytest.raises(ProtocolError, match="objects and arrays"):
        client.get_queue()


def test_deeply_nested_json_is_a_protocol_error() -> None:
    deep = b"[" * 200_000 + b"]" * 200_000
    client = _client(lambda request: httpx.Response(200, content=deep))
    with pytest.raises(ProtocolError, match="nested too deeply"):
        client.get_history()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_an_error_not_a_saved_file(status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers={"Location": "http://elsewhere.test/view?x=1"}, content=b"<html>moved</html>")

    client = _client(handler, token="s3cret-token")
    with pytest.raises(ServerError, match="redirect") as caught:
        client.get_image("out.png")
    assert caught.value.status_code == status
    with pytest.raises(ServerError, match="redirect"), client.stream_view("out.png"):
        pass


@pytest.mark.parametrize("header", ["inf", "1e999", "nan", "-5"])
def test_a_retry_after_that_is_not_a_finite_delay_is_ignored(header: str) -> None:
    client = _client(lambda request: httpx.Response(503, headers={"Retry-After": header}, json={"error": "busy"}))
    with pytest.raises(ServerError) as caught:
        client.get_queue()
    assert caught.value.retry_after is None


def test_a_usable_retry_after_is_kept() -> None:
    client = _client(lambda request: httpx.Response(503, headers={"Retry-After": "4"}, json={"error": "busy"}))
    with pytest.raises(ServerError) as caught:
        client.get_queue()
    assert caught.value.retry_after == 4.0


def test_a_token_and_basic_auth_together_are_refused() -> None:
    with pytest.raises(ConfigError, match="both a bearer token and basic auth"):
        ComfyUIClient(url="http://comfy.test", token="tok", auth=("user", "pw"))


class _ApiKeyAuth(httpx.Auth):
    def auth_flow(self, request: httpx.Request):
        request.headers["X-Api-Key"] = "key-123"
        yield request


def test_the_websocket_gets_the_headers_any_auth_adds() -> None:
    client = _client(lambda request: httpx.Response(200, json={}), auth=_ApiKeyAuth())
    assert client.ws_headers()["X-Api-Key"] == "key-123"
    basic = _client(lambda request: httpx.Response(200, json={}), auth=("user", "pw"))
    assert basic.ws_headers()["Authorization"] == "Basic dXNlcjpwdw=="  # base64 of "user:pw"


def test_an_error_page_that_echoes_the_credentials_is_masked_everywhere() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        seen = "; ".join(f"{k}: {v}" for k, v in request.headers.items())
        return httpx.Response(401, json={"error": f"denied, you sent {seen}", "echo": dict(request.headers)})

    client = _client(echo, token="tok-s3cret-1", headers={"X-Team-Key": "team-s3cret-2"})
    with pytest.raises(ServerError) as caught:
        client.get_queue()
    shown = " ".join([str(caught.value), repr(caught.value), repr(caught.value.args), repr(caught.value.body)])
    assert "tok-s3cret-1" not in shown and "team-s3cret-2" not in shown
    assert "***" in shown


def test_a_password_in_the_url_becomes_basic_auth_and_never_shows() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(500, text=f"boom at {request.url}")

    client = ComfyUIClient(url="http://ann:p%40ss-w0rd@comfy.test:8188", transport=httpx.MockTransport(handler))
    assert client.base_url == "http://comfy.test:8188"
    assert "p@ss-w0rd" not in client.ws_url
    with pytest.raises(ServerError) as caught:
        client.get_queue()
    assert seen[0].headers["Authorization"] == "Basic " + base64.b64encode(b"ann:p@ss-w0rd").decode()
    assert "p@ss-w0rd" not in str(caught.value)
    assert client.ws_headers()["Authorization"] == seen[0].headers["Authorization"]


@pytest.mark.parametrize(
    ("url", "suggestion"),
    [("127.0.0.1:8188", "http://127.0.0.1:8188"), ("gpu1:8188", "http://gpu1:8188"),
     ("ws://gpu1:8188", "http://gpu1:8188"), ("http://", None)],
)
def test_a_url_without_an_http_scheme_is_a_clear_error(url: str, suggestion: str | None) -> None:
    with pytest.raises(ConfigError, match="needs an http:// or https:// scheme") as caught:
        ComfyUIClient(url=url)
    expected = f"Did you mean {suggestion!r}?" if suggestion else "Write it as http://HOST:PORT"
    assert expected in str(caught.value)


def test_a_url_with_a_bad_port_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="is not valid"):
        ComfyUIClient(url="http://gpu1:99999999")

