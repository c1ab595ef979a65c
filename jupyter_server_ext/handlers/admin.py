"""The admin endpoints (``admin/...`` and ``metrics``): mixins both hosts mount, as the user
endpoints in ``handlers`` are. Every one is for rsql admins only (``auth.is_admin``)."""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

from ..engine import BadRequest, Caller
from .base import JSONEndpoint


class StatsMixin(JSONEndpoint):
    admin_only = True

    async def get(self) -> None:
        await self._respond()

    async def answer(self, caller: Caller) -> Any:
        hours = self.float_arg("hours", 24.0, 0.0, 24.0 * 366)
        store = self.rsql.usage_store()
        return {"hours": hours, **await store.stats(time.time() - hours * 3600)}


class ErrorsMixin(JSONEndpoint):
    admin_only = True

    async def get(self) -> None:
        await self._respond()

    async def answer(self, caller: Caller) -> Any:
        limit = self.int_arg("limit", 50, 1, 1000)
        return {"errors": await self.rsql.usage_store().errors(limit)}


class ActivityMixin(JSONEndpoint):
    admin_only = True

    async def get(self, user: str) -> None:
        await self._respond(user)

    async def answer(self, caller: Caller, user: str) -> Any:
        # tornado has decoded the path once; a second decode would make `a%41` read `aA`'s rows
        limit = self.int_arg("limit", 50, 1, 1000)
        return {"user": user, "activity": await self.rsql.usage_store().activity(user, limit)}


class ResetLimitsMixin(JSONEndpoint):
    """POST {"user": "alice"} resets one user's windows and budget; {"all": true} everyone's."""

    admin_only = True

    async def post(self) -> None:
        await self._respond()

    async def answer(self, caller: Caller) -> Any:
        body = await self.json_body(caller)
        if not isinstance(body, dict) or (("user" in body) == bool(body.get("all"))):
            raise BadRequest(
                'send {"user": "NAME"} to reset one user, or {"all": true} for everyone'
            )
        user = body.get("user")
        if user is not None and (not isinstance(user, str) or not user):
            raise BadRequest("'user' must be a non-empty user name")
        n = await self.rsql.engine.reset_limits(user)
        return {"reset": user or "all", "entries": n}


class UpstreamsMixin(JSONEndpoint):
    admin_only = True

    async def get(self) -> None:
        await self._respond()

    async def answer(self, caller: Caller) -> Any:
        return {"upstreams": self.rsql.engine.upstream_report()}


class HealthCheckMixin(JSONEndpoint):
    admin_only = True

    async def post(self) -> None:
        await self._respond()

    async def answer(self, caller: Caller) -> Any:
        return {"upstreams": await self.rsql.engine.health_check()}


class MetricsMixin(JSONEndpoint):
    """Prometheus text; admins only (it shows traffic of every user)."""

    admin_only = True

    async def get(self) -> None:
        await self._respond()

    async def answer(self, caller: Caller) -> Any:
        return self.rsql.engine.metrics_text()


class AlertsMixin(JSONEndpoint):
    """The most recent alerts (shared by replicas on Redis), newest first."""

    admin_only = True

    async def get(self) -> None:
        await self._respond()

    async def answer(self, caller: Caller) -> Any:
        limit = self.int_arg("limit", 50, 1, 100)
        return {"alerts": await self.rsql.engine.recent_alerts(limit)}


class WindowsMixin(JSONEndpoint):
    """GET: every policy window (configured and run-time) and whether it is in force; POST:
    start one at run time, shared with every replica through the state backend."""

    admin_only = True

    async def get(self) -> None:
        await self._respond()

    async def post(self) -> None:
        await self._respond()

    async def answer(self, caller: Caller) -> Any:
        engine = self.rsql.engine
        if self.request.method == "POST":
            return {"window": await engine.start_window(await self.json_body(caller))}
        return {"timezone": engine.window_timezone, "windows": await engine.window_listing()}


class WindowEndMixin(JSONEndpoint):
    """POST admin/windows/{name}/end: end a window now."""

    admin_only = True

    async def post(self, name: str) -> None:
        await self._respond(name)

    async def answer(self, caller: Caller, name: str) -> Any:
        return await self.rsql.engine.end_window(urllib.parse.unquote(name))


class NotebooksMixin(JSONEndpoint):
    """GET admin/notebooks?hours=168&user=NAME: requests, tokens and cost per notebook and user."""

    admin_only = True

    async def get(self) -> None:
        await self._respond()

    async def answer(self, caller: Caller) -> Any:
        hours = self.float_arg("hours", 24.0 * 7, 0.0, 24.0 * 366)
        limit = self.int_arg("limit", 200, 1, 1000)
        user = self.get_query_argument("user", None)
        if user is not None and not user:
            raise BadRequest("'user' must be a user name")
        rows = await self.rsql.usage_store().notebooks(time.time() - hours * 3600, user, limit)
        return {
            "hours": hours,
            "names": self.rsql.engine.settings.notebook_names,
            "notebooks": rows,
        }


ADMIN_ROUTES: list[tuple[str, type]] = [
    ("metrics", MetricsMixin),
    ("admin/stats", StatsMixin),
    ("admin/errors", ErrorsMixin),
    ("admin/users/([^/]+)/activity", ActivityMixin),
    ("admin/reset-limits", ResetLimitsMixin),
    ("admin/upstreams", UpstreamsMixin),
    ("admin/upstreams/health-check", HealthCheckMixin),
    ("admin/alerts", AlertsMixin),
    ("admin/windows", WindowsMixin),
    ("admin/windows/([^/]+)/end", WindowEndMixin),
    ("admin/notebooks", NotebooksMixin),
]
