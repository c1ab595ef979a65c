"""Host 2: ``rsql-proxy``, the proxy as a small tornado app, one JupyterHub service for all users.

Why not a Jupyter server: as a shared hub service it would also expose kernels, terminals and
files to every hub user, in the process holding the keys. This app serves only the proxy's
handlers (the same ones as the server extension) and authenticates callers with their
JupyterHub token: user name, groups, admin flag and scopes come from the hub.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import urllib.parse
from typing import Any

from tornado import httpserver, web
from traitlets import Dict, Integer, Unicode, default
from traitlets.config import Application

from .auth import hub_caller
from .config import RSQLProxy, build_engine
from .dashboard import hub_login
from .engine import Caller
from .engine.errors import ConfigError
from .handlers import ProxyContext
from .routes import make_handlers

log = logging.getLogger("rsql")


def _bearer(request: Any) -> str:
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() in ("token", "bearer") else ""


class ServiceBase(web.RequestHandler):
    """Authenticated by a JupyterHub API token (or a static token from the config)."""

    _rsql_model: dict[str, Any] | None = None
    _rsql_cookie = ""  # the OAuth token from a browser's login cookie, when that authenticated

    async def prepare(self) -> None:
        # resolve the token before the handler runs, without blocking the event loop:
        # HubAuth caches each answer, so the hub is asked once per token per few minutes
        app: RSQLProxyService = self.settings["rsql_app"]
        token = _bearer(self.request)
        if not token:
            # a browser logged in through the hub's OAuth (the admin dashboard)
            token = self._rsql_cookie = hub_login.cookie_token(self, app)
            if not token:
                return
            hub_login.check_csrf(self, token)
        static = app.static_users.get(token)
        if static is not None:
            self._rsql_model = static
            return
        hub = app.hub_auth
        if hub is None:
            return
        try:
            model = await hub.user_for_token(token, session_id=hub.get_session_id(self), sync=False)
        except Exception as exc:  # the hub is down or slow: say so, do not crash
            log.warning("asking the hub about a token failed: %s", type(exc).__name__)
            raise web.HTTPError(503, "cannot reach JupyterHub to check the token") from None
        if model and hub.access_scopes and not hub.check_scopes(hub.access_scopes, model):
            raise web.HTTPError(403, f"this token lacks the scope {sorted(hub.access_scopes)[0]!r}")
        if not model and self._rsql_cookie:  # the hub revoked or expired it: log in again
            hub_login.clear_cookie(self, app)
        self._rsql_model = model or None

    def rsql_csrf_token(self) -> str:
        return hub_login.csrf_token(self, self._rsql_cookie) if self._rsql_cookie else ""

    def rsql_browser_login(self) -> bool:
        return hub_login.login_redirect(self, self.settings["rsql_app"])

    def rsql_caller(self) -> Caller | None:
        model = self._rsql_model
        if not model:
            return None
        ctx: ProxyContext = self.settings["rsql"]
        return hub_caller(ctx.proxy, model)

    def check_xsrf_cookie(self) -> None:  # token-only API: no cookies, nothing to forge
        return None


class RSQLProxyService(Application):
    name = "rsql-proxy"
    description = "The rsql proxy as a standalone service (a JupyterHub managed service)."
    classes = [RSQLProxy]
    aliases = {
        "config": "RSQLProxyService.config_file",
        "ip": "RSQLProxyService.ip",
        "port": "RSQLProxyService.port",
        "base-url": "RSQLProxyService.base_url",
        "log-level": "Application.log_level",
    }

    config_file = Unicode("", help="A Python config file with c.RSQLProxy.* settings.").tag(config=True)
    ip = Unicode(help="Interface to listen on (default: from $JUPYTERHUB_SERVICE_URL, else 127.0.0.1).").tag(config=True)
    port = Integer(help="Port (default: from $JUPYTERHUB_SERVICE_URL, else 10101).").tag(config=True)
    base_url = Unicode(help="URL prefix (default: $JUPYTERHUB_SERVICE_PREFIX, else /).").tag(config=True)
    static_users = Dict(
        help="""Tokens accepted without a hub, each a user model:
        {"<token>": {"name": "alice", "groups": [], "admin": False}}. For use without JupyterHub
        (benchmarks, a plain server); prefer hub tokens.""",
    ).tag(config=True)

    @default("log_level")
    def _log_level(self) -> int:
        return logging.INFO

    @default("ip")
    def _ip(self) -> str:
        url = os.environ.get("JUPYTERHUB_SERVICE_URL")
        return urllib.parse.urlparse(url).hostname or "127.0.0.1" if url else "127.0.0.1"

    @default("port")
    def _port(self) -> int:
        url = os.environ.get("JUPYTERHUB_SERVICE_URL")
        return (urllib.parse.urlparse(url).port or 80) if url else 10101

    @default("base_url")
    def _base_url(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")

    hub_auth: Any = None

    def initialize(self, argv: list[str] | None = None) -> None:
        super().initialize(argv)
        if self.config_file:
            if not os.path.exists(self.config_file):
                raise ConfigError(f"--config {self.config_file}: no such file")
            self.load_config_file(self.config_file)
        logging.basicConfig(format="[%(levelname).1s %(asctime)s %(name)s] %(message)s", level=self.log_level)
        if os.environ.get("JUPYTERHUB_API_TOKEN"):
            self.hub_auth = hub_login.make_hub_auth()

    async def serve(self) -> None:
        proxy = RSQLProxy(parent=self)
        engine = build_engine(proxy, default_database="sqlite:///rsql_usage.sqlite", log=log)
        ctx = ProxyContext(engine=engine, proxy=proxy)
        prefix = "/" + self.base_url.strip("/") + "/" if self.base_url.strip("/") else "/"
        routes = make_handlers(ServiceBase, prefix.rstrip("/") or "")
        if hub_login.hub_oauth(self) is not None:  # the browser login's landing page
            routes.insert(0, (prefix + "oauth_callback", hub_login.callback_handler()))
        app = web.Application(
            routes, rsql=ctx, rsql_app=self, log_function=_access_log,
            cookie_secret=hub_login.cookie_secret(),
        )
        # every route but a 404 is ours and streams its body against max_body_bytes itself; this
        # bounds what tornado buffers for the rest (it answers a bare 400 past it)
        server = httpserver.HTTPServer(app, xheaders=True, max_body_size=proxy.max_body_bytes)
        server.listen(self.port, self.ip)
        await ctx.ready()
        log.info(
            "rsql-proxy listening on http://%s:%d%s (hub auth: %s; upstreams: %s)",
            self.ip, self.port, prefix, "on" if self.hub_auth else "off",
            ", ".join(s.name for s in engine.settings.upstreams),
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # the hub stops services with SIGINT
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("rsql-proxy stopping: finishing the usage log")
        server.stop()
        await engine.close()
        log.info("rsql-proxy stopped")

    def start(self) -> None:
        asyncio.run(self.serve())


def _access_log(handler: web.RequestHandler) -> None:
    # never the query string or headers: tokens may travel there
    status = handler.get_status()
    if status >= 400 or log.isEnabledFor(logging.DEBUG):
        log.log(
            logging.WARNING if status >= 500 else logging.INFO, "%d %s %s %.1f ms", status,
            handler.request.method, handler.request.path, 1000 * handler.request.request_time(),
        )


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["admin"]:  # `rsql-proxy admin ...`: a client of a running proxy, not the service
        from .admin_cli import main as admin_main

        raise SystemExit(admin_main(args[1:]))
    app = RSQLProxyService()
    try:
        app.initialize(argv)
        app.start()
    except ConfigError as exc:
        print(f"rsql-proxy: bad configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
