"""The engine: one chat-completions request from admission to answer, with failover.

Plain asyncio; hosts (the Jupyter server extension, the hub service, the in-process kernel
mode) hand it a parsed JSON body and a ``Caller`` and write back the ``Reply``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import ProxyError, RateLimited, UpstreamError
from .pool import Pool, Slot
from .request import ChatRequest, parse_chat_request
from .settings import UpstreamSpec
from .transport import HTTPTransport, LocalTransport, UpstreamFailure, UpstreamReply

log = logging.getLogger("rsql.engine")


@dataclass(frozen=True)
class Caller:
    """Who is asking: a stable user name, their groups and admin flag, and the client kind."""

    user: str
    groups: tuple[str, ...] = ()
    admin: bool = False
    client: str = "api"  # magic | chat | sql | api


@dataclass
class Reply:
    """What the host writes back: a JSON body, or SSE events to stream."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    events: AsyncIterator[bytes] | None = None


@dataclass
class EngineSettings:
    upstreams: tuple[UpstreamSpec, ...]
    default_model: str = ""
    max_wait_seconds: float = 10.0
    upstream_timeout_seconds: float = 60.0
    default_cooldown_seconds: float = 5.0
    breaker_threshold: int = 3
    breaker_seconds: float = 15.0
    health_check_seconds: float = 60.0
    default_max_tokens: int = 512


@dataclass
class Outcome:
    """What happened to one request; the usage log and metrics read it."""

    request_id: str
    caller: Caller
    model: str
    started: float  # wall clock
    upstream: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    status: int = 200
    error: str | None = None
    cache_hit: bool = False
    latency_s: float = 0.0
    upstream_s: float = 0.0  # time spent waiting on upstreams; latency minus this is our overhead
    attempts: list[str] = field(default_factory=list)


def _usage_of(obj: dict[str, Any]) -> dict[str, Any] | None:
    usage = obj.get("usage") or (obj.get("x_groq") or {}).get("usage")
    return usage if isinstance(usage, dict) else None


class Engine:
    def __init__(self, settings: EngineSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.pool = Pool(
            settings.upstreams,
            default_cooldown=settings.default_cooldown_seconds,
            breaker_threshold=settings.breaker_threshold,
            breaker_seconds=settings.breaker_seconds,
            clock=clock,
        )
        self.http = HTTPTransport()
        self.local = LocalTransport()
        self.on_outcome: list[Callable[[Outcome], None]] = []
        self._health_task: asyncio.Task | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        if self.settings.health_check_seconds > 0 and self._health_task is None:
            self._health_task = asyncio.ensure_future(self._health_loop())

    async def close(self) -> None:
        if self._health_task:
            self._health_task.cancel()
            self._health_task = None
        await self.http.close()
        await self.local.close()

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_check_seconds)
            try:
                await self.health_check()
            except Exception:  # a failed check must not end the loop
                log.exception("upstream health check failed")

    async def health_check(self) -> dict[str, str]:
        """Probe disabled keys with GET /models; a 2xx re-enables them."""
        out = {}
        for key in self.pool.keys:
            if not key.disabled:
                out[key.alias] = self.pool.key_state(key)
                continue
            transport = self.local if key.spec.provider == "llama_cpp" else self.http
            status = await transport.get_models(key.spec, 10.0)
            if 200 <= status < 300:
                self.pool.enable(key)
                log.info("upstream %s re-enabled by health check", key.alias)
            out[key.alias] = self.pool.key_state(key)
        return out

    def models(self) -> dict[str, Any]:
        data = [{"id": m, "object": "model", "owned_by": "rsql-proxy"} for m in self.pool.models()]
        return {"object": "list", "data": data}

    # -- the request ---------------------------------------------------------------------

    def parse(self, body: Any) -> ChatRequest:
        return parse_chat_request(
            body,
            default_model=self.settings.default_model,
            default_max_tokens=self.settings.default_max_tokens,
        )

    async def chat(self, body: Any, caller: Caller, *, request_id: str | None = None) -> Reply:
        """Answer one chat-completions request, or raise ``ProxyError``."""
        t0 = self.clock()
        outcome = Outcome(request_id or uuid.uuid4().hex, caller, "", time.time())
        try:
            req = self.parse(body)
            outcome.model = req.model
            return await self._forward(req, outcome, t0)
        except ProxyError as exc:
            outcome.status = exc.status
            outcome.error = exc.code or type(exc).__name__
            self._finish(outcome, t0)
            raise
        except asyncio.CancelledError:
            outcome.status = 499
            outcome.error = "client_closed"
            self._finish(outcome, t0)
            raise

    def _finish(self, outcome: Outcome, t0: float) -> None:
        outcome.latency_s = self.clock() - t0
        for cb in self.on_outcome:
            try:
                cb(outcome)
            except Exception:
                log.exception("outcome hook failed")

    async def _forward(self, req: ChatRequest, outcome: Outcome, t0: float) -> Reply:
        pool = self.pool
        deadline = self.clock() + self.settings.max_wait_seconds
        tried: set[str] = set()
        failures: list[tuple[str, UpstreamFailure]] = []
        for _ in range(2 * len(pool.keys) + 2):
            try:
                slot = await pool.acquire(req.model, req.reserve_tokens, tried, deadline)
            except UpstreamError:
                if failures:  # every key was tried: say what happened to each
                    raise self._exhausted(req.model, failures) from None
                raise
            spec = slot.key.spec
            transport = self.local if spec.provider == "llama_cpp" else self.http
            outcome.upstream = spec.name
            outcome.attempts.append(spec.name)
            t_up = self.clock()
            try:
                reply = await transport.send(
                    spec, req.payload, stream=req.stream, timeout=self.settings.upstream_timeout_seconds
                )
            except UpstreamFailure as fail:
                outcome.upstream_s += self.clock() - t_up
                failures.append((spec.name, fail))
                if self._on_failure(slot, fail):
                    tried.add(spec.name)
                if fail.kind == "client":  # the request itself is wrong: no other key will help
                    raise ProxyError(
                        _error_message(fail.body) or f"upstream rejected the request (HTTP {fail.status})",
                        status=fail.status,
                        code="upstream_rejected",
                    ) from None
                continue
            except BaseException:  # cancelled mid-call: the provider may have seen it
                pool.release(slot, counted=True)
                raise
            outcome.upstream_s += self.clock() - t_up
            pool.succeeded(slot, reply.headers)
            if req.stream:
                return self._stream_reply(req, slot, reply, outcome, t0)
            return self._json_reply(req, slot, reply, outcome, t0)
        raise self._exhausted(req.model, failures)

    def _on_failure(self, slot: Slot, fail: UpstreamFailure) -> bool:
        """Record a failed attempt; True when this key should not be retried in this request."""
        pool, alias = self.pool, slot.key.alias
        if fail.kind == "rate_limited":
            secs = pool.rate_limited(slot, fail.retry_after, fail.headers)
            pool.release(slot, counted=False)
            log.warning("upstream %s: 429, account %s cools down %.1f s", alias, slot.key.spec.account, secs)
            return False  # the cooldown keeps it out; it may serve again within the deadline
        if fail.kind == "auth":
            pool.disable(slot.key, f"HTTP {fail.status} from provider")
            pool.release(slot, counted=False)
            log.error("upstream %s: key rejected (HTTP %s); disabled until a health check passes", alias, fail.status)
            return True
        if fail.kind == "client":
            pool.release(slot, counted=True)
            return True
        pool.failed(slot, fail.kind if not fail.status else f"HTTP {fail.status}")
        pool.release(slot, counted=fail.kind != "connect")
        log.warning("upstream %s failed: %s", alias, fail)
        return True

    def _exhausted(self, model: str, failures: list[tuple[str, UpstreamFailure]]) -> ProxyError:
        if not failures:
            return UpstreamError(f"no upstream could serve model {model!r}")
        if all(f.kind == "rate_limited" for _, f in failures):
            wait = min((f.retry_after or self.settings.default_cooldown_seconds) for _, f in failures)
            return RateLimited(
                f"every upstream key for model {model!r} is rate limited by the provider",
                retry_after=wait,
                limit="upstream capacity",
            )
        detail = "; ".join(f"{alias}: {f}" for alias, f in failures[-5:])
        if all(f.kind == "timeout" for _, f in failures):
            return UpstreamError(f"upstreams for model {model!r} timed out: {detail}", status=504, code="upstream_timeout")
        return UpstreamError(f"every upstream attempt for model {model!r} failed: {detail}")

    def _headers(self, slot: Slot, outcome: Outcome) -> dict[str, str]:
        return {
            "X-Request-Id": outcome.request_id,
            "X-RSQL-Upstream": slot.key.alias,
            "X-RSQL-Cache": "miss",
        }

    def _json_reply(
        self, req: ChatRequest, slot: Slot, reply: UpstreamReply, outcome: Outcome, t0: float
    ) -> Reply:
        body = reply.body
        tokens = None
        try:
            obj = json.loads(body)
            usage = _usage_of(obj) if isinstance(obj, dict) else None
        except ValueError:
            obj, usage = None, None
        if usage:
            outcome.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            outcome.completion_tokens = int(usage.get("completion_tokens") or 0)
            tokens = outcome.prompt_tokens + outcome.completion_tokens
        self.pool.release(slot, tokens=tokens, counted=True)
        headers = self._headers(slot, outcome)
        headers["Content-Type"] = "application/json"
        self._finish(outcome, t0)
        return Reply(200, headers, body=body)

    def _stream_reply(
        self, req: ChatRequest, slot: Slot, reply: UpstreamReply, outcome: Outcome, t0: float
    ) -> Reply:
        pool = self.pool

        async def events() -> AsyncIterator[bytes]:
            tokens = None
            try:
                async for ev in _chain(reply.first, reply.events):
                    if ev.startswith(b"data: {") and b'"usage"' in ev:
                        try:
                            obj = json.loads(ev[6:])
                        except ValueError:
                            obj = None
                        usage = _usage_of(obj) if isinstance(obj, dict) else None
                        if usage:
                            outcome.prompt_tokens = int(usage.get("prompt_tokens") or 0)
                            outcome.completion_tokens = int(usage.get("completion_tokens") or 0)
                            tokens = outcome.prompt_tokens + outcome.completion_tokens
                            if not obj.get("choices") and not req.wants_usage_chunk:
                                continue  # we asked for it; the client did not
                    yield ev
            except UpstreamFailure as fail:
                outcome.status, outcome.error = 502, f"stream {fail.kind}"
                pool.failed(slot, f"stream {fail.kind}")
                yield _sse_error("the upstream stream broke off: " + fail.message)
            except Exception as exc:  # aiohttp errors mid-stream
                outcome.status, outcome.error = 502, "stream_broken"
                pool.failed(slot, "stream broken")
                yield _sse_error(f"the upstream stream broke off ({type(exc).__name__})")
            except (asyncio.CancelledError, GeneratorExit):
                outcome.status, outcome.error = 499, "client_closed"
                raise
            finally:
                pool.release(slot, tokens=tokens, counted=True)
                if reply.close:
                    reply.close()
                self._finish(outcome, t0)

        headers = self._headers(slot, outcome)
        headers["Content-Type"] = "text/event-stream"
        headers["Cache-Control"] = "no-cache"
        return Reply(200, headers, events=events())


async def _chain(first: bytes, rest: AsyncIterator[bytes] | None) -> AsyncIterator[bytes]:
    yield first
    if rest is not None:
        async for ev in rest:
            yield ev


def _sse_error(message: str) -> bytes:
    return b"data: " + json.dumps({"error": {"message": message, "type": "upstream_error"}}).encode() + b"\n\n"


def _error_message(body: bytes) -> str:
    try:
        obj = json.loads(body)
        return str(obj["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return ""
