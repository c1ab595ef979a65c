"""Every route the proxy serves, as concrete handler classes for one host.

The handlers (``handlers``, ``handlers.apis``, ``handlers.admin``, ``handlers.courses``,
``dashboard.handlers``, ``dashboard.course_pages``) are mixins; each host combines them with
its own authenticated base class here. The routes are
gathered in this module, above them all, so that no handler module imports another's but
``handlers``, whose base mixins the others build on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tornado import web

from .dashboard.course_pages import ROUTES as COURSE_PAGES
from .dashboard.handlers import ROUTES as DASHBOARD_ROUTES
from .handlers.admin import ADMIN_ROUTES
from .handlers.apis import API_ROUTES
from .handlers.base import NotFoundMixin
from .handlers.courses import COURSE_ROUTES
from .handlers.endpoints import ROUTES as PROXY_ROUTES
from .mcp.handler import ROUTES as MCP_ROUTES

HTTP_METHODS = ("get", "post", "put", "patch", "delete", "options", "head")


def make_handlers(
    base: type, prefix: str, wrap: Callable[[Callable], Callable] | None = None
) -> list[tuple[str, type]]:
    """Concrete handler classes for one host: each mixin combined with the host's base.

    `wrap` decorates every HTTP method (the extension host passes ``web.authenticated``).
    """
    out = []
    root = prefix.rstrip("/")
    # the catch-all goes last: tornado takes the first route that matches
    routes: list[tuple[str | None, type]] = [
        *PROXY_ROUTES,
        *API_ROUTES,
        *ADMIN_ROUTES,
        *COURSE_ROUTES,
        *DASHBOARD_ROUTES,
        *COURSE_PAGES,
        *MCP_ROUTES,
        (None, NotFoundMixin),
    ]
    for path, mixin in routes:
        attrs: dict[str, Any] = {}
        if wrap is not None:
            for meth in HTTP_METHODS:
                fn = getattr(mixin, meth, None)
                if fn is not None:
                    attrs[meth] = wrap(fn)
        cls: type[web.RequestHandler] = web.stream_request_body(
            type(mixin.__name__.replace("Mixin", "Handler"), (mixin, base), attrs)
        )
        out.append((root + "/" + path if path is not None else root + "(?:/.*)?", cls))
    return out
