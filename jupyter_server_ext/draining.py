"""The service's drain on SIGTERM or SIGINT (``service.py`` calls :func:`drain`): it stops
accepting, lets answers in flight finish for ``c.RSQLProxy.shutdown_grace_seconds``, ends the rest
(a stream with an error event, a JSON answer not yet begun with a 503), and answers a request that
arrives meanwhile on a kept-alive connection with a 503 (:class:`ServiceApp`), the probes
excepted: they say so themselves (readiness 503 "draining", liveness still 200)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from tornado import httpserver, httputil, web

from .handlers.base import ProxyContext, shutting_down
from .probes import finish_and_close

__all__ = ["DRAIN_CLOSE_SECONDS", "DRAIN_CUT_SECONDS", "ServiceApp", "drain"]

log = logging.getLogger("rsql")

# after the grace: how long the answers cut by the shutdown get to release their leases and
# log their rows, then how long idle connections get to close. A pod's termination grace must
# cover the shutdown grace plus both (deploy/kubernetes/deployment.yaml)
DRAIN_CUT_SECONDS = 10.0
DRAIN_CLOSE_SECONDS = 5.0


class ServiceApp(web.Application):
    """The service's tornado app: while draining, every new request is answered 503, but the
    probes, which say so themselves (readiness 503 "draining", liveness still 200)."""

    draining = False
    health_paths: frozenset[str] = frozenset()

    def find_handler(self, request: httputil.HTTPServerRequest, **kwargs: Any) -> Any:
        if self.draining and request.path not in self.health_paths:
            return self.get_handler_delegate(request, DrainingHandler)
        return super().find_handler(request, **kwargs)


class DrainingHandler(web.RequestHandler):
    """A request that arrived (on a kept-alive connection) after shutdown began."""

    def prepare(self) -> None:
        err = shutting_down()
        self.set_status(err.status)
        for k, v in err.headers.items():
            self.set_header(k, v)
        self.set_header("Content-Type", "application/json")
        finish_and_close(self, err.to_json())

    def check_xsrf_cookie(self) -> None:
        return None


async def drain(
    server: httpserver.HTTPServer,
    app: ServiceApp,
    ctx: ProxyContext,
    grace: float,
    now: asyncio.Event,
) -> None:
    """Stop accepting, let answers in flight finish within `grace` seconds, end the rest."""
    server.stop()  # new connections are refused from here on
    server.conn_params.no_keep_alive = True  # requests arriving from now close their connection
    app.draining = True
    inflight = ctx.inflight
    inflight.draining = True
    n, t0 = len(inflight), time.monotonic()
    log.info("draining %d requests (grace %g s)", n, grace)
    if n:
        idle, cut = asyncio.ensure_future(inflight.idle.wait()), asyncio.ensure_future(now.wait())
        await asyncio.wait({idle, cut}, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
        idle.cancel()
        cut.cancel()
        left = inflight.cut()
        if left:
            # the cancelled answers release their leases and slots and log their rows; wait for it
            try:
                await asyncio.wait_for(inflight.idle.wait(), DRAIN_CUT_SECONDS)
            except asyncio.TimeoutError:
                log.warning(
                    "%d requests did not end within %g s of being cut",
                    len(inflight),
                    DRAIN_CUT_SECONDS,
                )
        log.info(
            "drained in %.1f s: %d finished, %d ended by the shutdown",
            time.monotonic() - t0,
            n - left,
            left,
        )
    try:  # idle kept-alive connections, the dashboard's live feeds
        await asyncio.wait_for(server.close_all_connections(), DRAIN_CLOSE_SECONDS)
    except asyncio.TimeoutError:
        log.warning("some connections did not close within %g s", DRAIN_CLOSE_SECONDS)
