"""One request's record while the engine answers it, handed from step to step."""

from __future__ import annotations

from dataclasses import dataclass, field

from .admission.limiter import Ticket
from .bodies.request import ChatRequest
from .monitoring.tracing import RequestTrace
from .privacy.mapback import restored
from .privacy.redact import Redactor
from .records import Caller, Outcome, Reply
from .upstreams.pool import Slot


@dataclass(slots=True)
class Exchange:
    """What admission, forwarding and the reply share about one request.

    `req` is set once the body is parsed; `ticket` once the limits admit it; `slot` once an
    upstream answers (the key whose slot the reply releases).
    """

    caller: Caller
    outcome: Outcome
    started: float  # the engine's clock at arrival: latency counts from here
    trace: RequestTrace | None = None
    req: ChatRequest = field(init=False)
    redactor: Redactor | None = None
    ticket: Ticket | None = None
    cache_key: str | None = None  # where the answer is cached; None: not cached
    slot: Slot = field(init=False)
    # the key pick made with the admission (Pool.plan), until forwarding uses it
    first_pick: Slot | float | None = None
    # the provider may bill this request though it was not answered (an accepted attempt that
    # timed out): `outcome.cost_usd` is charged and nothing is refunded
    billed: bool = False
    # the client left while the provider was answering: the answer is read on in the background,
    # which charges it and gives back the slot and the ticket (``Replies.adopt``)
    handed_off: bool = False

    def restored(self, reply: Reply) -> Reply:
        """`reply` with this caller's redacted values mapped back where safe (``privacy.mapback``)."""
        reply.model = self.outcome.model
        return restored(reply, self.redactor, self.req.endpoint, self.caller.client)
