"""The usage spool: rows are journaled on local disk as requests finish, written to the store
once, kept through an outage of the store. Through a killed process (a child of the test's):
tests/e2e/test_usage_spool_outages.py.

The store is a real SQLite file. Its outage is real too: the database's folder is a plain file,
so SQLite cannot open it, until the test removes that file.
"""

from __future__ import annotations

import logging
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from jupyter_server_ext.engine import Caller, Outcome
from jupyter_server_ext.engine.accounting.usage import UsageLog, row_of
from jupyter_server_ext.engine.bodies import json_codec
from jupyter_server_ext.store import open_store
from tests.helpers.usage_spool import Database, spooled_lines


def outcome(request_id: str, user: str = "alice") -> Outcome:
    return Outcome(
        request_id,
        Caller(user, client="magic"),
        "fake-small",
        time.time(),
        upstream="a1",
        prompt_tokens=10,
        completion_tokens=5,
        cost_usd=0.001,
        latency_s=0.2,
        upstream_s=0.15,
    )


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return Database(tmp_path)


def warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


async def test_rows_are_journaled_at_once_and_written_once(db: Database, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    log = UsageLog(open_store(db.url), spool_dir=str(spool), interval=3600)
    await log.start()
    try:
        for i in range(1200):
            log.record(outcome(f"r{i}"))
        # on disk before any flush: a process killed now keeps them
        assert [row[1] for row in spooled_lines(spool)] == [f"r{i}" for i in range(1200)]
        assert stat.S_IMODE(spool.stat().st_mode) == 0o700  # rows may hold prompts
        assert {stat.S_IMODE(f.stat().st_mode) for f in spool.glob("usage-*")} == {0o600}
        assert log.status()["spool"]["rows"] == 1200
        assert await log.flush()
        assert sorted(db.ids()) == sorted(f"r{i}" for i in range(1200))
        assert spooled_lines(spool) == [] and log.status()["spool"] == {
            "enabled": True,
            "rows": 0,
            "bytes": 0,
            "max_bytes": 256 * 2**20,
            "full": False,
        }
    finally:
        await log.close()
    assert list(spool.iterdir()) == []  # a clean shutdown leaves nothing behind


async def test_an_outage_spools_rows_and_writes_each_once_when_it_ends(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rsql")
    db.cut()
    spool = tmp_path / "spool"
    log = UsageLog(open_store(db.url), spool_dir=str(spool), interval=3600)
    await log.start()  # the database is away at start-up: the proxy still starts
    try:
        for i in range(50):
            log.record(outcome(f"r{i}"))
        assert not await log.flush()
        assert not await log.flush()
        status = log.status()
        assert status["unreachable_since"] is not None and status["error"] == "FileExistsError"
        assert status["spool"]["rows"] == 50 and status["dropped_rows"] == 0
        db.restore()
        assert await log.flush()
        assert sorted(db.ids()) == sorted(f"r{i}" for i in range(50))
        assert log.status()["unreachable_since"] is None and log.status()["spool"]["rows"] == 0
    finally:
        await log.close()
    down = warnings(caplog, "usage database unreachable")
    assert (
        len(down) == 1 and f"spooling rows to {spool}" in down[0] and "FileExistsError" in down[0]
    )
    assert len(warnings(caplog, "reachable again")) == 1
    assert "wrote 50 spooled rows" in warnings(caplog, "reachable again")[0]


async def test_a_long_outage_keeps_memory_bounded_and_loses_nothing(
    db: Database, tmp_path: Path
) -> None:
    db.cut()
    log = UsageLog(
        open_store(db.url),
        spool_dir=str(tmp_path / "spool"),
        interval=3600,
        spool_rotate_bytes=4000,
        spool_memory_bytes=10_000,
        batch=50,
    )
    await log.start()
    try:
        for i in range(600):
            log.record(outcome(f"r{i}"))
            spool = log.spool
            assert spool is not None and spool.memory_bytes <= 10_000
            # what the segments hold in memory, counted row by row, not the journal's own tally
            held = [row for seg in spool.segments for row in (seg.pending or [])]
            assert sum(len(json_codec.dumps(row)) + 1 for row in held) <= 10_000, len(held)
        # sealed segments, read back later
        assert len(list((tmp_path / "spool").glob("usage-*"))) > 10
        assert not await log.flush()
        db.restore()
        assert await log.flush()
        ids = db.ids()
        assert len(ids) == 600 and set(ids) == {f"r{i}" for i in range(600)}
    finally:
        await log.close()
    assert list((tmp_path / "spool").iterdir()) == []


async def test_the_spool_is_bounded_and_says_when_it_is_full(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rsql")
    db.cut()
    spool = tmp_path / "spool"
    log = UsageLog(
        open_store(db.url),
        spool_dir=str(spool),
        spool_max_bytes=4000,
        memory_rows=10,
        interval=3600,
    )
    await log.start()
    try:
        for i in range(100):
            log.record(outcome(f"r{i}"))
        status = log.status()
        journaled = len(spooled_lines(spool))
        assert 0 < journaled < 100 and status["spool"]["full"] and status["spool"]["bytes"] <= 4000
        assert sum(f.stat().st_size for f in spool.iterdir()) <= 4000
        assert status["memory_rows"] == 10 and status["dropped_rows"] == 100 - journaled - 10
        db.restore()
        assert await log.flush()
        assert sorted(db.ids()) == sorted(f"r{i}" for i in range(journaled + 10))
        assert log.status()["spool"]["full"] is False
    finally:
        await log.close()
    full = warnings(caplog, "is full")
    assert len(full) == 1 and "usage_spool_max_bytes = 4000" in full[0]
    assert len(warnings(caplog, "rows are being dropped")) == 1


async def test_a_batch_sent_again_is_stored_once(db: Database) -> None:
    store = open_store(db.url)
    await store.open()
    try:
        rows = [row_of(outcome(f"r{i}"), None) for i in range(20)]
        await store.write(rows)
        await store.write(rows[5:] + rows[:5])  # a retry after a lost confirmation
        assert sorted(db.ids()) == sorted(f"r{i}" for i in range(20))
    finally:
        await store.close()


async def test_a_table_holding_a_request_twice_is_settled_without_losing_data(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """An older version could store a retried batch twice: exact copies go, rows that only
    share the request_id stay under a new one, and from then on a request has one row."""
    caplog.set_level(logging.INFO, logger="rsql")
    db.folder.mkdir()
    with sqlite3.connect(db.path) as conn:
        conn.execute(
            "CREATE TABLE usage (id INTEGER PRIMARY KEY, ts REAL NOT NULL, request_id TEXT NOT NULL, "
            "user TEXT NOT NULL, client TEXT NOT NULL, model TEXT, upstream TEXT, prompt_tokens INTEGER, "
            "completion_tokens INTEGER, cost_usd REAL, latency_ms REAL, overhead_ms REAL, status INTEGER, "
            "error TEXT, cache_hit INTEGER, prompt TEXT)"
        )
        for rid, user in [
            ("a", "alice"),
            ("a", "alice"),
            ("a", "bob"),
            ("b", "alice"),
            ("a", "alice"),
        ]:
            conn.execute(
                "INSERT INTO usage (ts, request_id, user, client, status) VALUES (1, ?, ?, 'magic', 200)",
                (rid, user),
            )
    log = UsageLog(open_store(db.url), interval=3600)
    await log.start()
    try:
        log.record(outcome("a"))  # sent again: already there
        log.record(outcome("c"))
        assert await log.flush()
    finally:
        await log.close()
    with sqlite3.connect(db.path) as conn:
        rows = conn.execute("SELECT request_id, user FROM usage ORDER BY id").fetchall()
    assert rows == [("a", "alice"), ("a~dup-3", "bob"), ("b", "alice"), ("c", "alice")]
    said = warnings(caplog, "usage table usage")
    assert (
        len(said) == 1
        and "2 rows were exact copies" in said[0]
        and "1 rows shared a request_id" in said[0]
    )


async def test_a_row_logged_as_the_proxy_shuts_down_does_not_keep_it_from_stopping(
    db: Database, tmp_path: Path
) -> None:
    """A row that wakes the writer just as the proxy closes (an abandoned answer charged at
    shutdown): on Python 3.11 the writer's wait swallows the cancel that comes with it, and a
    writer that only stops on a cancel goes round for good, so the hub service never stops.
    The row is still written by the last flush."""
    import asyncio

    log = UsageLog(open_store(db.url), spool_dir=str(tmp_path / "spool"), batch=1, interval=3600)
    await log.start()
    for _ in range(3):
        await asyncio.sleep(0)  # the writer is waiting for rows
    log.record(outcome("at-shutdown"))  # a full batch: wakes the writer
    closing = asyncio.ensure_future(log.close())
    done, _ = await asyncio.wait({closing}, timeout=5)
    assert closing in done, "the usage log did not close"
    assert db.ids() == ["at-shutdown"]
