"""A self-hosted server's concurrency cap (``max_in_flight``) in one proxy, against the loopback
provider: the server never has more requests at once than its cap, the least busy server goes
first, and waiting callers are served as slots free up. Across replicas sharing Redis:
tests/e2e/test_inflight_redis.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.helpers.fake_provider import FakeProvider
from tests.helpers.inflight import LATENCY, engine_for, most_at_once, served_by


async def test_a_capped_server_never_has_more_in_flight_and_the_least_busy_goes_first(
    fresh_provider: FakeProvider,
    tmp_path: Path,
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


async def test_with_room_on_both_the_least_busy_server_goes_first(
    fresh_provider: FakeProvider,
    tmp_path: Path,
) -> None:
    # two at once where each server has room for two: one each (filling the first server
    # first would send both to a1)
    fresh_provider.latency = LATENCY
    engine = engine_for(fresh_provider, tmp_path, {"a1": 2, "a2": 2})
    try:
        first = await asyncio.gather(*(served_by(engine, f"u{i}") for i in range(2)))
    finally:
        await engine.close()
    assert sorted(first) == ["a1", "a2"]
