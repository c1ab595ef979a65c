"""A self-hosted server's concurrency cap (``max_in_flight``), in one proxy and across replicas
sharing Redis, against the loopback provider: the server never has more requests at once than
its cap, the least busy server goes first, and waiting callers are served as slots free up."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from jupyter_server_ext.config import RSQLProxy
from jupyter_server_ext.engine import Caller, Engine
from jupyter_server_ext.wiring import build_engine
from tests.helpers.fake_provider import FakeProvider

LATENCY = 0.3
HELLO = {"model": "fake-small", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}


def engine_for(fp: FakeProvider, tmp: Path, caps: dict[str, int], **config: Any) -> Engine:
    keys = {pol.alias: key for key, pol in fp.keys.items()}
    upstreams = [{"name": alias, "base_url": fp.base_url, "api_key": keys[alias], "max_in_flight": cap,
                  "models": ["fake-small"]} for alias, cap in caps.items()]
    proxy = RSQLProxy(upstreams=upstreams, default_model="fake-small", health_check_seconds=0.0,
                      max_wait_seconds=10.0, user_concurrency=50, **config)
    return build_engine(proxy, default_database=f"sqlite:///{tmp / 'usage.sqlite'}")


def most_at_once(fp: FakeProvider, alias: str) -> int:
    """The most requests `alias` had in flight at one time, from when each arrived (each took LATENCY)."""
    starts = sorted(r.at for r in fp.received if r.alias == alias)
    return max((sum(1 for s in starts if t <= s < t + LATENCY * 0.9) for t in starts), default=0)


async def served_by(engine: Engine, user: str) -> str:
    reply = await engine.chat(HELLO, Caller(user))
    assert json.loads(reply.body)["choices"]
    return reply.headers["X-RSQL-Upstream"]


async def test_a_capped_server_never_has_more_in_flight_and_the_least_busy_goes_first(
    fresh_provider: FakeProvider, tmp_path: Path,
) -> None:
    fresh_provider.latency = LATENCY
    engine = engine_for(fresh_provider, tmp_path, {"a1": 2, "a2": 1})
    try:
        first = await asyncio.gather(*(served_by(engine, f"u{i}") for i in range(3)))
        # three at once fill both servers (2 + 1): none waited for another
        assert sorted(first) == ["a1", "a1", "a2"]
        fresh_provider.reset()
        await asyncio.gather(*(served_by(engine, f"u{i}") for i in range(9)))
    finally:
        await engine.close()
    assert most_at_once(fresh_provider, "a1") == 2
    assert most_at_once(fresh_provider, "a2") == 1
    assert sum(fresh_provider.count_by_alias().values()) == 9


async def test_replicas_sharing_redis_hold_one_cap_between_them(
    fresh_provider: FakeProvider, tmp_path: Path, redis_url: str, redis_prefix: str,
) -> None:
    fresh_provider.latency = LATENCY
    for i in range(2):
        (tmp_path / str(i)).mkdir()
    replicas = [engine_for(fresh_provider, tmp_path / str(i), {"a1": 1}, state_url=redis_url,
                           state_prefix=redis_prefix) for i in range(2)]
    try:
        await asyncio.gather(*(served_by(replicas[i % 2], f"u{i}") for i in range(6)))
    finally:
        for e in replicas:
            await e.close()
    # six requests through two replicas, one at a time at the server
    assert fresh_provider.count_by_alias() == {"a1": 6}
    assert most_at_once(fresh_provider, "a1") == 1
