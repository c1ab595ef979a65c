"""The engine: one chat-completions request from admission to answer, with failover.

Plain asyncio; hosts (the Jupyter server extension, the hub service, the in-process kernel
mode) build it with a state backend and a usage store, hand it a parsed JSON body and a
``Caller`` and write back the ``Reply``. A request's steps share one ``Exchange``: admission
and the cache here, which models the caller may use in ``model_choice``, the masking in
``redaction``, forwarding and the fallback in ``failover``, the reply in ``replies``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from .accounting.pricing import PriceBook
from .accounting.savings import CacheSavings
from .accounting.usage import NotebookCosts, UsageLog, UsageStore
from .admin import EngineAdmin
from .admission.entitlements import Access, check_feature, check_tool_call
from .admission.hosted_tools import HostedTools
from .admission.limiter import Admitted, CallLimits, Limiter, Ticket, quota_headers, rate_class
from .admission.policy_windows import PolicyWindows
from .admission.shared_state import StateBackend
from .admission.window_specs import zone
from .admission_step import AdmissionStep
from .bodies.attribution import set_end_user
from .bodies.cache import Cached, ClassCaches, cache_key, cacheable
from .bodies.decode import BodyDecoder
from .bodies.left_out import LeftOut
from .bodies.request import ChatRequest
from .bodies.usage import chat_hosted_tools
from .courses.tutor import instruct, instruction_of
from .errors import EngineError, RateLimited, StateUnavailable, UpstreamError
from .failover import Forwarder
from .interface import ESCALATION_STAGES, Caller, Outcome, Reply
from .model_choice import ModelChoice
from .monitoring.alerts import Alerts, Ledger
from .monitoring.metrics import Metrics
from .monitoring.tracing import NO_SPAN, Tracing
from .parsing import NativeReader, check_reader, parse_request
from .privacy.offload import Offload
from .prompt_cache import OWN_CLIENTS, conversation
from .redaction import Redaction
from .replies import Replies
from .request_state import Arrival, Exchange, Hold, Outcomes, answered
from .settings import EngineSettings
from .upstreams.health import KeyHealth
from .upstreams.pool import PoolRules
from .upstreams.transport import Transports

log = logging.getLogger("rsql.engine")

# each endpoint a request may go to, and the API its usage row names when the caller says none
API_OF_ENDPOINT = {
    "chat/completions": "chat",
    "completions": "completions",
    "embeddings": "embeddings",
    "responses": "responses",
    "messages": "messages",
}
ENDPOINTS = tuple(API_OF_ENDPOINT)


class Engine(EngineAdmin):
    """Admission, cache, key choice with failover, usage accounting: one request at a time.
    What admins, the dashboard and probes ask of it: ``EngineAdmin``."""

    def __init__(
        self,
        settings: EngineSettings,
        *,
        state: StateBackend,
        store: UsageStore | None = None,
        alert_ledger: Ledger | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        transports: Transports | None = None,
    ) -> None:
        """`state`: where the limits and the keys' windows live (this process, or Redis for
        replicas); `store`: where usage rows go; `alert_ledger`: one record of alerts for all
        replicas; `transports`: how upstreams are reached (HTTP and local models; a test's may
        answer in memory). Everything else is `settings`."""
        self.settings = settings
        self.clock = clock
        rules = PoolRules(
            default_cooldown=settings.default_cooldown_seconds,
            breaker_threshold=settings.breaker_threshold,
            breaker_seconds=settings.breaker_seconds,
            lease_seconds=settings.limits.lease_seconds,
        )
        self.pool = state.key_pool(settings.upstreams, rules, clock)
        self.prices = PriceBook(settings.upstreams)
        self.state = state
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
        self.limiter = Limiter(settings.limits, self.state, window_for=self.windows.in_force)
        self.models = ModelChoice(
            settings,
            self.pool,
            self.limiter,
            self.windows,
            self.prices,
            local_models=self.local_models,
            timezone=self.timezone,
        )
        self.caches = ClassCaches(
            max_entries=settings.cache_max_entries,
            max_bytes=settings.cache_max_bytes,
            ttl=settings.cache_ttl_seconds,
        )
        self.transports = transports or Transports()
        self.health = KeyHealth(self.pool, self.transports)
        self.metrics = Metrics(
            self.pool.key_states,
            models=self.prices.configured_models(settings.default_model),
        )
        self.usage = (
            UsageLog(
                store,
                log_prompts=settings.log_prompts,
                retention_days=settings.retention_days,
                spool_dir=settings.usage_spool_dir or None,
                spool_max_bytes=settings.usage_spool_max_bytes,
            )
            if store
            else None
        )
        self.outcomes = Outcomes(clock)
        self.on_outcome.append(self.metrics.observe)
        if self.usage is not None:
            self.on_outcome.append(self.usage.record)
        self.alerts = Alerts(
            settings.alerts,
            ledger=alert_ledger,
            clock=clock,
            budget_reader=(
                self.limiter.global_spend
                if settings.limits.global_daily_budget_usd is not None
                else None
            ),
            describe_model=self.pool.describe,
        )
        self.pool.on_key_change = self.alerts.key_changed
        self.on_outcome.append(self.alerts.observe)
        # None unless tracing is on: the request path then only tests `is None`
        self.tracing: Tracing | None = Tracing.create() if settings.otel else None
        self._user_key = self._cache_key = settings.user_id_secret or secrets.token_bytes(32)
        self.notebooks = NotebookCosts(
            self._user_key, names=settings.notebook_names, usage=self.usage
        )
        self.savings = CacheSavings(self.usage)  # what prompt caches saved each user today
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
            self.outcomes,
            drain_seconds=settings.usage_drain_seconds,
            hosted=HostedTools(settings.hosted_tools),
        )
        self.hosted = HostedTools(settings.hosted_tools)
        self.offload = Offload()
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
        self.admission = AdmissionStep(
            self.limiter, self.pool, self.models, self.forwarder, self.offload.run
        )
        self.redaction = Redaction(settings, self.offload, self.admission)

    @property
    def on_outcome(self) -> list[Callable[[Outcome], None]]:
        """Who reads every request's record once it ended (the host adds the course log's)."""
        return self.outcomes.observers

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
        await self.replies.course_log.start()  # after the usage log's: its store is open
        self.alerts.start()
        self.transports.start(self.settings.upstreams)
        await self.health.start(self.settings.health_check_seconds)
        with contextlib.suppress(StateUnavailable):  # every replica names a conversation alike
            self._cache_key = await self.state.secret("prompt-cache")

    async def close(self) -> None:
        """Stop background work and flush the usage log: a clean shutdown loses no rows."""
        self.health.stop()
        await self.replies.close()  # abandoned answers charge their estimates before the log closes
        await self.offload.close()
        await self.replies.course_log.close()  # before the usage log closes their store
        if self.usage is not None:
            await self.usage.close()
        await self.alerts.close()
        if self.tracing is not None:
            self.tracing.shutdown()
        await self.state.close()
        await self.pool.close()
        await self.transports.close()

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
        native_reader: NativeReader | None = None,
    ) -> ChatRequest:
        default, m = default_model or self.settings.default_model, self.models
        return parse_request(
            self.settings,
            body,
            endpoint,
            default,
            headers,
            m.image_cost,
            m.wide_window,
            native_reader,
        )

    # -- what a caller may do now: models (``model_choice``), calls that are no model request --

    async def access(self, caller: Caller) -> Access:
        """The models `caller` may use now and their defaults (``ModelChoice.access``)."""
        return await self.models.access(caller)

    def speaks(self, api: str, model: str) -> bool:
        """Whether a request in `api`'s shape goes upstream as sent (``ModelChoice.speaks``)."""
        return self.models.speaks(api, model)

    def check_model(self, access: Access, model: str) -> None:
        """Refuse `model` unless `access` allows it (``ModelChoice.check_model``)."""
        self.models.check_model(access, model)

    async def admit(self, caller: Caller, calls: CallLimits | None = None) -> Admitted:
        """`caller`'s work admitted to their limits, the hold it ends once (``settle``).
        Without `calls`: a request counted in the caller's windows and concurrency before its
        price is known (a stored conversation to read first), whose budget and key ``chat``
        takes into the same hold (its `counted`). With `calls`: one call of that kind (an MCP
        tool call), refused first while a policy window or the admin's switch turns agent
        mode off (``check_tool_call``); its windows and concurrency are its own."""
        if calls is None:
            return await self.admission.count(caller)
        check_tool_call(await self.access(caller), self.windows, caller.user)
        return await self.admission.call(caller, calls)

    def admitted(self, caller: Caller) -> contextlib.AbstractAsyncContextManager[Admitted]:
        """``admit`` held while a block of work that asks no provider runs (a token count, a
        stored response read or deleted) and given back after it, however the block ends: it
        costs nothing, but counts in the caller's request windows as any request."""
        return self.admission.counted(caller)

    def record_call(self, row: Outcome, tool: str, outcome: str) -> None:
        """A tool call's usage row (when a usage log is kept) and its count in the metrics."""
        self.metrics.child(self.metrics.mcp_calls, tool, outcome).inc()
        if self.usage is not None:
            self.usage.record(row)

    async def me_access(self, caller: Caller) -> dict[str, Any]:
        """The entitlement part of GET me (``ModelChoice.me_access``)."""
        return await self.models.me_access(caller)

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
        counted: Admitted | None = None,
        native_reader: NativeReader | None = None,
    ) -> Reply:
        """Answer one request to `endpoint` (one of ``ENDPOINTS``), or raise ``EngineError``.

        `cache`: "auto" (deterministic requests only), "force" (cache this one), "bypass".
        `trace_headers`: the request's headers, whose `traceparent` a traced request continues.
        `escalation`: why %%sql_ai's chain moved to this model (one of ``ESCALATION_STAGES``,
        anything else is dropped); it goes into the usage row.
        `notebook`, `cell`: where in the user's notebooks it was asked (checked by the host), for
        the usage row; the notebook as ``notebook_id`` names it. `api`: the API the request came
        by, for the usage row (``translated`` turns the Responses and Messages APIs into chat).
        `counted`: the request's admission to the caller's windows and concurrency, made before
        the body was complete (``admit``: a stored conversation is read only once the request
        is counted); this request then reserves its budget and picks its key in that hold.
        Whatever ends the request ends the hold, but an error raised here before admission:
        the caller ends it then (``Admitted.settle`` ends a hold once).
        `native_reader`: how to read a body in its own API's shape, sent to that API's endpoint
        as it came (the edge's, ``apis.native.NATIVE_READERS``); such an endpoint takes no
        other body, and a chat body none (``parsing.check_reader``: a ValueError).
        """
        check_reader(endpoint, native_reader)
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
            counted,
            notebook,
            native_reader,
        )

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
        counted: Admitted | None = None,
        notebook_path: str | None = None,
        native_reader: NativeReader | None = None,
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
            notebook_path=notebook_path,  # the course log names it to the course's staff
        )
        arrival = Arrival(caller, outcome, self.clock(), None)
        if self.tracing is not None:
            arrival.trace = outcome.trace = self.tracing.begin(trace_headers, outcome, endpoint)
        ex: Exchange | None = None
        try:
            # 1. who may use what, and whether the request is well formed and allowed
            access, req = await self._checked(
                body, caller, outcome, endpoint, trace_headers, native_reader
            )
            if req.files:  # PDFs' pages: past a small budget, counted only once admitted
                counted = await self.admission.count_files(req, caller, counted)
            # 2. the cache (before admission: a hit costs nothing; after redaction when there is
            # any, since the key is the text that goes upstream)
            redacting = bool(self.settings.redact_patterns)
            cache_key, hit = (None, None) if redacting else self._cached(req, arrival, cache)
            if hit is not None and not self.settings.cache_hits_count:
                if counted is not None:  # counted for reading its conversation: it stays so
                    await counted.settle(0.0)
                quota = await self.admission.quota(caller)
                reply = self.replies.cache_reply(arrival, req, hit, quota)
                return answered(reply, outcome, None, req, caller)
            # 3. admission: the caller's windows, concurrency and budget, and the key pick
            admission, plan, fallback = await self.admission.admit(
                req, arrival, access, hit, counted
            )
            ticket = admission.ticket
            # the key the admission picked, held from here by the request's hold
            pick = (
                self.pool.take(plan, ticket.picked)
                if plan is not None and ticket.picked is not None
                else None
            )
            hold = Hold(self.pool, admission, pick, plan.place if plan is not None else None)
            ex = Exchange(
                caller, outcome, arrival.started, arrival.trace, req, hold, cache_key=cache_key
            )
            quota = (
                self._quota(ticket)
                if ticket.windows_used is not None
                else await self.admission.quota(caller)
            )
            # 4. redaction (only after admission: the user's limits bound how much text one
            # user can have scanned), then the cache with the redacted text
            if redacting:
                ex.redactor = await self.redaction.redact(req, outcome, caller.user)
                ex.cache_key, hit = self._cached(req, arrival, cache)
                if hit is not None and not fallback and not self.settings.cache_hits_count:
                    # a hit uses no quota: all given back (but the reading of a stored
                    # conversation it needed, which was counted before it)
                    await hold.end(0.0, refund=counted is None)
                    return ex.restored(self.replies.cache_reply(ex, req, hit, quota))
            if self.settings.log_prompts:
                outcome.messages = req.payload.get(
                    "messages", req.payload.get("prompt", req.payload.get("input"))
                )
            # a logged student's prompt as it goes upstream, kept though no answer comes
            self.replies.course_log.begin(outcome, req, req.reply_headers)
            if hit is not None and not fallback:  # cache_hits_count: admitted like any request
                await hold.end(0.0)
                return ex.restored(self.replies.cache_reply(ex, req, hit, quota))
            # 5. forwarding, failover across keys and upstreams, and the fallback model
            reply = await self._forwarded(ex, access, fallback)
            reply.headers.update(quota)
            return ex.restored(reply)
        except (Exception, asyncio.CancelledError) as exc:
            if ex is None and counted is not None:  # counted, but ended before its hold began
                await counted.settle(0.0)
            await self._ended_early(arrival, ex, exc)
            raise

    async def _checked(
        self,
        body: Any,
        caller: Caller,
        outcome: Outcome,
        endpoint: str,
        trace_headers: Mapping[str, str] | None,
        native_reader: NativeReader | None = None,
    ) -> tuple[Access, ChatRequest]:
        """The checks before anything is spent: the policy window, the feature, the body, the
        model, the files' pages (off the loop), the text redaction would scan; the caller's own
        `user` replaced (no posing as someone else at the provider)."""
        access = await self.access(caller)
        if access.window is not None and access.window.mode == "off" and access.span is not None:
            asked = body.get("model") if isinstance(body, dict) else None
            outcome.model = asked[:200] if isinstance(asked, str) else ""  # the row says what
            raise self.windows.refusal(access.window, access.span)
        check_feature(caller.client, access, self.windows, caller.user, body)
        found = chat_hosted_tools(body) if endpoint == "chat/completions" else []
        dropped: list[str] = []
        if found:  # a provider's own tools (Groq's on chat completions): as on every API
            body, dropped = self.hosted.govern_chat(body, found, caller.groups)
        req = self.parse(body, endpoint, access.default_model, trace_headers, native_reader)
        if dropped:
            left = LeftOut()
            for kind in dropped:
                left.drop(kind)
            req.reply_headers.update(left.header())
        outcome.model = req.model
        self.check_model(access, req.model)
        self.redaction.check_size(req)
        # the conversation it continues, read before the end user is written over what the
        # client put there (Claude Code names its session in metadata.user_id)
        req.affinity = conversation(
            req, trace_headers, caller.user, self._cache_key, self.settings.prompt_cache_seconds
        )
        req.mark_prefix = caller.client in OWN_CLIENTS
        set_end_user(req.payload, self.user_id(caller.user), in_metadata=req.user_in_metadata)
        if access.tutor is not None:  # the course's tutoring instruction first (courses.tutor)
            instruct(req, instruction_of(access.tutor.instruction))
        return access, req

    async def _forwarded(self, ex: Exchange, access: Access, fallback: str) -> Reply:
        """The answer of the first usable key; the fallback model's when the budget was spent
        ("budget") or no key of the model asked for could answer ("capacity")."""
        if fallback:
            await ex.hold.let_go()  # the admission's pick was for the model asked for
            return await self.forwarder.fallback(ex, fallback)
        try:
            return await self.forwarder.forward(ex)
        except (RateLimited, UpstreamError) as exc:
            # an accepted attempt that timed out (billed) may still be answered and billed:
            # another model would bill the request twice, past what it reserved
            if ex.billed or not self.forwarder.may_fall_back(
                ex.req, access, ex.caller, "capacity", exc, ex.hold.admission.reserved
            ):
                raise
            return await self.forwarder.fallback(ex, "capacity")

    async def _ended_early(self, arrival: Arrival, ex: Exchange | None, exc: BaseException) -> None:
        """The one place a request that did not answer is ended and written down: what it holds
        given back (``Hold.end``: never twice), the status and error on the row."""
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
            await ex.hold.end(cost, refund=refund)
        outcome.status, outcome.error = status, error
        self.outcomes.finish(arrival)

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

    def _quota(self, ticket: Ticket) -> dict[str, str]:
        return quota_headers(ticket.windows, ticket.windows_used or [])

    async def redact_preview(self, messages: Any, caller: Caller) -> dict[str, Any]:
        """What `messages` would look like upstream (``Redaction.preview``)."""
        return await self.redaction.preview(messages, caller)
