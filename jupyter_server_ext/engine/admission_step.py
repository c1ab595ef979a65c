"""Admission, the one way anything is let through the caller's limits; every kind of work
holds an ``Admitted`` and ends it once. A request's admission in its walk (``core``): the
caller's windows, concurrency and budget in one atomic step with the key pick, at the
request's worst-case price; and before it, when a request's PDFs need the shared worker to
count their pages or a stored conversation is to be read, its count in the caller's windows,
so no work of a user is done that their limits would refuse. Work that asks no provider (a
token count, a stored response read, a redaction preview) and tool calls (``CallLimits``) are
admitted here too (``count``, ``counted``, ``call``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from .admission.entitlements import Access
from .admission.limiter import Admitted, CallLimits, Limiter, rate_class
from .bodies.cache import Cached
from .bodies.request import ChatRequest, count_files
from .errors import EngineError, RateLimited
from .failover import Forwarder
from .interface import Caller
from .model_choice import ModelChoice
from .monitoring.tracing import NO_SPAN
from .request_state import Arrival, at_provider
from .upstreams.pool import PickPlan, Pool, Slot

log = logging.getLogger("rsql.engine")


async def _uncut(
    admitting: Awaitable[Admitted],
    pick_back: Callable[[tuple[int, float]], Awaitable[None]] | None = None,
) -> Admitted:
    """An admission's round trip to the shared state, not cut short by a client that leaves
    meanwhile (``at_provider``): the script runs at Redis all the same, and what it took there
    (a lease, a reservation, a key's place for a lease's 600 s) would stay held until it
    expires. It is let answer, given back (its key pick to `pick_back`), and the request ends
    as cancelled. Not a task of its own shielded from the cancel: ``request_state`` says why."""
    with at_provider() as watch:
        held = await admitting
    if watch is not None and watch.left:
        picked = held.ticket.picked
        if pick_back is not None and picked is not None:
            await pick_back(picked)
        await held.settle(0.0)  # it counts in the windows, as any request its client left
        raise asyncio.CancelledError
    return held


class AdmissionStep:
    """Whether a request or a call may go on now, and a request with which key
    (``Limiter``); ``Engine.admit`` and ``Engine.admitted`` are its door for the edges."""

    def __init__(
        self,
        limiter: Limiter,
        pool: Pool,
        models: ModelChoice,
        forwarder: Forwarder,
        run: Callable[..., Awaitable[Any]],
    ) -> None:
        self.limiter = limiter
        self.pool = pool
        self.models = models
        self.forwarder = forwarder
        self.run = run  # Offload.run: work in the worker process, in a user's turn

    async def count(self, caller: Caller) -> Admitted:
        """`caller`'s request counted in their windows and concurrency before its price is
        known; its budget and key are taken later into the same hold (``admit``'s
        `counted`), or it is settled at nothing."""
        return await _uncut(
            self.limiter.count(caller.user, caller.groups, rate_class(caller.client))
        )

    @asynccontextmanager
    async def counted(self, caller: Caller) -> AsyncIterator[Admitted]:
        """``count`` held while a block of work that asks no provider runs, given back after
        it however it ends (its windows stay counted)."""
        held = await self.count(caller)
        try:
            yield held
        finally:
            await held.settle(0.0)

    async def call(self, caller: Caller, calls: CallLimits) -> Admitted:
        """One call of `calls`' kind (an MCP tool call) in `caller`'s windows and concurrency
        of that kind; settled at nothing when it ends."""
        return await _uncut(self.limiter.hold(caller.user, calls))

    async def count_files(
        self, req: ChatRequest, caller: Caller, counted: Admitted | None
    ) -> Admitted | None:
        """`req`'s PDFs' pages counted (``count_files``): on the loop within a small budget, else
        in the shared worker only once the request is counted in the caller's windows and
        concurrency (a spent window is a 429 before any of the worker's time is taken, where
        it took 9-14 s of it); the hold of that count, for ``admit``."""

        async def admitted_first() -> None:
            nonlocal counted
            if counted is None:
                counted = await self.count(caller)

        await count_files(req, self.run, caller.user, admitted_first)
        return counted

    async def admit(
        self,
        req: ChatRequest,
        arrival: Arrival,
        access: Access,
        hit: Cached | None,
        counted: Admitted | None = None,
    ) -> tuple[Admitted, PickPlan | None, str]:
        """The caller's admission at the request's worst-case price, with the key pick a shared
        pool makes in the same round trip (`plan`, taken once the request is recorded); past a
        spent budget, the free fallback's admission when the admin allows it ("budget"): the
        request windows and concurrency still hold. `counted`: the request's count made
        before (``Engine.chat``), completed here."""
        caller, tr = arrival.caller, arrival.trace
        price = self.models.admission_price(req, caller)
        plan = self._plan(req) if hit is None else None
        try:
            with tr.child("rsql.admission") if tr is not None else NO_SPAN:
                admitting = self.limiter.admit(
                    caller.user,
                    caller.groups,
                    price.worst(req.prompt_tokens, req.completion_tokens, req.audio)
                    + req.hosted_usd,
                    pick=plan.args if plan is not None else None,
                    rate_class=rate_class(caller.client),
                    counted=counted,
                )
                held = await _uncut(admitting, partial(self._pick_back, plan) if plan else None)
        except RateLimited as exc:
            if not self.forwarder.may_fall_back(req, access, caller, "budget", exc, None):
                raise
            return counted or await self.count(caller), None, "budget"
        return held, plan, ""

    async def _pick_back(self, plan: PickPlan, picked: tuple[int, float]) -> None:
        """The key pick of an admission whose client left before it answered (``_uncut``): its
        slot given back uncounted, its place in the line left."""
        self.pool.left_line(plan.place)
        slot = self.pool.take(plan, picked)
        if isinstance(slot, Slot):
            await self.pool.release(slot, counted=False)

    async def quota(self, caller: Caller) -> dict[str, str]:
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

    def _plan(self, req: ChatRequest) -> PickPlan | None:
        """The pool's key pick to make with the admission, if it makes one there; a request no
        key can serve is refused by forwarding (after admission, so the fallback may answer)."""
        try:
            return self.pool.plan(req.model, req.reserve_tokens, req.prompt_tokens, req.affinity)
        except EngineError:
            return None
