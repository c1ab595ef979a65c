"""The admission step of a request's walk (``core``): the caller's windows, concurrency and
budget in one atomic step with the key pick, at the request's worst-case price; and before it,
when a request's PDFs need the shared worker to count their pages, its count in the caller's
windows, so no work of a user reaches the worker their limits would refuse."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .admission.entitlements import Access
from .admission.limiter import Admitted, Limiter, Ticket, rate_class
from .bodies.cache import Cached
from .bodies.request import ChatRequest, count_files
from .errors import EngineError, RateLimited
from .exchange import Arrival
from .failover import Forwarder
from .model_choice import ModelChoice
from .monitoring.tracing import NO_SPAN
from .records import Caller
from .upstreams.pool import PickPlan, Pool


class AdmissionStep:
    """Whether a request may go out now, and with which key (``Limiter.admit``)."""

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

    async def count_files(
        self, req: ChatRequest, caller: Caller, counted: Ticket | None
    ) -> Ticket | None:
        """`req`'s PDFs' pages counted (``count_files``): on the loop within a small budget, else
        in the shared worker only once the request is counted in the caller's windows and
        concurrency (a spent window is a 429 before any of the worker's time is taken, where
        it took 9-14 s of it); the ticket of that count, for ``admit``."""

        async def admitted_first() -> None:
            nonlocal counted
            if counted is None:
                counted = await self.limiter.count(
                    caller.user, caller.groups, rate_class(caller.client)
                )

        await count_files(req, self.run, caller.user, admitted_first)
        return counted

    async def admit(
        self,
        req: ChatRequest,
        arrival: Arrival,
        access: Access,
        hit: Cached | None,
        counted: Ticket | None = None,
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
                ticket = await self.limiter.admit(
                    caller.user,
                    caller.groups,
                    price.worst(req.prompt_tokens, req.completion_tokens) + req.hosted_usd,
                    pick=plan.args if plan is not None else None,
                    rate_class=rate_class(caller.client),
                    counted=counted,
                )
        except RateLimited as exc:
            if not self.forwarder.may_fall_back(req, access, caller, "budget", exc, None):
                raise
            ticket = counted or await self.limiter.admit(
                caller.user,
                caller.groups,
                0.0,
                budgets_apply=False,
                rate_class=rate_class(caller.client),
            )
            return Admitted(self.limiter, ticket), None, "budget"
        return Admitted(self.limiter, ticket), plan, ""

    def _plan(self, req: ChatRequest) -> PickPlan | None:
        """The pool's key pick to make with the admission, if it makes one there; a request no
        key can serve is refused by forwarding (after admission, so the fallback may answer)."""
        try:
            return self.pool.plan(req.model, req.reserve_tokens, req.prompt_tokens, req.affinity)
        except EngineError:
            return None
