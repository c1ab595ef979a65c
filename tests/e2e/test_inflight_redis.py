"""A self-hosted server's concurrency cap (``max_in_flight``) across proxy replicas sharing a
real Redis, against the loopback provider: two replicas together never send the server more
requests at once than its cap, and serve those waiting for it in the order they came. The cap
in one proxy: tests/unit/test_inflight_cap.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from tests.helpers.fake_provider import FakeProvider
from tests.helpers.inflight import LATENCY, asked_by, engine_for, most_at_once, served_by


async def test_replicas_sharing_redis_hold_one_cap_between_them(
    fresh_provider: FakeProvider,
    tmp_path: Path,
    redis_url: str,
    redis_prefix: str,
) -> None:
    fresh_provider.latency = LATENCY
    for i in range(2):
        (tmp_path / str(i)).mkdir()
    replicas = [
        engine_for(
            fresh_provider,
            tmp_path / str(i),
            {"a1": 1},
            state_url=redis_url,
            state_prefix=redis_prefix,
        )
        for i in range(2)
    ]
    try:
        await asyncio.gather(*(served_by(replicas[i % 2], f"u{i}") for i in range(6)))
    finally:
        for e in replicas:
            await e.close()
    # six requests through two replicas, one at a time at the server
    assert fresh_provider.count_by_alias() == {"a1": 6}
    assert most_at_once(fresh_provider, "a1") == 1


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
    import redis.asyncio as aioredis

    fresh_provider.latency = 2 * LATENCY  # the six come while the first is answered
    for i in range(2):
        (tmp_path / str(i)).mkdir()
    replicas = [
        engine_for(
            fresh_provider,
            tmp_path / str(i),
            {"a1": 1},
            state_url=redis_url,
            state_prefix=redis_prefix,
        )
        for i in range(2)
    ]
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
        asked = [asyncio.create_task(asked_by(replicas[0], "u0"))]
        await until(lambda: len(fresh_provider.received) == 1)
        # one who waits at the other replica and gives up: it leaves the line at once
        quitter = asyncio.create_task(asked_by(replicas[1], "quits"))
        await until(lambda: waiting() == 1)
        held_by_quitter = await holding(1)
        quitter.cancel()
        await asyncio.gather(quitter, return_exceptions=True)
        left_by_quitter = await holding(0)
        for i in range(1, 6):
            asked.append(asyncio.create_task(asked_by(replicas[i % 2], f"u{i}")))
            # the next comes once this one waits (u0 still in flight)
            await until(lambda i=i: len(fresh_provider.received) == 1 and waiting() == i)
        await asyncio.gather(*asked)
        left = await line.zcard(key)  # everyone served: nobody holds a place
    finally:
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
    ran to take it out): once that place has been silent half a second it is passed over, so
    a request at a live replica is served, not held to its 429 at `max_wait_seconds`."""
    import redis.asyncio as aioredis

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
        await asked_by(engine, "alive")
        left = await line.zcard(key)
    finally:
        await line.aclose()
        await engine.close()
    assert [r.body["messages"][0]["content"] for r in fresh_provider.received] == [
        "hello from alive"
    ]
    assert left == 0  # the dead one's place is gone too
