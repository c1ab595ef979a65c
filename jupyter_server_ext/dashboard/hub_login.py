"""Browser login for the hub service: JupyterHub's OAuth for pages, tokens for API clients.

An admin opening ``/services/rsql/admin/`` without credentials is sent through the hub's OAuth
flow (``HubOAuth``; the hub's callback lands on ``{prefix}oauth_callback``, which sets a signed
cookie holding the OAuth token). Afterwards the cookie authenticates that browser like an
``Authorization`` header would. Cookies ride along with any request a browser makes, even one a
foreign page triggers, so a cookie-authenticated request that changes anything must prove it
comes from our page: its Origin (when sent) is this host, and it carries the per-session token
the page was given (``X-XSRFToken``), which a foreign page cannot read.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import urllib.parse
from typing import Any

from tornado import web
from tornado.httputil import url_concat

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def hub_oauth(app: Any) -> Any:
    """The app's HubOAuth, or None when it authenticates by token only."""
    try:
        from jupyterhub.services.auth import HubOAuth
    except ImportError:  # pragma: no cover - the 'hub' extra
        return None
    hub = getattr(app, "hub_auth", None)
    return hub if isinstance(hub, HubOAuth) else None


def make_hub_auth(cache_seconds: int = 60) -> Any:
    """HubOAuth when the hub registered an OAuth client for this service (browser login),
    else HubAuth (tokens only). The instance is the process-wide one, which the OAuth callback
    handler of jupyterhub also uses: both must share the pending logins' states."""
    from jupyterhub.services.auth import HubAuth, HubOAuth

    if os.environ.get("JUPYTERHUB_CLIENT_ID"):
        return HubOAuth.instance(cache_max_age=cache_seconds)
    return HubAuth(cache_max_age=cache_seconds)


def cookie_secret() -> bytes:
    """Signs the login cookie. Replicas behind one URL must share it: set RSQL_COOKIE_SECRET
    (hex); otherwise each start makes a new one (admins then log in again, nothing else)."""
    value = os.environ.get("RSQL_COOKIE_SECRET", "").strip()
    return bytes.fromhex(value) if value else secrets.token_bytes(32)


def callback_handler() -> type:
    from jupyterhub.services.auth import HubOAuthCallbackHandler

    return HubOAuthCallbackHandler


def cookie_token(handler: web.RequestHandler, app: Any) -> str:
    """The OAuth token from the login cookie, or "" (no cookie, no browser login)."""
    hub = hub_oauth(app)
    if hub is None:
        return ""
    raw = handler.get_secure_cookie(hub.cookie_name)
    return raw.decode("ascii", "replace") if raw else ""


def clear_cookie(handler: web.RequestHandler, app: Any) -> None:
    hub = hub_oauth(app)
    if hub is not None:
        hub.clear_cookie(handler)


def csrf_token(handler: web.RequestHandler, token: str) -> str:
    """A token bound to this login session (the OAuth token in the cookie) and to this
    process's cookie secret; the page gets it in a meta element, never in a URL."""
    key = handler.settings["cookie_secret"]
    key = key.encode() if isinstance(key, str) else key
    return hmac.new(key, b"rsql-csrf:" + token.encode(), hashlib.sha256).hexdigest()


def check_csrf(handler: web.RequestHandler, token: str) -> None:
    """Refuse a cookie-authenticated request that changes state unless it comes from our page."""
    request = handler.request
    if request.method in SAFE_METHODS:
        return
    origin = request.headers.get("Origin")
    if origin is not None and urllib.parse.urlsplit(origin).netloc != request.host:
        raise web.HTTPError(403, "cross-origin request refused")
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        raise web.HTTPError(403, "cross-site request refused")
    sent = request.headers.get("X-XSRFToken", "")
    if not sent or not hmac.compare_digest(sent, csrf_token(handler, token)):
        raise web.HTTPError(
            403,
            "missing or wrong X-XSRFToken: reload the dashboard, or send a token in the Authorization header",
        )


def login_redirect(handler: web.RequestHandler, app: Any) -> bool:
    """Send a browser (a GET that accepts HTML) to the hub's login; False for API clients,
    which keep getting the JSON 401."""
    hub = hub_oauth(app)
    request = handler.request
    if (
        hub is None
        or request.method != "GET"
        or "text/html" not in request.headers.get("Accept", "")
    ):
        return False
    params: dict[str, str] = {}
    verifier = None
    if getattr(hub, "pkce_enabled", False):
        verifier, challenge, method = hub.generate_pkce_code_challenge()
        params.update(code_challenge=challenge, code_challenge_method=method)
    kwargs = {"code_verifier": verifier} if verifier else {}
    params["state"] = hub.set_state_cookie(handler, next_url=request.uri, **kwargs)
    handler.redirect(url_concat(hub.login_url, params))
    return True
