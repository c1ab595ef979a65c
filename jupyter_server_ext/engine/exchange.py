"""One request's record while the engine answers it, handed from step to step."""

from __future__ import annotations

from dataclasses import dataclass, field

from .limiter import Ticket
from .pool import Slot
from .records import Caller, Outcome
from .redact import Redactor
from .request import ChatRequest
from .tracing import RequestTrace


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
