"""A self-hosted server's concurrency cap (``max_in_flight``) across proxy replicas sharing a
real Redis, against the loopback provider: two replicas together never send the server more
requests at once than its cap. The cap in one proxy: tests/unit/test_inflight_cap.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.helpers.fake_provider import FakeProvider
from tests.helpers.inflight import LATENCY, most_at_once, replicas_for, served_by


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
