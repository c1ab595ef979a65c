"""``me`` and ``status`` answer one shape: over HTTP (the handlers) and from the in-process
engine (``%ask_status`` in a kernel with no proxy), which adds only its ``mode``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from tornado import httpclient, httpserver, netutil, web

from jupyter_server_ext import inprocess
from jupyter_server_ext.config.proxy import RSQLProxy
from jupyter_server_ext.engine import RateLimited
from jupyter_server_ext.engine.info_endpoints import error_reply
from jupyter_server_ext.handlers.base import ProxyContext
from jupyter_server_ext.routes import make_handlers
from jupyter_server_ext.service import ServiceBase
from jupyter_server_ext.wiring import build_engine

# nothing is sent upstream: me and status read the engine's own state
UPSTREAMS = [
    {
        "name": "u1",
        "base_url": "http://127.0.0.1:9/v1",
        "api_key": "sk-unused-0123456789",
        "models": ["fake-small"],
    }
]
TOKEN = "tok-alice"


def shape(value: Any, path: str = "") -> set[str]:
    """The key paths of nested dicts (``status.upstreams.healthy``); list items not entered."""
    if not isinstance(value, dict):
        return set()
    out = set()
    for key, sub in value.items():
        out.add(path + key)
        out |= shape(sub, f"{path}{key}.")
    return out


@pytest.fixture
async def http_get(tmp_path: Path) -> AsyncIterator[Any]:
    """GET a path of the service host, run in this test's event loop, as a static-token user."""
    proxy = RSQLProxy(upstreams=UPSTREAMS, default_model="fake-small", health_check_seconds=0.0)
    engine = build_engine(proxy, default_database=f"sqlite:///{tmp_path / 'usage.sqlite'}")
    host = SimpleNamespace(
        static_users={TOKEN: {"name": "alice", "groups": ["students"]}}, hub_auth=None
    )
    app = web.Application(
        make_handlers(ServiceBase, ""), rsql=ProxyContext(engine=engine, proxy=proxy), rsql_app=host
    )
    (sock,) = netutil.bind_sockets(0, "127.0.0.1")
    server = httpserver.HTTPServer(app)
    server.add_sockets([sock])
    base = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    client = httpclient.AsyncHTTPClient()

    async def get(path: str) -> dict[str, Any]:
        res = await client.fetch(base + path, headers={"Authorization": f"Bearer {TOKEN}"})
        return json.loads(res.body)

    async def post(path: str, body: Any) -> httpclient.HTTPResponse:
        return await client.fetch(
            base + path,
            method="POST",
            body=json.dumps(body),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            raise_error=False,
        )

    get.post = post  # type: ignore[attr-defined]  # the fixture's POST twin
    yield get
    server.stop()
    await engine.close()


@pytest.fixture
def in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    # the in-process engine's usage log goes under ~/.rsql
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("RSQL_UPSTREAMS", json.dumps(UPSTREAMS))
    monkeypatch.setenv("RSQL_MODEL", "fake-small")
    return inprocess


async def test_me_has_the_same_keys_in_process_and_over_http(
    http_get: Any, in_process: Any
) -> None:
    over_http = await http_get("me")
    local = in_process.me()
    assert local.pop("mode") == "in-process engine"
    assert shape(local) == shape(over_http)
    assert {"user", "groups", "admin", "limits", "concurrency", "budget", "context_policy"} <= set(
        local
    )


async def test_status_has_the_same_keys_in_process_and_over_http(
    http_get: Any, in_process: Any
) -> None:
    over_http = await http_get("status")
    local = in_process.status()
    assert local.pop("mode") == "in-process engine"
    assert shape(local) == shape(over_http)
    assert {"status", "upstreams", "models", "state", "database"} <= set(local)


async def test_the_in_process_engine_answers_an_error_as_the_endpoint_does(
    http_get: Any, in_process: Any
) -> None:
    bad = {"messages": "not a list"}
    answer = in_process.chat_completion(bad, client_kind="magic", no_cache=False)
    over_http = await http_get.post("v1/chat/completions", bad)
    assert answer.status == over_http.code == 400
    assert answer.headers["Content-Type"] == "application/json"
    assert over_http.headers["Content-Type"].startswith("application/json")
    local, remote = json.loads(answer.body)["error"], json.loads(over_http.body)["error"]
    assert local["code"] == remote["code"] == "invalid_request"
    assert local["message"] == remote["message"] and local["type"] == remote["type"], (
        local,
        remote,
    )


def test_error_reply_keeps_the_errors_headers() -> None:
    reply = error_reply(RateLimited("slow down", retry_after=2.5, limit="user 2/minute"))
    assert reply.status == 429 and reply.headers["Retry-After"] == "3"
    assert json.loads(reply.body)["error"]["retry_after"] == 3
