"""One request's records while the engine answers it: as it arrives, then once admitted."""

from __future__ import annotations

from dataclasses import dataclass, field

from .admission.limiter import Admitted
from .bodies.request import ChatRequest
from .monitoring.tracing import RequestTrace
from .privacy.mapback import restored
from .privacy.redact import Redactor
from .records import Caller, Outcome, Reply
from .upstreams.pool import Slot


@dataclass(slots=True)
class Arrival:
    """A request as it arrives: who asks, the record being written, when (latency counts from
    here). What ends before admission (a refusal, a cache hit) needs nothing more."""

    caller: Caller
    outcome: Outcome
    started: float  # the engine's clock at arrival
    trace: RequestTrace | None


@dataclass(slots=True)
class Exchange(Arrival):
    """An admitted request, handed from step to step; complete when built. `admission` is
    settled or given back exactly once, whatever ends the request; `slot` is the key whose slot
    the reply releases, set when an upstream answers."""

    req: ChatRequest
    admission: Admitted
    redactor: Redactor | None = None
    cache_key: str | None = None  # where the answer is cached; None: not cached
    slot: Slot = field(init=False)
    # the key pick made with the admission (Pool.plan), until forwarding uses it: a slot, or
    # how long until one frees (the pool's answer when none is free now)
    first_pick: Slot | float | None = None
    # the provider may bill this request though it was not answered (an accepted attempt that
    # timed out): `outcome.cost_usd` is charged and nothing is refunded
    billed: bool = False
    # the client left while the provider was answering: the answer is read on in the background,
    # which charges it and gives back the slot and the admission (``Replies.adopt``)
    handed_off: bool = False

    def restored(self, reply: Reply) -> Reply:
        """`reply` with this caller's redacted values mapped back where safe (``privacy.mapback``)."""
        return answered(reply, self.outcome, self.redactor, self.req, self.caller)


def answered(
    reply: Reply, outcome: Outcome, redactor: Redactor | None, req: ChatRequest, caller: Caller
) -> Reply:
    """`reply` under the public model name, with the caller's redacted values mapped back where
    safe (``privacy.mapback``)."""
    reply.model = outcome.model
    return restored(reply, redactor, req.endpoint, caller.client)
