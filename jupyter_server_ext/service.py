"""Host 2: ``rsql-proxy``, the proxy as a small tornado app, one JupyterHub service for all users.

Why not a Jupyter server: as a shared hub service it would also expose kernels, terminals and
files to every hub user, in the process holding the keys. This app serves only the proxy's
handlers (the same ones as the server extension) and authenticates callers with their
JupyterHub token: user name, groups, admin flag and scopes come from the hub.

``--workers N`` runs N processes on one port (``workers.py``). On SIGTERM or SIGINT each process
drains (``draining.py``: stops accepting, lets answers in flight finish for
``c.RSQLProxy.shutdown_grace_seconds``, ends the rest), flushes the usage log and exits 0; a
second signal ends the wait at once.

``{base_url}health/live`` and ``{base_url}health/ready`` answer an orchestrator's probes (the
kubelet holds no token): unauthenticated, a fixed small body, no user, key or upstream named.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys
import time
import urllib.parse
from argparse import ArgumentError
from typing import Any, cast

from tornado import httpserver, web
from traitlets import Bool, Dict, Integer, TraitError, Unicode, default
from traitlets.config import Application

from .auth import hub_caller
from .config.check import (
    SHORT_TOKEN,
    command_line_problem,
    proxy_problems,
    read_configuration,
    refuse,
    say_problems,
    short_tokens,
    static_user_problems,
    unshared_key_warning,
)
from .config.proxy import RSQLProxy
from .config.secrets import Scrubber, scrub_logs
from .dashboard import hub_login
from .draining import ServiceApp, drain
from .engine import Caller, ConfigError
from .engine.errors import CannotListen
from .handlers.base import ProxyContext
from .mcp import build_mcp
from .probes import HEALTH_LIVE, HEALTH_READY, LiveHandler, Readiness, ReadyHandler
from .routes import make_handlers
from .wiring import build_engine, pseudonym_key_file, reach_problems
from .workers import CONFIG_ERROR, Supervisor, bind_reuseport, check_port, listen

log = logging.getLogger("rsql")
# the usage log, and beside it the pseudonym key, in the service's working folder by default
DEFAULT_DATABASE = "sqlite:///rsql_usage.sqlite"
# a check's second run (the engine's after start-up's, --check-config's summary) logs nothing
_SAID = logging.getLogger("rsql.config-check")
_SAID.disabled = True

# objects made (less those freed) between two collections of the youngest generation
YOUNG_THRESHOLD = 10_000


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
    description = """The rsql proxy as a standalone service (a JupyterHub managed service).
    Other commands: `rsql-proxy --check-config --config FILE` checks a configuration and
    exits (0: it starts as written; 2: a line for each problem); `rsql-proxy admin ...` is
    the admin CLI, a client of a running proxy (`rsql-proxy admin --help`)."""
    examples = """
    rsql-proxy --config rsql_config.py               # serve (on a hub: configure_jupyterhub)
    rsql-proxy --check-config --config rsql_config.py
    rsql-proxy admin status                          # ask a running proxy
    """
    classes = [RSQLProxy]
    flags = {
        "check-config": (
            {"RSQLProxyService": {"check_config": True}},
            "Check the configuration (upstreams, models, limits, policies) and exit.",
        ),
    }
    aliases = {
        "config": "RSQLProxyService.config_file",
        "ip": "RSQLProxyService.ip",
        "port": "RSQLProxyService.port",
        "base-url": "RSQLProxyService.base_url",
        "log-level": "Application.log_level",
        "workers": "RSQLProxyService.workers",
    }

    config_file = Unicode("", help="A Python config file with c.RSQLProxy.* settings.").tag(
        config=True
    )
    ip = Unicode(
        help="Interface to listen on (default: from $JUPYTERHUB_SERVICE_URL, else 127.0.0.1)."
    ).tag(config=True)
    port = Integer(help="Port (default: from $JUPYTERHUB_SERVICE_URL, else 10101).").tag(
        config=True
    )
    base_url = Unicode(help="URL prefix (default: $JUPYTERHUB_SERVICE_PREFIX, else /).").tag(
        config=True
    )
    static_users = Dict(
        help="""Tokens accepted without a hub, each a user model:
        {"<token>": {"name": "alice", "groups": ["students"], "admin": False}} ("kind":
        "service" makes it the hub service of that name; "scopes", as a hub token carries).
        Checked as every setting: a name without '/', groups a list, admin True or False, no
        other field; a token shorter than 16 characters is warned of. For use without
        JupyterHub (benchmarks, a plain server); prefer hub tokens.""",
    ).tag(config=True)

    hub_cache_seconds = Integer(
        60,
        help="""How long the service trusts the hub's answer about a token (its user, groups and
        admin flag): a user added to or removed from a group gets that group's models and windows,
        and a revoked token is refused, within this many seconds. Each token costs one hub API call
        per period.""",
    ).tag(config=True)

    check_config = Bool(
        False,
        help="""Check the configuration and exit instead of serving: 0 and a summary when it
        would start as written (the provider keys' environment variables included), else 2 and
        one line for each problem, naming the setting (start-up refuses the same ones). Nothing
        is listened on; the Redis of state_url and a PostgreSQL database_url are each asked
        once whether they answer (3 s, nothing written), and said when they do not.""",
    ).tag(config=True)

    workers = Integer(
        1,
        help="""Processes serving the port, one per core to use (the kernel spreads connections over
        them, SO_REUSEPORT). More than 1 needs c.RSQLProxy.state_url (Redis): limits, leases and
        budgets are then shared; in memory each worker would enforce its own.""",
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
        try:
            return (urllib.parse.urlparse(url).port or 80) if url else 10101
        except ValueError:  # a port that is no number: said as --port's would be
            raise ConfigError(
                f"$JUPYTERHUB_SERVICE_URL {self.scrub(url or '')!r}: its port is not a number "
                "from 0 to 65535; fix the service's url in jupyterhub_config.py"
            ) from None

    def port_hint(self) -> str:
        """What to do about a port that cannot be had, by where it was chosen ("": --port)."""
        url = os.environ.get("JUPYTERHUB_SERVICE_URL")
        if "port" in self.config.get("RSQLProxyService", {}) or not url:
            return ""
        return (
            f"the port is the one of $JUPYTERHUB_SERVICE_URL ({self.scrub(url)}), the url the hub "
            "gives its service: change it in jupyterhub_config.py (configure_jupyterhub(url=...)) "
            "or stop what listens there"
        )

    @default("base_url")
    def _base_url(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")

    hub_auth: Any = None
    _cookie_secret = b""
    worker = 0  # this process's index among the workers (0 without --workers)
    # what reading the configuration found (its file, names, types), said with the rest
    _read_problems: list[str] = []
    _judge_settings = True  # the file loaded and its upstreams have their type
    # masks the configuration's secrets in every line said or logged (config.secrets); until
    # the file is read, what looks like a password or a key
    scrub = Scrubber()

    def parse_command_line(self, argv: list[str] | None = None) -> None:
        """traitlets' own, but a value of the wrong type is a problem line (exit 2), not exit 1."""
        parse = Application.parse_command_line.__wrapped__  # type: ignore[attr-defined]  # functools.wraps
        try:
            parse(self, argv)
        except (TraitError, ArgumentError) as exc:
            raise ConfigError(command_line_problem(str(exc), self.aliases)) from None

    def initialize(self, argv: list[str] | None = None) -> None:
        # traitlets logs the whole configuration at DEBUG ("Config changed"): masked from here on
        scrub_logs(self.scrub, self.log)
        super().initialize(argv)
        if self.config_file and not os.path.exists(self.config_file):
            raise ConfigError(f"--config {self.config_file}: no such file")
        # read by config.check, not by traitlets' load_config_file: that logs a file that does
        # not load and goes on without it, only warns of an unknown name, stops at a bad type
        reading = read_configuration(self, self.config_file, RSQLProxy())
        self._read_problems, self._judge_settings = reading.problems, reading.judge
        self.scrub = reading.scrub
        scrub_logs(self.scrub, self.log)  # before the next line logs the file's values
        self.config = reading.valid  # the file and command line, without what was set aside
        # with several workers, every line says which process wrote it
        pid = " %(process)d" if self.workers > 1 else ""
        level = cast("int | str", self.log_level)  # traitlets: a level's name or number
        logging.basicConfig(
            format=f"[%(levelname).1s %(asctime)s %(name)s{pid}] %(message)s", level=level
        )
        # no line of the service's log shows a key, token or password of the configuration,
        # whoever wrote it (the engine, a database driver's traceback)
        scrub_logs(self.scrub, logging.getLogger(), self.log)
        if os.environ.get("JUPYTERHUB_API_TOKEN") and self.hub_cache_seconds >= 0:
            self.hub_auth = hub_login.make_hub_auth(self.hub_cache_seconds)
        # one secret for every worker: a login cookie signed by one is read by the others
        self._cookie_secret = hub_login.cookie_secret()

    def config_problems(self, log: logging.Logger = log) -> list[str]:
        """Every problem of the configuration, one line each: the file, names and types (read by
        initialize), the service's own settings, and all start-up checks (config.check)."""
        problems = [
            *self._read_problems,
            *self.service_problems(),
            *static_user_problems(self.static_users),
        ]
        if self._judge_settings:
            problems += proxy_problems(RSQLProxy(parent=self), log=log)
        return problems

    def service_problems(self) -> list[str]:
        """The service's own settings; a worker count that cannot keep the limits."""
        n, out = self.workers, []
        if not 0 <= self.port <= 65535:
            out.append(f"RSQLProxyService.port (--port) must be from 0 to 65535, got {self.port}")
        if self.hub_cache_seconds < 0:
            out.append(
                f"RSQLProxyService.hub_cache_seconds must be >= 0, got {self.hub_cache_seconds}"
            )
        if n < 1:
            out.append(f"RSQLProxyService.workers (--workers) must be at least 1, got {n}")
        if n > 1 and not RSQLProxy(parent=self).state_url:
            out.append(
                f"--workers {n} needs shared state: without c.RSQLProxy.state_url every worker keeps "
                "its own limits, leases and budgets in memory, so users would get up to "
                f"{n} times their limits. Set c.RSQLProxy.state_url = 'redis://HOST:6379/0' (all "
                "workers then share one set of limits), or run --workers 1"
            )
        return out

    async def serve(self, sockets: list[socket.socket]) -> None:
        """Serve on `sockets` (bound before: a port in use is said before anything starts)."""
        proxy = RSQLProxy(parent=self)  # checked by start(): config_problems
        engine = build_engine(proxy, default_database=DEFAULT_DATABASE, log=log)
        ctx = ProxyContext(engine=engine, proxy=proxy, mcp=build_mcp(proxy, engine))
        prefix = "/" + self.base_url.strip("/") + "/" if self.base_url.strip("/") else "/"
        routes = make_handlers(ServiceBase, prefix.rstrip("/") or "")
        if hub_login.hub_oauth(self) is not None:  # the browser login's landing page
            routes.insert(0, (prefix + "oauth_callback", hub_login.callback_handler()))
        health = Readiness(ctx)
        routes[:0] = [(prefix + HEALTH_LIVE, LiveHandler), (prefix + HEALTH_READY, ReadyHandler)]
        app = ServiceApp(
            routes,
            rsql=ctx,
            rsql_app=self,
            rsql_health=health,
            log_function=_access_log,
            cookie_secret=self._cookie_secret or hub_login.cookie_secret(),
        )
        app.health_paths = frozenset((prefix + HEALTH_LIVE, prefix + HEALTH_READY))
        # every route but a 404 is ours and streams its body against max_body_bytes itself; this
        # bounds what tornado buffers for the rest (it answers a bare 400 past it). No xheaders:
        # nothing here decides on the client's address or scheme (log lines name the address;
        # JupyterHub's login reads the forwarded scheme itself), a client could write any
        # address there, and tornado checked X-Real-Ip with getaddrinfo on every request (about
        # 1.5% of a request's CPU, py-spy); a user's Jupyter server trusts no such headers either
        # (its trust_xheaders is off by default). docs/security.md has the row.
        server = httpserver.HTTPServer(app, max_body_size=proxy.max_body_bytes)
        server.add_sockets(sockets)
        await ctx.ready()
        # What starting made (modules, classes, settings: some 100,000 objects) lives as long as
        # the process, yet a full collection walked all of it: about 75 ms, every 3-4 s at 100
        # connections, with every request in flight stopped for it. Frozen, a full collection
        # walks only what requests made since. And requests in flight hold thousands of young
        # objects (coroutines, futures, handlers), which the default young threshold (700) had
        # walked 30 times a second: 6-7% of the CPU at 100 connections. Cyclic garbage now
        # waits for YOUNG_THRESHOLD new objects, a few MB at most (docs/benchmarks.md, "Full
        # collections under load")
        gc.collect()
        gc.freeze()
        gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        if self.hub_auth is None and not self.static_users:
            log.warning(
                "rsql-proxy: no JupyterHub ($JUPYTERHUB_API_TOKEN is unset: not started by a hub) "
                "and no c.RSQLProxyService.static_users, so every request gets a 401. Run it as "
                "a hub service (configure_jupyterhub in jupyterhub_config.py), or give it tokens: "
                "c.RSQLProxyService.static_users = {'<token>': {'name': 'alice', 'groups': [], "
                "'admin': False}}"
            )
        log.info(
            "rsql-proxy listening on http://%s:%d%s (hub auth: %s; upstreams: %s)%s",
            self.ip,
            self.port,
            prefix,
            "on" if self.hub_auth else "off",
            ", ".join(s.name for s in engine.settings.upstreams),
            f" as worker {self.worker + 1} of {self.workers}" if self.workers > 1 else "",
        )
        stop, now = asyncio.Event(), asyncio.Event()
        first = [0.0]

        def on_signal() -> None:
            # the hub sends SIGINT, then SIGTERM 10 s later: a second signal ends the grace now
            # (one within a second of the first is the same Ctrl-C reaching the whole group)
            if not stop.is_set():
                first[0] = time.monotonic()
                stop.set()
            elif time.monotonic() - first[0] > 1.0 and not now.is_set():
                log.info("rsql-proxy: second stop signal, ending the requests in flight now")
                now.set()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # the hub stops services with SIGINT
            loop.add_signal_handler(sig, on_signal)
        await stop.wait()
        await drain(server, app, ctx, proxy.shutdown_grace_seconds, now)
        log.info("rsql-proxy stopping: finishing the usage log")
        await ctx.close()
        log.info("rsql-proxy stopped")

    def serve_worker(self, index: int) -> int:
        """One worker, in a freshly forked process: its own sockets, event loop and engine."""
        self.worker = index
        try:
            asyncio.run(self.serve(bind_reuseport(self.port, self.ip)))
        except ConfigError as exc:
            say_problems(exc, scrub=self.scrub)
            return CONFIG_ERROR
        except CannotListen as exc:  # taken since the parent's check: restarting cannot help
            print(self.scrub(f"rsql-proxy: {exc}"), file=sys.stderr)
            return CONFIG_ERROR
        return 0

    def checked(self) -> str:
        """What `--check-config` prints: raises ConfigProblems naming every problem, as start-up,
        and a Redis or PostgreSQL the configuration names that does not answer (issue 77)."""
        problems = self.config_problems()
        proxy = RSQLProxy(parent=self)
        refuse(problems + (reach_problems(proxy) if self._judge_settings else []))
        settings = proxy.engine_settings(log=_SAID)
        models = sorted({m for u in settings.upstreams for m in u.models if m != "*"})
        # an override's user_limits replace the global list, never add to it: say so, since
        # a course admin who writes only "200/day" for a group drops the global per-minute cap
        replaced = "".join(
            f"; {who}: user_limits {', '.join(o['user_limits'])} replace the global "
            f"{', '.join(proxy.user_limits) or '(none)'}"
            for who, o in sorted(proxy.limit_overrides.items())
            if isinstance(o, dict) and o.get("user_limits")
        )
        short = short_tokens(self.static_users)
        users = "from JupyterHub" if self.hub_auth else f"{len(self.static_users)} static"
        users += f" ({len(short)} with a short token)" if short and not self.hub_auth else ""
        served = []
        for c in proxy.mcp_settings().connections:
            role = f" as {c.role}" if c.role else ""
            groups = f"; groups {', '.join(c.groups)}" if c.groups else ""
            served.append(f"{c.name} ({c.kind}{role}{groups})")
        return (
            f"{self.config_file or 'no --config'}: starts as written; upstreams: "
            f"{', '.join(u.name for u in settings.upstreams)}; models: "
            f"{', '.join(models) or 'read from the upstreams at start'}; default model: "
            f"{settings.default_model or 'none'}; users: {users}"
            f"{replaced}"
            f"{'; MCP tools at mcp on: ' + ', '.join(served) if served else ''}"
        )

    def warn(self) -> None:
        """Warnings, not refusals, said once before serving (or by --check-config): a short token
        works (tests and benchmarks use them), but on a reachable port one can be guessed; a
        replica whose pseudonym key is its own gives a user another pseudonym from each."""
        proxy = RSQLProxy(parent=self)
        unshared = unshared_key_warning(proxy, pseudonym_key_file(proxy, DEFAULT_DATABASE))
        if unshared:
            log.warning("rsql-proxy: %s", unshared)
        short = short_tokens(self.static_users)
        if short:
            log.warning(
                "rsql-proxy: c.RSQLProxyService.static_users: the %s of %s %s shorter than %d "
                "characters, short enough to be guessed; make each with python -c 'import "
                "secrets; print(secrets.token_urlsafe(32))'",
                "token" if len(short) == 1 else "tokens",
                ", ".join(short),
                "is" if len(short) == 1 else "are",
                SHORT_TOKEN,
            )

    def start(self) -> None:
        if self.check_config:
            summary = self.checked()
            self.warn()
            print(self.scrub(f"rsql-proxy: {summary}"))
            return
        # every problem, before a port is opened or a worker forked; the engine's own warnings
        # (no upstreams, ...) are said when serve() builds it
        refuse(self.config_problems(log=_SAID))
        self.warn()
        if self.workers == 1:
            # bound before the engine is built: a port in use is one line, and nothing started
            asyncio.run(self.serve(listen(self.port, self.ip, hint=self.port_hint())))
            return
        problem = check_port(self.port, self.ip, self.port_hint())
        if problem:
            raise CannotListen(problem)
        code = Supervisor(self.workers, self.serve_worker).run()
        if code:
            raise SystemExit(code)


def _access_log(handler: web.RequestHandler) -> None:
    # never the query string or headers: tokens may travel there
    status = handler.get_status()
    if getattr(handler, "rsql_quiet", False) and not log.isEnabledFor(logging.DEBUG):
        return
    if status >= 400 or log.isEnabledFor(logging.DEBUG):
        log.log(
            logging.WARNING if status >= 500 else logging.INFO,
            "%d %s %s %.1f ms",
            status,
            handler.request.method,
            handler.request.path,
            1000 * handler.request.request_time(),
        )


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    # `rsql-proxy admin ...`: a client of a running proxy, not the service
    if args[:1] == ["admin"]:
        from .admin_cli import main as admin_main

        raise SystemExit(admin_main(args[1:]))
    app = RSQLProxyService()
    try:
        app.initialize(argv)
        app.start()
    except ConfigError as exc:
        say_problems(exc, scrub=app.scrub)
        raise SystemExit(2) from None
    except CannotListen as exc:  # one line and what to do, not a traceback (issue 77)
        print(app.scrub(f"rsql-proxy: {exc}"), file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
