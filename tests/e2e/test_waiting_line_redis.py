"""The line of waiting requests that replicas share in a real Redis (``LinePlace``; the key
pick's script, state/connection/scripts.py), against the loopback provider: room on a full key
goes to whoever came first whichever replica they wait at, a place left by a replica that died
or a request that gave up holds up nobody, and a newcomer passes those who came first only when
the keys have room for them and it too. One replica's line: tests/unit/test_engine_waiting_line.py."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

import redis.asyncio as aioredis

from jupyter_server_ext.engine.upstreams.pool import Slot
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.inflight import LATENCY, engine_for, replicas_for, served_by

MODEL = "fake-small"


async def test_replicas_serve_those_waiting_for_a_full_key_in_the_order_they_came(
    fresh_provider: FakeProvider,
    tmp_path: Path,
    redis_url: str,
    redis_prefix: str,
) -> None:
    """Room on a full key goes to the request that came first, whichever replica it waits at.
    Six requests come in turn to two replicas while the key serves one at a time: served in
    the order they came. With a line of its own at each replica (before), the room a request
    freed went to the head of the replica that served it (woken at once, the other's head
    asking every 50 ms): the provider got 0, 2, 4, 1, 3, 5. A request that gives up leaves the
    line at once, so it holds up nobody."""
    fresh_provider.hold = threading.Event()  # the first request stays until all have come
    fresh_provider.latency = LATENCY / 3
    replicas = replicas_for(
        fresh_provider, tmp_path, {"a1": 1}, state_url=redis_url, state_prefix=redis_prefix
    )
    line, key = aioredis.Redis.from_url(redis_url), f"{redis_prefix}up:line:fake-small"

    def waiting() -> int:
        return sum(e.pool.waiting.get("fake-small", 0) for e in replicas)

    async def until(done: Callable[[], bool]) -> None:
        for _ in range(500):  # at most 5 s
            if done():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the requests did not come in time")

    async def holding(n: int) -> int:
        """How many hold a place in the line replicas share, once that is `n` (or 5 s on)."""
        for _ in range(500):
            if await line.zcard(key) == n:
                break
            await asyncio.sleep(0.01)
        return int(await line.zcard(key))

    try:
        asked = [asyncio.create_task(served_by(replicas[0], "u0", "hello from u0"))]
        await until(lambda: len(fresh_provider.received) == 1)
        # one who waits at the other replica and gives up: it leaves the line at once
        quitter = asyncio.create_task(served_by(replicas[1], "quits", "hello from quits"))
        await until(lambda: waiting() == 1)
        held_by_quitter = await holding(1)
        quitter.cancel()
        await asyncio.gather(quitter, return_exceptions=True)
        left_by_quitter = await holding(0)
        for i in range(1, 6):
            asked.append(
                asyncio.create_task(served_by(replicas[i % 2], f"u{i}", f"hello from u{i}"))
            )
            await until(lambda i=i: waiting() == i)  # the next comes once this one waits
        fresh_provider.hold.set()
        await asyncio.gather(*asked)
        left = await line.zcard(key)  # everyone served: nobody holds a place
    finally:
        fresh_provider.hold.set()
        await line.aclose()
        for e in replicas:
            await e.close()
    served = [r.body["messages"][0]["content"] for r in fresh_provider.received]
    assert served == [f"hello from u{i}" for i in range(6)]
    assert (held_by_quitter, left_by_quitter) == (1, 0)
    assert left == 0


async def test_a_place_left_by_a_replica_that_died_holds_up_nobody(
    fresh_provider: FakeProvider,
    tmp_path: Path,
    redis_url: str,
    redis_prefix: str,
) -> None:
    """A replica killed while its request waited leaves its place in the shared line (nothing
    ran to take it out). A request at a live replica waits for it while it may still ask (it
    came first), and once that place has been silent half a second passes it: served, not
    held to its 429 at `max_wait_seconds`."""
    engine = engine_for(
        fresh_provider, tmp_path, {"a1": 1}, state_url=redis_url, state_prefix=redis_prefix
    )
    line, key = aioredis.Redis.from_url(redis_url), f"{redis_prefix}up:line:fake-small"
    try:
        secs, micros = await line.time()
        now = secs + micros / 1e6
        # the dead replica's request came a second ago and last asked just now
        await line.zadd(key, {"dead-replica:1": now - 1.0})
        await line.zadd(key + ":seen", {"dead-replica:1": now})
        started = time.monotonic()
        await served_by(engine, "alive", "hello from alive")
        waited = time.monotonic() - started
        left = await line.zcard(key)
    finally:
        await line.aclose()
        await engine.close()
    assert [r.body["messages"][0]["content"] for r in fresh_provider.received] == [
        "hello from alive"
    ]
    assert waited > 0.3  # it let the one who came first have its turn while it might ask
    assert left == 0  # the dead one's place is gone too


async def test_a_newcomer_passes_those_waiting_elsewhere_only_when_the_keys_have_room_for_all(
    fresh_provider: FakeProvider,
    tmp_path: Path,
    redis_url: str,
    redis_prefix: str,
) -> None:
    """Room is counted per account, as the provider counts it: two keys of one account with
    room for two requests between them have room for two, not four. So a newcomer behind two
    who wait at another replica is held back (``Pool.pick`` says when to ask again), and behind
    one it takes the room left beside that one's."""
    keys = {pol.alias: key for key, pol in fresh_provider.keys.items()}
    upstreams = [
        {
            "name": alias,
            "base_url": fresh_provider.base_url,
            "api_key": keys[alias],
            "account": "one-account",
            "limits": ["2/minute"],
            "models": [MODEL],
        }
        for alias in ("a1", "a2")
    ]
    engine = engine_for(
        fresh_provider,
        tmp_path,
        {},
        upstreams=upstreams,
        state_url=redis_url,
        state_prefix=redis_prefix,
    )
    line, key = aioredis.Redis.from_url(redis_url), f"{redis_prefix}up:line:{MODEL}"
    pool = engine.pool
    try:
        secs, micros = await line.time()
        now = secs + micros / 1e6
        # two who came a second ago at another replica, and asked just now
        await line.zadd(key, {"other-replica:1": now - 1.0, "other-replica:2": now - 0.9})
        await line.zadd(key + ":seen", {"other-replica:1": now, "other-replica:2": now})
        behind_two = await pool.pick(MODEL, 10, set(), place=pool.place_in_line(MODEL))
        await line.zrem(key, "other-replica:2")
        behind_one = await pool.pick(MODEL, 10, set(), place=pool.place_in_line(MODEL))
        places = await line.zrange(key, 0, -1)
    finally:
        await line.aclose()
        await engine.close()
    assert isinstance(behind_two, float) and behind_two > 0  # held back: it asks again soon
    assert isinstance(behind_one, Slot) and behind_one.key.spec.account == "one-account"
    # the first newcomer holds its place behind them; the second, served, holds none
    assert len(places) == 2 and places[0] == b"other-replica:1"
