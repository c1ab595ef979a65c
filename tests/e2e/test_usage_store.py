"""The usage log: SQLite and PostgreSQL stores answer the admin views alike, and old rows go."""

from __future__ import annotations

import time

import pytest

from jupyter_server_ext.engine import Caller, Outcome
from jupyter_server_ext.engine.accounting.usage import UsageLog
from jupyter_server_ext.store import open_store


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/usage.sqlite"
        return
    yield request.getfixturevalue("pg_database")


def outcome(user: str, status: int, age_days: float = 0, cost: float = 0.001) -> Outcome:
    o = Outcome(
        f"req-{user}-{status}-{age_days}-{time.monotonic_ns()}",
        Caller(user, client="magic"),
        "fake-small",
        time.time() - age_days * 86400,
        upstream="a1",
        prompt_tokens=10,
        completion_tokens=5,
        cost_usd=cost,
        status=status,
        latency_s=0.2,
        upstream_s=0.15,
    )
    if status >= 400:
        o.error = "rate_limit_exceeded"
    return o


async def test_rows_views_and_retention(database_url: str) -> None:
    # the writer waits an hour between passes, so the prune below is the only one
    log = UsageLog(open_store(database_url), retention_days=30, interval=3600)
    await log.start()
    try:
        for o in (
            outcome("alice", 200),
            outcome("alice", 200),
            outcome("alice", 429),
            outcome("bob", 200),
            outcome("old", 200, age_days=45),
            outcome("kept", 200, age_days=29),
        ):
            log.record(o)
        await log.flush()
        stats = await log.store.stats(time.time() - 3600)
        assert (stats["requests"], stats["succeeded"]) == (4, 3)
        assert stats["tokens"] == {"prompt": 40, "completion": 20, "total": 60}
        assert stats["cost_usd"] == pytest.approx(0.004)
        assert [u["user"] for u in stats["by_user"]] == ["alice", "bob"]
        assert stats["latency_ms"]["p50"] == pytest.approx(200.0)
        errors = await log.store.errors(10)
        assert [(e["user"], e["status"], e["error"]) for e in errors] == [
            ("alice", 429, "rate_limit_exceeded")
        ]
        activity = await log.store.activity("alice", 10)
        assert len(activity) == 3 and all(a["overhead_ms"] == pytest.approx(50.0) for a in activity)
        # rows older than retention_days go, as the writer prunes them; a younger one stays
        assert await log.store_prune() == 1
        assert await log.store.activity("old", 10) == []
        assert len(await log.store.activity("kept", 10)) == 1
    finally:
        await log.close()


# The usage table as the previous release made it: an upgrade must keep its rows and add the
# columns for redaction counts and the fallback.
_OLD_COLUMNS = (
    "ts {real} NOT NULL, request_id TEXT NOT NULL, {user} TEXT NOT NULL, client TEXT NOT NULL, "
    "model TEXT, upstream TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, cost_usd {real}, "
    "latency_ms {real}, overhead_ms {real}, status INTEGER, error TEXT, cache_hit INTEGER, prompt TEXT"
)


async def _make_old_table(database_url: str) -> None:
    if database_url.startswith("sqlite:"):
        import sqlite3

        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            conn.execute(
                "CREATE TABLE usage (id INTEGER PRIMARY KEY, "
                + _OLD_COLUMNS.format(real="REAL", user="user")
                + ")"
            )
            conn.execute(
                "INSERT INTO usage (ts, request_id, user, client, status) "
                "VALUES (?, 'old-1', 'alice', 'magic', 200)",
                (time.time(),),
            )
        return
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "CREATE TABLE rsql_usage (id BIGSERIAL PRIMARY KEY, "
            + _OLD_COLUMNS.format(real="DOUBLE PRECISION", user='"user"')
            + ")"
        )
        await conn.execute(
            'INSERT INTO rsql_usage (ts, request_id, "user", client, status) '
            "VALUES ($1, 'old-1', 'alice', 'magic', 200)",
            time.time(),
        )
    finally:
        await conn.close()


async def test_a_table_of_the_previous_release_gains_the_new_columns(database_url: str) -> None:
    await _make_old_table(database_url)
    log = UsageLog(open_store(database_url))
    await log.start()
    try:
        o = outcome("alice", 200)
        o.redactions, o.fallback = {"email": 2}, "local"
        log.record(o)
        await log.flush()
        rows = await log.store.activity("alice", 10)
        assert {r["request_id"] for r in rows} == {"old-1", o.request_id}
        new = next(r for r in rows if r["request_id"] == o.request_id)
        assert new["fallback"] == "local" and "email" in str(new["redactions"])
    finally:
        await log.close()
