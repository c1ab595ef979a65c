"""The hub service's probes: liveness (the event loop answers) and readiness (started, not
draining, its shared state reachable), at ``{prefix}health/live`` and ``{prefix}health/ready``,
without a token, as a kubelet or a load balancer asks."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from tornado import web
from tornado.http1connection import HTTP1Connection

from .handlers.base import ProxyContext

# A readiness probe asks the state backend at most once a second however often it is probed
# (one shared ping, its answer kept this long), and waits at most this long for it: below the
# probe's own timeout (deploy/kubernetes/deployment.yaml), so a hung Redis reads as "not ready"
HEALTH_CACHE_SECONDS = 1.0
HEALTH_PING_SECONDS = 1.5
# the probes' paths under the service's prefix: /services/rsql/health/live on a hub
HEALTH_LIVE = "health/live"
HEALTH_READY = "health/ready"


class Readiness:
    """Whether this process should be sent requests: its engine started, not draining, and its
    shared state (Redis) reachable, unless ``fail_open`` says to serve without it.

    The state backend is pinged by one task at a time and its answer kept for
    ``HEALTH_CACHE_SECONDS``, so a flood of probes costs at most one ping a second."""

    def __init__(self, ctx: ProxyContext) -> None:
        self.ctx = ctx
        # without Redis there is nothing shared to lose; with fail_open the admin chose to serve
        # without it, and every replica going unready at once would be an outage of its own
        self.check_state = bool(ctx.proxy.state_url) and not ctx.proxy.fail_open
        self._state_ok = False
        self._checked = -HEALTH_CACHE_SECONDS
        self._ping: asyncio.Task[bool] | None = None

    async def not_ready(self, draining: bool) -> str:
        """Why this process should get no requests now ("" when it should)."""
        if draining:
            return "draining"
        started = self.ctx.started
        if (
            started is None
            or not started.done()
            or started.cancelled()
            or started.exception() is not None
        ):
            return "starting"
        if self.check_state and not await self.state_reachable():
            return "state backend unreachable"
        return ""

    async def state_reachable(self) -> bool:
        if time.monotonic() - self._checked < HEALTH_CACHE_SECONDS:
            return self._state_ok
        if self._ping is None or self._ping.done():
            self._ping = asyncio.ensure_future(self._ask())
        return await asyncio.shield(self._ping)

    async def _ask(self) -> bool:
        try:
            ok = await asyncio.wait_for(self.ctx.engine.state_reachable(), HEALTH_PING_SECONDS)
        except Exception:  # a timeout, or an error the backend did not turn into False
            ok = False
        self._state_ok, self._checked = ok, time.monotonic()
        return ok


def finish_and_close(handler: web.RequestHandler, body: str | dict[str, Any]) -> None:
    """Send the answer, saying ``Connection: close``, and close its connection once it is sent.

    tornado decides whether a connection is kept alive when it reads a request's head: one read
    just before a drain began would otherwise be answered as kept alive, and wait for another."""
    handler.set_header("Connection", "close")
    sent = handler.finish(body)
    conn = handler.request.connection
    if isinstance(conn, HTTP1Connection):
        sent.add_done_callback(lambda _: conn.close())


class HealthHandler(web.RequestHandler):
    """A probe's answer: no token (the kubelet has none), a fixed JSON body, never cached."""

    rsql_quiet = True  # the access log skips probes: a failing one every few seconds is noise

    def answer(self, status: int, body: dict[str, str]) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        # the service's app says when it drains (draining.ServiceApp, which imports this module)
        if getattr(self.application, "draining", False):
            finish_and_close(self, json.dumps(body))
        else:
            self.finish(json.dumps(body))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.answer(status_code, {"status": "error"})  # a wrong method: no tornado HTML page

    def compute_etag(self) -> None:  # an answer of now, never a 304 for an old one
        return None

    def check_xsrf_cookie(self) -> None:
        return None


class LiveHandler(HealthHandler):
    """Liveness: the event loop runs this handler, so an answer means it is not stuck."""

    def get(self) -> None:
        self.answer(200, {"status": "ok"})


class ReadyHandler(HealthHandler):
    """Readiness: 503 while starting, draining, or without the shared state it needs."""

    async def get(self) -> None:
        health: Readiness = self.settings["rsql_health"]
        # the service's app says when it drains (draining.ServiceApp, which imports this module)
        reason = await health.not_ready(bool(getattr(self.application, "draining", False)))
        self.answer(
            503 if reason else 200,
            {"status": "not ready", "reason": reason} if reason else {"status": "ok"},
        )
