"""A self-hosted server's concurrency cap (``max_in_flight``) across proxy replicas sharing a
real Redis, against the loopback provider: two replicas together never send the server more
requests at once than its cap. The cap in one proxy: tests/unit/test_inflight_cap.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from jupyter_server_ext.engine import Caller, Engine
from jupyter_server_ext.engine.info_endpoints import me_view
from jupyter_server_ext.engine.request_state import Watch, watch_request
from tests.helpers import require
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.inflight import LATENCY, engine_for, most_at_once, replicas_for, served_by
from tests.helpers.own_servers import OwnRedis


@asynccontextmanager
async def on_a_paused_redis(
    fp: FakeProvider, tmp_path: Path, prefix: str, *, timeout: float = 2.0, **fields: Any
) -> AsyncIterator[tuple[Engine, Any]]:
    """An engine whose one upstream, `fp`'s a1, takes one request at a time (plus `fields`), on
    a Redis of the test's own (state keys under `prefix`; replies within `timeout` seconds), and
    a client of that Redis to pause it with. Everything is stopped and unpaused on leaving."""
    require("redis")
    require("redis-server", binary=True, reason="a Redis of its own, paused")
    import redis

    own = OwnRedis(tmp_path)
    own.start()
    admin = redis.Redis(port=own.port)
    keys = {pol.alias: key for key, pol in fp.keys.items()}
    a1 = {
        "name": "a1",
        "base_url": fp.base_url,
        "api_key": keys["a1"],
        "max_in_flight": 1,
        "models": ["fake-small"],
        **fields.pop("upstream", {}),
    }
    engine = engine_for(
        fp,
        tmp_path,
        {},
        upstreams=[a1],
        state_url=f"{own.url}?socket_timeout={timeout}",
        state_prefix=prefix,
        **fields,
    )
    try:
        yield engine, admin
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
        await engine.close()
        own.stop(9)


async def test_replicas_sharing_redis_hold_one_cap_between_them(
    fresh_provider: FakeProvider,
    tmp_path: Path,
    redis_url: str,
    redis_prefix: str,
) -> None:
    fresh_provider.latency = LATENCY
    replicas = replicas_for(
        fresh_provider, tmp_path, {"a1": 1}, state_url=redis_url, state_prefix=redis_prefix
    )
    try:
        await asyncio.gather(*(served_by(replicas[i % 2], f"u{i}") for i in range(6)))
    finally:
        for e in replicas:
            await e.close()
    # six requests through two replicas, one at a time at the server
    assert fresh_provider.count_by_alias() == {"a1": 6}
    assert most_at_once(fresh_provider, "a1") == 1


async def test_a_client_that_leaves_while_its_admission_is_at_redis_leaves_no_place_taken(
    fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    """The admission and its key pick are one script at Redis; a client that left while it was
    there had its reply dropped, and what the script took (the server's one place, for a
    lease's 600 s; the user's concurrency and reservation) was never given back: every later
    request waited for a place and was refused. On a Redis of the test's own, held up by
    CLIENT PAUSE, so the client leaves while the script waits there."""
    async with on_a_paused_redis(
        fresh_provider,
        tmp_path,
        "left:",
        upstream={"prices": {"fake-small": {"input": 1.0, "output": 2.0}}},
        user_daily_budget_usd=1.0,
    ) as (engine, admin):
        await served_by(engine, "warm")  # the scripts loaded, the connection open
        for _ in range(1000):  # until its end is written: the server's one place free
            if admin.zcard("left:up:inf:a1") == 0:
                break
            await asyncio.sleep(0.01)
        admin.execute_command("CLIENT", "PAUSE", 20_000, "WRITE")
        watches: list[Watch] = []

        async def ann() -> str:
            watches.append(watch_request())  # as the host does where it starts answering
            return await served_by(engine, "ann")

        asking = asyncio.ensure_future(ann())
        for _ in range(1000):  # until the admission's script waits at the paused Redis
            if any(c["cmd"] == "evalsha" and "b" in c["flags"] for c in admin.client_list()):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the admission never reached Redis")
        watches[0].client_left()  # the client goes away
        admin.execute_command("CLIENT", "UNPAUSE")
        with pytest.raises(asyncio.CancelledError):
            await asking
        # nothing of ann's kept: no request in flight, nothing of her budget reserved
        for _ in range(1000):  # until what the script took is given back
            me = await me_view(engine, Caller("ann"))
            if me["concurrency"]["in_flight"] == 0 and me["budget"]["spent_usd"] == 0:
                break
            await asyncio.sleep(0.01)
        assert me["concurrency"]["in_flight"] == 0 and me["budget"]["spent_usd"] == 0, me
        # the server's one place is free again: the next two are answered, one after the other
        assert [await served_by(engine, user) for user in ("bob", "cat")] == ["a1", "a1"]
        assert fresh_provider.count_by_alias() == {"a1": 3}  # warm, bob, cat: ann's never sent


@pytest.mark.parametrize("redis_answers", [True, False], ids=["redis-answers", "redis-times-out"])
async def test_a_client_that_leaves_while_its_place_in_line_picks_at_redis_is_never_sent(
    fresh_provider: FakeProvider, tmp_path: Path, redis_answers: bool
) -> None:
    """A request waiting in line picks again at Redis (``SharedPool.pick``) until it finds room.
    The account allows one request in 3 s: ann waits in line behind the first, her pick is held
    at a paused Redis, and she leaves.
    - Redis answers once the window has room, so the pick takes the server's one place: kept
      for nobody for a lease's 600 s, every later request waited and was refused.
    - Redis does not answer within the connection's timeout: the pick counts on this replica's
      own windows, and ann's request went to the provider though nobody would read it."""
    async with on_a_paused_redis(
        fresh_provider,
        tmp_path,
        "line:",
        timeout=10 if redis_answers else 1.5,
        upstream={"limits": ["1 per 3 seconds"]},
    ) as (engine, admin):
        await served_by(engine, "warm")  # the window's one request
        window_ends = time.monotonic() + 3
        watches: list[Watch] = []

        async def ann() -> str:
            watches.append(watch_request())  # as the host does where it starts answering
            return await served_by(engine, "ann")

        asking = asyncio.ensure_future(ann())
        for _ in range(1000):  # until ann holds her place in the line replicas share
            if admin.zcard("line:up:line:fake-small") == 1:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("ann never joined the line")
        admin.execute_command("CLIENT", "PAUSE", 20_000, "WRITE")
        for _ in range(1000):  # until her next pick waits at the paused Redis
            blocked = [c for c in admin.client_list() if "b" in c["flags"]]
            if watches[0].calls == 1 and any(c["cmd"] == "evalsha" for c in blocked):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("ann's pick never reached Redis")
        watches[0].client_left()  # the client goes away
        if redis_answers:  # once the window has room, so the pick takes the server's one place
            await asyncio.sleep(max(0.0, window_ends + 0.2 - time.monotonic()))
            admin.execute_command("CLIENT", "UNPAUSE")
        with pytest.raises(asyncio.CancelledError):
            await asking
        admin.execute_command("CLIENT", "UNPAUSE")
        for _ in range(1000):  # until what the pick took is given back
            if admin.zcard("line:up:inf:a1") == 0:
                break
            await asyncio.sleep(0.01)
        assert admin.zcard("line:up:inf:a1") == 0
        assert await served_by(engine, "bob") == "a1"  # the place is free: bob is answered
        assert fresh_provider.count_by_alias() == {"a1": 2}  # warm, bob: ann's never sent
