"""The upstream pool: which key serves a request, and the health of every key.

Capacity belongs to (account, model) buckets (providers count per organization, not per key);
health belongs to keys: a 401/403 disables one key, a run of 5xx / timeouts opens that key's
circuit breaker. Picking is synchronous and lock-free: the event loop is the lock.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import BadRequest, UpstreamError
from .affinity import Affinity, Homes
from .breaker import Breaker
from .buckets import HEAD_LAG, Bucket, provider_stamp
from .specs import Rate, UpstreamSpec
from .waiting_line import LinePlace, WaitingLines

# model names whose catalogue answers (which keys serve it, its dearest price) are remembered
# per engine: only names some key serves, so a caller's made-up names never fill it; bounded
# all the same (a catch-all upstream, "*", serves any name)
MEMO_MODELS = 1024


@dataclass
class Key:
    spec: UpstreamSpec
    breaker: Breaker = field(default_factory=Breaker)
    disabled: str = ""  # why, when a provider rejected the key (401/403)
    inflight: int = 0
    last_pick: float = 0.0
    recent_errors: list[tuple[float, str]] = field(default_factory=list)

    @property
    def alias(self) -> str:
        return self.spec.name

    @property
    def full(self) -> bool:
        """A self-hosted server with as many requests in flight as it may take."""
        return 0 < self.spec.max_in_flight <= self.inflight

    @property
    def room(self) -> float:
        """The share of its in-flight cap still free (1.0 without a cap)."""
        cap = self.spec.max_in_flight
        return 1.0 - self.inflight / cap if cap else 1.0

    def note_error(self, now: float, what: str) -> None:
        self.recent_errors.append((now, what))
        del self.recent_errors[:-20]


@dataclass
class Slot:
    """A held place on one key and its bucket, given back once by the request's hold
    (``request_state.Hold``)."""

    id: int
    key: Key
    bucket: Bucket
    model: str
    tokens: int
    probe: bool
    ref: str = ""  # the slot's name in shared state (Redis pools)
    taken: float = 0.0  # when it was taken (the pool's clock): the request is sent right after
    counted: int = 0  # what of the request the provider's token window counts (``counted``)


# A key pick's answer: a slot taken; or, none free, the seconds until one may be; or None, none
# free and no time known (wait for a change in the pool)
Picked = Slot | float | None


@dataclass(slots=True)
class PickPlan:
    """A key pick prepared for the admission's own step (shared pools make both in one round
    trip): the state backend's arguments and the candidate keys, in the order they were sent."""

    args: list[Any]  # the state backend's script arguments (strings and numbers)
    cands: list[Key]
    model: str
    tokens: int
    prompt: int = 0
    place: LinePlace | None = None  # the request's place in the line replicas share, if any


def counted(key: Key, tokens: int, prompt: int) -> int:
    """What of a request (`tokens` in all, `prompt` of them its prompt) the provider behind
    `key` counts against its token window as it arrives (``UpstreamSpec.window_counts_answer``)."""
    return tokens if key.spec.window_counts_answer or not prompt else prompt


def request_too_large(model: str, tokens: int, prompt: int, limit: int) -> BadRequest:
    """The 400 for a request no upstream of `model` can ever take (never a 429: no wait cures it,
    and SDKs retry 429s)."""
    over = f" ({limit} tokens)" if limit else ""
    return BadRequest(
        f"this request needs about {tokens} tokens (a prompt of about {prompt} and its answer, "
        f"max_tokens), more than any upstream serving {model!r} takes{over}; shorten the "
        "prompt or lower max_tokens",
        code="request_too_large",
        extra={"param": "messages"},
    )


@dataclass(frozen=True)
class PoolRules:
    """How a pool treats its keys (the admin's settings of the same names, ``EngineSettings``)."""

    default_cooldown: float = 5.0  # a 429 that says no Retry-After cools this long
    breaker_threshold: int = 3  # failures in a row that open a key's breaker
    breaker_seconds: float = 15.0  # how long it first stays open
    lease_seconds: float = 600.0  # shared pools: a slot's lease in shared state, unless renewed


class Pool:
    """Chooses keys with headroom, spreads load, waits for capacity, tracks key health."""

    def __init__(
        self,
        specs: Iterable[UpstreamSpec],
        rules: PoolRules = PoolRules(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keys = [
            Key(
                s,
                Breaker(threshold=rules.breaker_threshold, base_open_seconds=rules.breaker_seconds),
            )
            for s in specs
        ]
        self.default_cooldown = rules.default_cooldown
        self.clock = clock
        self.buckets: dict[tuple[str, str], Bucket] = {}
        self._account_rates: dict[str, tuple[tuple[Rate, ...], tuple[Rate, ...]]] = {}
        self._ids = itertools.count(1)
        # requests waiting for capacity, per model: while any wait, windows past half are paced
        self.waiting: dict[str, int] = {}
        self.lines = WaitingLines(clock, self.poll_seconds)  # ...and the order they wait in
        # told when a key is disabled (alias, why) or re-enabled (alias, None): the alerts
        self.on_key_change: Callable[[str, str | None], None] | None = None
        # which keys serve a model, asked several times a request: remembered when every key's
        # models are configured (a discovering upstream's change when it answers GET /models)
        self.catalogue_fixed = not any(k.spec.discover for k in self.keys)
        self._served: list[str] | None = None
        self._serving: dict[str, list[Key]] = {}
        # which account each conversation's prompt cache is on (``affinity``)
        self.homes = Homes()

    # -- model catalogue --------------------------------------------------------------

    def models(self) -> list[str]:
        if self._served is not None:
            return list(self._served)
        seen: dict[str, None] = {}
        for k in self.keys:
            for m in (*k.spec.models, *sorted(k.spec.discovered)):
                if m != "*":
                    seen.setdefault(m)
        if self.catalogue_fixed:
            self._served = list(seen)
        return list(seen)

    def serving(self, model: str) -> Sequence[Key]:
        found = self._serving.get(model)
        if found is None:
            found = [k for k in self.keys if k.spec.serves(model)]
            if found and self.catalogue_fixed and len(self._serving) < MEMO_MODELS:
                self._serving[model] = found
        return found

    def account_rates(self, account: str) -> tuple[tuple[Rate, ...], tuple[Rate, ...]]:
        """(request limits, token limits) of an account: the first of its upstreams to set
        them decides, as providers count per account, not per key."""
        rates = self._account_rates.get(account)
        if rates is None:
            specs = [k.spec for k in self.keys if k.spec.account == account]
            rates = self._account_rates[account] = (
                next((s.limits for s in specs if s.limits), ()),
                next((s.token_limits for s in specs if s.token_limits), ()),
            )
        return rates

    def bucket(self, key: Key, model: str) -> Bucket:
        ident = (key.spec.account, model)
        b = self.buckets.get(ident)
        if b is None:
            b = self.buckets[ident] = Bucket(*self.account_rates(key.spec.account))
        return b

    # -- picking -------------------------------------------------------------------------

    def screen(
        self, model: str, tokens: int, exclude: set[str], now: float, prompt: int = 0
    ) -> tuple[list[Key], float]:
        """The keys this process sees able to take the request now (serving the model, not
        excluded or disabled, big enough, breaker closed or ready for its probe), and the
        seconds until an open breaker lets another in (inf: none will). Raises when no key can
        ever serve the request. Their windows decide next: local buckets, or shared state.
        `tokens`: the request's prompt and answer; `prompt`: its prompt alone."""
        ready: list[Key] = []
        soonest = math.inf
        usable = 0
        too_big = True
        limits: list[int] = []
        for key in self.keys:
            if not key.spec.serves(model) or key.alias in exclude or key.disabled:
                continue
            usable += 1
            bucket = self.bucket(key, model)
            if not bucket.fits_ever(tokens, counted(key, tokens, prompt), now):
                limits += [r.amount for r in bucket.token_rates]
                limit = bucket.token_limit(now)
                limits += [limit] if limit is not None else []
                continue
            too_big = False
            if key.full:
                continue  # a self-hosted server at its cap: only a release makes room
            if key.breaker.allows(now):
                ready.append(key)
            elif not key.breaker.probing:
                soonest = min(soonest, key.breaker.open_until - now)
        if usable == 0:
            if not self.serving(model):
                pending = [k.alias for k in self.keys if k.spec.discovers and not k.spec.discovered]
                unsaid = (
                    f" (not yet said which models they serve: {', '.join(pending)})"
                    if pending
                    else ""
                )
                raise BadRequest(
                    f"model {model!r} is not served here; available: "
                    f"{', '.join(self.models()) or 'none'}{unsaid}",
                    code="model_not_found",
                    status=404,
                )
            raise UpstreamError(
                f"no usable upstream key for model {model!r}: every key is disabled or already failed "
                "in this request",
                code="no_upstream",
            )
        if too_big:
            raise request_too_large(model, tokens, prompt, max(limits, default=0))
        return ready, soonest

    def try_pick(
        self,
        model: str,
        tokens: int,
        exclude: set[str],
        prompt: int = 0,
        paced: bool = False,
        affinity: Affinity | None = None,
    ) -> Picked:
        """A slot if some key has headroom now; else seconds until one may (a float), or None
        when only a release can help; raises when no key can ever serve the request. `paced`:
        others wait for this model's capacity (``Bucket.wait_time``). `affinity`: the
        request's conversation, kept on the account its prompt cache is on while that account
        has room now (``affinity``); the account that serves it is its home from then."""
        now = self.clock()
        ready, soonest = self.screen(model, tokens, exclude, now, prompt)
        home = self.homes.home(affinity, now) if affinity is not None else None
        best: tuple[Any, ...] | None = None
        for key in ready:
            bucket = self.bucket(key, model)
            wait = bucket.wait_time(now, tokens, counted(key, tokens, prompt), paced)
            if wait is None:  # only a request in flight finishing can make room
                continue
            if wait > 0:
                soonest = min(soonest, wait)
                continue
            # the conversation's home first; then the most headroom, and least outstanding
            # requests among replicas of one model on self-hosted servers
            rank = (
                key.spec.account == home,
                min(bucket.headroom(now), key.room),
                -key.inflight,
                -key.last_pick,
            )
            if best is None or rank > best[0]:
                best = (rank, key, bucket)
        if best is not None:
            _, key, bucket = best
            weight = counted(key, tokens, prompt)
            slot = self.claim_slot(key, bucket, model, tokens, now, weight=weight)
            bucket.begin(slot.id, tokens, now, weight)
            return slot
        return soonest if soonest != math.inf else None

    def claim_slot(
        self,
        key: Key,
        bucket: Bucket,
        model: str,
        tokens: int,
        now: float,
        ref: str = "",
        weight: int | None = None,
    ) -> Slot:
        """A slot on `key` whose window has room (the caller checked): the key's side of it.
        `weight`: what of the request the provider's window counts (None: `tokens`)."""
        probe = key.breaker.tripped
        if probe:
            key.breaker.probing = True
        key.inflight += 1
        key.last_pick = now
        weight = tokens if weight is None else weight
        return Slot(next(self._ids), key, bucket, model, tokens, probe, ref, now, weight)

    def free_slot(self, slot: Slot) -> None:
        """The key's side of giving a slot back; its window's side is the caller's."""
        slot.key.inflight -= 1
        if slot.probe:
            slot.key.breaker.probing = False

    async def pick(
        self,
        model: str,
        tokens: int,
        exclude: set[str],
        prompt: int = 0,
        paced: bool = False,
        affinity: Affinity | None = None,
        place: LinePlace | None = None,
    ) -> Picked:
        """One attempt at a slot; shared pools override this to pick in one Redis round trip,
        in the line replicas share (`place`: the request's place there)."""
        return self.try_pick(model, tokens, exclude, prompt, paced, affinity)

    def plan(
        self, model: str, tokens: int, prompt: int = 0, affinity: Affinity | None = None
    ) -> PickPlan | None:
        """A key pick for the state backend to make in the admission's own step (shared pools:
        one round trip for both), or None: this pool picks locally, at no cost. The admission's
        answer comes back to ``take``."""
        return None

    def take(self, plan: PickPlan, picked: tuple[int, float]) -> Picked:
        """The pick the admission made for `plan`, as ``pick`` answers."""
        raise NotImplementedError

    def place_in_line(self, model: str) -> LinePlace | None:
        """A waiting request's place in the line replicas share (None: no replicas to share)."""
        return None

    def left_line(self, place: LinePlace | None) -> None:
        """A request leaves the line replicas share without a slot from it (gave up, failed
        over, ended): those who came after it no longer wait for it."""

    # without a local release event (another replica freed the capacity), poll this often
    poll_seconds: float | None = None
    # whether releases are batched writes (shared pools): made together with the ticket's end
    batched = False

    async def acquire(
        self,
        model: str,
        tokens: int,
        exclude: set[str],
        deadline: float,
        first: Picked = None,
        prompt: int = 0,
        affinity: Affinity | None = None,
        place: LinePlace | None = None,
    ) -> Slot:
        """Pick a key, waiting for capacity until `deadline` (monotonic); else a 429. `first`:
        the first attempt's answer, when the admission already made it (`place`: its place
        in the line replicas share, taken by a miss). `affinity`: the request's conversation
        (``try_pick``).

        After a miss, or when others already wait, the request waits in its model's line
        (``WaitingLines``): only the one at its head picks again. It counts in ``waiting``
        from then until it has a slot or gives up: while others wait, a pick is paced."""
        if isinstance(first, Slot):
            return first
        if exclude:  # a failover's attempt waits apart, here and in no line replicas share
            self.left_line(place)
            place = None
        elif place is None:
            place = self.place_in_line(model)
        try:
            return await self._wait_for(
                model, tokens, exclude, deadline, first, prompt, affinity, place
            )
        except BaseException:
            self.left_line(place)
            raise

    async def _wait_for(
        self,
        model: str,
        tokens: int,
        exclude: set[str],
        deadline: float,
        got: Picked,
        prompt: int,
        affinity: Affinity | None,
        place: LinePlace | None,
    ) -> Slot:
        if got is None and self.lines.busy(model, exclude):
            # others came first: behind them, told at once if no key can ever serve it
            self.screen(model, tokens, exclude, self.clock(), prompt)
        elif got is None:
            paced = self.waiting.get(model, 0) > 0
            got = await self.pick(model, tokens, exclude, prompt, paced, affinity, place)
        if isinstance(got, Slot):
            return got
        self.lines.refuse_late(model, got, deadline)
        self.waiting[model] = self.waiting.get(model, 0) + 1
        try:
            behind = self.lines.busy(model, exclude)
            leave = await self.lines.join(model, exclude, deadline)
            served = False
            try:
                while True:
                    if not behind:  # else the one before got a slot: there may be more room
                        await self.lines.wait(model, got, deadline)
                    behind = False
                    paced = self.waiting.get(model, 0) > 1  # others wait too
                    got = await self.pick(model, tokens, exclude, prompt, paced, affinity, place)
                    if isinstance(got, Slot):
                        served = True
                        return got
            finally:
                leave(served)
        finally:
            self.waiting[model] -= 1

    def _notify(self) -> None:
        self.lines.notify()

    # -- outcomes ------------------------------------------------------------------------

    async def release(self, slot: Slot, *, tokens: int | None = None, counted: bool = True) -> None:
        """Give the slot back: `counted` stamps it in the window (the provider saw it)."""
        self.free_slot(slot)
        slot.bucket.end(slot.id, self.clock(), tokens, counted=counted)
        self._notify()

    async def succeeded(self, slot: Slot, headers: Mapping[str, str], head_wait: float = 0) -> None:
        """A 2xx answer came (a stream's first event, or a whole JSON answer), `head_wait` s
        after its head: the provider counted the request by then, so its slot is stamped then,
        or when the provider's headers say it arrived."""
        slot.key.breaker.success()
        now = self.clock()
        head = max(slot.taken, now - head_wait)
        slot.bucket.served(slot.counted)
        slot.bucket.answered(head - slot.taken)
        # as at head
        slot.bucket.observe_headers(headers, head, answered=now - head < HEAD_LAG, sent=slot.taken)
        slot.bucket.stamp(slot.id, provider_stamp(headers, head, slot.taken, slot.bucket.rates))
        self._notify()  # a waiter blocked on this in-flight slot now has a time to wait for

    def served(self, slot: Slot, affinity: Affinity) -> None:
        """`slot`'s account answered `affinity`'s conversation: its home from now, where its
        prompt cache is (``Homes``); not a key picked for it that then failed."""
        self.homes.served(affinity, slot.key.spec.account, self.clock())

    async def too_large(self, slot: Slot, limit: int | None, headers: Mapping[str, str]) -> None:
        """The provider refused the slot's request as larger than its window takes: about that
        request alone, so nothing cools; its limit is learned, so a prompt past it is refused
        here next time (``Bucket.learn_limit``: a lesson that can be believed). The request's
        hold gives the slot back uncounted (the provider ran nothing)."""
        now = self.clock()
        slot.bucket.observe_headers(headers, now)
        if limit:
            slot.bucket.learn_limit(limit, now)

    async def rate_limited(
        self, slot: Slot, retry_after: float | None, headers: Mapping[str, str]
    ) -> float:
        """Cool the (account, model) down, for requests as large as the slot's at least unless
        the provider's headers say its window is spent (``cool_floor``); returns the cooldown
        in seconds."""
        now = self.clock()
        bucket = slot.bucket
        bucket.observe_headers(headers, now)
        waits = [self.default_cooldown if retry_after is None else retry_after]
        if bucket.prov_req_left is not None and bucket.prov_req_left <= 0:
            waits.append(bucket.prov_req_reset - now)
        if bucket.prov_tok_left is not None and bucket.prov_tok_left <= 0:
            waits.append(bucket.prov_tok_reset - now)
        secs = max(waits)
        bucket.cool(now + secs, self.cool_floor(slot), now)
        slot.key.note_error(now, "429")
        return secs

    def cool_floor(self, slot: Slot) -> int:
        """The least size of request a 429 on `slot` cools (0: all), read after its headers.

        A 429 does not say whether the window is full or this one request is more than it ever
        takes (Anthropic's and Gemini's name no number, and a gateway may send no headers), and
        one user must not cool the account for everyone with one oversized request. So it cools
        requests at least as large as this one, which it shows cannot be sent now; a smaller one
        still goes, and if the window is full it gets its own 429, cooling down to its size: a
        few 429s more, each at a new least size. Headers saying requests or tokens are spent
        show the window full: then every request cools."""
        bucket, now = slot.bucket, self.clock()
        spent = (
            bucket.prov_req_left is not None
            and bucket.prov_req_left <= 0
            and bucket.prov_req_reset > now
        ) or (
            bucket.prov_tok_left is not None
            and bucket.prov_tok_left <= 0
            and bucket.prov_tok_reset > now
        )
        return 0 if spent else max(0, slot.counted)

    async def failed(
        self, slot: Slot, what: str, user: str | None = None, *, counted: bool = True
    ) -> bool:
        """Count a failure against the key's breaker; True when this opened the breaker. `user`:
        whose request failed, when the failure may be that request's doing (``Breaker``).
        ``counted=False``: a failure counted before is the key's after all (the same request
        then succeeded on another key)."""
        now = self.clock()
        was_open = slot.key.breaker.state(now) == "open"
        if counted:
            slot.key.breaker.failure(now, user)
            slot.key.note_error(now, what)
        else:
            slot.key.breaker.blame_host(now)
        return not was_open and slot.key.breaker.state(now) == "open"

    async def disable(self, key: Key, why: str) -> None:
        was = key.disabled
        key.disabled = why
        key.note_error(self.clock(), why)
        if not was and self.on_key_change is not None:
            self.on_key_change(key.alias, why)

    async def enable(self, key: Key) -> None:
        was = key.disabled
        key.disabled = ""
        key.breaker.success()
        self._notify()
        if was and self.on_key_change is not None:
            self.on_key_change(key.alias, None)

    async def close(self) -> None:
        pass

    def key_states(self) -> tuple[tuple[str, str], ...]:
        """(alias, state) of every key, in the pool's order (the metrics, the dashboard)."""
        return tuple((k.alias, self.key_state(k)) for k in self.keys)

    def describe(self, model: str) -> list[dict[str, Any]]:
        """The state of every key serving `model` (what a capacity alert names)."""
        return [{"alias": k.alias, "state": self.key_state(k)} for k in self.serving(model)]

    def key_state(self, key: Key) -> str:
        now = self.clock()
        if key.disabled:
            return "disabled"
        if any(
            b.cool_until > now for (acct, _), b in self.buckets.items() if acct == key.spec.account
        ):
            return "cooling"
        state = key.breaker.state(now)
        return "healthy" if state == "closed" else f"breaker-{state}"
