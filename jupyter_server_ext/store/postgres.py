"""Usage log in PostgreSQL (asyncpg), for replicas that write one shared log."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg  # the 'postgres' extra; imported only when a postgresql:// URL is configured

from ..engine.accounting.usage import COLUMNS
from ..engine.courses.log import COLUMNS as COURSE_COLUMNS
from . import course_queries as cq
from .queries import (
    ADDED_COLUMNS,
    CACHE_SUMS,
    CELLS_SQL,
    NOTEBOOKS_SQL,
    PROMPT_CACHE_SQL,
    REFUSED_SQL,
    ROW_FIELDS,
    SPEND_SQL,
    TOP_ORDER,
    as_dicts,
    build_series,
    cell_rows,
    dedupe_sql,
    deduped_message,
    duplicates_sql,
    notebook_rows,
    prompt_cache_rows,
    spend,
    summarize,
    user_rows,
)

log = logging.getLogger("rsql.store")

SCHEMA = """
CREATE TABLE IF NOT EXISTS rsql_usage (
  id BIGSERIAL PRIMARY KEY,
  ts DOUBLE PRECISION NOT NULL, request_id TEXT NOT NULL, "user" TEXT NOT NULL, client TEXT NOT NULL,
  model TEXT, upstream TEXT, prompt_tokens INTEGER, completion_tokens INTEGER,
  cost_usd DOUBLE PRECISION, latency_ms DOUBLE PRECISION, overhead_ms DOUBLE PRECISION,
  status INTEGER, error TEXT, cache_hit INTEGER, prompt TEXT, redactions TEXT, fallback TEXT,
  escalation TEXT, notebook TEXT, cell TEXT, api TEXT, result_rows INTEGER
);
CREATE INDEX IF NOT EXISTS rsql_usage_ts ON rsql_usage (ts);
CREATE INDEX IF NOT EXISTS rsql_usage_user_ts ON rsql_usage ("user", ts);
"""

_FIELDS = ", ".join('"user"' if c == "user" else c for c in ROW_FIELDS)

_TYPES = {
    "ts": "float8",
    "prompt_tokens": "int4",
    "completion_tokens": "int4",
    "cost_usd": "float8",
    "latency_ms": "float8",
    "overhead_ms": "float8",
    "status": "int4",
    "cache_hit": "int4",
    "result_rows": "int4",
    "cache_read_tokens": "int4",
    "cache_write_tokens": "int4",
    "uncached_usd": "float8",
    "audio_input_tokens": "int4",
    "audio_output_tokens": "int4",
}
# one round trip per batch: the rows go as one array per column; a request_id already stored
# (a batch sent again) is skipped by the unique index
INSERT = "INSERT INTO rsql_usage ({}) SELECT * FROM unnest({}) ON CONFLICT (request_id) DO NOTHING".format(
    ", ".join('"user"' if c == "user" else c for c in COLUMNS),
    ", ".join(f"${i}::{_TYPES.get(c, 'text')}[]" for i, c in enumerate(COLUMNS, 1)),
)


# the course log's rows, as the usage log's: one round trip a batch, once per (course, request)
COURSE_INSERT = (
    "INSERT INTO rsql_course_log ({}) SELECT * FROM unnest({}) "
    "ON CONFLICT (course, request_id) DO NOTHING"
).format(
    ", ".join('"user"' if c == "user" else c for c in COURSE_COLUMNS),
    ", ".join(f"${i}::{cq.PG_TYPES.get(c, 'text')}[]" for i, c in enumerate(COURSE_COLUMNS, 1)),
)
COURSE_NAMES = {
    "user": '"user"',
    "log": "rsql_course_log",
    "reads": "rsql_course_log_readings",
    "usage": "rsql_usage",
}


async def _one_row_per_request(conn: asyncpg.Connection) -> None:
    """The unique index on request_id, made once; a table of an older version that holds a
    request_id twice is settled first (see ``queries.dedupe_sql``)."""
    if await conn.fetchval("SELECT to_regclass('rsql_usage_request_id')") is not None:
        return
    if await conn.fetchval(duplicates_sql("rsql_usage")):
        delete, rename = dedupe_sql("rsql_usage", COLUMNS, '"user"')
        deleted = int((await conn.execute(delete)).split()[-1])
        renamed = int((await conn.execute(rename)).split()[-1])
        log.warning(deduped_message("rsql_usage", deleted, renamed))
    await conn.execute(
        "CREATE UNIQUE INDEX IF NOT EXISTS rsql_usage_request_id ON rsql_usage (request_id)"
    )


def _numbered(sql: str) -> str:
    """The shared statements' `?` placeholders as PostgreSQL's $1, $2, ... (none is inside a
    string literal in them)."""
    parts = sql.split("?")
    return "".join(p + (f"${i}" if i < len(parts) else "") for i, p in enumerate(parts, 1))


async def connect_problem(url: str, timeout: float) -> tuple[str, str]:
    """Why the usage log at `url` cannot be used, as (why the server does not answer, why its
    table cannot be made), each "" when it can: no answer within `timeout` seconds, a login or
    database refused; the table missing and the role not allowed to make it (start-up makes it).
    ``--check-config``'s look: one connection, reads only, no table made, nothing written."""
    try:
        conn = await asyncpg.connect(url, timeout=timeout)
    except (asyncpg.PostgresError, OSError, asyncio.TimeoutError) as exc:
        if isinstance(exc, asyncio.TimeoutError | TimeoutError):
            return f"no answer within {timeout:g} s", ""
        return " ".join(f"{type(exc).__name__}: {exc}".split()).rstrip("."), ""
    try:
        row = await conn.fetchrow(
            "SELECT to_regclass('rsql_usage') IS NOT NULL, current_user, current_schema(), "
            "current_schema() IS NOT NULL AND has_schema_privilege(current_schema(), 'CREATE')",
            timeout=timeout,
        )
    finally:
        await conn.close(timeout=timeout)
    exists, role, schema, may_create = row
    if exists or may_create:
        return "", ""
    if schema is None:
        return "", (
            f"role {role!r} has no schema to make the usage log's table rsql_usage in (none of "
            "its search_path exists)"
        )
    return "", (
        f"the usage log's table rsql_usage is not there and role {role!r} may not make it in "
        f"schema {schema!r}: GRANT CREATE ON SCHEMA {schema} TO {role}, or make the table as its "
        "owner"
    )


class PostgresStore(cq.CourseLogQueries):
    name = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        if self._pool is None:
            # no floor of idle connections: asyncpg would log a traceback each second it cannot
            # restore one while the database is down (the usage log says it once)
            pool = await asyncpg.create_pool(self.url, min_size=0, max_size=4, timeout=10)
            try:
                async with pool.acquire() as conn:
                    # replicas start together: serialize the CREATE TABLE IF NOT EXISTS
                    async with conn.transaction():
                        await conn.execute("SELECT pg_advisory_xact_lock(746137)")
                        await conn.execute(SCHEMA)
                        # a table made by an older version: add the newer columns
                        for name, kind in ADDED_COLUMNS:
                            await conn.execute(
                                f"ALTER TABLE rsql_usage ADD COLUMN IF NOT EXISTS {name} {kind}"
                            )
                        await _one_row_per_request(conn)
            except BaseException:
                # no pool until the schema is in place: writes rely on the unique index
                pool.terminate()
                raise
            self._pool = pool

    async def _p(self) -> asyncpg.Pool:
        await self.open()
        assert self._pool is not None
        return self._pool

    async def write(self, rows: list[tuple[Any, ...]]) -> None:
        pool = await self._p()
        await pool.execute(INSERT, *[list(col) for col in zip(*rows, strict=True)])

    async def prune(self, before: float) -> int:
        pool = await self._p()
        done = await pool.execute("DELETE FROM rsql_usage WHERE ts < $1", before)
        return int(done.split()[-1])

    async def stats(self, since: float) -> dict[str, Any]:
        pool = await self._p()
        async with pool.acquire() as c:
            totals = await c.fetchrow(
                "SELECT COUNT(*), SUM((status < 400)::int), SUM(prompt_tokens), SUM(completion_tokens), "
                f"SUM(cost_usd), SUM(cache_hit), {CACHE_SUMS} FROM rsql_usage WHERE ts >= $1",
                since,
            )
            lat = [
                r[0]
                for r in await c.fetch(
                    "SELECT latency_ms FROM rsql_usage WHERE ts >= $1 AND status < 400", since
                )
            ]
            group = (
                "SELECT {col}, COUNT(*), SUM((status >= 400)::int), SUM(prompt_tokens + completion_tokens), "
                "SUM(cost_usd), " + CACHE_SUMS + " FROM rsql_usage WHERE ts >= $1 GROUP BY {col} "
                "ORDER BY COUNT(*) DESC LIMIT 100"
            )
            by_model = [tuple(r) for r in await c.fetch(group.format(col="model"), since)]
            by_user = [tuple(r) for r in await c.fetch(group.format(col='"user"'), since)]
        return summarize(tuple(totals), lat, by_model, by_user)

    async def series(
        self, since: float, step: int = 60, until: float | None = None
    ) -> list[dict[str, Any]]:
        """Requests per `step` seconds (answered, refused by a limit, failed) with latency and
        overhead percentiles of the answered ones, for the dashboard's charts."""
        end = time.time() if until is None else until
        pool = await self._p()
        async with pool.acquire() as c:
            counts = await c.fetch(
                "SELECT floor(ts / $1)::bigint AS b, SUM((status < 400)::int), "
                f"SUM(({REFUSED_SQL})::int), SUM((status >= 400 AND NOT {REFUSED_SQL})::int) "
                "FROM rsql_usage WHERE ts >= $2 AND ts <= $3 GROUP BY b",
                float(step),
                since,
                end,
            )
            lat = await c.fetch(
                "SELECT floor(ts / $1)::bigint, latency_ms, overhead_ms FROM rsql_usage "
                "WHERE ts >= $2 AND ts <= $3 AND status < 400",
                float(step),
                since,
                end,
            )
        return build_series([tuple(r) for r in counts], [tuple(r) for r in lat], since, end, step)

    async def top_users(
        self, since: float, by: str = "requests", limit: int = 10
    ) -> list[dict[str, Any]]:
        """The users with the most requests (`by="requests"`) or the highest cost since `since`."""
        pool = await self._p()
        rows = await pool.fetch(
            'SELECT "user", COUNT(*), SUM((status >= 400)::int), '
            f"SUM(COALESCE(prompt_tokens, 0) + COALESCE(completion_tokens, 0)), SUM(cost_usd), {CACHE_SUMS} "
            f'FROM rsql_usage WHERE ts >= $1 GROUP BY "user" ORDER BY {TOP_ORDER[by]}, "user" LIMIT $2',
            since,
            limit,
        )
        return user_rows([tuple(r) for r in rows])

    async def totals(self, since: float) -> dict[str, Any]:
        """Requests and cost since `since` (today's spend, without the latency scan of stats)."""
        pool = await self._p()
        n, cost = await pool.fetchrow(
            "SELECT COUNT(*), SUM(cost_usd) FROM rsql_usage WHERE ts >= $1", since
        )
        return {"requests": n or 0, "cost_usd": round(cost or 0.0, 6)}

    async def errors(self, limit: int) -> list[dict[str, Any]]:
        pool = await self._p()
        rows = await pool.fetch(
            f"SELECT {_FIELDS} FROM rsql_usage WHERE status >= 400 ORDER BY ts DESC LIMIT $1", limit
        )
        return as_dicts([tuple(r) for r in rows])

    async def activity(self, user: str, limit: int) -> list[dict[str, Any]]:
        pool = await self._p()
        rows = await pool.fetch(
            f'SELECT {_FIELDS} FROM rsql_usage WHERE "user" = $1 ORDER BY ts DESC LIMIT $2',
            user,
            limit,
        )
        return as_dicts([tuple(r) for r in rows])

    async def notebooks(
        self, since: float, user: str | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        pool = await self._p()
        sql = _numbered(
            NOTEBOOKS_SQL.format(
                user='"user"',
                table="rsql_usage",
                only_user='AND "user" = ? ' if user is not None else "",
            )
        )
        args = (since, user, limit) if user is not None else (since, limit)
        return notebook_rows([tuple(r) for r in await pool.fetch(sql, *args)])

    async def notebook_cost(
        self, user: str, notebook: str, day: float, week: float
    ) -> dict[str, Any]:
        pool = await self._p()
        total = _numbered(SPEND_SQL.format(user='"user"', table="rsql_usage"))
        async with pool.acquire() as c:
            today = await c.fetchrow(total, user, notebook, day)
            this_week = await c.fetchrow(total, user, notebook, week)
            cells = await c.fetch(
                _numbered(CELLS_SQL.format(user='"user"', table="rsql_usage")), user, notebook, week
            )
        return {
            "today": spend(tuple(today)),
            "week": spend(tuple(this_week)),
            "cells": cell_rows([tuple(r) for r in cells]),
        }

    async def prompt_cache(self, user: str, since: float) -> dict[str, Any]:
        pool = await self._p()
        sql = _numbered(PROMPT_CACHE_SQL.format(user='"user"', table="rsql_usage"))
        async with pool.acquire() as c:
            rows = await c.fetch(sql, user, since)
        return prompt_cache_rows([tuple(r) for r in rows])

    # -- the course log (course_queries): a table of its own, and the readings of it --------

    async def course_open(self) -> None:
        pool = await self._p()
        ddl = cq.schema(
            log="rsql_course_log",
            reads="rsql_course_log_readings",
            user='"user"',
            key="BIGSERIAL PRIMARY KEY",
            real="DOUBLE PRECISION",
        )
        async with pool.acquire() as conn, conn.transaction():
            # replicas start together: one CREATE TABLE IF NOT EXISTS at a time
            await conn.execute("SELECT pg_advisory_xact_lock(746138)")
            await conn.execute(ddl)

    async def course_write(self, rows: list[tuple[Any, ...]]) -> None:
        pool = await self._p()
        await pool.execute(COURSE_INSERT, *[list(col) for col in zip(*rows, strict=True)])

    async def course_prune(self, before: Mapping[str, float], others_before: float | None) -> int:
        pool = await self._p()
        n = 0
        async with pool.acquire() as c, c.transaction():
            for table in ("rsql_course_log", "rsql_course_log_readings"):
                for course, ts in before.items():
                    done = await c.execute(
                        _numbered(cq.prune_sql(table, 0, others=False)), course, ts
                    )
                    n += int(done.split()[-1])
                if others_before is not None:
                    sql = _numbered(cq.prune_sql(table, len(before), others=True))
                    n += int((await c.execute(sql, *before, others_before)).split()[-1])
        return n

    async def course_query(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        """The rows of one of ``course_queries``' statements, its names filled in."""
        pool = await self._p()
        rows = await pool.fetch(_numbered(sql.format(**COURSE_NAMES)), *args)
        return [tuple(r) for r in rows]

    async def course_read(self, row: tuple[Any, ...]) -> None:
        """One reading of the course log, written at once (the reader's answer waits on it)."""
        pool = await self._p()
        sql = (
            f"INSERT INTO rsql_course_log_readings ({', '.join(cq.READING_COLUMNS)}) "
            f"VALUES ({', '.join(f'${i}' for i in range(1, len(row) + 1))})"
        )
        await pool.execute(sql, *row)

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
