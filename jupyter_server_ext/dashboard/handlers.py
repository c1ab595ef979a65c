"""The admin dashboard's handlers: the page, its live feed (Server-Sent Events), one user's
activity as HTML, and the page's own static files.

Like the proxy's other handlers these are mixins that each host combines with its
authenticated base class (``routes.make_handlers``). Two hooks come from the host when it has them:
``rsql_csrf_token()`` (the token the page sends back in ``X-XSRFToken`` with its POSTs) and
``rsql_browser_login()`` (send a browser without credentials to a login page; the hub service
does, through the hub's OAuth).
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from pathlib import Path
from typing import Any

from tornado import template
from tornado.iostream import StreamClosedError

from ..engine import Caller, EngineError
from ..engine.errors import Unauthorized
from ..handlers.base import RSQLMixin
from .feed import feed_for, iso

HERE = Path(__file__).parent
STATIC = HERE / "static"
# only these are served: nothing else in the package is reachable through the route
STATIC_FILES = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "vendor/uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "vendor/uPlot.min.css": "text/css; charset=utf-8",
    "vendor/uPlot.LICENSE": "text/plain; charset=utf-8",
}
# tornado escapes every {{ expression }} (xhtml_escape) unless a template says otherwise
_loader = template.Loader(str(HERE / "templates"), autoescape="xhtml_escape")


def script_json(obj: Any) -> str:
    """JSON safe to put inside a <script type="application/json"> element: no '<', '>' or '&'
    survive, so no data can close the element or open another one."""
    text = json.dumps(obj, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class PageMixin(RSQLMixin):
    """An admin HTML page: a browser without credentials is sent to log in where the host can,
    an API client gets the proxy's JSON 401, a non-admin a 403 page."""

    rsql_is_page = True  # the Jupyter host sends a browser without a login to its login page

    def write_html(self, template_name: str, status: int = 200, **kw: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(_loader.load(template_name).generate(**kw))

    def page_caller(self) -> Caller | None:
        """The signed-in caller, or None after answering (login redirect, 401 JSON)."""
        try:
            return self.caller()
        except Unauthorized as exc:
            login = getattr(self, "rsql_browser_login", None)
            if login is None or not login():
                self.write_proxy_error(exc)
            return None
        except EngineError as exc:
            self.write_proxy_error(exc)
            return None

    def page_admin(self) -> Caller | None:
        """The admin caller, or None after answering (login redirect, 401 JSON, 403 page)."""
        caller = self.page_caller()
        if caller is None:
            return None
        if not caller.admin:
            self.write_html("forbidden.html", 403, user=caller.user)
            return None
        return caller

    def csrf_token(self) -> str:
        """What the page sends back in X-XSRFToken: the host's own token when it has one (the
        hub service's, per login session), else tornado's, which a Jupyter server checks (and
        setting it sets the _xsrf cookie it is checked against)."""
        hook = getattr(self, "rsql_csrf_token", None)
        if hook is not None:
            return str(hook())
        token = self.xsrf_token
        return token.decode() if isinstance(token, bytes) else str(token)


class DashboardMixin(PageMixin):
    """GET admin/: the dashboard, with the current snapshot in it; the page's script keeps it
    live from admin/events."""

    async def get(self) -> None:
        if not self.request.path.endswith("/"):  # relative links on the page need the slash
            self.redirect(self.request.path + "/")
            return
        caller = self.page_admin()
        if caller is None:
            return
        try:
            await self.rsql.ready()
            snap = await feed_for(self.rsql).current()
        except EngineError as exc:
            self.write_proxy_error(exc)
            return
        self.write_html(
            "dashboard.html",
            user=caller.user,
            csrf=self.csrf_token(),
            initial=script_json(snap),
            courses=bool(self.rsql.course_log.specs),
        )


class UserPageMixin(PageMixin):
    """GET admin/users/{user}: one user's recent requests as a page (the JSON is at
    admin/users/{user}/activity)."""

    async def get(self, user: str) -> None:
        caller = self.page_admin()
        if caller is None:
            return
        name = user  # tornado decoded the path once; twice would make "a%41" the page of "aA"
        try:
            await self.rsql.ready()
            rows = [
                {**r, "ts_text": iso(r["ts"])}
                for r in await self.rsql.usage_store().activity(name, 100)
            ]
        except EngineError as exc:
            self.write_proxy_error(exc)
            return
        self.write_html(
            "user.html",
            user=caller.user,
            name=name,
            rows=rows,
            quoted=urllib.parse.quote(name, safe=""),
        )


class EventsMixin(RSQLMixin):
    """GET admin/events: a text/event-stream of snapshots ("snapshot" events, JSON data), one at
    once, then one on each change and at least every few seconds."""

    _closed = False

    def on_connection_close(self) -> None:
        self._closed = True
        super().on_connection_close()

    async def _send(self, snap: dict[str, Any]) -> None:
        self.write(f"event: snapshot\nid: {snap['version']}\ndata: {json.dumps(snap)}\n\n")
        await self.flush()

    async def get(self) -> None:
        try:
            self.require_admin()
            await self.rsql.ready()
        except EngineError as exc:
            self.write_proxy_error(exc)
            return
        feed = feed_for(self.rsql)
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        # a buffering reverse proxy would hold events back
        self.set_header("X-Accel-Buffering", "no")
        feed.subscribers += 1
        try:
            # the browser reconnects on its own after a drop; tell it how soon
            self.write("retry: 3000\n\n")
            snap = await feed.current()
            version = snap["version"]
            await self._send(snap)
            while not self._closed:
                newer = await feed.wait_newer(version, feed.interval + 1.0)
                if newer is None:  # a slow build: keep the connection alive meanwhile
                    self.write(": waiting\n\n")
                    await self.flush()
                    continue
                version = newer["version"]
                await self._send(newer)
        except (StreamClosedError, asyncio.CancelledError):
            return
        finally:
            feed.subscribers -= 1
        if not self._finished:
            self.finish()


class StaticMixin(RSQLMixin):
    """The page's script, style and the vendored chart library (public code, no data)."""

    def get(self, name: str) -> None:
        kind = STATIC_FILES.get(name)
        if kind is None:
            self.write_proxy_error(self.unknown_url())
            return
        self.set_header("Content-Type", kind)
        self.set_header("Cache-Control", "no-cache")  # revalidated by ETag: fresh after an upgrade
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish((STATIC / name).read_bytes())


ROUTES: list[tuple[str, type]] = [
    ("admin/?", DashboardMixin),
    ("admin/events", EventsMixin),
    ("admin/users/([^/]+)", UserPageMixin),
    ("admin/static/(.+)", StaticMixin),
]
