"""The engine: one chat-completions request from admission to answer, with failover.

Plain asyncio; hosts (the Jupyter server extension, the hub service, the in-process kernel
mode) build it with a state backend and a usage store, hand it a parsed JSON body and a
``Caller`` and write back the ``Reply``. A request's steps share one ``Exchange``: admission
and the cache here, forwarding and the fallback in ``forward``, the reply in ``replies``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from .accounting.notebooks import NotebookCosts
from .accounting.pricing import FREE, PriceBook
from .accounting.usage import UsageLog, UsageStore
from .admission.entitlements import Access, check_feature, me_fields, not_allowed, resolve
from .admission.limiter import Admitted, Limiter, Ticket, quota_headers, rate_class
from .admission.policy_windows import PolicyWindows, zone
from .admission.shared_state import StateBackend
from .apis.inline import InlineCompletions
from .apis.native import NATIVE_APIS
from .apis.stored import StoredResponses
from .bodies.cache import Cached, ClassCaches, cache_key, cacheable
from .bodies.decode import BodyDecoder
from .bodies.request import ChatRequest, count_files, parse_chat_request, set_end_user
from .errors import EngineError, Forbidden, RateLimited, UpstreamError
from .failover import Forwarder
from .inflight import Arrival, Exchange, answered
from .monitoring.alerts import Alerts, Ledger
from .monitoring.metrics import Metrics
from .monitoring.tracing import NO_SPAN, Tracing
from .parsing import image_cost, parse_request
from .privacy.offload import Offload, check_redact_size
from .privacy.redact import Redactor
from .records import ESCALATION_STAGES, Caller, Outcome, Reply
from .replies import Replies
from .settings import EngineSettings
from .translated import Translated
from .upstreams import selfhosted as self_hosted
from .upstreams.pool import PickPlan, Pool, Slot
from .upstreams.report import key_report
from .upstreams.specs import Price
from .upstreams.transport import Transports

# the request fields whose text is redacted: what a provider reads as the user's words
REDACTED_FIELDS = ("messages", "prompt", "suffix", "input")
log = logging.getLogger("rsql.engine")


ENDPOINTS = ("chat/completions", "completions", "embeddings", *NATIVE_APIS)
API_OF_ENDPOINT = {
    "chat/completions": "chat",
    "completions": "completions",
    "embeddings": "embeddings",
    "responses": "responses",
    "messages": "messages",
}


class Engine:
    """Admission, cache, key choice with failover, usage accounting: one request at a time."""

    def __init__(
        self,
        settings: EngineSettings,
        *,
        state: StateBackend,
        store: UsageStore | None = None,
        pool_class: type[Pool] = Pool,
        pool_options: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        alert_ledger: Ledger | None = None,
        usage_options: dict[str, Any] | None = None,
        wall_clock: Callable[[], float] = time.time,
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
        self.state = state
        self.limiter = Limiter(settings.limits, self.state)
        # the models of upstreams that run on this machine: what a local-only window allows
        self.local_models = tuple(
            dict.fromkeys(m for u in settings.upstreams if u.local for m in u.models)
        )
        self.timezone = zone(settings.admin_timezone)
        self.windows = PolicyWindows(
            settings.policy_windows,
            self.state,
            tz=self.timezone,
            local_models=self.local_models,
            clock=wall_clock,
        )
        self.limiter.window_for = self.windows.in_force
        self.caches = ClassCaches(
            max_entries=settings.cache_max_entries,
            max_bytes=settings.cache_max_bytes,
            ttl=settings.cache_ttl_seconds,
        )
        self.transports = Transports()
        self.metrics = Metrics(
            lambda: ((k.alias, self.pool.key_state(k)) for k in self.pool.keys),
            models=self.prices.configured_models(settings.default_model),
        )
        self.usage = (
            UsageLog(
                store,
                log_prompts=settings.log_prompts,
                retention_days=settings.retention_days,
                **(usage_options or {}),
            )
            if store
            else None
        )
        self.on_outcome: list[Callable[[Outcome], None]] = [self.metrics.observe]
        if self.usage is not None:
            self.on_outcome.append(self.usage.record)
        self.alerts = Alerts(settings.alerts, ledger=alert_ledger, clock=clock)
        if settings.limits.global_daily_budget_usd is not None:
            self.alerts.budget_reader = self.global_spend
        self.alerts.describe_model = self._describe_model
        self.pool.on_key_change = self._key_changed
        self.on_outcome.append(self.alerts.observe)
        # None unless tracing is on: the request path then only tests `is None`
        self.tracing: Tracing | None = Tracing.create() if settings.otel else None
        self._health_task: asyncio.Task[Any] | None = None
        self._user_key = settings.user_id_secret or secrets.token_bytes(32)
        self.notebooks = NotebookCosts(
            self._user_key, names=settings.notebook_names, usage=self.usage
        )
        # cached: an HMAC is about 1% of a request's CPU (profiled), the same every time
        self._pseudonym = functools.lru_cache(maxsize=10_000)(
            lambda user: (
                "rsql-" + hmac.new(self._user_key, user.encode(), hashlib.sha256).hexdigest()[:32]
            )
        )
        self.started_at = int(time.time())  # the "created" of every model in v1/models
        self.replies = Replies(
            self.pool,
            self.prices,
            self.caches,
            self._finish,
            drain_seconds=settings.usage_drain_seconds,
        )
        self.offload = Offload()
        self.translated = Translated(
            self.chat,
            self.speaks,
            StoredResponses(
                self.state,
                settings.responses_ttl_seconds,
                settings.responses_per_user,
                settings.responses_per_user_bytes,
            ),
            self.parse,
            self.limiter,
            self.offload.run,
        )
        self.inline = InlineCompletions(
            self.chat, settings.inline, self.access, self.windows, self.limiter
        )
        limits = settings.request_limits
        self.bodies = BodyDecoder(
            self.offload.run,
            max_depth=limits.max_json_depth,
            max_containers=limits.max_json_containers,
            max_items=limits.max_json_items,
        )
        self.forwarder = Forwarder(
            settings,
            self.pool,
            self.transports,
            self.replies,
            self.limiter,
            self.prices,
            self.metrics,
            clock,
        )

    def user_id(self, user: str) -> str | None:
        """What upstreams see as `user`: providers track abuse per end user, and without it a
        whole hub looks like one anonymous account. A keyed hash by default, so the provider
        can tell users apart without learning their names."""
        mode = self.settings.forward_user
        return user if mode == "name" else self._pseudonym(user) if mode == "hash" else None

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        if self.usage is not None:
            await self.usage.start()
        self.alerts.start()
        if self.settings.health_check_seconds > 0 and self._health_task is None:
            self._health_task = asyncio.ensure_future(self._health_loop())
        self.transports.start(self.settings.upstreams)
        await self_hosted.probe(self.pool, self.transports.http)  # what self-hosted servers serve

    async def close(self) -> None:
        """Stop background work and flush the usage log: a clean shutdown loses no rows."""
        if self._health_task:
            self._health_task.cancel()
            self._health_task = None
        await self.replies.close()  # abandoned answers charge their estimates before the log closes
        await self.offload.close()
        if self.usage is not None:
            await self.usage.close()
        await self.alerts.close()
        if self.tracing is not None:
            self.tracing.shutdown()
        await self.state.close()
        await self.pool.close()
        await self.transports.close()

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_check_seconds)
            try:
                await self.health_check()
            except Exception:  # a failed check must not end the loop
                log.exception("upstream health check failed")

    async def health_check(self) -> dict[str, str]:
        """Probe disabled keys with GET /models; a 2xx re-enables them. Self-hosted servers
        are probed every time (``providers.selfhosted``)."""
        out = {}
        await self_hosted.probe(self.pool, self.transports.http)
        for key in self.pool.keys:
            if key.disabled and not key.spec.max_in_flight:
                status = await self.transports.for_spec(key.spec).get_models(key.spec, 10.0)
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
        return [
            {"alias": k.alias, "state": self.pool.key_state(k)} for k in self.pool.serving(model)
        ]

    async def global_spend(self) -> tuple[float, float] | None:
        """(spent + reserved today, the limit) of the global daily budget; None without one."""
        limit = self.settings.limits.global_daily_budget_usd
        spent = await self.limiter.global_spent()
        if limit is None or spent is None:
            return None
        return spent, limit

    def upstream_report(self) -> list[dict[str, Any]]:
        """Per key: account, state, cooldown, breaker, use of its account's limits, errors."""
        return key_report(self.pool, self.clock(), time.time())

    # -- the request ---------------------------------------------------------------------

    async def decode_body(self, raw: bytes, caller: Caller) -> Any:
        """A request body's bytes as JSON, at a cost no shape of body can make large, and with
        each caller's large bodies parsed one at a time (``bodies.decode``); or ``BadRequest``."""
        return await self.bodies.decode(raw, caller.user)

    def parse(
        self,
        body: Any,
        endpoint: str = "chat/completions",
        default_model: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ChatRequest:
        default = default_model or self.settings.default_model
        image = functools.partial(image_cost, self.pool)
        return parse_request(self.settings, body, endpoint, default, headers, image)

    # -- entitlements and policy windows ---------------------------------------------------

    async def access(self, caller: Caller) -> Access:
        """The models `caller` may use now and their defaults, after the window in force."""
        await self.windows.refresh()
        found = self.windows.in_force(caller.user, caller.groups)
        return resolve(
            self.limiter.rules_for(caller.user, caller.groups),
            found,
            served=self.pool.models(),
            local_models=self.local_models,
            proxy_default=self.settings.default_model,
        )

    def speaks(self, api: str, model: str) -> bool:
        """Whether a request in `api`'s shape for `model` can go upstream as it was sent: every
        upstream serving the model speaks that API itself, and nothing of it is redacted (the
        patterns read and rewrite the chat form); else it is translated (``translated``)."""
        serving = self.pool.serving(model)
        return (
            bool(serving)
            and not self.settings.redact_patterns
            and all(api in key.spec.native_apis for key in serving)
        )

    def check_model(self, access: Access, model: str) -> None:
        """Refuse `model` unless `access` allows it: inside a window, with the window's message."""
        if access.allows(model):
            return
        if access.window is not None and access.span is not None:
            raise self.windows.refusal(access.window, access.span, access.models)
        raise not_allowed(model, access)

    async def me_access(self, caller: Caller) -> dict[str, Any]:
        """The entitlement part of GET me: models, defaults, the window in force."""
        return me_fields(await self.access(caller), self.timezone)

    def notebook_id(self, path: str | None) -> str | None:
        """How the usage log names a notebook (``NotebookCosts.notebook_id``)."""
        return self.notebooks.notebook_id(path)

    async def notebook_cost(self, caller: Caller, path: str, store: UsageStore) -> dict[str, Any]:
        """What `caller` spent in the notebook at `path` (``NotebookCosts.cost``)."""
        return await self.notebooks.cost(caller.user, path, store)

    async def chat(
        self,
        body: Any,
        caller: Caller,
        *,
        request_id: str | None = None,
        cache: str = "auto",
        endpoint: str = "chat/completions",
        trace_headers: Mapping[str, str] | None = None,
        escalation: str | None = None,
        notebook: str | None = None,
        cell: str | None = None,
        api: str | None = None,
    ) -> Reply:
        """Answer one request to `endpoint` (one of ``ENDPOINTS``), or raise ``EngineError``.

        `cache`: "auto" (deterministic requests only), "force" (cache this one), "bypass".
        `trace_headers`: the request's headers, whose `traceparent` a traced request continues.
        `escalation`: why %%sql_ai's chain moved to this model (one of ``ESCALATION_STAGES``,
        anything else is dropped); it goes into the usage row.
        `notebook`, `cell`: where in the user's notebooks it was asked (checked by the host), for
        the usage row; the notebook as ``notebook_id`` names it. `api`: the API the request came
        by, for the usage row (``translated`` turns the Responses and Messages APIs into chat).
        """
        return await self._answer(
            body,
            caller,
            request_id,
            cache,
            endpoint,
            trace_headers,
            escalation if escalation in ESCALATION_STAGES else None,
            self.notebook_id(notebook),
            cell,
            api or API_OF_ENDPOINT[endpoint],
        )

    async def rate_headers(self, caller: Caller) -> dict[str, str]:
        """The caller's own request quota in OpenAI's header names, so SDKs pace themselves.

        The provider's own x-ratelimit-* headers describe the proxy's keys, not this user, and
        are never passed on. Users have request windows but no token windows, so only the
        request headers are sent; none at all when no window applies.
        """
        try:
            return await self.limiter.rate_headers(
                caller.user, caller.groups, rate_class(caller.client)
            )
        except Exception as exc:
            # a state outage must not fail an answer the limits let through; the backend
            # reports the outage itself, once, so this only notes the missing headers
            log.debug("no quota headers for this answer: %s", type(exc).__name__)
            return {}

    async def _answer(
        self,
        body: Any,
        caller: Caller,
        request_id: str | None,
        cache: str,
        endpoint: str,
        trace_headers: Mapping[str, str] | None = None,
        escalation: str | None = None,
        notebook: str | None = None,
        cell: str | None = None,
        api: str = "chat",
    ) -> Reply:
        """One request's walk (docs/architecture.md, "One request's way"): the checks, the
        cache, admission, redaction, forwarding with failover, the answer. Whatever ends it
        early, ``_ended_early`` settles its admission once (``Admitted``) and writes its row."""
        outcome = Outcome(
            request_id or os.urandom(16).hex(),  # as random as uuid4, a quarter of its CPU
            caller,
            "",
            time.time(),
            escalation=escalation,
            notebook=notebook,
            cell=cell,
            api=api,
        )
        arrival = Arrival(caller, outcome, self.clock(), None)
        if self.tracing is not None:
            arrival.trace = outcome.trace = self.tracing.begin(trace_headers, outcome, endpoint)
        ex: Exchange | None = None
        try:
            # 1. who may use what, and whether the request is well formed and allowed
            access, req = await self._checked(body, caller, outcome, endpoint, trace_headers)
            # 2. the cache (before admission: a hit costs nothing; after redaction when there is
            # any, since the key is the text that goes upstream)
            redacting = bool(self.settings.redact_patterns)
            cache_key, hit = (None, None) if redacting else self._cached(req, arrival, cache)
            if hit is not None and not self.settings.cache_hits_count:
                quota = await self.rate_headers(caller)
                reply = self.replies.cache_reply(arrival, req, hit, quota)
                return answered(reply, outcome, None, req, caller)
            # 3. admission: the caller's windows, concurrency and budget, and the key pick
            admission, plan, fallback = await self._admit(req, arrival, access, hit)
            ex = Exchange(caller, outcome, arrival.started, arrival.trace, req, admission)
            ex.cache_key = cache_key
            ticket = admission.ticket
            if plan is not None and ticket.picked is not None:  # the key the admission picked
                ex.first_pick = self.pool.take(plan, ticket.picked)
            quota = (
                self._quota(ticket)
                if ticket.windows_used is not None
                else await self.rate_headers(caller)
            )
            # 4. redaction (only after admission: the user's limits bound how much text one
            # user can have scanned), then the cache with the redacted text
            if redacting:
                ex.redactor = await self._redact(req, outcome, caller.user)
                ex.cache_key, hit = self._cached(req, arrival, cache)
                if hit is not None and not fallback and not self.settings.cache_hits_count:
                    await self._unpick(ex)  # a hit uses no quota: the admission is given back
                    await admission.settle(0.0, refund=True)
                    return ex.restored(self.replies.cache_reply(ex, req, hit, quota))
            if self.settings.log_prompts:
                outcome.messages = req.payload.get(
                    "messages", req.payload.get("prompt", req.payload.get("input"))
                )
            if hit is not None and not fallback:  # cache_hits_count: admitted like any request
                await admission.settle(0.0)
                return ex.restored(self.replies.cache_reply(ex, req, hit, quota))
            # 5. forwarding, failover across keys and upstreams, and the fallback model
            reply = await self._forwarded(ex, access, fallback)
            reply.headers.update(quota)
            return ex.restored(reply)
        except (Exception, asyncio.CancelledError) as exc:
            await self._ended_early(arrival, ex, exc)
            raise

    async def _checked(
        self,
        body: Any,
        caller: Caller,
        outcome: Outcome,
        endpoint: str,
        trace_headers: Mapping[str, str] | None,
    ) -> tuple[Access, ChatRequest]:
        """The checks before anything is spent: the policy window, the feature, the body, the
        model, the files' pages (off the loop), the text redaction would scan; the caller's own
        `user` replaced (no posing as someone else at the provider)."""
        access = await self.access(caller)
        if access.window is not None and access.window.mode == "off" and access.span is not None:
            asked = body.get("model") if isinstance(body, dict) else None
            outcome.model = asked[:200] if isinstance(asked, str) else ""  # the row says what
            raise self.windows.refusal(access.window, access.span)
        check_feature(caller.client, access, self.windows, caller.user)
        req = self.parse(body, endpoint, access.default_model, trace_headers)
        outcome.model = req.model
        self.check_model(access, req.model)
        await count_files(req, self.offload.run, caller.user)  # PDFs' pages, off the loop
        if self.settings.redact_patterns:  # every text that is redacted counts (`suffix` too)
            check_redact_size(
                {"input": [req.payload.get(n) for n in REDACTED_FIELDS]},
                self.settings.redact_max_chars,
            )
        set_end_user(req.payload, self.user_id(caller.user), anthropic=endpoint == "messages")
        return access, req

    async def _admit(
        self, req: ChatRequest, arrival: Arrival, access: Access, hit: Cached | None
    ) -> tuple[Admitted, PickPlan | None, str]:
        """The caller's admission at the request's worst-case price, with the key pick a shared
        pool makes in the same round trip (`plan`, taken once the request is recorded); past a
        spent budget, the free fallback's admission when the admin allows it ("budget"): the
        request windows and concurrency still hold."""
        caller, tr = arrival.caller, arrival.trace
        price = self._admission_price(req, caller)
        plan = self._plan(req) if hit is None else None
        try:
            with tr.child("rsql.admission") if tr is not None else NO_SPAN:
                ticket = await self.limiter.admit(
                    caller.user,
                    caller.groups,
                    price.worst(req.prompt_tokens, req.completion_tokens),
                    pick=plan.args if plan is not None else None,
                    rate_class=rate_class(caller.client),
                )
        except RateLimited as exc:
            if not self.forwarder.may_fall_back(req, access, caller, "budget", exc, None):
                raise
            ticket = await self.limiter.admit(
                caller.user,
                caller.groups,
                0.0,
                budgets_apply=False,
                rate_class=rate_class(caller.client),
            )
            return Admitted(self.limiter, ticket), None, "budget"
        return Admitted(self.limiter, ticket), plan, ""

    async def _forwarded(self, ex: Exchange, access: Access, fallback: str) -> Reply:
        """The answer of the first usable key; the fallback model's when the budget was spent
        ("budget") or no key of the model asked for could answer ("capacity")."""
        if fallback:
            await self._unpick(ex)
            return await self.forwarder.fallback(ex, fallback)
        try:
            return await self.forwarder.forward(ex)
        except (RateLimited, UpstreamError) as exc:
            if not self.forwarder.may_fall_back(
                ex.req, access, ex.caller, "capacity", exc, ex.admission.reserved
            ):
                raise
            return await self.forwarder.fallback(ex, "capacity")

    async def _ended_early(self, arrival: Arrival, ex: Exchange | None, exc: BaseException) -> None:
        """The one place a request that did not answer is settled and written down: a key slot
        the admission took and forwarding never used given back, the admission settled (never
        twice: ``Admitted``), the status and error on the row."""
        outcome = arrival.outcome
        if isinstance(exc, asyncio.CancelledError):  # the client went away
            if ex is not None and ex.handed_off:  # answered on and charged in the background
                return
            status, error, cost, refund = 499, "client_closed", outcome.cost_usd, False
        elif isinstance(exc, EngineError):
            status, error = exc.status, exc.code or type(exc).__name__
            if isinstance(exc, RateLimited):
                outcome.limit = exc.limit
            billed = ex is not None and ex.billed
            # billed: the provider may bill it (an accepted attempt timed out), so it is charged.
            # Else admitted but not answered for reasons that are not the caller's (no upstream
            # capacity, every upstream failed): it costs nothing, and counts in the user's
            # windows only if it reached a provider, so one user cannot make errors (each an
            # attempt at a shared key) without bound
            cost = outcome.cost_usd if billed else 0.0
            refund = not billed and exc.status in (429, 502, 503, 504) and not outcome.attempts
        else:
            log.error("request %s failed inside the proxy", outcome.request_id, exc_info=exc)
            status, error, cost, refund = 500, "internal_error", 0.0, not outcome.attempts
        if ex is not None:
            await self._unpick(ex)
            await ex.admission.settle(cost, refund=refund)
        outcome.status, outcome.error = status, error
        self._finish(arrival)

    def _cached(
        self, req: ChatRequest, arrival: Arrival, cache: str
    ) -> tuple[str | None, Cached | None]:
        """Where this request's answer is cached, and the answer there, if caching applies."""
        if cache == "bypass" or not cacheable(req.payload, cache == "force", req.endpoint):
            return None, None
        key = cache_key(req.payload, req.endpoint)
        tr = arrival.trace
        with tr.child("rsql.cache") if tr is not None else NO_SPAN as span:
            hit = self.caches.of(rate_class(arrival.caller.client)).get(key)
            span.set_attribute("rsql.cache_hit", hit is not None)
        self.metrics.child(self.metrics.cache, "hit" if hit is not None else "miss").inc()
        return key, hit

    def _plan(self, req: ChatRequest) -> PickPlan | None:
        """The pool's key pick to make with the admission, if it makes one there; a request no
        key can serve is refused by forwarding (after admission, so the fallback may answer)."""
        try:
            return self.pool.plan(req.model, req.reserve_tokens, req.prompt_tokens)
        except EngineError:
            return None

    def _quota(self, ticket: Ticket) -> dict[str, str]:
        return quota_headers(ticket.windows, ticket.windows_used or [])

    async def _unpick(self, ex: Exchange) -> None:
        """Give back a key slot the admission took and forwarding never used."""
        slot, ex.first_pick = ex.first_pick, None
        if isinstance(slot, Slot):
            await self.pool.release(slot, counted=False)

    # -- privacy: redaction and pricing -----------------------------------------------------

    async def redact_preview(self, messages: Any, caller: Caller) -> dict[str, Any]:
        """What `messages` would look like upstream: the redacted copy and the counts per type.
        Bounded like a chat request (the same message caps) and admitted like one (it counts in
        the caller's request windows, costs nothing): one user cannot make the proxy scan
        without end."""
        parse_chat_request(
            {"model": "-", "messages": messages},
            default_model="-",
            default_max_tokens=1,
            limits=self.settings.request_limits,
        )
        if not self.settings.redact_patterns:
            return {"messages": Redactor(()).messages(messages), "redactions": {}}
        check_redact_size({"messages": messages}, self.settings.redact_max_chars)
        ticket = await self.limiter.admit(caller.user, caller.groups, 0.0, budgets_apply=False)
        try:
            fields, redactor = await self.offload.redact(
                self.settings.redact_patterns, {"messages": messages}, caller.user
            )
        finally:
            await self.limiter.finish(ticket, 0.0)
        return {"messages": fields["messages"], "redactions": dict(redactor.counts)}

    async def _redact(self, req: ChatRequest, outcome: Outcome, user: str) -> Redactor:
        """Mask personal data in what goes upstream (chat messages, a legacy prompt and the
        `suffix` after its cursor, embeddings input), in place of the payload, before the cache
        key, the log or a provider sees it."""
        payload = req.payload
        fields, redactor = await self.offload.redact(
            self.settings.redact_patterns,
            {n: payload[n] for n in REDACTED_FIELDS if n in payload},
            user,
        )
        payload.update(fields)
        if redactor.counts:
            outcome.redactions = dict(redactor.counts)
        return redactor

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
                    "c.RSQLProxy.upstreams) or let unpriced models cost 0 with "
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

    def _finish(self, arrival: Arrival) -> None:
        """Write the request's row (and end its span): every request, once, however it ended."""
        outcome = arrival.outcome
        outcome.latency_s = self.clock() - arrival.started
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
