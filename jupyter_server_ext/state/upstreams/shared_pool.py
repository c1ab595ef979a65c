"""The upstream pool with its capacity shared through Redis, for replicas.

Each replica keeps its own view of key health for reporting, but what must hold across all of
them lives in Redis: every (account, model) window (requests in flight and stamped, with their
tokens), cooldowns after 429s, provider-reported headroom, open breakers and disabled keys.
Picking a key is one Lua script (``scripts.PICK``): it weighs every candidate, takes a slot on
the best one and says how long to wait when none has room, and it keeps the line of waiting
requests that every replica shares (``LinePlace``): a request that missed holds its place there,
by when it came, and room goes to those who came first. A request's first pick runs inside
its admission's script (``plan``, ``take``); its stamp at the first byte and its end are
batched writes (``redis_batch``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ...engine import UpstreamSpec
from ...engine.request_state import at_provider
from ...engine.upstreams.affinity import Affinity
from ...engine.upstreams.buckets import (
    HEAD_LAG,
    MAX_SIZE_COOLS,
    PACED_WINDOW_SECONDS,
    parse_duration,
    provider_count,
    provider_stamp,
)
from ...engine.upstreams.pool import Key, Picked, PickPlan, Pool, PoolRules, Slot, counted
from ...engine.upstreams.waiting_line import LinePlace
from ..connection.batch import Batcher
from ..connection.pipelined import PipelinedConnection, script_caller
from ..connection.scripts import COOL_FROM, EXTEND, HEAD_POLL, PICK

log = logging.getLogger("rsql.state")
_DOWN = (RedisError, OSError)

# how late a stamp write may reach Redis after it was queued (the batch before it still at
# Redis, a busy event loop): the script counts our stamps from its own clock, so without this
# a write applied 10 ms late missed a stamp the provider still counted and the key was held to
# the provider's reset (a paced 6-per-s key under a loaded suite: a second's pause). Counting a
# quarter second more lets a request of someone else's on the account hide that long, and the
# provider's 429 then cools the key
WRITE_DELAY = 0.25


class SharedPool(Pool):
    """A Pool whose capacity, cooldowns, breakers and disabled keys live in Redis."""

    poll_seconds = HEAD_POLL  # releases on other replicas send no local event
    batched = True

    def __init__(
        self,
        specs: Iterable[UpstreamSpec],
        rules: PoolRules,
        clock: Callable[[], float],
        *,
        redis: aioredis.Redis,
        wire: PipelinedConnection | None,
        batch: Batcher,
        prefix: str,
    ) -> None:
        super().__init__(specs, rules, clock)
        # one client and one write batch with the state backend (``RedisState.key_pool``): a
        # request's end on the user's side and on the key's side go in the same round trip
        self.redis = redis
        self.batch = batch
        self.prefix = prefix + "up:"
        self.lease_seconds = rules.lease_seconds
        self._pick = script_caller(self.redis, PICK, wire)
        self._extend = script_caller(self.redis, EXTEND, wire)
        self._cool_from = script_caller(self.redis, COOL_FROM, wire)
        self._rotation = 0
        # tickets in the line replicas share: this replica's name, then a count
        self._replica = uuid.uuid4().hex[:12]
        self._tickets = itertools.count(1)

    def place_in_line(self, model: str) -> LinePlace:
        return LinePlace(model, f"{self._replica}:{next(self._tickets)}", self.clock())

    def left_line(self, place: LinePlace | None) -> None:
        if place is not None:  # not awaited: those behind go on once it is applied
            self.batch.send(
                "unline", self._line(place.model), place.ticket, failed=self._write_failed
            )

    def _line(self, model: str) -> str:
        return f"{self.prefix}line:{model}"

    def plan(
        self, model: str, tokens: int, prompt: int = 0, affinity: Affinity | None = None
    ) -> PickPlan | None:
        # local checks first: model served, key usable here, request not too large
        ready, _ = self.screen(model, tokens, set(), self.clock(), prompt)
        if not ready or self.lines.busy(model, ()):
            return None  # others here came first: it waits behind them (``Pool.acquire``)
        paced = self.waiting.get(model, 0) > 0  # a first pick is paced while others wait
        place = self.place_in_line(model)
        return PickPlan(
            self._pick_args(ready, model, tokens, prompt, paced, affinity, place),
            ready,
            model,
            tokens,
            prompt,
            place,
        )

    def take(self, plan: PickPlan, picked: tuple[int, float]) -> Picked:
        self._up()
        return self._taken(plan.cands, plan.args[3], plan.model, plan.tokens, plan.prompt, *picked)

    def _pick_args(
        self,
        ready: list[Key],
        model: str,
        tokens: int,
        prompt: int = 0,
        paced: bool = False,
        affinity: Affinity | None = None,
        place: LinePlace | None = None,
    ) -> list[Any]:
        # rotate the order so ties spread over keys, replicas and accounts
        self._rotation += 1
        r = self._rotation % len(ready)
        cands = ready[r:] + ready[:r]
        ready[:] = cands
        args: list[Any] = [
            self.prefix,
            model,
            tokens,
            f"{time.time_ns()}-{id(self)}-{self._rotation}",
            self.lease_seconds,
            # the conversation's home: every replica reads and moves the same one (``served``)
            f"{self.prefix}home:{affinity.key}" if affinity is not None else "",
            f"{self.prefix}home:{affinity.shared}" if affinity and affinity.shared else "",
            # the request's place in the line replicas share: its ticket, how long ago it came
            *(
                (self._line(model), place.ticket, max(0.0, self.clock() - place.at))
                if place is not None
                else ("", "", 0)
            ),
            len(cands),
        ]
        # others wait for this model's capacity: windows past half are paced (Bucket.wait_time)
        pace_upto = PACED_WINDOW_SECONDS if paced else 0
        for key in cands:
            rates, trates = self.account_rates(key.spec.account)
            args += [key.alias, key.spec.account, len(rates)]
            for rate in rates:
                args += [rate.amount, rate.seconds]
            args.append(len(trates))
            for rate in trates:
                args += [rate.amount, rate.seconds]
            args += [key.spec.max_in_flight, counted(key, tokens, prompt), pace_upto]
            first_byte = self.bucket(key, model).first_byte  # this replica's view (pacing_gap)
            args.append(-1.0 if first_byte is None else first_byte)
        return args

    def _taken(
        self,
        cands: list[Key],
        ref: str,
        model: str,
        tokens: int,
        prompt: int,
        idx: int,
        wait: float,
    ) -> Picked:
        if idx == 0:
            return None if wait < 0 else wait
        key = cands[idx - 1]
        weight = counted(key, tokens, prompt)
        bucket = self.bucket(key, model)
        return self.claim_slot(key, bucket, model, tokens, self.clock(), ref=ref, weight=weight)

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
        ready, soonest = self.screen(model, tokens, exclude, self.clock(), prompt)
        if not ready:
            return soonest if soonest != math.inf else None
        args = self._pick_args(ready, model, tokens, prompt, paced, affinity, place)
        self.batch.flush()  # slots freed so far are free for this pick
        try:
            # a client that leaves meanwhile does not cut the round trip short: the script takes
            # the slot all the same, so it is given back once it answers
            with at_provider() as watch:
                idx, wait = await self._pick(keys=[], args=args)
        except _DOWN as exc:
            # Redis is down (and fail_open let the request through): count on this replica's
            # own windows until it is back, which cannot hold a limit across replicas
            self._down(exc)
            picked = self.try_pick(model, tokens, exclude, prompt, paced, affinity)
        else:
            self._up()
            picked = self._taken(ready, args[3], model, tokens, prompt, int(idx), float(wait))
        if watch is not None and watch.left:  # after a timeout too: nobody reads its answer
            if isinstance(picked, Slot):
                await self.release(picked, counted=False)
            raise asyncio.CancelledError
        return picked

    _down_since: float | None = None

    def _down(self, exc: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.time()
            log.error(
                "shared upstream state unreachable (%s): upstream limits are counted per replica",
                type(exc).__name__,
            )

    def _up(self) -> None:
        if self._down_since is not None:
            log.warning("shared upstream state reachable again")
            self._down_since = None

    async def _quietly(self, script: Any, **kw: Any) -> None:
        try:
            await script(**kw)
        except _DOWN as exc:  # the keys expire on their own; nothing to undo later
            self._down(exc)

    async def _write(self, *op: Any) -> None:
        try:
            await self.batch.run(*op)
        except _DOWN as exc:  # the keys expire on their own; nothing to undo later
            self._down(exc)

    def _base(self, slot: Slot) -> str:
        return f"{self.prefix}{slot.key.spec.account}:{slot.model}"

    def _spans(self, slot: Slot) -> tuple[float, float]:
        """How long request stamps and token stamps are kept (request stamps ``HEAD_LAG``
        past the longest window, as a Bucket keeps them)."""
        rates, trates = self.account_rates(slot.key.spec.account)
        return max((r.seconds for r in rates), default=60.0) + HEAD_LAG, max(
            (r.seconds for r in trates), default=0.0
        )

    async def release(self, slot: Slot, *, tokens: int | None = None, counted: bool = True) -> None:
        if not slot.ref:  # taken from the local windows while Redis was down
            await super().release(slot, tokens=tokens, counted=counted)
            return
        self.free_slot(slot)
        used = slot.tokens if tokens is None else tokens
        span, tspan = self._spans(slot)
        # applied before any later pick of this process: no need to wait
        inflight = f"{self.prefix}inf:{slot.key.alias}" if slot.key.spec.max_in_flight else ""
        await self.batch.write(
            "end",
            self._base(slot),
            slot.ref,
            slot.tokens,
            "1" if counted else "0",
            used,
            span,
            tspan,
            inflight,
            failed=self._write_failed,
        )
        self._notify()

    async def succeeded(
        self, slot: Slot, headers: Mapping[str, str], head_wait: float = 0.0
    ) -> None:
        if not slot.ref:
            await super().succeeded(slot, headers, head_wait)
            return
        slot.key.breaker.success()
        now = self.clock()
        head = max(slot.taken, now - head_wait)  # the provider counted it by its answer's head
        slot.bucket.served(slot.counted)
        slot.bucket.answered(head - slot.taken)
        ago = now - provider_stamp(
            headers, head, slot.taken, self.account_rates(slot.key.spec.account)[0]
        )
        # the headers say how the provider's window stood at the head: resets that much
        # shorter now, and the window it counted reaching that much further back
        late = now - head
        req_left, req_reset, tok_left, tok_reset = _provider_headers(headers)
        seen = (
            provider_count(headers, slot.bucket.rates, slot.bucket.first_byte)
            if late < HEAD_LAG
            else None
        )
        # not awaited: the answer goes on at once, and the stamp is in the same batch as the
        # slot's end when that comes in this loop turn (a JSON answer); writes apply in order
        self.batch.send(
            "stamp",
            self._base(slot),
            slot.ref,
            slot.tokens,
            ago,
            self._spans(slot)[0],
            req_left,
            max(0.0, req_reset - late),
            tok_left,
            max(0.0, tok_reset - late),
            # the provider's count in a window we know, for a key of quick answers: the script
            # drops the clamp when our own window holds as many, counted from a window before
            # the request was sent, as the provider's may start then (``Bucket.observe_headers``)
            *((seen[0] + now - slot.taken + WRITE_DELAY, seen[1]) if seen else ("", "")),
            failed=self._write_failed,
        )
        self._notify()

    def served(self, slot: Slot, affinity: Affinity) -> None:
        if not slot.ref:
            super().served(slot, affinity)
            return
        self.batch.send(
            "home",
            f"{self.prefix}home:{affinity.key}",
            f"{self.prefix}home:{affinity.shared}" if affinity.shared else "",
            slot.key.spec.account,
            math.ceil(affinity.seconds * 1000),
            failed=self._write_failed,
        )

    def _write_failed(self, exc: BaseException) -> None:
        if isinstance(exc, _DOWN):  # the keys expire on their own; nothing to undo later
            self._down(exc)
        else:
            log.error("shared upstream state: a write failed (%s)", type(exc).__name__)

    async def _publish_headers(self, slot: Slot, headers: Mapping[str, str]) -> None:
        observed = _provider_headers(headers)
        if observed != ("", 0, "", 0):
            await self._write("observe", self._base(slot), *observed)

    async def rate_limited(
        self, slot: Slot, retry_after: float | None, headers: Mapping[str, str]
    ) -> float:
        secs = await super().rate_limited(slot, retry_after, headers)
        await self._publish_headers(slot, headers)
        least = self.cool_floor(slot)  # as the local bucket was cooled (Pool.rate_limited)
        if least:
            await self._quietly(
                self._cool_from,
                keys=[f"{self._base(slot)}:coolz"],
                args=[secs, least, MAX_SIZE_COOLS],
            )
        else:
            await self._quietly(self._extend, keys=[f"{self._base(slot)}:cool"], args=[secs])
        return secs

    async def failed(
        self, slot: Slot, what: str, user: str | None = None, *, counted: bool = True
    ) -> bool:
        opened = await super().failed(slot, what, user, counted=counted)
        if opened:
            secs = slot.key.breaker.open_until - self.clock()
            await self._quietly(
                self._extend, keys=[f"{self.prefix}brk:{slot.key.alias}"], args=[max(0.001, secs)]
            )
        return opened

    async def disable(self, key: Key, why: str) -> None:
        await super().disable(key, why)
        try:
            await self.redis.set(f"{self.prefix}dis:{key.alias}", json.dumps({"why": why}))
        except _DOWN as exc:
            self._down(exc)

    async def enable(self, key: Key) -> None:
        try:
            await self.redis.delete(
                f"{self.prefix}dis:{key.alias}", f"{self.prefix}brk:{key.alias}"
            )
        except _DOWN as exc:
            self._down(exc)
        await super().enable(key)

    async def close(self) -> None:
        pass  # the client and the batch belong to the state backend, which closes them


def _provider_headers(headers: Mapping[str, str]) -> tuple[int | str, float, int | str, float]:
    """(requests left, seconds to reset, tokens left, seconds to reset) the provider reported;
    '' and 0 where it said nothing usable."""
    get = headers.get
    req_left, req_reset = (
        get("x-ratelimit-remaining-requests"),
        parse_duration(get("x-ratelimit-reset-requests")),
    )
    tok_left, tok_reset = (
        get("x-ratelimit-remaining-tokens"),
        parse_duration(get("x-ratelimit-reset-tokens")),
    )
    req, tok = _count(req_left), _count(tok_left)
    reqs: tuple[int | str, float] = (
        (req, req_reset) if req is not None and req_reset is not None else ("", 0)
    )
    toks: tuple[int | str, float] = (
        (tok, tok_reset) if tok is not None and tok_reset is not None else ("", 0)
    )
    return (*reqs, *toks)


def _count(text: Any) -> int | None:
    try:
        return int(float(text))
    except (TypeError, ValueError, OverflowError):
        return None
