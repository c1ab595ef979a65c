"""Requests waiting for a model's upstream capacity wait in line (engine/upstreams/waiting_line.py):
the first to come is the first served, only the head of the line looks for room again (with
shared state each look is a Redis script, so 50 waiters each looking on every release and
every 50 ms poll were thousands of scripts a second), and a wait that cannot end in time is a
429 with Retry-After. Pure logic: the pool over a fake key, no server."""

from __future__ import annotations

import asyncio
import time

import pytest

from jupyter_server_ext.engine import RateLimited, parse_upstreams
from jupyter_server_ext.engine.upstreams.affinity import Affinity
from jupyter_server_ext.engine.upstreams.pool import Picked, Pool, Slot
from jupyter_server_ext.engine.upstreams.waiting_line import Leave, WaitingLines

MODEL = "m"


def one_key(pool: type[Pool] = Pool, **spec: object) -> Pool:
    specs = parse_upstreams(
        [
            {
                "name": "k1",
                "base_url": "http://127.0.0.1:9/v1",
                "api_key": "sk-test-line",
                "models": [MODEL],
                **spec,
            }
        ]
    )
    return pool(specs, clock=time.monotonic)


class CountedPicks(Pool):
    """The pool, counting its looks for room (each one a Redis script with shared state)."""

    picks = 0

    def try_pick(
        self,
        model: str,
        tokens: int,
        exclude: set[str],
        prompt: int = 0,
        paced: bool = False,
        affinity: Affinity | None = None,
    ) -> Picked:
        self.picks += 1
        return super().try_pick(model, tokens, exclude, prompt, paced, affinity)


async def test_waiters_are_served_in_the_order_they_came_and_only_the_head_looks() -> None:
    pool = one_key(CountedPicks, limits=["5 per 1 second"])
    assert isinstance(pool, CountedPicks)
    served: list[int] = []

    async def one(i: int) -> None:
        slot = await pool.acquire(MODEL, 10, set(), time.monotonic() + 10)
        served.append(i)
        await asyncio.sleep(0.01)  # the provider's answer
        await pool.succeeded(slot, {})
        await pool.release(slot)

    tasks = []
    for i in range(12):
        tasks.append(asyncio.create_task(one(i)))
        await asyncio.sleep(0.002)  # they come one after another
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert served == list(range(12)), served
    # each request's first look, the look when its turn comes, and the head's looks when a
    # place may have freed (a stamp, a release, its timer): 32 here. With every waiter looking
    # at each of those, 60, and the order was 0-4, 8, 11, 10, 7, 9, 6, 5 (measured before the
    # line)
    assert pool.picks <= 3 * 12, pool.picks
    assert not pool.lines.busy(MODEL, ())


async def test_a_line_that_cannot_move_in_time_is_a_429_with_retry_after() -> None:
    pool = one_key(max_in_flight=1)  # only a release can make room
    held = await pool.acquire(MODEL, 10, set(), time.monotonic() + 1)
    assert isinstance(held, Slot)
    started = time.monotonic()
    outcomes = await asyncio.gather(
        *(pool.acquire(MODEL, 10, set(), started + 0.3) for _ in range(3)),
        return_exceptions=True,
    )
    waited = time.monotonic() - started
    assert all(isinstance(o, RateLimited) and o.retry_after for o in outcomes), outcomes
    assert 0.25 <= waited < 2, waited  # each waited out its own deadline, no longer
    assert not pool.lines.busy(MODEL, ()) and pool.waiting[MODEL] == 0
    await pool.release(held)
    # the line is open again: the next request is served at once
    again = await pool.acquire(MODEL, 10, set(), time.monotonic() + 1)
    assert isinstance(again, Slot)


async def test_a_failover_attempt_waits_apart_and_holds_up_nobody() -> None:
    """A failover's next attempt may not use the key that failed it, so it waits in a line of
    its own: a request behind it that can take that key is served as soon as the key frees."""
    specs = parse_upstreams(
        [
            {
                "name": name,
                "base_url": "http://127.0.0.1:9/v1",
                "api_key": f"sk-test-{name}",
                "models": [MODEL],
                "limits": [limit],
            }
            for name, limit in (("k1", "1 per 1 second"), ("k2", "1 per 10 seconds"))
        ]
    )
    pool = Pool(specs, clock=time.monotonic)
    for _ in range(2):  # both windows full: k1 frees in a second, k2 in ten
        slot = await pool.acquire(MODEL, 10, set(), time.monotonic() + 1)
        assert isinstance(slot, Slot)
        await pool.release(slot)
    started = time.monotonic()
    apart = asyncio.create_task(pool.acquire(MODEL, 10, {"k1"}, started + 15))
    await asyncio.sleep(0.05)  # it came first
    slot = await pool.acquire(MODEL, 10, set(), started + 5)
    assert slot.key.alias == "k1" and time.monotonic() - started < 2
    assert not apart.done()  # still waiting for k2
    apart.cancel()
    with pytest.raises(asyncio.CancelledError):
        await apart
    assert pool.waiting[MODEL] == 0


async def test_a_line_too_long_to_move_in_time_refuses_a_newcomer_at_once() -> None:
    """Twice a key's capacity offered, each request willing to wait 1.5 s: those the line
    cannot serve in time (at the pace it serves) are told at once, with a Retry-After, instead
    of waiting out the 1.5 s for the same 429; those it serves wait less than that."""
    pool = one_key(limits=["5 per 1 second"])
    refused: list[tuple[float, float]] = []  # (seconds until the 429, its Retry-After)
    waited: list[float] = []

    async def one() -> None:
        came = time.monotonic()
        try:
            slot = await pool.acquire(MODEL, 10, set(), came + 1.5)
        except RateLimited as exc:
            refused.append((time.monotonic() - came, exc.retry_after or 0))
            return
        waited.append(time.monotonic() - came)
        await asyncio.sleep(0.01)
        await pool.succeeded(slot, {})
        await pool.release(slot)

    tasks = []
    for _ in range(30):  # 10 a second for 3 s
        tasks.append(asyncio.create_task(one()))
        await asyncio.sleep(0.1)
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert len(waited) >= 12 and max(waited) < 1.6, waited
    at_once = [r for r in refused if r[0] < 0.2]
    assert len(at_once) >= len(refused) // 2 and refused, refused
    assert all(after > 0 for _, after in refused), refused


async def test_a_newcomer_waits_behind_those_already_waiting() -> None:
    """Room that frees while someone waits is theirs: a request that comes at that moment
    goes behind them, not first because it looked first."""
    pool = one_key(max_in_flight=1)
    held = await pool.acquire(MODEL, 10, set(), time.monotonic() + 1)
    head = asyncio.create_task(pool.acquire(MODEL, 10, set(), time.monotonic() + 5))
    await asyncio.sleep(0.05)  # it waits in line
    await pool.release(held)  # room, and in the same moment a newcomer:
    newcomer = asyncio.create_task(pool.acquire(MODEL, 10, set(), time.monotonic() + 5))
    first = await asyncio.wait_for(head, 2)
    assert isinstance(first, Slot) and not newcomer.done()
    await pool.release(first)
    assert isinstance(await asyncio.wait_for(newcomer, 2), Slot)


async def test_a_line_whose_head_missed_a_few_windows_still_takes_a_newcomer_it_can_serve() -> None:
    """With replicas sharing keys, a replica's head can miss two windows while another
    replica's takes their room, then be served at the line's usual pace. One long gap is not
    the line's pace: a newcomer behind seven people with 30 s to wait is taken in line (a
    moving mean started from that gap read 4.4 s a serve and refused it at once, "retry in
    31 s", in a test whose line then served everyone in 12 s). A line that has served at that
    pace for a while is still too slow for them, and says so at once."""
    now = [100.0]
    lines = WaitingLines(lambda: now[0], poll_seconds=None)

    async def line_of(n: int) -> list[asyncio.Future[Leave]]:
        head: asyncio.Future[Leave] = asyncio.get_running_loop().create_future()
        head.set_result(await lines.join(MODEL, (), now[0] + 30))
        behind = [asyncio.ensure_future(lines.join(MODEL, (), now[0] + 30)) for _ in range(n - 1)]
        await asyncio.sleep(0)
        return [head, *behind]

    async def serve(people: list[asyncio.Future[Leave]], gaps: list[float]) -> None:
        for person, gap in zip(people, gaps, strict=True):
            leave = await person
            now[0] += gap
            leave(True)

    people = await line_of(9)
    await serve(people[:2], [0.1, 4.4])  # the second head's slot came two windows late
    newcomer = asyncio.ensure_future(lines.join(MODEL, (), now[0] + 30))
    await asyncio.sleep(0)
    assert not newcomer.done(), "refused at once behind a line that had served two people"
    await serve([*people[2:], newcomer], [0.1] * 8)

    # a line that served a person every 4.4 s: the eight ahead take 35 s, more than the 30 given
    people = await line_of(12)
    await serve(people[:4], [4.4] * 4)
    with pytest.raises(RateLimited) as refused:
        await lines.join(MODEL, (), now[0] + 30)
    assert refused.value.retry_after == 36  # 8 x 4.4 s, in whole seconds
    await serve(people[4:], [0.1] * 8)
