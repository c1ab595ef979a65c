"""The proxy's hub-service handlers in the test's own event loop on a loopback port, with
static tokens standing in for hub users and their groups and a wall clock the test moves: for
tests/unit/test_policy_http.py (memory state) and tests/e2e/test_policy_windows_redis.py (state
shared through Redis)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tornado import httpclient, httpserver, netutil, web

from jupyter_server_ext.config.proxy import RSQLProxy
from jupyter_server_ext.handlers.base import ProxyContext
from jupyter_server_ext.routes import make_handlers
from jupyter_server_ext.service import ServiceBase
from jupyter_server_ext.wiring import build_engine
from tests.helpers import upstreams_for
from tests.helpers.fake_provider import FakeProvider

USERS = {
    "tok-alice": {"name": "alice", "groups": ["students"]},
    "tok-bob": {"name": "bob", "groups": ["students", "tutors"]},
    "tok-carol": {"name": "carol", "groups": ["staff"]},
    "tok-dave": {"name": "dave", "groups": []},
    "tok-admin": {"name": "root", "groups": [], "admin": True},
}
T0 = 1_800_000_000.0  # a Friday, 2027-01-15 08:00 UTC


class Proxy:
    """The service host in this test's event loop, with a wall clock the test moves."""

    def __init__(self, engine: Any, base: str) -> None:
        self.engine = engine
        self.base = base
        self.now = T0
        engine.windows.clock = lambda: self.now
        self.client = httpclient.AsyncHTTPClient()

    async def send(
        self,
        method: str,
        path: str,
        token: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> httpclient.HTTPResponse:
        """The answer as it came: status, headers (any case), raw body (a stream's events)."""
        res = await self.client.fetch(
            self.base + path,
            method=method,
            raise_error=False,
            body=None if body is None else json.dumps(body),
            headers={"Authorization": f"Bearer {token}", **(headers or {})},
        )
        assert isinstance(res, httpclient.HTTPResponse)
        return res

    async def call(
        self,
        method: str,
        path: str,
        token: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        res = await self.send(method, path, token, body, headers)
        return res.code, json.loads(res.body) if res.body else {}

    async def ask(
        self, token: str, model: str | None = None, **headers: str
    ) -> tuple[int, dict[str, Any]]:
        body: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}
        if model:
            body["model"] = model
        return await self.call("POST", "v1/chat/completions", token, body, headers)

    async def step(self, seconds: float) -> None:
        """Move the clock, and let the windows be read again (as REFRESH_SECONDS would)."""
        self.now += seconds
        await self.engine.windows.refresh(force=True)


@asynccontextmanager
async def proxy_starter(
    tmp_path: Path, fresh_provider: FakeProvider
) -> AsyncIterator[Callable[..., Any]]:
    """`start(**config)` starts a Proxy in front of the fake provider; all stop afterwards."""
    made: list[tuple[Any, Any]] = []

    async def start(**config: Any) -> Proxy:
        config.setdefault("upstreams", upstreams_for(fresh_provider))
        config.setdefault("default_model", "fake-small")
        proxy = RSQLProxy(health_check_seconds=0.0, **config)
        engine = build_engine(proxy, default_database=f"sqlite:///{tmp_path / 'usage.sqlite'}")
        host = SimpleNamespace(static_users=USERS, hub_auth=None)
        app = web.Application(
            make_handlers(ServiceBase, ""),
            rsql=ProxyContext(engine=engine, proxy=proxy),
            rsql_app=host,
        )
        (sock,) = netutil.bind_sockets(0, "127.0.0.1")
        server = httpserver.HTTPServer(app)
        server.add_sockets([sock])
        made.append((server, engine))
        return Proxy(engine, f"http://127.0.0.1:{sock.getsockname()[1]}/")

    yield start
    for server, engine in made:
        server.stop()
        await engine.close()
