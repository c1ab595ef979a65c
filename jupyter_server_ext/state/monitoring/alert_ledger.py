"""The alert ledger in Redis: replicas claim each alert once and keep one list of recent ones.

The engine's own ``MemoryLedger`` (``engine/monitoring/alerts.py``) is the default for one
process; ``wiring.build_engine`` puts this one in its place when replicas share Redis.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from redis.exceptions import RedisError

log = logging.getLogger("rsql.state")
_DOWN = (RedisError, OSError)


class RedisAlertLedger:
    """Alert claims and the recent-alerts list in Redis, so replicas send each alert once and
    every replica shows the same list."""

    def __init__(self, redis: Any, prefix: str = "rsql:", keep: int = 100) -> None:
        self.redis = redis
        self.prefix = prefix + "alert:"
        self.keep = keep

    async def claim(self, name: str, ttl: float) -> bool:
        try:
            return bool(
                await self.redis.set(
                    self.prefix + "claim:" + name, "1", nx=True, ex=max(1, math.ceil(ttl))
                )
            )
        except _DOWN as exc:
            # better one alert per replica than none while Redis is down
            log.warning("alert claim without Redis (%s): this replica sends it", type(exc).__name__)
            return True

    async def record(self, alert: dict[str, Any]) -> None:
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                # delivery states are this replica's own; the shared list says what was raised
                pipe.lpush(
                    self.prefix + "recent",
                    json.dumps({k: v for k, v in alert.items() if k != "delivery"}),
                )
                pipe.ltrim(self.prefix + "recent", 0, self.keep - 1)
                await pipe.execute()
        except _DOWN as exc:
            log.warning("alert not kept in the shared list (%s)", type(exc).__name__)

    async def recent(self, limit: int) -> list[dict[str, Any]]:
        try:
            raw = await self.redis.lrange(self.prefix + "recent", 0, limit - 1)
        except _DOWN as exc:
            log.warning("recent alerts unavailable without Redis (%s)", type(exc).__name__)
            return []
        return [json.loads(r) for r in raw]
