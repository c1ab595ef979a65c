"""One request's state on its way through the engine: as it arrives and once admitted
(``Arrival``, and ``Exchange``: the request and the engine's side of it), what it holds until
it ends (``Hold``), where its usage row and the rest go once it ended (``Outcomes``), and
whether its client is still there (``Watch``, ``at_provider``; below).

Not "in flight": that word is the key pool's, for requests sent to a key and not yet done
(``Key.inflight``, a self-hosted upstream's ``max_in_flight``)."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .admission.limiter import Admitted
from .bodies.request import ChatRequest
from .interface import Caller, Outcome, Reply
from .monitoring.tracing import RequestTrace
from .privacy.mapback import restored
from .privacy.redact import Redactor
from .upstreams.pool import Picked, Pool, Slot
from .upstreams.waiting_line import LinePlace

log = logging.getLogger("rsql.engine")


class Hold:
    """What an admitted request holds until it ends: its admission (the caller's concurrency
    and budget reservation) and the key slot of the attempt under way. Every slot is given back
    once, by ``let_go`` (a failed attempt) or ``end``; ``end`` is the one way a request gives
    back what it holds, whatever ended it, and a second ``end`` does nothing."""

    __slots__ = ("admission", "_pool", "_pick", "_place", "_slot", "_holding")

    def __init__(
        self, pool: Pool, admission: Admitted, pick: Picked = None, place: LinePlace | None = None
    ) -> None:
        self.admission = admission
        self._pool = pool
        # the key pick made with the admission (``Pool.plan``) until an attempt uses it: a slot,
        # or how long until one frees (the pool's answer when none is free now), and the
        # place in the line replicas share that such a miss took
        self._pick = pick
        self._place = None if isinstance(pick, Slot) else place
        self._slot: Slot | None = None  # the latest attempt's slot
        self._holding = False  # whether that slot is still held

    @property
    def slot(self) -> Slot:
        """The latest attempt's slot: the key that answered, or was billed."""
        if self._slot is None:
            raise RuntimeError("no upstream attempt was made")
        return self._slot

    async def acquire(self, req: ChatRequest, exclude: set[str], deadline: float) -> Slot:
        """A slot for the next attempt: the admission's pick first, else the pool's, waiting for
        capacity until `deadline` (``Pool.acquire``)."""
        pick, self._pick = self._pick, None
        place, self._place = self._place, None
        slot = await self._pool.acquire(
            req.model,
            req.reserve_tokens,
            exclude,
            deadline,
            pick,
            req.prompt_tokens,
            req.affinity,
            place,
        )
        self._slot, self._holding = slot, True
        return slot

    async def let_go(self, *, tokens: int | None = None, counted: bool = True) -> None:
        """Give back the attempt's slot if still held (`counted`: the provider saw the request;
        `tokens`: what it used, None its whole reservation), and an admission's pick no attempt
        used (never counted)."""
        pick, self._pick = self._pick, None
        if isinstance(pick, Slot):
            await self._pool.release(pick, counted=False)
        place, self._place = self._place, None
        self._pool.left_line(place)  # ended before an attempt waited
        if self._holding and self._slot is not None:
            self._holding = False
            await self._pool.release(self._slot, tokens=tokens, counted=counted)

    async def end(
        self,
        cost_usd: float,
        *,
        tokens: int | None = None,
        counted: bool = True,
        refund: bool = False,
    ) -> None:
        """The request's end: the slot still held given back (as ``let_go``) and the admission
        settled at `cost_usd` (``Admitted.settle``; `refund`: it leaves the request windows too).
        With shared state both writes go in one batch (``Pool.batched``), so they are made
        together rather than one after another."""
        release = self.let_go(tokens=tokens, counted=counted)
        settle = self.admission.settle(cost_usd, refund=refund)
        if self._pool.batched:
            await asyncio.gather(release, settle)
        else:
            await release
            await settle


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
    """An admitted request, handed from step to step; complete when built. `hold` is what it
    holds of the caller's limits and of a key, given back once by whichever step ends it."""

    req: ChatRequest
    hold: Hold
    redactor: Redactor | None = None
    cache_key: str | None = None  # where the answer is cached; None: not cached
    # the provider may bill this request though it was not answered (an accepted attempt that
    # timed out): `outcome.cost_usd` is charged and nothing is refunded
    billed: bool = False
    # the client left while the provider was answering: the answer is read on in the background,
    # which charges it and ends its hold (``Replies.adopt``)
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
    reply.headers.update(req.reply_headers)
    return restored(reply, redactor, req.endpoint, caller.client)


class Outcomes:
    """Where every request's record goes once it ended, however it ended (an answer, a cache
    hit, a refusal, an abandoned answer read on in the background): its latency set, its span
    ended, then each observer in turn (the metrics, the usage log, the alerts, the course log).
    The steps that end a request are handed this, so none calls back into the engine."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.observers: list[Callable[[Outcome], None]] = []

    def finish(self, arrival: Arrival) -> None:
        """Write the request's row (and end its span): every request, once."""
        outcome = arrival.outcome
        outcome.latency_s = self.clock() - arrival.started
        if outcome.trace is not None:
            try:
                outcome.trace.end(outcome)
            except Exception:
                log.exception("ending the request's span failed")
        for observe in self.observers:
            try:
                observe(outcome)
            except Exception:
                log.exception("outcome hook failed")


# -- a client that leaves while its request is at the provider: the request goes on to the
# answer
#
# A client that leaves while its request is at the provider: the request goes on to the answer.
#
# The provider generates, and bills, an answer whatever the client does, so a request whose
# client leaves while the provider has it is not stopped there: its own task waits for the
# provider's answer (a JSON answer whole, a stream's first event) or failure, and hands it to the
# background (``Replies.adopt``), which reads it to its end and charges it. So is a round trip to
# the shared state (an admission, a key pick): its script runs at Redis whatever the client does,
# so it is let answer and what it took is given back (``admission_step._uncut``, the shared
# pool's ``pick``). A client that leaves at any other moment (waiting for a key) stops its
# request at once.
#
# Why not a task of its own for the upstream call, shielded from the cancel: that was a task and
# two more turns of the event loop every request, about 0.12 ms of every answer's time to first
# token and 3% of a request's CPU (measured with ``bench/count_proxy.py``).
#
# The host says who left (``Watch.client_left``); the engine says when its request is at the
# provider (``at_provider``). A request the host gives no watch (the engine run in-process) is
# never cancelled by a client, and a cancel that does reach a request at the provider (the host's
# shutdown cutting it short) charges what the provider may bill, as an answer nobody reads.


class Watch:
    """One request's task and whether its client left while the request was at the provider."""

    __slots__ = ("task", "calls", "left")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self.task = task
        self.calls = 0  # upstream calls under way (one, but for a request that fans out)
        self.left = False

    def client_left(self) -> None:
        """The client is gone: stop the request now, unless it is at the provider (then the
        engine hands the answer to the background once it is in, and ends the request)."""
        if self.calls:
            self.left = True
        elif not self.task.done():
            self.task.cancel()


_WATCH: contextvars.ContextVar[Watch | None] = contextvars.ContextVar("rsql_watch", default=None)


def watch_request() -> Watch:
    """Watch the current task's request (the host calls this where it starts answering)."""
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("watch_request() outside a task")
    watch = Watch(task)
    _WATCH.set(watch)
    return watch


@contextmanager
def at_provider() -> Iterator[Watch | None]:
    """The request is at the provider, or in a round trip to the shared state, for the block: a
    client that leaves meanwhile does not cancel it (the block's end then finds ``Watch.left``
    set). None: nobody watches."""
    watch = _WATCH.get()
    if watch is None:
        yield None
        return
    watch.calls += 1
    try:
        yield watch
    finally:
        watch.calls -= 1
