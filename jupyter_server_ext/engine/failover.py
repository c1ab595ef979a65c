"""Forwarding with failover: keys tried until one answers or the wait runs out, and the
fallback upstream that may answer when none can."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from typing import Any

from .accounting.pricing import FREE, PriceBook
from .admission.entitlements import Access
from .admission.limiter import Limiter
from .bodies.reading import scrub
from .bodies.request import ChatRequest
from .errors import (
    EngineError,
    NotFound,
    RateLimited,
    UpstreamError,
    UpstreamFailure,
    UpstreamRejected,
)
from .interface import Caller, Reply
from .monitoring.metrics import Metrics
from .prompt_cache import for_upstream
from .replies import Replies
from .request_state import Exchange, at_provider
from .settings import EngineSettings
from .upstreams.pool import Key, Pool, Slot, request_too_large
from .upstreams.specs import UpstreamSpec
from .upstreams.transport import Transports
from .upstreams.transport.protocol import UpstreamAnswer

log = logging.getLogger("rsql.engine")

# A key that passed a probe is trusted this long: a 401 / 403 in that time is about the request
# (a model the project may not use, a moderation refusal), and costs no second probe.
KEY_TRUSTED_SECONDS = 60.0
PROBE_TIMEOUT = 10.0
# How providers say a request is larger than a whole window (OpenAI's 429 "Request too large
# for gpt-4o ... (TPM): Limit 30000, Requested 36278"; Groq's 413 the same), against a full
# window ("Rate limit reached ...: Limit 30000, Used 29937, Requested 385")
_LIMIT_REQUESTED = re.compile(
    r"limit:?\s*([\d,]+)(?:\s*,\s*used:?\s*([\d,]+))?\s*,\s*requested:?\s*([\d,]+)", re.I
)
_TOO_LARGE = re.compile(r"request (?:is )?too large|too many (?:input )?tokens", re.I)
# the provider's own wording opens its message; a request's echoed text (an unknown field's
# name, a value in a validation error) comes after the provider's own words
_OWN_TOO_LARGE = re.compile(r"\s*request too large\b", re.I)


class Forwarder:
    """Sends an admitted request upstream, failing over between keys, and hands the answer to
    ``Replies``."""

    def __init__(
        self,
        settings: EngineSettings,
        pool: Pool,
        transports: Transports,
        replies: Replies,
        limiter: Limiter,
        prices: PriceBook,
        metrics: Metrics,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.transports = transports
        self.replies = replies
        self.limiter = limiter
        self.prices = prices
        self.metrics = metrics
        self.clock = clock
        self._key_ok_at: dict[str, float] = {}  # alias -> when a probe last found the key good
        self._probes: dict[str, asyncio.Future[Any]] = {}  # alias -> the probe under way

    async def forward(self, ex: Exchange, exclude: set[str] | None = None) -> Reply:
        """The first answer any usable key gives; `exclude`: upstreams not to try."""
        pool, req, outcome, tr = self.pool, ex.req, ex.outcome, ex.trace
        deadline = self.clock() + self.settings.max_wait_seconds
        tried: set[str] = set(exclude or ())
        failures: list[tuple[str, UpstreamFailure]] = []
        suspects: list[Slot] = []  # keys that failed this request in a way it may have caused
        for _ in range(2 * len(pool.keys) + 2):
            try:
                slot = await ex.hold.acquire(req, tried, deadline)
            except UpstreamError:
                if failures:  # every key was tried: say what happened to each
                    raise self._exhausted(req.model, failures, req) from None
                raise
            spec = slot.key.spec
            outcome.upstream = spec.name
            outcome.attempts.append(spec.name)
            span = (
                tr.start_attempt(spec.name, req.model, len(outcome.attempts))
                if tr is not None
                else None
            )
            t_up = self.clock()
            try:
                answer = await self._send(ex, spec, span)
            except UpstreamFailure as fail:
                outcome.upstream_s += self.clock() - t_up
                # shielded: a client that leaves while the key is probed (up to PROBE_TIMEOUT)
                # must not leave the key's slot held for good
                error = await asyncio.shield(
                    self._attempt_failed(ex, slot, span, fail, failures, tried, suspects)
                )
                if error is not None:
                    raise error from None
                continue
            except asyncio.CancelledError:
                if not ex.handed_off:  # cut short at the provider (the host's shutdown): the
                    # provider may bill what nobody now reads, so its worst case is charged
                    self._hand_off(ex, span, cancelled=True)
                raise
            except BaseException:  # failed inside the proxy mid-call: the provider may have seen
                # it, so the request's end gives the slot back counted
                if span is not None:
                    span.set_attribute("rsql.error", "internal")
                    span.end()
                raise
            outcome.upstream_s += self.clock() - t_up
            if (
                tr is not None and span is not None
            ):  # ended with the request, once its tokens and cost are known
                span.set_attribute("http.response.status_code", 200)
                tr.attempt = span
            for failed in suspects:  # another key served the request: those failures were the keys'
                await pool.failed(failed, "", counted=False)
            self._served(ex)
            self.metrics.child(self.metrics.attempts, spec.name, "ok").inc()
            if req.stream:  # the key's success told once the first event is on its way
                return await self.replies.stream_reply(ex, answer)
            await pool.succeeded(slot, answer.headers, answer.head_wait)
            return await self.replies.json_reply(ex, answer)
        raise self._exhausted(req.model, failures, req)

    async def _send(self, ex: Exchange, spec: UpstreamSpec, span: Any) -> UpstreamAnswer:
        """One attempt's call to the provider. A client that leaves meanwhile does not stop what
        the provider generates and bills (``request_state.at_provider``): the answer, or failure, is awaited and
        then handed to the background, and the request ends as cancelled."""
        req = ex.req
        with at_provider() as watch:
            try:
                answer = await self.transports.for_spec(spec).send(
                    spec,
                    for_upstream(req, spec),
                    stream=req.stream,
                    timeout=self.settings.upstream_timeout_seconds,
                    endpoint=req.endpoint,
                    max_tokens=req.max_tokens or 0,
                    headers=req.upstream_headers,
                )
            except UpstreamFailure as fail:
                if watch is None or not watch.left:
                    raise
                self._hand_off(ex, span, exception=fail)
                raise asyncio.CancelledError from None
        if watch is not None and watch.left:
            self._served(ex)  # answered all the same: its cache is on this account now
            self._hand_off(ex, span, answer=answer)
            raise asyncio.CancelledError
        return answer

    def _served(self, ex: Exchange) -> None:
        """The conversation's home is where it was answered; a fallback's other model leaves
        it where the model asked for is cached."""
        if ex.req.affinity is not None and not ex.outcome.fallback:
            self.pool.served(ex.hold.slot, ex.req.affinity)

    def _hand_off(
        self,
        ex: Exchange,
        span: Any,
        *,
        answer: UpstreamAnswer | None = None,
        exception: BaseException | None = None,
        cancelled: bool = False,
    ) -> None:
        """What the provider gave for a request whose client left (its answer, its failure, or,
        `cancelled`, nothing that will be read) goes to the background, which charges it and
        ends the request's hold (``Replies.adopt``)."""
        if span is not None:
            span.set_attribute("rsql.error", "cancelled")
            span.end()
        given: asyncio.Future[UpstreamAnswer] = asyncio.get_running_loop().create_future()
        if cancelled:
            given.cancel()
        elif exception is not None:
            given.set_exception(exception)
        else:
            assert answer is not None
            given.set_result(answer)
        self.replies.adopt(ex, given)

    async def _attempt_failed(
        self,
        ex: Exchange,
        slot: Slot,
        span: Any,
        fail: UpstreamFailure,
        failures: list[tuple[str, UpstreamFailure]],
        tried: set[str],
        suspects: list[Slot],
    ) -> EngineError | None:
        """Record a failed attempt and give its slot back (an accepted attempt's at the request's
        end: it is billed): the error that ends the request, or None to try another key."""
        spec = slot.key.spec
        fail = _unserved(fail, ex.req.endpoint)
        if fail.kind == "auth" and await self._key_works(slot.key):
            fail.kind = (
                "client"  # the key is good: the provider refused this request for what it asks
            )
        if fail.kind in ("rate_limited", "client"):
            size = too_large(fail, ex.req.prompt_tokens)
            if size is not None:
                fail.kind = "too_large"
                fail.limit = size
        failures.append((spec.name, fail))
        if span is not None:
            span.set_attributes(
                {"http.response.status_code": fail.status or 0, "rsql.error": fail.kind}
            )
            span.end()
        self.metrics.child(self.metrics.attempts, spec.name, fail.kind).inc()
        if fail.kind == "timeout" and fail.accepted:
            return await self._accepted_timeout(ex, slot)
        if fail.kind == "too_large":
            # about this request alone: nothing cools, and its limit is learned, so the next
            # prompt past it is refused here; the account's other keys have the same window
            await self.pool.too_large(slot, fail.limit or None, fail.headers)
            await ex.hold.let_go(counted=False)
            account = spec.account
            tried.update(k.alias for k in self.pool.keys if k.spec.account == account)
            return None
        skip, tokens, counted = await self._on_failure(slot, fail, ex.caller.user)
        await ex.hold.let_go(tokens=tokens, counted=counted)
        if skip:
            tried.add(spec.name)
        if fail.kind not in (
            "rate_limited",
            "auth",
            "client",
            "unserved",
            "unsupported",
            "connect",
        ):
            suspects.append(slot)  # counted as this user's failure, until another key serves it
        if fail.kind == "client":  # the request itself is wrong: no other key will help
            return _rejected(fail, spec.api_key)
        return None

    async def _accepted_timeout(self, ex: Exchange, slot: Slot) -> UpstreamError:
        """The provider took the request but gave no answer in time. It may be generating one,
        and bills it, so the request is charged its worst case and not sent to another key
        (which would bill it again). It counts against the key's breaker as a failure of this
        user's (``Breaker``): a long answer asked for by one user never opens it, a key that
        hangs for two users or more does."""
        ex.billed = True  # the request's end gives the slot back, counting its reservation
        cost = self.replies.charge_worst_case(ex)
        await self.pool.failed(slot, "timeout", ex.caller.user)
        wait = self.settings.upstream_timeout_seconds
        log.warning(
            "upstream %s: no answer within %g s; charged as billed, not retried",
            slot.key.alias,
            wait,
        )
        return UpstreamError(
            f"upstream {slot.key.alias} accepted the request but gave no answer within {wait:g} s. The "
            f"provider may still bill it, so it was charged (${cost:.6f}) and not sent to another key; "
            "ask for a shorter answer (max_tokens) or stream it",
            status=504,
            code="upstream_timeout",
        )

    async def _key_works(self, key: Key) -> bool:
        """Whether `key` itself is good, asked after it got a 401 / 403: a probe of the
        provider's model listing with it (at most one at a time per key, and none while a
        recent probe passed). Only a probe that is refused too says the key is bad; one that
        cannot tell leaves the key serving, so no request can take a key out by what it asks."""
        alias = key.alias
        ok_at = self._key_ok_at.get(alias)
        if ok_at is not None and self.clock() - ok_at < KEY_TRUSTED_SECONDS:
            return True
        probe = self._probes.get(alias)
        if probe is None:
            spec = key.spec
            probe = self._probes[alias] = asyncio.ensure_future(
                self.transports.for_spec(spec).get_models(spec, PROBE_TIMEOUT)
            )
            probe.add_done_callback(lambda _: self._probes.pop(alias, None))
        status = await asyncio.shield(probe)
        if status in (401, 403):
            return False
        if 200 <= status < 300:
            self._key_ok_at[alias] = self.clock()
        else:
            log.warning(
                "upstream %s: a 401/403, and the key's probe could not tell (%s); key kept",
                alias,
                status,
            )
        return True

    async def _on_failure(
        self, slot: Slot, fail: UpstreamFailure, user: str
    ) -> tuple[bool, int | None, bool]:
        """Record a failed attempt of `user`'s request: whether this key should not be retried
        in this request, and how its slot is given back (the tokens the account's window keeps,
        None its whole reservation; whether the provider counted the request)."""
        pool, alias = self.pool, slot.key.alias
        if fail.kind == "rate_limited":
            secs = await pool.rate_limited(slot, fail.retry_after, fail.headers)
            log.warning(
                "upstream %s: 429, account %s cools down %.1f s", alias, slot.key.spec.account, secs
            )
            # the cooldown keeps it out; it may serve again within the deadline
            return False, None, False
        if fail.kind == "auth":
            await pool.disable(slot.key, f"HTTP {fail.status} from provider")
            log.error(
                "upstream %s: key rejected (HTTP %s); disabled until a health check passes",
                alias,
                fail.status,
            )
            return True, None, False
        if fail.kind in ("client", "unserved", "unsupported"):
            # a 4xx about the request: the provider counted a request and billed no tokens, so
            # its answer budget does not fill the account's token window for everyone
            return True, 0, fail.kind == "client"
        # a refused connection is the host's alone; an error answer may be the request's doing
        await pool.failed(
            slot,
            fail.kind if not fail.status else f"HTTP {fail.status}",
            None if fail.kind == "connect" else user,
        )
        # an error answer (5xx) ended the request: the provider generated and billed nothing,
        # so, as for a 4xx, one request and no tokens; a body that makes a provider fail with a
        # huge max_tokens must not fill the account's token window. A timeout keeps the whole
        # reservation: the provider may be generating the answer still.
        answered = fail.status is not None and fail.status >= 500
        log.warning("upstream %s failed: %s", alias, fail)
        return True, 0 if answered else None, fail.kind != "connect"

    def _exhausted(
        self,
        model: str,
        failures: list[tuple[str, UpstreamFailure]],
        req: ChatRequest | None = None,
    ) -> EngineError:
        if not failures:
            return UpstreamError(f"no upstream could serve model {model!r}")
        big = [f for _, f in failures if f.kind == "too_large"]
        if big and len(big) == len(failures):
            tokens = req.reserve_tokens if req is not None else 0
            prompt = req.prompt_tokens if req is not None else 0
            return request_too_large(model, tokens, prompt, max(f.limit for f in big))
        # an account the request is too large for says nothing of the others' capacity
        failures = [(alias, f) for alias, f in failures if f.kind != "too_large"]
        if all(f.kind == "rate_limited" for _, f in failures):
            wait = min(
                (f.retry_after or self.settings.default_cooldown_seconds) for _, f in failures
            )
            return RateLimited(
                f"every upstream key for model {model!r} is rate limited by the provider",
                retry_after=wait,
                limit="upstream capacity",
            )
        unsupported = next((f for _, f in failures if f.kind == "unsupported"), None)
        if unsupported is not None and all(
            f.kind in ("unsupported", "unserved") for _, f in failures
        ):
            # no upstream of another kind could take it: the field the provider cannot express
            return _rejected(unsupported, "")
        detail = "; ".join(f"{alias}: {f}" for alias, f in failures[-5:])
        unserved = [alias for alias, f in failures if f.kind == "unserved"]
        if unserved and len(unserved) == len(failures):
            return NotFound(
                f"no upstream serving model {model!r} serves this endpoint: "
                + "; ".join(
                    f"{alias} answered HTTP {f.status} (it does not offer it)"
                    for alias, f in failures[-5:]
                ),
                code="endpoint_not_served",
            )
        if all(f.status == 529 for _, f in failures):  # Anthropic's "overloaded", everywhere
            return UpstreamError(
                f"every upstream for model {model!r} is overloaded: {detail}",
                code="upstream_overloaded",
            )
        if all(f.kind == "timeout" for _, f in failures):
            return UpstreamError(
                f"upstreams for model {model!r} timed out: {detail}",
                status=504,
                code="upstream_timeout",
            )
        return UpstreamError(f"every upstream attempt for model {model!r} failed: {detail}")

    def falls_back(self, req: ChatRequest, reason: str, exc: EngineError) -> bool:
        """Whether the fallback upstream may answer `req`, refused for `reason` with `exc`."""
        s = self.settings
        if (
            not s.fallback_model
            or reason not in s.fallback_on
            or req.endpoint != "chat/completions"
        ):
            return False
        spec = next((u for u in s.upstreams if u.name == s.fallback_model), None)
        if spec is None or spec.serves(req.model):
            return False  # the fallback was already one of the candidates
        if reason == "budget":
            return isinstance(exc, RateLimited) and "budget" in (exc.limit or "")
        if isinstance(exc, RateLimited):
            return exc.limit == "upstream capacity"
        return isinstance(exc, UpstreamError) and exc.status in (502, 504)

    def may_fall_back(
        self,
        req: ChatRequest,
        access: Access,
        caller: Caller,
        reason: str,
        exc: EngineError,
        reserved: float | None,
    ) -> bool:
        """Whether the fallback may answer `req`, refused for `reason` with `exc`: the admin
        allows it for that reason, and the caller could have asked for its model directly, now
        (entitlements and the window in force), at a price the budget can hold: free past a
        spent budget, else no dearer than what the request reserved (`reserved`; None before
        admission), since the
        reservation is the budget's only hold on what is spent."""
        if not self.falls_back(req, reason, exc):
            return False
        model = self.fallback_model(req)
        if not access.allows(model):
            return False
        price = self.prices.max_price(model)
        if not self.limiter.budgeted(caller.user, caller.groups):
            return True
        if price is None:
            return self.settings.unpriced_models == "free" and reason == "capacity"
        unpriced_audio = self.prices.missing_audio_rate(model, req.audio)
        if unpriced_audio and self.settings.unpriced_models != "free":
            return False  # its sound would be charged as text (``ModelChoice._check_audio``)
        worst = price.worst(req.prompt_tokens, req.completion_tokens, req.audio)
        if reason == "budget":
            return worst == 0
        return reserved is not None and worst <= reserved

    def fallback_model(self, req: ChatRequest) -> str:
        """The model the fallback upstream answers `req` with (its first named model)."""
        spec = next(u for u in self.settings.upstreams if u.name == self.settings.fallback_model)
        return next((m for m in (*spec.models, *sorted(spec.discovered)) if m != "*"), req.model)

    async def fallback(self, ex: Exchange, reason: str) -> Reply:
        """Answer with the fallback upstream's model; never cached (the entry would stand for
        the model asked for), and free where the fallback is (the local model). The engine
        checked that the caller may use it at the price reserved (``may_fall_back``)."""
        req, outcome = ex.req, ex.outcome
        spec = next(u for u in self.settings.upstreams if u.name == self.settings.fallback_model)
        model = self.fallback_model(req)
        log.info(
            "request %s: model %r answered by fallback upstream %s (%s)",
            outcome.request_id,
            req.model,
            spec.name,
            reason,
        )
        req.model = outcome.model = req.payload["model"] = model
        outcome.fallback = spec.name
        self.metrics.child(self.metrics.fallbacks, spec.name, reason).inc()
        if self.prices.max_price(model) == FREE:
            await ex.hold.admission.unreserve()
        ex.cache_key = None
        exclude = {k.spec.name for k in self.pool.keys if k.spec.name != spec.name}
        reply = await self.forward(ex, exclude=exclude)
        reply.headers["X-RSQL-Fallback"] = spec.name
        return reply


def too_large(fail: UpstreamFailure, prompt: int) -> int | None:
    """The provider's token limit when `fail` (a 429 or a 413) says the request is larger than
    a whole window of it, which no wait cures (0: too large, the limit unsaid); None when it
    says no such thing. Read from the error's words where they are the provider's own "Request
    too large" with numbers, else from the limit its headers report against the request's
    `prompt` estimate. Other 4xx are not read: their text can echo what the request sent."""
    if fail.status not in (413, 429):
        return None
    message = str(_error_of(fail.body).get("message") or "")
    header = _count(fail.headers.get("x-ratelimit-limit-tokens"))
    m = _LIMIT_REQUESTED.search(message)
    if m is not None:
        limit, used, asked = (int(g.replace(",", "")) if g else None for g in m.groups())
        if limit is not None and asked is not None and asked > limit:
            return limit if _OWN_TOO_LARGE.match(message) else header or 0
        if used is not None:  # the window is full, not too small: capacity
            return None
    if fail.status == 413 or _TOO_LARGE.search(message):
        return header or 0
    if fail.status == 429 and header is not None and prompt > header:
        return header
    return None


def _count(value: str | None) -> int | None:
    try:
        number = int(float(value)) if value is not None else None
    except (ValueError, OverflowError):
        return None
    return number if number is not None and number > 0 else None


def _unserved(fail: UpstreamFailure, endpoint: str) -> UpstreamFailure:
    """A 404 or 405 from an upstream for an endpoint other than chat means it does not offer
    that endpoint (a provider with no embeddings): the next upstream may, unless the 404 is
    about the model."""
    if fail.kind != "client" or endpoint == "chat/completions" or fail.status not in (404, 405):
        return fail
    if _error_of(fail.body).get("code") == "model_not_found":
        return fail
    return UpstreamFailure("unserved", f"HTTP {fail.status}: serves no v1/{endpoint}", fail.status)


def _rejected(fail: UpstreamFailure, secret: str) -> EngineError:
    """The provider's 4xx as it sent it (the body was scrubbed of key text by the transport)."""
    error = _error_of(fail.body)
    if isinstance(error.get("message"), str):
        error["message"] = scrub(error["message"], secret)
    return UpstreamRejected(
        fail.status, error, f"upstream rejected the request (HTTP {fail.status})"
    )


def _error_of(body: bytes) -> dict[str, Any]:
    try:
        err = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return {}
    if isinstance(err, str):  # some OpenAI-compatible servers send {"error": "text"}
        return {"message": err}
    return dict(err) if isinstance(err, dict) else {}
