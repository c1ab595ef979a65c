"""``{base_url}rsql/inline`` in a hub user's server, passed on to the hub service: who may send a
body there and how much of one the server reads are decided as the request arrives, before the
body (issue 53). A completion's body is a few kB; the server reads at most its 1 MiB bound (and a
little more to answer politely), never a body it will refuse.
"""

from __future__ import annotations

import json
import select
import socket
import time
import urllib.parse
from typing import Any

import pytest
from aiohttp import web

from tests.helpers import upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.loopback import LoopbackServer
from tests.helpers.servers import InProcessJupyter

HUB_TOKEN = "hub-token-of-the-server-0123456789"
BIG = 50 * 2**20  # what an attacker declares, or streams
ANSWER_WITHIN_S = 10.0  # the refusal comes at once; this only bounds a test that fails
SERVICE_REQUEST_ID = "7f3c2a9e4b1d4c6a8e0f2b3c4d5e6f70"


class RecordingService(LoopbackServer):
    """The hub service's ``inline``: answers at once and records what reached it."""

    thread_name = "recording-service"

    def __init__(self) -> None:
        self.bodies: list[int] = []  # the size of each body that reached the service

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/services/rsql/inline", self._inline)

    async def _inline(self, request: web.Request) -> web.StreamResponse:
        self.bodies.append(len(await request.read()))
        # the service's id of the answer, and a header of its own the editor has no use for
        headers = {"X-Request-Id": SERVICE_REQUEST_ID, "X-Rsql-Upstream": "a1"}
        return web.json_response({"text": "revenue"}, headers=headers)


@pytest.fixture
def service() -> Any:
    with RecordingService() as svc:
        yield svc


def alices_server(
    factory: Any, fp: FakeProvider, monkeypatch: pytest.MonkeyPatch, service: RecordingService
) -> InProcessJupyter:
    """alice's server on a hub (tok-alice is hers; tok-bob another hub user let in), whose
    kernels' proxy is the service, as configure_jupyterhub sets it."""
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    monkeypatch.setenv("RSQL_PROXY_URL", f"http://127.0.0.1:{service.port}/services/rsql/")
    monkeypatch.setenv("RSQL_PROXY_TOKEN", HUB_TOKEN)
    return factory(
        {"upstreams": upstreams_for(fp), "default_model": "fake-small"}, named_users=True
    )


def _head(server: InProcessJupyter, token: str, length: str, path: str = "inline") -> bytes:
    url = urllib.parse.urlsplit(server.proxy_url)
    framing = f"Content-Length: {length}" if length != "chunked" else "Transfer-Encoding: chunked"
    return (
        f"POST {url.path}{path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Authorization: token {token}\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()


def _answer(sock: socket.socket) -> tuple[int, bytes]:
    """The status and what came back (read until the server closes or the answer is whole)."""
    raw = b""
    deadline = time.monotonic() + ANSWER_WITHIN_S
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], deadline - time.monotonic())
        if not ready:
            break
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:
            break
        if not piece:
            break
        raw += piece
        head, _, body = raw.partition(b"\r\n\r\n")
        length = [h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")]
        if length and len(body) >= int(length[0].split(b":")[1]):
            break
    status = int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0
    return status, raw


def _answered(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def test_another_hub_user_is_refused_before_their_body_is_read(
    jupyter_app_factory: Any,
    fresh_provider: FakeProvider,
    service: RecordingService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """bob, let into alice's server, declares a 50 MiB body and sends none of it: the 403 comes
    at once, the server waiting for no byte of a body it would refuse."""
    server = alices_server(jupyter_app_factory, fresh_provider, monkeypatch, service)
    for token in ("tok-bob", "not-a-token"):
        with socket.create_connection(("127.0.0.1", urllib.parse.urlsplit(server.url).port)) as s:
            s.sendall(_head(server, token, str(BIG)))
            status, raw = _answer(s)
        assert status == 403, (token, raw[:300])
    assert service.bodies == [] and fresh_provider.received == []


def test_a_declared_body_over_the_bound_is_refused_before_it_is_read(
    jupyter_app_factory: Any,
    fresh_provider: FakeProvider,
    service: RecordingService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """alice's own editor (or anything holding her token) declares 50 MiB: 413 at once, naming
    the bound, with none of the body read."""
    server = alices_server(jupyter_app_factory, fresh_provider, monkeypatch, service)
    with socket.create_connection(("127.0.0.1", urllib.parse.urlsplit(server.url).port)) as s:
        s.sendall(_head(server, "tok-alice", str(BIG)))
        status, raw = _answer(s)
    assert status == 413, raw[:300]
    error = json.loads(raw.partition(b"\r\n\r\n")[2])["error"]
    assert error["code"] == "too_large" and str(2**20) in error["message"]
    assert service.bodies == []


def test_a_streamed_body_is_cut_off_as_it_passes_the_bound(
    jupyter_app_factory: Any,
    fresh_provider: FakeProvider,
    service: RecordingService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A chunked body declares no length: the server counts as it reads and answers 413 once the
    body is clearly over its bound, long before 50 MiB have been sent."""
    server = alices_server(jupyter_app_factory, fresh_provider, monkeypatch, service)
    chunk = b"x" * 2**16
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", urllib.parse.urlsplit(server.url).port)) as s:
        s.sendall(_head(server, "tok-alice", "chunked"))
        try:
            while sent < BIG and not _answered(s):
                s.sendall(framed)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: what the loop waits for
        status, raw = _answer(s)
    assert status == 413, raw[:300]
    # what the server read (4 MiB at most) plus what the sockets' buffers held
    assert sent < 20 * 2**20, sent
    assert service.bodies == []


def test_a_completion_within_the_bound_still_reaches_the_service(
    jupyter_app_factory: Any,
    fresh_provider: FakeProvider,
    service: RecordingService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Streamed in, counted and passed on whole: a body just under the bound, then one just over
    (read to its end, so the client sees the 413 rather than a reset)."""
    server = alices_server(jupyter_app_factory, fresh_provider, monkeypatch, service)
    body = json.dumps({"prefix": "sales." + " " * (2**20 - 100), "stream": False}).encode()
    assert len(body) <= 2**20
    status, _, raw = server.request("POST", "inline", body, token="tok-alice")
    assert status == 200 and json.loads(raw) == {"text": "revenue"}
    assert service.bodies == [len(body)]
    status, _, raw = server.request("POST", "inline", b"x" * (2**20 + 1), token="tok-alice")
    assert status == 413 and json.loads(raw)["error"]["code"] == "too_large"
    assert service.bodies == [len(body)]


def test_the_services_request_id_reaches_the_editor_for_its_provenance_mark(
    jupyter_app_factory: Any,
    fresh_provider: FakeProvider,
    service: RecordingService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The editor writes an accepted completion's X-Request-Id into the cell's mark, and
    ``rsql-provenance --check`` looks that id up in the usage log: the server passed the
    service's answer on without it, so on a hub every inline mark had no request and no check
    could tell it from a hand-made one. The id is the service's (the server makes none of its
    own for a relayed answer); what else the service sends stays behind."""
    server = alices_server(jupyter_app_factory, fresh_provider, monkeypatch, service)
    body = json.dumps({"prefix": "sales.", "stream": False}).encode()
    status, headers, raw = server.request("POST", "inline", body, token="tok-alice")
    assert status == 200 and json.loads(raw) == {"text": "revenue"}
    names = {k.lower(): v for k, v in headers.items()}
    assert names.get("x-request-id") == SERVICE_REQUEST_ID, headers
    assert "x-rsql-upstream" not in names


MODEL_APIS = (
    "v1/chat/completions",
    "v1/completions",
    "v1/embeddings",
    "v1/responses",
    "v1/messages",
)


def test_the_servers_own_apis_answer_no_model_request_on_a_hub(
    jupyter_app_factory: Any,
    fresh_provider: FakeProvider,
    service: RecordingService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A script or a tool pointed at alice's server itself, not at the hub service, would be
    answered by the server's own proxy: another model, outside the hub's limits, budget and
    windows (an exam's "no assistant"). No API of it answers: a 403 that names the service,
    given before the body is read; a caller with no valid token learns nothing of it."""
    server = alices_server(jupyter_app_factory, fresh_provider, monkeypatch, service)
    where = f"http://127.0.0.1:{service.port}/services/rsql/"
    ask = {
        "model": "fake-small",
        "messages": [{"role": "user", "content": "hi"}],
        "input": "hi",
        "prompt": "hi",
        "max_tokens": 5,
    }
    for path in MODEL_APIS:
        status, _, raw = server.request("POST", path, ask, token="tok-alice")
        assert status == 403, (path, raw[:300])
        error = json.loads(raw)["error"]
        assert where in error["message"], (path, error)
        if path != "v1/messages":  # Anthropic's shape has no code; OpenAI's does
            assert error["code"] == "use_the_hub_service", (path, error)
        status, _, raw = server.request("POST", path, ask, token="not-a-token")
        assert status in (401, 403) and where not in raw.decode(), (path, raw[:300])
    with socket.create_connection(("127.0.0.1", urllib.parse.urlsplit(server.url).port)) as s:
        # a body the proxy would take (1 MiB), none of it sent: the answer does not wait for it
        s.sendall(_head(server, "tok-alice", str(2**20), "v1/chat/completions"))
        status, raw = _answer(s)
    assert status == 403 and b"use_the_hub_service" in raw, raw[:300]
    assert fresh_provider.received == [] and service.bodies == []
    # the editor's own route still reaches the service
    status, _, raw = server.request("POST", "inline", {"prefix": "sales."}, token="tok-alice")
    assert status == 200 and json.loads(raw) == {"text": "revenue"}
