"""Usage log in PostgreSQL (asyncpg), for replicas that write one shared log."""

from __future__ import annotations

from typing import Any

import asyncpg  # the 'postgres' extra; imported only when a postgresql:// URL is configured

from ..engine.usage import COLUMNS
from .queries import ADDED_COLUMNS, ROW_FIELDS, as_dicts, summarize

SCHEMA = """
CREATE TABLE IF NOT EXISTS rsql_usage (
  id BIGSERIAL PRIMARY KEY,
  ts DOUBLE PRECISION NOT NULL, request_id TEXT NOT NULL, "user" TEXT NOT NULL, client TEXT NOT NULL,
  model TEXT, upstream TEXT, prompt_tokens INTEGER, completion_tokens INTEGER,
  cost_usd DOUBLE PRECISION, latency_ms DOUBLE PRECISION, overhead_ms DOUBLE PRECISION,
  status INTEGER, error TEXT, cache_hit INTEGER, prompt TEXT, redactions TEXT, fallback TEXT
);
CREATE INDEX IF NOT EXISTS rsql_usage_ts ON rsql_usage (ts);
CREATE INDEX IF NOT EXISTS rsql_usage_user_ts ON rsql_usage ("user", ts);
"""

_FIELDS = ", ".join('"user"' if c == "user" else c for c in ROW_FIELDS)


class PostgresStore:
    name = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=4, timeout=10)
            async with self._pool.acquire() as conn:
                # replicas start together: serialize the CREATE TABLE IF NOT EXISTS
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(746137)")
                    await conn.execute(SCHEMA)
                    # a table made by an older version: add the newer columns
                    for name, kind in ADDED_COLUMNS:
                        await conn.execute(f"ALTER TABLE rsql_usage ADD COLUMN IF NOT EXISTS {name} {kind}")

    async def _p(self) -> asyncpg.Pool:
        await self.open()
        assert self._pool is not None
        return self._pool

    async def write(self, rows: list[tuple]) -> None:
        pool = await self._p()
        await pool.copy_records_to_table("rsql_usage", records=rows, columns=list(COLUMNS))

    async def prune(self, before: float) -> int:
        pool = await self._p()
        done = await pool.execute("DELETE FROM rsql_usage WHERE ts < $1", before)
        return int(done.split()[-1])

    async def stats(self, since: float) -> dict[str, Any]:
        pool = await self._p()
        async with pool.acquire() as c:
            totals = await c.fetchrow(
                "SELECT COUNT(*), SUM((status < 400)::int), SUM(prompt_tokens), SUM(completion_tokens), "
                "SUM(cost_usd), SUM(cache_hit) FROM rsql_usage WHERE ts >= $1", since
            )
            lat = [r[0] for r in await c.fetch("SELECT latency_ms FROM rsql_usage WHERE ts >= $1 AND status < 400", since)]
            group = (
                "SELECT {col}, COUNT(*), SUM((status >= 400)::int), SUM(prompt_tokens + completion_tokens), "
                "SUM(cost_usd) FROM rsql_usage WHERE ts >= $1 GROUP BY {col} ORDER BY COUNT(*) DESC LIMIT 100"
            )
            by_model = [tuple(r) for r in await c.fetch(group.format(col="model"), since)]
            by_user = [tuple(r) for r in await c.fetch(group.format(col='"user"'), since)]
        return summarize(tuple(totals), lat, by_model, by_user)

    async def errors(self, limit: int) -> list[dict[str, Any]]:
        pool = await self._p()
        rows = await pool.fetch(f"SELECT {_FIELDS} FROM rsql_usage WHERE status >= 400 ORDER BY ts DESC LIMIT $1", limit)
        return as_dicts([tuple(r) for r in rows])

    async def activity(self, user: str, limit: int) -> list[dict[str, Any]]:
        pool = await self._p()
        rows = await pool.fetch(f'SELECT {_FIELDS} FROM rsql_usage WHERE "user" = $1 ORDER BY ts DESC LIMIT $2', user, limit)
        return as_dicts([tuple(r) for r in rows])

    async def ping(self) -> bool:
        try:
            pool = await self._p()
            await pool.fetchval("SELECT 1")
            return True
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
