"""Forwarding with failover: keys tried until one answers or the wait runs out, and the
fallback upstream that may answer when none can."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from .errors import NotFound, ProxyError, RateLimited, UpstreamError, UpstreamRejected
from .exchange import Exchange
from .limiter import Limiter
from .metrics import Metrics
from .options import EngineSettings
from .pool import Pool, Slot
from .pricing import FREE, PriceBook
from .records import Reply
from .replies import Replies
from .request import ChatRequest
from .transport import UpstreamFailure, scrub
from .transports import Transports

log = logging.getLogger("rsql.engine")


class Forwarder:
    """Sends an admitted request upstream, failing over between keys, and hands the answer to
    ``Replies``."""

    def __init__(
        self, settings: EngineSettings, pool: Pool, transports: Transports, replies: Replies,
        limiter: Limiter, prices: PriceBook, metrics: Metrics, clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.transports = transports
        self.replies = replies
        self.limiter = limiter
        self.prices = prices
        self.metrics = metrics
        self.clock = clock

    async def forward(self, ex: Exchange, exclude: set[str] | None = None) -> Reply:
        """The first answer any usable key gives; `exclude`: upstreams not to try."""
        pool, req, outcome, tr = self.pool, ex.req, ex.outcome, ex.trace
        deadline = self.clock() + self.settings.max_wait_seconds
        tried: set[str] = set(exclude or ())
        failures: list[tuple[str, UpstreamFailure]] = []
        for _ in range(2 * len(pool.keys) + 2):
            first, ex.first_pick = ex.first_pick, None
            try:
                slot = await pool.acquire(req.model, req.reserve_tokens, tried, deadline, first)
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
                reply = await self.transports.for_spec(spec).send(
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
            ex.slot = slot
            if req.stream:
                return self.replies.stream_reply(ex, reply)
            return await self.replies.json_reply(ex, reply)
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

    def falls_back(self, req: ChatRequest, reason: str, exc: ProxyError) -> bool:
        """Whether the fallback upstream may answer `req`, refused for `reason` with `exc`."""
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

    async def fallback(self, ex: Exchange, reason: str) -> Reply:
        """Answer with the fallback upstream's model; never cached (the entry would stand for
        the model asked for), and free where the fallback is (the local model)."""
        req, outcome = ex.req, ex.outcome
        spec = next(u for u in self.settings.upstreams if u.name == self.settings.fallback_model)
        model = next((m for m in spec.models if m != "*"), req.model)
        log.info("request %s: model %r answered by fallback upstream %s (%s)",
                 outcome.request_id, req.model, spec.name, reason)
        req.model = outcome.model = req.payload["model"] = model
        outcome.fallback = spec.name
        self.metrics.child(self.metrics.fallbacks, spec.name, reason).inc()
        if self.prices.max_price(model) == FREE:
            await self.limiter.unreserve(ex.ticket)  # type: ignore[arg-type]
        ex.cache_key = None
        exclude = {k.spec.name for k in self.pool.keys if k.spec.name != spec.name}
        reply = await self.forward(ex, exclude=exclude)
        reply.headers["X-RSQL-Fallback"] = spec.name
        return reply


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


def _error_of(body: bytes) -> dict[str, Any]:
    try:
        err = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return {}
    if isinstance(err, str):  # some OpenAI-compatible servers send {"error": "text"}
        return {"message": err}
    return dict(err) if isinstance(err, dict) else {}
