"""Tornado handlers, one set for both hosts.

Each handler here is a mixin holding the logic; a host (``extension`` for a Jupyter server,
``service`` for the hub service) combines them with its own authenticated base class through
:func:`make_handlers`, as jupyter-server-proxy does for its two hosts. Handlers stay thin: they
parse, ask the engine, and write.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tornado import web
from tornado.iostream import StreamClosedError

from .config import RSQLProxy
from .engine import Caller, Engine, ProxyError
from .engine.errors import BadRequest, Forbidden

CLIENT_KINDS = {"magic", "chat", "sql", "api"}


@dataclass
class ProxyContext:
    """What every handler needs, kept in the tornado settings under "rsql"."""

    engine: Engine
    proxy: RSQLProxy
    started: asyncio.Future | None = None

    async def ready(self) -> Engine:
        if self.started is None:
            self.started = asyncio.ensure_future(self.engine.start())
        await self.started
        return self.engine


class RSQLMixin:
    """Shared plumbing: OpenAI-format errors, JSON bodies, the caller."""

    request: Any
    settings: dict[str, Any]

    @property
    def rsql(self) -> ProxyContext:
        return self.settings["rsql"]

    def caller(self) -> Caller:
        # each host's base class provides rsql_caller(): the authenticated Caller, or None
        caller = self.rsql_caller()  # type: ignore[attr-defined]
        if caller is None:
            raise ProxyError("authentication required: send a token", status=401, code="unauthorized")
        kind = self.request.headers.get("X-RSQL-Client", "api").strip().lower()
        if kind not in CLIENT_KINDS:
            kind = "api"
        if kind != caller.client:
            caller = Caller(caller.user, caller.groups, caller.admin, kind)
        return caller

    def require_admin(self) -> Caller:
        caller = self.caller()
        if not caller.admin:
            raise Forbidden(f"user {caller.user!r} is not an rsql admin")
        return caller

    def json_body(self) -> Any:
        try:
            return json.loads(self.request.body or b"null")
        except ValueError as exc:
            raise BadRequest(f"request body is not valid JSON: {exc}") from None

    def write_json(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)  # type: ignore[attr-defined]
        self.set_header("Content-Type", "application/json")  # type: ignore[attr-defined]
        self.finish(json.dumps(obj))  # type: ignore[attr-defined]

    def write_proxy_error(self, exc: ProxyError) -> None:
        self.clear()  # type: ignore[attr-defined]
        for k, v in exc.headers.items():
            self.set_header(k, v)  # type: ignore[attr-defined]
        self.write_json(exc.to_json(), exc.status)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
        if isinstance(exc, ProxyError):
            self.write_proxy_error(exc)
            return
        reason = getattr(exc, "log_message", None) or self._reason  # type: ignore[attr-defined]
        kind = {401: "authentication_error", 403: "permission_error", 404: "not_found"}.get(
            status_code, "invalid_request_error" if status_code < 500 else "server_error"
        )
        if status_code in (401, 403) and reason in (None, "", "Forbidden", "Unauthorized"):
            reason = "a valid token is required: send 'Authorization: Bearer <token>'"
        self.set_header("Content-Type", "application/json")  # type: ignore[attr-defined]
        self.finish(json.dumps({"error": {"message": reason, "type": kind, "code": status_code}}))  # type: ignore[attr-defined]


class ChatCompletionsMixin(RSQLMixin):
    """POST v1/chat/completions (OpenAI), streaming and not."""

    _task: asyncio.Task | None = None

    def on_connection_close(self) -> None:
        # the client went away: cancel the work so leases and upstream slots are released now
        if self._task is not None and not self._task.done():
            self._task.cancel()
        super().on_connection_close()  # type: ignore[misc]

    async def post(self) -> None:
        self._task = asyncio.current_task()
        try:
            caller = self.caller()
            body = self.json_body()
            engine = await self.rsql.ready()
            reply = await engine.chat(body, caller)
        except ProxyError as exc:
            self.write_proxy_error(exc)
            return
        except asyncio.CancelledError:
            return
        self.set_status(reply.status)  # type: ignore[attr-defined]
        for k, v in reply.headers.items():
            self.set_header(k, v)  # type: ignore[attr-defined]
        if reply.events is None:
            self.finish(reply.body)  # type: ignore[attr-defined]
            return
        events = reply.events
        try:
            async for ev in events:
                self.write(ev)  # type: ignore[attr-defined]
                await self.flush()  # type: ignore[attr-defined]
        except (StreamClosedError, asyncio.CancelledError):
            return
        finally:
            await events.aclose()  # releases the upstream slot and the user's lease
            self._task = None
        self.finish()  # type: ignore[attr-defined]


class ModelsMixin(RSQLMixin):
    async def get(self) -> None:
        try:
            self.caller()
        except ProxyError as exc:
            self.write_proxy_error(exc)
            return
        self.write_json(self.rsql.engine.models())


def make_handlers(
    base: type, prefix: str, wrap: Callable[[Callable], Callable] | None = None
) -> list[tuple[str, type]]:
    """Concrete handler classes for one host: each mixin combined with the host's base.

    `wrap` decorates every HTTP method (the extension host passes ``web.authenticated``).
    """
    routes = [
        ("v1/chat/completions", ChatCompletionsMixin),
        ("v1/models", ModelsMixin),
    ]
    out = []
    for path, mixin in routes:
        attrs: dict[str, Any] = {}
        if wrap is not None:
            for meth in ("get", "post"):
                if meth in mixin.__dict__:
                    attrs[meth] = wrap(mixin.__dict__[meth])
        cls = type(mixin.__name__.replace("Mixin", "Handler"), (mixin, base), attrs)
        out.append((prefix.rstrip("/") + "/" + path, cls))
    return out


__all__ = ["ProxyContext", "make_handlers", "web"]
