"""What every tornado handler shares, one set for both hosts.

Each handler here is a mixin holding the logic; a host (``extension`` for a Jupyter server,
``service`` for the hub service) combines them with its own authenticated base class through
:func:`jupyter_server_ext.routes.make_handlers`. Handlers stay thin: they
parse, ask the engine, and write.

Bodies stream in (``tornado.web.stream_request_body``) so that ``max_body_bytes`` holds before a
body is read: tornado would otherwise buffer up to its server-wide limit (100 MiB, 512 MiB in a
Jupyter server) before any handler code runs. Only these handlers stream; a Jupyter server's
other handlers keep their own limits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tornado.iostream import StreamClosedError

from ..config.proxy import RSQLProxy
from ..engine import Caller, EachWithin, Engine, EngineError, Reply
from ..engine.apis.inline.edge import InlineCompletions
from ..engine.apis.translated import Translated
from ..engine.bodies.attribution import cell_id, notebook_path
from ..engine.courses.log import CourseLog
from ..engine.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge, Unauthorized
from ..engine.info_endpoints import error_reply
from ..engine.monitoring.metrics import CLIENT_KINDS
from ..engine.request_state import Watch, watch_request

log = logging.getLogger("rsql.proxy")

# A body somewhat over the limit is read to its end and dropped, then answered: a client that
# sends its whole body before reading (most do) then sees the 413 instead of a reset
# connection. Past this many times the limit the answer goes out at once and the connection
# closes, so nobody can make the proxy read without end.
DRAIN_FACTOR = 4
# what a client told "shutting down" should wait before it retries (another replica, or this
# service once restarted, will answer by then)
SHUTDOWN_RETRY_AFTER = 2


def shutting_down() -> EngineError:
    return EngineError(
        "the proxy is shutting down and takes no new requests; retry in a few seconds (another "
        "replica, or the restarted service, will answer)",
        status=503,
        code="shutting_down",
        headers={"Retry-After": str(SHUTDOWN_RETRY_AFTER)},
    )


class InFlight:
    """The answers (chat, completions, embeddings) in flight in one process, so a host can let
    them finish on shutdown and end those that outlast its grace. Tracking only: the engine
    releases leases and slots itself when a reply's task is cancelled or its events closed."""

    def __init__(self) -> None:
        self.handlers: set[Any] = set()
        self.draining = False
        self.idle = asyncio.Event()
        self.idle.set()

    def __len__(self) -> int:
        return len(self.handlers)

    def add(self, handler: Any) -> None:
        self.handlers.add(handler)
        self.idle.clear()

    def discard(self, handler: Any) -> None:
        self.handlers.discard(handler)
        if not self.handlers:
            self.idle.set()

    def cut(self) -> int:
        """End every answer still running (each tells its client why); how many there were."""
        running = list(self.handlers)
        for handler in running:
            handler.cut_for_shutdown()
        return len(running)


@dataclass
class ProxyContext:
    """What every handler needs, kept in the tornado settings under "rsql"."""

    engine: Engine
    proxy: RSQLProxy
    started: asyncio.Future[None] | None = None
    # the admin dashboard's live feed (dashboard.feed.Feed), made on its first use
    dashboard_feed: Any = None
    inflight: InFlight = field(default_factory=InFlight)
    # the MCP endpoint (mcp.endpoint.MCPEndpoint), None when no connection is configured
    mcp: Any = None
    # a hub user's server: the hub service's URL (RSQL_PROXY_URL), where every request for a
    # model goes instead of this server's own engine (RSQLMixin.refuse_for_hub_service)
    hub_service: str | None = None
    # the APIs above the engine that answer on its one path (engine/apis)
    translated: Translated = field(init=False)
    inline: InlineCompletions = field(init=False)

    def __post_init__(self) -> None:
        self.translated = Translated(self.engine)
        self.inline = InlineCompletions(self.engine)

    def usage_store(self) -> Any:
        store = self.engine.usage_store
        if store is None:
            raise EngineError("no usage log is configured", status=503, code="no_usage_log")
        return store

    @property
    def course_log(self) -> CourseLog:
        """The engine's course log (``wiring.attach_course_log``)."""
        return self.engine.course_log

    async def ready(self) -> Engine:
        if self.started is None:
            self.started = asyncio.ensure_future(self._start())
        await self.started
        return self.engine

    async def _start(self) -> None:
        await self.engine.start()

    async def close(self) -> None:
        """A host's stop: the MCP endpoint, then the engine, after its start if that is still
        under way (a start that went on after the close would leave its background tasks on a
        loop about to close)."""
        if self.mcp is not None:
            await self.mcp.close()
        if self.started is not None:
            await asyncio.wait({self.started})  # its failure is the start's to report
        await self.engine.close()


if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tornado.web import RequestHandler

    class _HostHandler(RequestHandler):
        """For the type checker only: what each host's base class (``ExtensionBase``,
        ``ServiceBase``) gives the mixins that stand in front of it."""

        def rsql_caller(self) -> Caller | None: ...

else:
    # at run time the mixins come first in each handler's bases, the host's base class after
    _HostHandler = object


class RSQLMixin(_HostHandler):
    """Shared plumbing: OpenAI-format errors, JSON bodies, the caller."""

    _body_parts: list[bytes] | None = None
    _body_size = 0  # bytes received so far
    _body_limit = 0
    _body_over = False
    # asks a model (AnsweringMixin): refused in a hub user's server (``refuse_for_hub_service``)
    asks_model = False

    @property
    def rsql(self) -> ProxyContext:
        ctx: ProxyContext = self.settings["rsql"]
        return ctx

    async def prepare(self) -> None:
        # Anthropic's clients send their key as x-api-key: the same token, read as a bearer one
        # by both hosts' authentication (a header no browser adds by itself)
        headers = self.request.headers
        if "Authorization" not in headers and headers.get("x-api-key"):
            headers["Authorization"] = f"Bearer {headers['x-api-key'].strip()}"
        # tornado's own limit would answer a bare 400 (no JSON) for a long chunked body, so this
        # request is held to ours instead, set before anything else can answer
        conn = self.request.connection
        if conn is not None and hasattr(conn, "set_max_body_size"):
            conn.set_max_body_size(2**62)
        result = super().prepare()
        if result is not None:
            await result
        if self._finished:
            return
        self._body_limit = limit = self.rsql.proxy.max_body_bytes
        self._body_parts = []
        try:
            declared = int(self.request.headers.get("Content-Length", "0"))
        except ValueError:
            declared = 0  # tornado refuses it itself
        if declared > limit:
            # only what arrives is counted (data_received): the declared length is a promise
            self._body_over = True
            if declared > limit * DRAIN_FACTOR:
                self.write_proxy_error(self.too_large())
                return
        if self.asks_model and self.rsql.hub_service is not None:
            self.refuse_for_hub_service(self.rsql.hub_service)

    def refuse_for_hub_service(self, service: str) -> None:
        """A hub user's server: its own engine would answer outside the hub's models, limits,
        budget and windows (an exam's "no assistant" among them), so no model request is
        answered here, whatever the API; refused before the body is read."""
        try:
            self.caller()  # no token, no hint: a 401 first
        except EngineError as exc:
            self.write_proxy_error(exc)
            return
        self.write_proxy_error(
            Forbidden(
                "this Jupyter server answers no model requests itself: on this hub they go to "
                f"the hub's service, {service} (as {service}v1/chat/completions), where the "
                "hub's models, limits and windows hold; kernels and terminals here have its "
                "address as RSQL_PROXY_URL",
                code="use_the_hub_service",
                extra={"service_url": service},
            )
        )

    def data_received(self, chunk: bytes) -> None:
        if self._finished:
            return
        self._body_size += len(chunk)
        if not self._body_over and self._body_size <= self._body_limit:
            if self._body_parts is not None:
                self._body_parts.append(chunk)
            return
        self._body_over, self._body_parts = True, None
        if self._body_size > self._body_limit * DRAIN_FACTOR:
            self.write_proxy_error(self.too_large())

    def too_large(self) -> PayloadTooLarge:
        limit = self._body_limit
        return PayloadTooLarge(
            f"request body is larger than {limit} bytes ({limit / 2**20:g} MiB), the most this proxy "
            "accepts; send less (an admin can raise c.RSQLProxy.max_body_bytes)",
            extra={"max_body_bytes": limit},
        )

    def caller(self) -> Caller:
        # each host's base class provides rsql_caller(): the authenticated Caller, or None
        caller = self.rsql_caller()
        if caller is None:  # no token, or one nobody issued: 401, as OpenAI answers it
            raise Unauthorized()
        kind = self.request.headers.get("X-RSQL-Client", "api").strip().lower()
        # "inline" is the editor's completions' own rate class, set by {proxy}inline alone: a
        # header saying it must not move a chat request off the user's chat windows
        if kind not in CLIENT_KINDS or kind == "inline":
            kind = "api"
        if kind != caller.client:
            caller = Caller(caller.user, caller.groups, caller.admin, kind)
        return caller

    def cache_mode(self) -> str:
        """X-RSQL-Cache-Control: cache | no-cache (X-RSQL-No-Cache: 1 also bypasses)."""
        if self.request.headers.get("X-RSQL-No-Cache", "").strip() in ("1", "true", "yes"):
            return "bypass"
        value = self.request.headers.get("X-RSQL-Cache-Control", "").strip().lower()
        return {"cache": "force", "no-cache": "bypass", "no-store": "bypass"}.get(value, "auto")

    def int_arg(self, name: str, default: int, lo: int, hi: int) -> int:
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise BadRequest(
                f"query parameter {name!r} must be an integer from {lo} to {hi}, got {raw!r}"
            ) from None
        if not lo <= value <= hi:
            raise BadRequest(f"query parameter {name!r} must be from {lo} to {hi}, got {value}")
        return value

    def float_arg(self, name: str, default: float, lo: float, hi: float) -> float:
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise BadRequest(
                f"query parameter {name!r} must be a number from {lo:g} to {hi:g}, got {raw!r}"
            ) from None
        if not lo < value <= hi:
            raise BadRequest(
                f"query parameter {name!r} must be above {lo:g} and at most {hi:g}, got {value:g}"
            )
        return value

    def require_admin(self) -> Caller:
        caller = self.caller()
        if not caller.admin:
            raise Forbidden(f"user {caller.user!r} is not an rsql admin")
        return caller

    async def json_body(self, caller: Caller) -> Any:
        """The body as JSON, parsed by the engine's bounded decoder in `caller`'s turn."""
        if self._body_over:
            raise self.too_large()
        engine = await self.rsql.ready()
        return await engine.decode_body(b"".join(self._body_parts or ()), caller)

    def write_json(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(obj))

    def write_proxy_error(self, exc: EngineError) -> None:
        reply = error_reply(exc)
        self.clear()
        self.set_status(reply.status)
        for k, v in reply.headers.items():
            self.set_header(k, v)
        self.finish(reply.body)

    def no_credentials(self) -> bool:
        """Whether the caller brought no valid credentials (a host may refine it)."""
        try:
            return self.rsql_caller() is None
        except EngineError:
            return False

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error in OpenAI's shape, whoever raised it (the host's authentication, tornado's
        405), so clients raise the error class they would for the provider."""
        exc = kwargs.get("exc_info", (None, None))[1]
        if isinstance(exc, EngineError):
            self.write_proxy_error(exc)
            return
        message = getattr(exc, "log_message", None)
        if status_code in (401, 403) and not message and self.no_credentials():
            # the host refused an unauthenticated request (Jupyter answers these with 403)
            self.write_proxy_error(Unauthorized())
            return
        if status_code == 404:
            self.write_proxy_error(self.unknown_url())
            return
        if status_code == 405:
            self.write_proxy_error(
                EngineError(
                    f"{self.request.method} is not allowed on {self.request.path}",
                    status=405,
                    code="method_not_allowed",
                )
            )
            return
        kind = {401: "invalid_request_error", 403: "permission_error"}.get(
            status_code, "invalid_request_error" if status_code < 500 else "server_error"
        )
        err = EngineError(message or self._reason, status=status_code, code=None)
        err.type = kind
        self.write_proxy_error(err)

    def unknown_url(self) -> EngineError:
        return NotFound(
            f"Unknown request URL: {self.request.method} {self.request.path}. Please check the URL "
            "for typos; this proxy serves v1/chat/completions, v1/completions, v1/embeddings, "
            "v1/responses, v1/messages and v1/models.",
            code="unknown_url",
        )


class AnsweringMixin(RSQLMixin):
    """A POST the engine answers, as JSON or a stream: the body read and bounded, the answer
    written with its deadlines, the work cancelled when the client leaves early, and the
    request counted in flight for a graceful stop. Each API says how it asks (``ask``)."""

    asks_model = True
    _task: asyncio.Task[None] | None = None
    _watch: Watch | None = None
    _cut = False  # ended by the host's shutdown, not by the client
    _streaming = False  # the answer's events are being written

    def on_connection_close(self) -> None:
        # the client went away before its answer began: stop the work so leases and upstream
        # slots are released now, but for a request at the provider, whose answer the engine
        # awaits and reads on in the background, charged (``engine.request_state.at_provider``). A stream being
        # written is not stopped: its next write fails, and closing its events lets the engine
        # read on for the usage the provider bills.
        if self._watch is not None and not self._streaming:
            self._watch.client_left()
        super().on_connection_close()

    def cut_for_shutdown(self) -> None:
        """The host's grace ran out: stop the answer (the cancelled task releases what it holds)."""
        if self._task is not None and not self._task.done() and not self._cut:
            self._cut = True
            self._task.cancel()

    async def post(self) -> None:
        self._task = asyncio.current_task()
        self._watch = watch_request()
        inflight = self.rsql.inflight
        inflight.add(self)
        try:
            await self._answer()
        finally:
            inflight.discard(self)

    def request_options(self) -> dict[str, Any]:
        """What the request's headers tell the engine: cache mode, trace, escalation stage, and
        the notebook and cell it was asked in."""
        headers = self.request.headers
        return {
            "cache": self.cache_mode(),
            "trace_headers": headers,
            "escalation": headers.get("X-RSQL-Escalation"),
            "notebook": notebook_path(urllib.parse.unquote(headers.get("X-RSQL-Notebook", ""))),
            "cell": cell_id(headers.get("X-RSQL-Cell", "")),
        }

    async def ask(self, engine: Engine, body: Any, caller: Caller) -> Reply:
        """The engine's answer to `body`: each API's handler asks in its own way."""
        raise NotImplementedError

    def shutdown_event(self) -> bytes:
        """The event that ends a stream the host's shutdown cut short, in the API's shape."""
        return b"data: " + json.dumps(shutting_down().to_json()).encode() + b"\n\n"

    async def _answer(self) -> None:
        try:
            caller = self.caller()
            body = await self.json_body(caller)
            engine = await self.rsql.ready()
            reply = await self.ask(engine, body, caller)
        except EngineError as exc:
            self.write_proxy_error(exc)
            return
        except asyncio.CancelledError:
            if self._cut:  # nothing was written yet: the client may retry elsewhere
                self.write_proxy_error(shutting_down())
            return
        self.set_status(reply.status)
        for k, v in reply.headers.items():
            self.set_header(k, v)
        if reply.events is None:
            self.finish(reply.body)
            return
        events = reply.events
        self._streaming = True
        proxy, loop = self.rsql.proxy, asyncio.get_running_loop()
        ends = loop.time() + proxy.stream_max_seconds
        each = EachWithin()  # one timer for the stream's writes, not one per event
        # Events that come together go out together: the first at once (the time to the first
        # token), each later one into the batch being written, which is sent when the events run
        # dry (``call_soon`` runs once this task waits for the next). One send a batch, not one
        # an event: a send is a system call and a wake-up of the client, the larger part of an
        # event's cost; events come together when the upstream sends them so, or when a busy
        # proxy reads several at once.
        sending: asyncio.Future[None] | None = None  # the batch before, on its way
        due: asyncio.Handle | None = None  # the send of the batch being written

        def send() -> None:
            nonlocal sending, due
            due, sending = None, self.flush()

        async def sent() -> bool:
            """Wait for the batch on its way; False when its reader took too long."""
            # a client that stops reading must not hold its lease, the key's slot and its
            # reservation for good: each send has a deadline, and so has the whole stream
            left = ends - loop.time()
            if left <= 0:  # however steadily it reads: a send that is done at once waits for none
                self._give_up_on_reader(caller, left)
                return False
            if sending is None or sending.done():
                if sending is not None:
                    sending.result()  # a send that failed raises (StreamClosedError)
                return True
            try:
                await each.within(sending, max(0.0, min(proxy.stream_write_timeout_seconds, left)))
            except asyncio.TimeoutError:
                self._give_up_on_reader(caller, left)
                return False
            return True

        try:
            async for ev in events:
                if not await sent():
                    return
                self.write(ev)
                if sending is None:  # the first event
                    send()
                elif due is None:
                    due = loop.call_soon(send)
                if self._cut:
                    # the cancel can be lost: Python 3.11's asyncio.wait_for, which the upstream
                    # reads use, swallows one that arrives as its read completes
                    break
            if not self._cut:  # the last batch out, and taken
                if due is not None:
                    due.cancel()
                    send()
                if not await sent():
                    return
        except (StreamClosedError, asyncio.CancelledError):
            if not self._cut:
                return
        finally:
            if due is not None:
                due.cancel()
            each.close()
            await events.aclose()  # releases the upstream slot and the user's lease
            self._task = None
        try:
            if self._cut:  # an error event, and no [DONE]: the client knows the answer is cut short
                self.write(self.shutdown_event())
            self.finish()
        except StreamClosedError:
            pass

    def _give_up_on_reader(self, caller: Caller, left: float) -> None:
        """Close a stream whose client took nothing within the write deadline (or whose whole
        stream ran out of time): the events are closed after, as for a client that left."""
        proxy = self.rsql.proxy
        why = (
            f"took nothing for {proxy.stream_write_timeout_seconds:g} s"
            if left > proxy.stream_write_timeout_seconds
            else f"was not done within {proxy.stream_max_seconds:g} s"
        )
        log.warning("stream to %s cut off: its client %s", caller.user, why)
        conn = self.request.connection
        stream = getattr(conn, "stream", None)
        if stream is not None:
            stream.close()


class JSONText(bytes):
    """An answer that is JSON text already (a stored response): sent as it is, never parsed."""


class JSONEndpoint(RSQLMixin):
    """A GET/POST endpoint answering JSON; subclasses implement ``answer``."""

    admin_only = False

    # each endpoint's own: the caller, then the URL's path arguments, if it has any
    answer: Callable[..., Awaitable[Any]]

    async def _respond(self, *args: str) -> None:
        try:
            caller = self.require_admin() if self.admin_only else self.caller()
            await self.rsql.ready()
            result = await self.answer(caller, *args)
        except EngineError as exc:
            self.write_proxy_error(exc)
            return
        if isinstance(result, JSONText):  # JSON kept as text: written as it was read
            self.set_header("Content-Type", "application/json")
            self.finish(bytes(result))
        elif isinstance(result, bytes):
            self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.finish(result)
        else:
            self.write_json(result)


class NotFoundMixin(RSQLMixin):
    """Everything else under the prefix: OpenAI's JSON 404 (after authentication, so the
    proxy's layout is shown to callers only), never a host's HTML page."""

    def _not_found(self, *args: str) -> None:
        try:
            self.caller()
        except EngineError as exc:
            self.write_proxy_error(exc)
            return
        self.write_proxy_error(self.unknown_url())

    get = post = put = patch = delete = options = _not_found

    def head(self, *args: str) -> None:
        self._not_found(*args)


__all__ = [
    "AnsweringMixin",
    "InFlight",
    "JSONEndpoint",
    "JSONText",
    "NotFoundMixin",
    "ProxyContext",
    "RSQLMixin",
    "shutting_down",
]
