"""Host 1: the proxy inside a user's own Jupyter server, at ``{base_url}rsql/``."""

from __future__ import annotations

import gc
import getpass
import hmac
import logging
import os
import time
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.auth.identity import IdentityProvider, PasswordIdentityProvider
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.extension.application import ExtensionApp
from jupyter_server.serverapp import ServerApp
from tornado import web
from tornado.ioloop import IOLoop

from rsql_common.labextension import missing_labextension_notice

from .ai_environment import ai_environment, served_windows
from .auth import jupyter_caller
from .config.check import check_admin_names, proxy_config_problems, unshared_key_warning
from .config.problems import problems_of
from .config.proxy import RSQLProxy
from .config.secrets import scrubber_of
from .engine import Caller, ConfigError
from .handlers.base import ProxyContext
from .hub_relay import InlineForwardMixin, forward_target
from .mcp import build_mcp
from .routes import make_handlers
from .wiring import build_engine, pseudonym_key_file

# Identity providers that know no real user names: everyone reaching this server is its owner.
_OWNER_ONLY = (IdentityProvider, PasswordIdentityProvider)


def server_owner() -> str:
    """The stable name of this server's owner: the hub user, else the OS user."""
    return os.environ.get("JUPYTERHUB_USER") or getpass.getuser()


class ExtensionBase(APIHandler):
    """Authenticated by the Jupyter server (token or login cookie)."""

    def rsql_caller(self) -> Caller | None:
        user = self.current_user
        if user is None:
            return None
        ctx: ProxyContext = self.settings["rsql"]
        return jupyter_caller(
            ctx.proxy, user, owner=self.settings["rsql_owner"], as_owner=self.speaks_for_owner()
        )

    def speaks_for_owner(self) -> bool:
        """Whether this request is the owner's whatever name the identity provider gave it.

        A request carrying only the server's token (the openai client, a kernel, curl) gets a
        fresh random anonymous user from Jupyter's identity provider every time; it is the
        owner's, and per-user limits must see one stable name. Being token-authenticated is not
        enough: JupyterHub's provider marks every hub token so, including those of other users
        with shared access to this server (JupyterHub 5) and of services holding
        access:servers; they are themselves (issue 24). So: an identity provider that knows no
        names (everyone who gets in holds the token or the password), or this server's own token.
        """
        provider = self.identity_provider
        if type(provider) in _OWNER_ONLY:
            return True
        if not getattr(self, "_token_authenticated", False):
            return False
        own = provider.token or ""
        sent = provider.get_token(self) or ""
        return bool(own) and hmac.compare_digest(sent.encode(), own.encode())

    def finish(self, *args: Any, **kwargs: Any) -> Any:
        # APIHandler forces application/json; keep what the handler set (SSE, Prometheus text)
        kwargs.setdefault("set_content_type", self._headers.get("Content-Type", "application/json"))
        return super().finish(*args, **kwargs)

    def set_secure_cookie(self, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        # An API client sends its token with every request and never reads a login cookie back,
        # yet Jupyter signs and sets one on each token request (a fresh anonymous user each
        # time): measurable CPU on the proxy's hot path, for nothing. Browsers (no
        # Authorization header) still get theirs.
        if self.request.headers.get("Authorization"):
            return
        super().set_secure_cookie(name, value, *args, **kwargs)

    def get_login_url(self) -> str:
        # APIHandler refuses to send anyone to the login page (API clients get the JSON 401);
        # a browser asking for an admin page is sent there, and comes back after logging in
        if getattr(self, "rsql_is_page", False) and "text/html" in self.request.headers.get(
            "Accept", ""
        ):
            return JupyterHandler.get_login_url(self)
        return super().get_login_url()

    def check_xsrf_cookie(self) -> None:
        # Forgery rides on ambient cookies. API clients authenticate with an Authorization
        # header, which a browser never adds on its own, and a request with no cookie carries
        # no credentials to abuse (it then gets the clear "token required" error instead);
        # cookie-authenticated browser requests are still checked by the base class.
        if self.request.headers.get("Authorization") or not self.request.headers.get("Cookie"):
            return
        return super().check_xsrf_cookie()


# the check's own run of the settings says nothing: their warnings (no upstreams, ...) are said
# once, by the engine's build right after it
_CHECK_LOG = logging.Logger("rsql.config-check", logging.CRITICAL + 1)


def skip_filtered_debug(logger: Any) -> None:
    """Raise a logger's level to the lowest level of its handlers, when they all filter above it.

    Why: traitlets configures Jupyter Server's logger at DEBUG and filters in its handler (at
    INFO by default), so every ``log.debug`` (one per successful request in Jupyter's access log)
    builds a LogRecord only for the handler to drop it; profiled under wrk that was a few percent
    of the server extension's CPU per proxied request. Exactly the same records reach the
    handlers afterwards. Only for a logger that does not propagate (its handlers are all there
    are); a later reconfiguration of Jupyter's logging resets the level as before.
    """
    handlers = getattr(logger, "handlers", None)
    if not handlers or getattr(logger, "propagate", True):
        return
    lowest = min(h.level for h in handlers)
    if lowest > logger.level:
        logger.setLevel(lowest)


class RSQLProxyExtension(ExtensionApp):
    """Serves the rsql proxy from a Jupyter server; configured through ``c.RSQLProxy``."""

    name = "jupyter_server_ext"
    load_other_extensions = True
    serverapp: ServerApp  # set by the server before it calls any method below
    # (URL of the hub's service, token) when this server passes requests on (hub_relay.py)
    passes_on: tuple[str, str] | None = None

    def initialize_settings(self) -> None:
        # every problem at once, one line each, before anything is built (as rsql-proxy does):
        # a wrong type would otherwise end the server with a traceback naming no setting
        problems = proxy_config_problems(self.config, log=_CHECK_LOG)
        if problems:
            for problem in problems:
                self.log.critical("rsql proxy: bad configuration: %s", problem)
            raise SystemExit(2)
        proxy = RSQLProxy(parent=self)
        # a user's server on a hub: its kernels ask the hub's service and the editor's
        # completions are passed on there (initialize_handlers)
        self.passes_on = forward_target(os.environ, f"{self.serverapp.connection_url}rsql/")
        database = "sqlite:///" + os.path.join(jupyter_data_dir(), "rsql", "usage.sqlite")
        try:
            check_admin_names(proxy)
            engine = build_engine(
                proxy,
                default_database=database,
                log=self.log,
                passes_on=self.passes_on is not None,
            )
            mcp = build_mcp(proxy, engine)
        except ConfigError as exc:
            # the engine's own words may repeat a value: scrubbed of every secret the
            # configuration holds, as every line of the check is (config/secrets.py)
            scrub = scrubber_of(self.config, os.environ)
            for problem in problems_of(exc):  # one line each, as the check above says them
                self.log.critical("rsql proxy: bad configuration: %s", scrub(problem))
            raise SystemExit(2) from None
        ctx = self.settings["rsql"] = ProxyContext(
            engine=engine,
            proxy=proxy,
            mcp=mcp,
            hub_service=self.passes_on[0] if self.passes_on is not None else None,
        )
        # read once: getpass.getuser() reads the user database (pwd.getpwuid), 2% of the
        # extension's instructions per request when it ran on each one (callgrind); neither the
        # process's user nor its JUPYTERHUB_USER changes while it runs
        self.settings["rsql_owner"] = server_owner()
        skip_filtered_debug(self.serverapp.log)
        # the engine's own lines (a key disabled, the local model's self-test) go where the
        # server's go, not to Python's last-resort stderr handler
        engine_log = logging.getLogger("rsql")
        if not engine_log.handlers:
            for handler in self.serverapp.log.handlers:
                engine_log.addHandler(handler)
            engine_log.setLevel(logging.INFO)
            engine_log.propagate = False
        if self.passes_on is not None:
            # nothing of the engine starts (no local model, usage log or key checks), and its
            # model requests are refused (RSQLMixin.refuse_for_hub_service): a model process
            # per user server would be 500 of them on a hub of 500 (issue 55), and answers from
            # it would escape the hub's limits and windows
            self.log.info(
                "rsql proxy: requests go to the hub's service at %s (RSQL_PROXY_URL): kernels "
                "ask there and the editor's completions are passed on there; this server's own "
                "%srsql/v1 answers no model requests, and no local model is started",
                self.passes_on[0],
                self.serverapp.base_url,
            )
        else:
            # start the engine with the server, not on the first request: a local model's
            # self-test then reports a broken build at start-up
            IOLoop.current().add_callback(ctx.ready)
            unshared = unshared_key_warning(proxy, pseudonym_key_file(proxy, database))
            if unshared:  # servers sharing Redis, each with a pseudonym key of its own
                self.log.warning("rsql proxy: %s", unshared)
        if proxy.freeze_startup_objects:
            # once the loop runs: every extension is loaded and the server listens by then
            IOLoop.current().add_callback(self.freeze_startup_objects)
        if proxy.ai_environment:
            # once the server listens (its port is then known): kernels and terminals started
            # after inherit the server's environment
            IOLoop.current().add_callback(self.export_ai_environment)
        if self.passes_on is None:  # else it said where requests go, above
            aliases = ", ".join(s.name for s in engine.settings.upstreams)
            self.log.info(
                "rsql proxy at %srsql/ with upstreams: %s", self.serverapp.base_url, aliases
            )
        # an editable install whose frontend was never built: JupyterLab would show nothing of it
        notice = missing_labextension_notice()
        if notice is not None:
            self.log.warning("rsql: the JupyterLab extension is %s", notice)

    def freeze_startup_objects(self) -> None:
        """Hand what the server's start made to the collector as permanent (``gc.freeze``):
        a full collection then walks only what the server made since (freeze_startup_objects).
        Garbage of the start is collected first, so none of it is kept."""
        started = time.perf_counter()
        gc.collect()
        gc.freeze()
        self.log.info(
            "rsql proxy: %d objects of the server's start frozen for the collector in %.0f ms "
            "(c.RSQLProxy.freeze_startup_objects)",
            gc.get_freeze_count(),
            1000 * (time.perf_counter() - started),
        )

    def export_ai_environment(self) -> None:
        """Set the variables that point users' AI tools at this proxy (``ai_environment``).

        The key is this server's own token: Jupyter Server has no narrower one, so whoever
        holds it can do what the user can in this server. On a hub that token (the server's
        hub token) would also open the server from anywhere the hub is reachable, and a client
        that ignores the base URL sends its key to the provider's host (issue 53): there the
        hub's ``configure_jupyterhub(..., ai_tools=True)`` hands out a key that opens the
        service alone, and this sets nothing."""
        server = self.serverapp
        if os.environ.get("JUPYTERHUB_API_TOKEN"):
            self.log.warning(
                "rsql proxy: ai_environment sets nothing on a hub, where its key would be this "
                "server's hub token; configure_jupyterhub(..., ai_tools=True) in the hub's "
                "configuration gives users' tools a key for the proxy alone"
            )
            return
        token = getattr(server.identity_provider, "token", "")
        # the windows the in-process engine was configured with: what Claude Code plans with
        ctx: ProxyContext = self.settings["rsql"]
        windows = served_windows(ctx.engine.settings.upstreams)
        found = ai_environment(f"{server.connection_url}rsql/", token, os.environ, windows)
        os.environ.update(found)
        if found:
            self.log.info("rsql proxy: kernels and terminals get %s", ", ".join(sorted(found)))
        else:
            self.log.info(
                "rsql proxy: ai_environment set nothing (the user set their own, or no token)"
            )

    def initialize_handlers(self) -> None:
        found = self.passes_on
        if found is not None:  # before the shared routes: tornado takes the first that matches
            # the body streams in, so the owner and the size are checked before it is read
            forward: type[web.RequestHandler] = web.stream_request_body(
                type(
                    "InlineForwardHandler",
                    (InlineForwardMixin, ExtensionBase),
                    {
                        "get": web.authenticated(InlineForwardMixin.get),
                        "post": web.authenticated(InlineForwardMixin.post),
                    },
                )
            )
            service, token = found
            kwargs = {"target": service + "inline", "token": token, "owner": server_owner()}
            self.handlers.append(("rsql/inline", forward, kwargs))
        self.handlers.extend(make_handlers(ExtensionBase, "rsql", wrap=web.authenticated))

    async def stop_extension(self) -> None:
        ctx: ProxyContext | None = self.settings.get("rsql")
        if ctx is not None:
            await ctx.close()
