"""The engine: one chat-completions request from admission to answer, with failover.

Plain asyncio; hosts (the Jupyter server extension, the hub service, the in-process kernel
mode) hand it a parsed JSON body and a ``Caller`` and write back the ``Reply``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..state.base import BudgetCheck, StateBackend
from ..state.memory import MemoryState
from .alerts import Alerts, AlertSettings, Ledger
from .answers import DONE, Collector, chunks_of, event_json, shape_event, sse
from .cache import Cached, MemoryCache, cache_key, cacheable
from .errors import Forbidden, NotFound, ProxyError, RateLimited, UpstreamError, UpstreamRejected
from .limiter import Limiter, LimitSettings, Ticket
from .local import LocalTransport
from .metrics import Metrics
from .pool import Pool, Slot
from .pricing import FREE, PriceBook
from .records import Caller, Outcome, Reply
from .redact import CONTEXT_POLICY_DEFAULTS, Pattern, Redactor, restore_text
from .request import (
    ChatRequest,
    RequestLimits,
    parse_chat_request,
    parse_completions_request,
    parse_embeddings_request,
)
from .settings import Price, UpstreamSpec
from .tracing import NO_SPAN, RequestTrace, Tracing
from .transport import HTTPTransport, UpstreamFailure, UpstreamReply, scrub
from .usage import UsageLog, UsageStore

log = logging.getLogger("rsql.engine")


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
    limits: LimitSettings = field(default_factory=LimitSettings)
    cache_max_entries: int = 1000
    cache_max_bytes: int = 64 * 2**20
    cache_ttl_seconds: float = 3600.0
    cache_hits_count: bool = False  # does a cache hit use the user's quota?
    log_prompts: bool = False
    retention_days: float = 90.0
    request_limits: RequestLimits = field(default_factory=RequestLimits)
    unpriced_models: str = "deny"  # while a budget applies: "deny" (refuse) or "free" (cost 0)
    forward_user: str = "hash"  # the `user` upstreams see: "hash" (a pseudonym), "name", "none"
    # key of the pseudonyms; empty: a random one for this process (stable only until restart)
    user_id_secret: bytes = b""
    # privacy: what is masked before a request goes upstream, and what the kernel may send
    redact_patterns: tuple[Pattern, ...] = ()
    context_policy: dict[str, Any] = field(default_factory=lambda: dict(CONTEXT_POLICY_DEFAULTS))
    fallback_model: str = ""  # an upstream name; "" turns the fallback off
    fallback_on: tuple[str, ...] = ("capacity",)  # "capacity", "budget"
    alerts: AlertSettings = field(default_factory=AlertSettings)
    otel: bool = False  # OpenTelemetry spans per request (needs the `otel` extra)


ENDPOINTS = ("chat/completions", "completions", "embeddings")


def _usage_of(obj: dict[str, Any]) -> dict[str, Any] | None:
    usage = obj.get("usage") or (obj.get("x_groq") or {}).get("usage")
    return usage if isinstance(usage, dict) else None


class Engine:
    """Admission, cache, key choice with failover, usage accounting: one request at a time."""

    def __init__(
        self,
        settings: EngineSettings,
        *,
        state: StateBackend | None = None,
        store: UsageStore | None = None,
        pool_class: type[Pool] = Pool,
        pool_options: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        alert_ledger: Ledger | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.pool = pool_class(
            settings.upstreams,
            default_cooldown=settings.default_cooldown_seconds,
            breaker_threshold=settings.breaker_threshold,
            breaker_seconds=settings.breaker_seconds,
            clock=clock,
            **(pool_options or {}),
        )
        self.prices = PriceBook(settings.upstreams)
        self.state = state or MemoryState()
        self.limiter = Limiter(settings.limits, self.state)
        self.cache = MemoryCache(
            max_entries=settings.cache_max_entries,
            max_bytes=settings.cache_max_bytes,
            ttl=settings.cache_ttl_seconds,
        )
        self.http = HTTPTransport()
        self.local = LocalTransport()
        self.metrics = Metrics(
            lambda: ((k.alias, self.pool.key_state(k)) for k in self.pool.keys),
            models=self.prices.configured_models(settings.default_model),
        )
        self.usage = UsageLog(store, log_prompts=settings.log_prompts, retention_days=settings.retention_days) if store else None
        self.on_outcome: list[Callable[[Outcome], None]] = [self.metrics.observe]
        if self.usage is not None:
            self.on_outcome.append(self.usage.record)
        self.alerts = Alerts(settings.alerts, ledger=alert_ledger, clock=clock)
        if settings.limits.global_daily_budget_usd is not None:
            self.alerts.budget_reader = self._global_spend
        self.alerts.describe_model = self._describe_model
        self.pool.on_key_change = self._key_changed
        self.on_outcome.append(self.alerts.observe)
        # None unless tracing is on: the request path then only tests `is None`
        self.tracing: Tracing | None = Tracing.create() if settings.otel else None
        self._health_task: asyncio.Task | None = None
        self._user_key = settings.user_id_secret or secrets.token_bytes(32)
        self._started_at = int(time.time())

    def user_id(self, user: str) -> str | None:
        """What upstreams see as `user`: providers track abuse per end user, and without it a
        whole hub looks like one anonymous account. A keyed hash by default, so the provider
        can tell users apart without learning their names."""
        mode = self.settings.forward_user
        if mode == "name":
            return user
        if mode == "hash":
            return "rsql-" + hmac.new(self._user_key, user.encode(), hashlib.sha256).hexdigest()[:32]
        return None

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        if self.usage is not None:
            await self.usage.start()
        self.alerts.start()
        if self.settings.health_check_seconds > 0 and self._health_task is None:
            self._health_task = asyncio.ensure_future(self._health_loop())
        # start local models now, with a self-test, so a broken build is reported at start-up
        self.local.start([s for s in self.settings.upstreams if s.provider == "llama_cpp"])

    async def close(self) -> None:
        """Stop background work and flush the usage log: a clean shutdown loses no rows."""
        if self._health_task:
            self._health_task.cancel()
            self._health_task = None
        if self.usage is not None:
            await self.usage.close()
        await self.alerts.close()
        if self.tracing is not None:
            self.tracing.shutdown()
        await self.state.close()
        await self.pool.close()
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
            if key.disabled:
                transport = self.local if key.spec.provider == "llama_cpp" else self.http
                status = await transport.get_models(key.spec, 10.0)
                if 200 <= status < 300:
                    await self.pool.enable(key)
                    log.info("upstream %s re-enabled by health check", key.alias)
            out[key.alias] = self.pool.key_state(key)
        return out

    # -- alert hooks -------------------------------------------------------------------

    def _key_changed(self, alias: str, why: str | None) -> None:
        if why is None:
            self.alerts.key_enabled(alias)
        else:
            self.alerts.key_disabled(alias, why)

    def _describe_model(self, model: str) -> list[dict[str, Any]]:
        return [{"alias": k.alias, "state": self.pool.key_state(k)} for k in self.pool.serving(model)]

    async def _global_spend(self) -> tuple[float, float] | None:
        limit = self.settings.limits.global_daily_budget_usd
        if limit is None:
            return None
        _, _, spent = await self.state.read([], [], [BudgetCheck("g:usd", limit, 0.0, "global daily budget")])
        return float(spent[0]), limit

    def upstream_report(self) -> list[dict[str, Any]]:
        """Per key: account, state, cooldown, breaker, use of its account's limits, errors."""
        now, wall = self.clock(), time.time()

        def at(mono: float) -> str | None:
            if mono <= now:
                return None
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall + mono - now))

        out = []
        for key in self.pool.keys:
            spec = key.spec
            buckets = {
                model: b for (acct, model), b in self.pool.buckets.items() if acct == spec.account
            }
            out.append(
                {
                    "alias": key.alias,
                    "account": spec.account,
                    "provider": spec.provider,
                    "models": list(spec.models),
                    "state": self.pool.key_state(key),
                    "disabled_reason": key.disabled or None,
                    "cooldown_until": at(max((b.cool_until for b in buckets.values()), default=0.0)),
                    "breaker": {"state": key.breaker.state(now), "failures": key.breaker.failures,
                                "open_until": at(key.breaker.open_until)},
                    "in_flight": key.inflight,
                    "limits": [str(r) for r in spec.limits] + [f"{r} tokens" for r in spec.token_limits],
                    "account_use": {model: b.used(now) for model, b in buckets.items()},
                    "provider_remaining": {
                        model: {"requests": b.prov_req_left, "tokens": b.prov_tok_left}
                        for model, b in buckets.items() if b.prov_req_left is not None or b.prov_tok_left is not None
                    },
                    "recent_errors": [
                        {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall + t - now)), "error": what}
                        for t, what in key.recent_errors[-10:]
                    ],
                }
            )
        return out

    def models(self) -> dict[str, Any]:
        data = [self._model(m) for m in self.pool.models()]
        return {"object": "list", "data": data}

    def _model(self, model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": self._started_at, "owned_by": "rsql-proxy"}

    def model(self, model: str) -> dict[str, Any]:
        """GET v1/models/{id}: one served model, or OpenAI's 404 for an unknown one."""
        if model in self.pool.models():
            return self._model(model)
        raise NotFound(
            f"The model '{model[:200]}' does not exist or you do not have access to it.",
            code="model_not_found", extra={"param": "model"},
        )

    # -- the request ---------------------------------------------------------------------

    def parse(self, body: Any, endpoint: str = "chat/completions") -> ChatRequest:
        s = self.settings
        if endpoint == "embeddings":
            return parse_embeddings_request(body, default_model=s.default_model, limits=s.request_limits)
        parse = parse_completions_request if endpoint == "completions" else parse_chat_request
        return parse(body, default_model=s.default_model, default_max_tokens=s.default_max_tokens, limits=s.request_limits)

    async def chat(
        self, body: Any, caller: Caller, *, request_id: str | None = None, cache: str = "auto",
        endpoint: str = "chat/completions", trace_headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """Answer one request to `endpoint` (one of ``ENDPOINTS``), or raise ``ProxyError``.

        `cache`: "auto" (deterministic requests only), "force" (cache this one), "bypass".
        `trace_headers`: the request's headers, whose `traceparent` a traced request continues.
        """
        return await self._answer(body, caller, request_id, cache, endpoint, trace_headers)

    async def rate_headers(self, caller: Caller) -> dict[str, str]:
        """The caller's own request quota in OpenAI's header names, so SDKs pace themselves.

        The provider's own x-ratelimit-* headers describe the proxy's keys, not this user, and
        are never passed on. Users have request windows but no token windows, so only the
        request headers are sent; none at all when no window applies.
        """
        try:
            return await self.limiter.rate_headers(caller.user, caller.groups)
        except Exception as exc:
            # a state outage must not fail an answer the limits let through; the backend
            # reports the outage itself, once, so this only notes the missing headers
            log.debug("no quota headers for this answer: %s", type(exc).__name__)
            return {}

    async def _answer(
        self, body: Any, caller: Caller, request_id: str | None, cache: str, endpoint: str,
        trace_headers: Mapping[str, str] | None = None,
    ) -> Reply:
        t0 = self.clock()
        outcome = Outcome(request_id or uuid.uuid4().hex, caller, "", time.time())
        tr: RequestTrace | None = None
        if self.tracing is not None:
            tr = outcome.trace = self.tracing.begin(trace_headers, outcome, endpoint)
        ticket: Ticket | None = None
        try:
            req = self.parse(body, endpoint)
            outcome.model = req.model
            if self.settings.redact_patterns and req.prompt_tokens > 20_000:
                # a long prompt takes a while to scan: off the event loop, so others go on
                redactor = await asyncio.to_thread(self._redact, req, outcome)
            else:
                redactor = self._redact(req, outcome)
            if self.settings.log_prompts:
                outcome.messages = req.payload.get("messages", req.payload.get("prompt", req.payload.get("input")))
            # the caller's own `user` is replaced: a caller must not pose as someone else
            user_id = self.user_id(caller.user)
            if user_id is None:
                req.payload.pop("user", None)
            else:
                req.payload["user"] = user_id
            price = self._admission_price(req, caller)
            key, hit = None, None
            if cache != "bypass" and cacheable(req.payload, cache == "force", req.endpoint):
                key = cache_key(req.payload, req.endpoint)
                with tr.child("rsql.cache") if tr is not None else NO_SPAN as span:
                    hit = self.cache.get(key)
                    span.set_attribute("rsql.cache_hit", hit is not None)
                self.metrics.child(self.metrics.cache, "hit" if hit is not None else "miss").inc()
                if hit is not None and not self.settings.cache_hits_count:
                    quota = await self.rate_headers(caller)
                    return self._restored(self._cache_reply(req, hit, outcome, t0, quota), req, redactor, caller)
            fallback = ""
            try:
                with tr.child("rsql.admission") if tr is not None else NO_SPAN:
                    ticket = await self.limiter.admit(
                        caller.user, caller.groups, price.cost(req.prompt_tokens, req.completion_tokens)
                    )
            except RateLimited as exc:
                if not self._falls_back(req, "budget", exc):
                    raise
                # the budget is spent, and the admin lets the free fallback answer: the
                # request windows and concurrency still hold, the budget does not
                ticket = await self.limiter.admit(caller.user, caller.groups, 0.0, budgets_apply=False)
                fallback = "budget"
            # read now, while nothing is held that a cancelled read could leak (a stream that
            # was never started cannot release its upstream slot)
            quota = await self.rate_headers(caller)
            if hit is not None and not fallback:  # cache_hits_count: admitted like any request
                await self.limiter.finish(ticket, 0.0)
                return self._restored(self._cache_reply(req, hit, outcome, t0, quota), req, redactor, caller)
            if fallback:
                reply = await self._fallback(req, outcome, t0, ticket, fallback)
            else:
                try:
                    reply = await self._forward(req, outcome, t0, ticket, key)
                except (RateLimited, UpstreamError) as exc:
                    if not self._falls_back(req, "capacity", exc):
                        raise
                    reply = await self._fallback(req, outcome, t0, ticket, "capacity")
            reply.headers.update(quota)
            return self._restored(reply, req, redactor, caller)
        except ProxyError as exc:
            if ticket is not None:
                # admitted but not answered for reasons that are not the caller's (no upstream
                # capacity, every upstream failed): the request uses none of the user's quota
                await self.limiter.finish(ticket, 0.0, refund=exc.status in (429, 502, 503, 504))
            outcome.status = exc.status
            outcome.error = exc.code or type(exc).__name__
            if isinstance(exc, RateLimited):
                outcome.limit = exc.limit
            self._finish(outcome, t0)
            raise
        except asyncio.CancelledError:  # the client went away
            if ticket is not None:
                await self.limiter.finish(ticket, outcome.cost_usd)
            outcome.status = 499
            outcome.error = "client_closed"
            self._finish(outcome, t0)
            raise
        except Exception:
            log.exception("request %s failed inside the proxy", outcome.request_id)
            if ticket is not None:
                await self.limiter.finish(ticket, 0.0, refund=True)
            outcome.status = 500
            outcome.error = "internal_error"
            self._finish(outcome, t0)
            raise

    # -- privacy: redaction and the fallback model ---------------------------------------------

    def redact_preview(self, messages: Any) -> dict[str, Any]:
        """What `messages` would look like upstream: the redacted copy and the counts per type.
        Bounded like a chat request (the same message caps); sends nothing, costs nothing."""
        parse_chat_request(
            {"model": "-", "messages": messages}, default_model="-", default_max_tokens=1,
            limits=self.settings.request_limits,
        )
        redactor = Redactor(self.settings.redact_patterns)
        return {"messages": redactor.messages(messages), "redactions": dict(redactor.counts)}

    def _redact(self, req: ChatRequest, outcome: Outcome) -> Redactor | None:
        """Mask personal data in what goes upstream (chat messages, a legacy prompt, embeddings
        input), in place of the payload, before the cache key, the log or a provider sees it."""
        if not self.settings.redact_patterns:
            return None
        redactor = Redactor(self.settings.redact_patterns)
        payload = req.payload
        if "messages" in payload:
            payload["messages"] = redactor.messages(payload["messages"])
        for name in ("prompt", "input"):
            if name in payload:
                payload[name] = redactor.inputs(payload[name])
        if redactor.counts:
            outcome.redactions = dict(redactor.counts)
        return redactor

    def _restored(self, reply: Reply, req: ChatRequest, redactor: Redactor | None, caller: Caller) -> Reply:
        """The answer with placeholders mapped back to this caller's values, where safe.

        Never for SQL clients: their answer is SQL that runs, and a value mapped into it would
        be data turned into code; never inside ```sql fences (``Restorer``). The cache holds
        the redacted answer, so one user's values never reach another through it."""
        if redactor is None or not redactor.counts:
            return reply
        reply.headers["X-RSQL-Redactions"] = ",".join(f"{k}={n}" for k, n in sorted(redactor.counts.items()))
        if caller.client == "sql" or req.endpoint == "embeddings" or not redactor.placeholders:
            return reply
        values = {v: k for k, v in redactor.placeholders.items()}
        field_name = "text" if req.endpoint == "completions" else "content"
        if reply.events is None:
            try:
                obj = json.loads(reply.body)
            except ValueError:
                return reply
            changed = False
            for choice in obj.get("choices") or [] if isinstance(obj, dict) else []:
                holder = choice if field_name == "text" else (choice or {}).get("message")
                if isinstance(holder, dict) and isinstance(holder.get(field_name), str):
                    holder[field_name] = restore_text(holder[field_name], values)
                    changed = True
            if changed:
                reply.body = json.dumps(obj).encode()
            return reply
        reply.events = _restore_events(reply.events, redactor, field_name)
        return reply

    def _falls_back(self, req: ChatRequest, reason: str, exc: ProxyError) -> bool:
        s = self.settings
        if not s.fallback_model or reason not in s.fallback_on or req.endpoint != "chat/completions":
            return False
        spec = next((u for u in s.upstreams if u.name == s.fallback_model), None)
        if spec is None or spec.serves(req.model):
            return False  # the fallback was already one of the candidates
        if reason == "budget":
            return isinstance(exc, RateLimited) and "budget" in (exc.limit or "")
        if isinstance(exc, RateLimited):
            return exc.limit == "upstream capacity"
        return isinstance(exc, UpstreamError) and exc.status in (502, 504)

    async def _fallback(self, req: ChatRequest, outcome: Outcome, t0: float, ticket: Ticket, reason: str) -> Reply:
        """Answer with the fallback upstream's model; never cached (the entry would stand for
        the model asked for), and free where the fallback is (the local model)."""
        spec = next(u for u in self.settings.upstreams if u.name == self.settings.fallback_model)
        model = next((m for m in spec.models if m != "*"), req.model)
        log.info("request %s: model %r answered by fallback upstream %s (%s)",
                 outcome.request_id, req.model, spec.name, reason)
        req.model = outcome.model = req.payload["model"] = model
        outcome.fallback = spec.name
        self.metrics.child(self.metrics.fallbacks, spec.name, reason).inc()
        if self.prices.max_price(model) == FREE:
            await self.limiter.unreserve(ticket)
        exclude = {k.spec.name for k in self.pool.keys if k.spec.name != spec.name}
        reply = await self._forward(req, outcome, t0, ticket, None, exclude=exclude)
        reply.headers["X-RSQL-Fallback"] = spec.name
        return reply

    def _admission_price(self, req: ChatRequest, caller: Caller) -> Price:
        """The price a reservation assumes; under a budget, also makes it a true worst case.

        A budget can only hold what it can price: a model without a known price is refused
        (unless the admin opted in with unpriced_models = "free"), and a request that set no
        max_tokens is capped at the default it was reserved for, or its answer could cost more.
        """
        price = self.prices.max_price(req.model)
        budgeted = self.limiter.budgeted(caller.user, caller.groups)
        if price is None:
            if budgeted and self.settings.unpriced_models != "free":
                raise Forbidden(
                    f"model {req.model!r} has no known price, and a daily budget applies to your "
                    "requests, so it cannot be used. An admin can set its price on its upstream "
                    f'("prices": {{"{req.model}": {{"input": USD per 1M tokens, "output": ...}}}} in '
                    'c.RSQLProxy.upstreams) or let unpriced models cost 0 with '
                    'c.RSQLProxy.unpriced_models = "free"',
                    code="model_not_priced",
                    extra={"param": "model"},
                )
            price = FREE
        if budgeted and not req.max_tokens_set and price.output > 0 and req.cap_field:
            # the provider sees the limit the reservation assumed (max_completion_tokens: the
            # name every current OpenAI-compatible chat API takes, reasoning models included;
            # the legacy completions API knows only max_tokens)
            req.payload[req.cap_field] = req.max_tokens
        return price

    def _finish(self, outcome: Outcome, t0: float) -> None:
        outcome.latency_s = self.clock() - t0
        if outcome.trace is not None:
            try:
                outcome.trace.end(outcome)
            except Exception:
                log.exception("ending the request's span failed")
        for cb in self.on_outcome:
            try:
                cb(outcome)
            except Exception:
                log.exception("outcome hook failed")

    def _cache_reply(
        self, req: ChatRequest, hit: Cached, outcome: Outcome, t0: float, quota: dict[str, str]
    ) -> Reply:
        """The cached answer in the shape asked for, exactly as the provider gave it (its usage,
        cost_usd included, is the original's; X-RSQL-Cost-USD says what this request cost)."""
        outcome.cache_hit = True
        outcome.upstream = "cache"
        headers = {"X-Request-Id": outcome.request_id, "X-RSQL-Cache": "hit", "X-RSQL-Cost-USD": "0", **quota}
        self._finish(outcome, t0)
        if not req.stream:
            return Reply(200, {**headers, "Content-Type": "application/json"}, body=hit.body)
        headers.update({"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        return Reply(200, headers, events=_replay(hit, req.wants_usage_chunk))

    async def _forward(
        self, req: ChatRequest, outcome: Outcome, t0: float, ticket: Ticket, key: str | None,
        exclude: set[str] | None = None,
    ) -> Reply:
        pool = self.pool
        deadline = self.clock() + self.settings.max_wait_seconds
        tried: set[str] = set(exclude or ())
        failures: list[tuple[str, UpstreamFailure]] = []
        tr: RequestTrace | None = outcome.trace
        for _ in range(2 * len(pool.keys) + 2):
            try:
                slot = await pool.acquire(req.model, req.reserve_tokens, tried, deadline)
            except UpstreamError:
                if failures:  # every key was tried: say what happened to each
                    raise self._exhausted(req.model, failures) from None
                raise
            spec = slot.key.spec
            outcome.upstream = spec.name
            outcome.attempts.append(spec.name)
            span = tr.start_attempt(spec.name, req.model, len(outcome.attempts)) if tr is not None else None
            t_up = self.clock()
            try:
                if spec.provider == "llama_cpp":
                    if req.endpoint != "chat/completions":  # the local model only chats
                        raise UpstreamFailure("unserved", f"serves no v1/{req.endpoint}", 404)
                    reply = await self.local.send(
                        spec, req.payload, stream=req.stream, timeout=self.settings.upstream_timeout_seconds
                    )
                else:
                    reply = await self.http.send(
                        spec, req.payload, stream=req.stream, timeout=self.settings.upstream_timeout_seconds,
                        endpoint=req.endpoint,
                    )
            except UpstreamFailure as fail:
                outcome.upstream_s += self.clock() - t_up
                fail = _unserved(fail, req.endpoint)
                failures.append((spec.name, fail))
                if span is not None:
                    span.set_attributes({"http.response.status_code": fail.status or 0, "rsql.error": fail.kind})
                    span.end()
                self.metrics.child(self.metrics.attempts, spec.name, fail.kind).inc()
                if await self._on_failure(slot, fail):
                    tried.add(spec.name)
                if fail.kind == "client":  # the request itself is wrong: no other key will help
                    raise _rejected(fail, spec.api_key) from None
                continue
            except BaseException:  # cancelled mid-call: the provider may have seen it
                if span is not None:
                    span.set_attribute("rsql.error", "cancelled")
                    span.end()
                await pool.release(slot, counted=True)
                raise
            outcome.upstream_s += self.clock() - t_up
            if tr is not None:  # ended with the request, once its tokens and cost are known
                span.set_attribute("http.response.status_code", 200)
                tr.attempt = span
            self.metrics.child(self.metrics.attempts, spec.name, "ok").inc()
            await pool.succeeded(slot, reply.headers)
            if req.stream:
                return self._stream_reply(req, slot, reply, outcome, t0, ticket, key)
            return await self._json_reply(req, slot, reply, outcome, t0, ticket, key)
        raise self._exhausted(req.model, failures)

    async def _on_failure(self, slot: Slot, fail: UpstreamFailure) -> bool:
        """Record a failed attempt; True when this key should not be retried in this request."""
        pool, alias = self.pool, slot.key.alias
        if fail.kind == "rate_limited":
            secs = await pool.rate_limited(slot, fail.retry_after, fail.headers)
            await pool.release(slot, counted=False)
            log.warning("upstream %s: 429, account %s cools down %.1f s", alias, slot.key.spec.account, secs)
            return False  # the cooldown keeps it out; it may serve again within the deadline
        if fail.kind == "auth":
            await pool.disable(slot.key, f"HTTP {fail.status} from provider")
            await pool.release(slot, counted=False)
            log.error("upstream %s: key rejected (HTTP %s); disabled until a health check passes", alias, fail.status)
            return True
        if fail.kind in ("client", "unserved"):
            await pool.release(slot, counted=fail.kind == "client")
            return True
        await pool.failed(slot, fail.kind if not fail.status else f"HTTP {fail.status}")
        await pool.release(slot, counted=fail.kind != "connect")
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
        unserved = [alias for alias, f in failures if f.kind == "unserved"]
        if unserved and len(unserved) == len(failures):
            return NotFound(
                f"no upstream serving model {model!r} serves this endpoint: "
                + "; ".join(f"{alias} answered HTTP {f.status} (it does not offer it)" for alias, f in failures[-5:]),
                code="endpoint_not_served",
            )
        if all(f.kind == "timeout" for _, f in failures):
            return UpstreamError(f"upstreams for model {model!r} timed out: {detail}", status=504, code="upstream_timeout")
        return UpstreamError(f"every upstream attempt for model {model!r} failed: {detail}")

    def _settle_usage(self, outcome: Outcome, usage: dict[str, Any] | None, slot: Slot) -> int | None:
        if not usage:
            return None
        outcome.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        outcome.completion_tokens = int(usage.get("completion_tokens") or 0)
        price = self.prices.price(outcome.model, slot.key.alias)
        outcome.cost_usd = price.cost(outcome.prompt_tokens, outcome.completion_tokens)
        return outcome.prompt_tokens + outcome.completion_tokens

    async def _json_reply(
        self, req: ChatRequest, slot: Slot, reply: UpstreamReply, outcome: Outcome, t0: float,
        ticket: Ticket, key: str | None,
    ) -> Reply:
        body = reply.body
        try:
            obj = json.loads(body)
        except ValueError:
            obj = None
        usage = _usage_of(obj) if isinstance(obj, dict) else None
        tokens = self._settle_usage(outcome, usage, slot)
        if usage is not None:
            usage["cost_usd"] = round(outcome.cost_usd, 8)
            body = json.dumps(obj).encode()
        else:
            # an answer that says nothing of its usage is charged its reservation, as a stream
            # is: otherwise an upstream that omits usage would make every answer free
            outcome.cost_usd = ticket.reserved
        await self.pool.release(slot, tokens=tokens, counted=True)
        await self.limiter.finish(ticket, outcome.cost_usd)
        if key is not None and obj is not None:
            self.cache.put(key, Cached(body))
        headers = {
            "X-Request-Id": outcome.request_id,
            "X-RSQL-Upstream": slot.key.alias,
            "X-RSQL-Cache": "miss",
            "X-RSQL-Cost-USD": f"{outcome.cost_usd:.8f}",
            "Content-Type": "application/json",
        }
        self._finish(outcome, t0)
        return Reply(200, headers, body=body)

    def _stream_reply(
        self, req: ChatRequest, slot: Slot, reply: UpstreamReply, outcome: Outcome, t0: float,
        ticket: Ticket, key: str | None,
    ) -> Reply:
        pool = self.pool
        # a streamed answer is cached as its events (the same stream on a replay) and as the
        # completion they add up to (for a JSON request); dropped past the cache's byte limit
        collected = Collector(legacy=req.endpoint == "completions") if key is not None else None
        kept: list[bytes] | None = [] if key is not None else None
        room = self.cache.max_bytes

        async def events() -> AsyncIterator[bytes]:
            nonlocal kept, room
            tokens = None
            try:
                async for ev in _chain(reply.first, reply.events):
                    obj = event_json(ev) if b'"usage"' in ev else None
                    if obj is not None:
                        usage = _usage_of(obj)
                        if usage:
                            tokens = self._settle_usage(outcome, usage, slot)
                            usage["cost_usd"] = round(outcome.cost_usd, 8)
                            ev = sse(obj)
                    if kept is not None:
                        kept.append(ev)
                        room -= len(ev)
                        if room < 0:
                            kept = None
                    if collected is not None:
                        collected.feed(ev)
                    if obj is not None and not req.wants_usage_chunk:
                        shaped = shape_event(obj, False)
                        if shaped is None:
                            continue  # we asked for the usage chunk; the client did not
                        ev = sse(shaped)
                    yield ev
                if collected is not None and kept is not None and collected.complete:
                    body = json.dumps(collected.completion()).encode()
                    self.cache.put(key, Cached(body, tuple(kept)))  # type: ignore[arg-type]
            except UpstreamFailure as fail:
                outcome.status, outcome.error = 502, f"stream {fail.kind}"
                await pool.failed(slot, f"stream {fail.kind}")
                yield _sse_error("the upstream stream broke off: " + fail.message)
            except (asyncio.CancelledError, GeneratorExit):
                outcome.status, outcome.error = 499, "client_closed"
                raise
            except Exception as exc:  # the connection broke mid-stream (HTTPError, OSError)
                outcome.status, outcome.error = 502, "stream_broken"
                await pool.failed(slot, "stream broken")
                yield _sse_error(f"the upstream stream broke off ({type(exc).__name__})")
            finally:
                await pool.release(slot, tokens=tokens, counted=True)
                if reply.close:
                    reply.close()
                if tokens is None and outcome.status < 400:
                    # no usage chunk came: charge the reservation rather than nothing
                    outcome.cost_usd = ticket.reserved
                await self.limiter.finish(ticket, outcome.cost_usd)
                self._finish(outcome, t0)

        headers = {
            "X-Request-Id": outcome.request_id,
            "X-RSQL-Upstream": slot.key.alias,
            "X-RSQL-Cache": "miss",
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
        }
        return Reply(200, headers, events=events())


async def _restore_events(events: AsyncIterator[bytes], redactor: Redactor, field_name: str) -> AsyncIterator[bytes]:
    """A stream with placeholders mapped back, per choice; a placeholder split across chunks is
    held back until it is complete (or the choice finishes)."""
    restorers: dict[Any, Any] = {}
    last: dict[str, Any] | None = None

    def leftovers() -> bytes:
        parts = []
        for idx, r in restorers.items():
            rest = r.flush()
            if rest and last is not None:
                delta = {"text": rest} if field_name == "text" else {"delta": {"content": rest}}
                parts.append(sse({**last, "choices": [{"index": idx, **delta, "finish_reason": None}]}))
        return b"".join(parts)

    try:
        async for ev in events:
            obj = event_json(ev)
            choices = obj.get("choices") if obj is not None else None
            if not isinstance(choices, list) or not choices:
                if ev.startswith(DONE[:12]):
                    ev = leftovers() + ev
                yield ev
                continue
            last = {k: v for k, v in obj.items() if k not in ("choices", "usage")}
            changed = False
            for choice in choices:
                if not isinstance(choice, dict):
                    continue
                holder = choice if field_name == "text" else choice.get("delta")
                if not isinstance(holder, dict):
                    continue
                r = restorers.get(choice.get("index", 0))
                if r is None:
                    r = restorers[choice.get("index", 0)] = redactor.restorer()
                text = holder.get(field_name)
                if isinstance(text, str):
                    holder[field_name] = r.feed(text)
                    changed = True
                if choice.get("finish_reason") is not None:
                    rest = r.flush()
                    if rest:
                        holder[field_name] = (holder.get(field_name) or "") + rest
                        changed = True
            yield sse(obj) if changed else ev
        tail = leftovers()
        if tail:
            yield tail
    finally:
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()


async def _replay(hit: Cached, with_usage: bool) -> AsyncIterator[bytes]:
    """A cached answer as a stream: its own events when it was streamed, else the chunks its
    completion would have been streamed as; the usage chunk only when the client asked."""
    if hit.events is None:
        for ev in chunks_of(json.loads(hit.body), with_usage):
            yield ev
        return
    for ev in hit.events:
        if not with_usage and b'"usage"' in ev:
            obj = event_json(ev)
            if obj is not None:
                shaped = shape_event(obj, False)
                if shaped is None:
                    continue
                ev = sse(shaped)
        yield ev


async def _chain(first: bytes, rest: AsyncIterator[bytes] | None) -> AsyncIterator[bytes]:
    yield first
    if rest is not None:
        async for ev in rest:
            yield ev


def _unserved(fail: UpstreamFailure, endpoint: str) -> UpstreamFailure:
    """A 404 or 405 from an upstream for an endpoint other than chat means it does not offer
    that endpoint (a provider with no embeddings): the next upstream may, unless the 404 is
    about the model."""
    if fail.kind != "client" or endpoint == "chat/completions" or fail.status not in (404, 405):
        return fail
    if _error_of(fail.body).get("code") == "model_not_found":
        return fail
    return UpstreamFailure("unserved", f"HTTP {fail.status}: serves no v1/{endpoint}", fail.status)


def _rejected(fail: UpstreamFailure, secret: str) -> ProxyError:
    """The provider's 4xx as it sent it (the body was scrubbed of key text by the transport)."""
    error = _error_of(fail.body)
    if isinstance(error.get("message"), str):
        error["message"] = scrub(error["message"], secret)
    return UpstreamRejected(fail.status, error, f"upstream rejected the request (HTTP {fail.status})")


def _sse_error(message: str) -> bytes:
    return b"data: " + json.dumps({"error": {"message": message, "type": "upstream_error"}}).encode() + b"\n\n"


def _error_of(body: bytes) -> dict[str, Any]:
    try:
        err = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return {}
    if isinstance(err, str):  # some OpenAI-compatible servers send {"error": "text"}
        return {"message": err}
    return dict(err) if isinstance(err, dict) else {}
