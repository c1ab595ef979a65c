"""Usage log in SQLite, in WAL mode so admin reads never block the writer.

sqlite3 is blocking, so every call runs in one worker thread (``asyncio.to_thread`` under a
lock): the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

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
T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
  id INTEGER PRIMARY KEY,
  ts REAL NOT NULL, request_id TEXT NOT NULL, user TEXT NOT NULL, client TEXT NOT NULL,
  model TEXT, upstream TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, cost_usd REAL,
  latency_ms REAL, overhead_ms REAL, status INTEGER, error TEXT, cache_hit INTEGER, prompt TEXT,
  redactions TEXT, fallback TEXT, escalation TEXT,
  notebook TEXT, cell TEXT, api TEXT, result_rows INTEGER
);
CREATE INDEX IF NOT EXISTS usage_ts ON usage (ts);
CREATE INDEX IF NOT EXISTS usage_user_ts ON usage (user, ts);
"""


class SQLiteStore(cq.CourseLogQueries):
    name = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _run(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            if self._conn is None:
                if self.path != ":memory:":
                    make_private(self.path)
                conn = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(SCHEMA)
                _migrate(conn)
                self._conn = conn
            return fn(self._conn, *args)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(self._run, fn, *args)

    async def open(self) -> None:
        await self._call(lambda c: None)

    async def write(self, rows: list[tuple[Any, ...]]) -> None:
        # a request_id already stored (a batch sent again) is skipped by the unique index
        sql = (
            f"INSERT INTO usage ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
            "ON CONFLICT (request_id) DO NOTHING"
        )

        def go(c: sqlite3.Connection) -> None:
            with c:
                c.executemany(sql, rows)

        await self._call(go)

    async def prune(self, before: float) -> int:
        def go(c: sqlite3.Connection) -> int:
            with c:
                return c.execute("DELETE FROM usage WHERE ts < ?", (before,)).rowcount

        return await self._call(go)

    async def stats(self, since: float) -> dict[str, Any]:
        def go(c: sqlite3.Connection) -> dict[str, Any]:
            totals = c.execute(
                "SELECT COUNT(*), SUM(status < 400), SUM(prompt_tokens), SUM(completion_tokens), "
                f"SUM(cost_usd), SUM(cache_hit), {CACHE_SUMS} FROM usage WHERE ts >= ?",
                (since,),
            ).fetchone()
            lat = [
                r[0]
                for r in c.execute(
                    "SELECT latency_ms FROM usage WHERE ts >= ? AND status < 400", (since,)
                )
            ]
            group = (
                "SELECT {col}, COUNT(*), SUM(status >= 400), SUM(prompt_tokens + completion_tokens), "
                "SUM(cost_usd), " + CACHE_SUMS + " FROM usage WHERE ts >= ? GROUP BY {col} "
                "ORDER BY COUNT(*) DESC LIMIT 100"
            )
            by_model = c.execute(group.format(col="model"), (since,)).fetchall()
            by_user = c.execute(group.format(col="user"), (since,)).fetchall()
            return summarize(totals, lat, by_model, by_user)

        return await self._call(go)

    async def series(
        self, since: float, step: int = 60, until: float | None = None
    ) -> list[dict[str, Any]]:
        """Requests per `step` seconds (answered, refused by a limit, failed) with latency and
        overhead percentiles of the answered ones, for the dashboard's charts."""
        end = time.time() if until is None else until
        counts_sql = (
            f"SELECT CAST(ts / ? AS INTEGER) AS b, SUM(status < 400), SUM({REFUSED_SQL}), "
            f"SUM(status >= 400 AND NOT {REFUSED_SQL}) FROM usage WHERE ts >= ? AND ts <= ? GROUP BY b"
        )
        lat_sql = (
            "SELECT CAST(ts / ? AS INTEGER), latency_ms, overhead_ms FROM usage "
            "WHERE ts >= ? AND ts <= ? AND status < 400"
        )

        def go(c: sqlite3.Connection) -> list[dict[str, Any]]:
            counts = c.execute(counts_sql, (step, since, end)).fetchall()
            lat = c.execute(lat_sql, (step, since, end)).fetchall()
            return build_series(counts, lat, since, end, step)

        return await self._call(go)

    async def top_users(
        self, since: float, by: str = "requests", limit: int = 10
    ) -> list[dict[str, Any]]:
        """The users with the most requests (`by="requests"`) or the highest cost since `since`."""
        sql = (
            "SELECT user, COUNT(*), SUM(status >= 400), "
            "SUM(COALESCE(prompt_tokens, 0) + COALESCE(completion_tokens, 0)), "
            f"SUM(cost_usd), {CACHE_SUMS} FROM usage WHERE ts >= ? GROUP BY user "
            f"ORDER BY {TOP_ORDER[by]}, user LIMIT ?"
        )
        return user_rows(await self._call(lambda c: c.execute(sql, (since, limit)).fetchall()))

    async def totals(self, since: float) -> dict[str, Any]:
        """Requests and cost since `since` (today's spend, without the latency scan of stats)."""
        sql = "SELECT COUNT(*), SUM(cost_usd) FROM usage WHERE ts >= ?"
        n, cost = await self._call(lambda c: c.execute(sql, (since,)).fetchone())
        return {"requests": n or 0, "cost_usd": round(cost or 0.0, 6)}

    async def errors(self, limit: int) -> list[dict[str, Any]]:
        sql = f"SELECT {', '.join(ROW_FIELDS)} FROM usage WHERE status >= 400 ORDER BY ts DESC LIMIT ?"
        return as_dicts(await self._call(lambda c: c.execute(sql, (limit,)).fetchall()))

    async def activity(self, user: str, limit: int) -> list[dict[str, Any]]:
        sql = f"SELECT {', '.join(ROW_FIELDS)} FROM usage WHERE user = ? ORDER BY ts DESC LIMIT ?"
        return as_dicts(await self._call(lambda c: c.execute(sql, (user, limit)).fetchall()))

    async def notebooks(
        self, since: float, user: str | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        sql = NOTEBOOKS_SQL.format(
            user="user", table="usage", only_user="AND user = ? " if user is not None else ""
        )
        args = (since, user, limit) if user is not None else (since, limit)
        return notebook_rows(await self._call(lambda c: c.execute(sql, args).fetchall()))

    async def notebook_cost(
        self, user: str, notebook: str, day: float, week: float
    ) -> dict[str, Any]:
        def go(c: sqlite3.Connection) -> dict[str, Any]:
            total = SPEND_SQL.format(user="user", table="usage")
            return {
                "today": spend(c.execute(total, (user, notebook, day)).fetchone()),
                "week": spend(c.execute(total, (user, notebook, week)).fetchone()),
                "cells": cell_rows(
                    c.execute(
                        CELLS_SQL.format(user="user", table="usage"), (user, notebook, week)
                    ).fetchall()
                ),
            }

        return await self._call(go)

    async def prompt_cache(self, user: str, since: float) -> dict[str, Any]:
        sql = PROMPT_CACHE_SQL.format(user="user", table="usage")
        return prompt_cache_rows(
            await self._call(lambda c: c.execute(sql, (user, since)).fetchall())
        )

    # -- the course log (course_queries): a table of its own, and the readings of it --------

    @staticmethod
    def _named(sql: str) -> str:
        return sql.format(user="user", log="course_log", reads="course_log_readings", usage="usage")

    async def course_open(self) -> None:
        ddl = cq.schema(
            log="course_log",
            reads="course_log_readings",
            user="user",
            key="INTEGER PRIMARY KEY",
            real="REAL",
        )
        await self._call(lambda c: c.executescript(ddl))

    async def course_write(self, rows: list[tuple[Any, ...]]) -> None:
        sql = (
            f"INSERT INTO course_log ({', '.join(COURSE_COLUMNS)}) VALUES "
            f"({cq.placeholders(len(COURSE_COLUMNS))}) ON CONFLICT (course, request_id) DO NOTHING"
        )

        def go(c: sqlite3.Connection) -> None:
            with c:
                c.executemany(sql, rows)

        await self._call(go)

    async def course_prune(self, before: Mapping[str, float], others_before: float | None) -> int:
        def go(c: sqlite3.Connection) -> int:
            n = 0
            with c:
                for table in ("course_log", "course_log_readings"):
                    for course, ts in before.items():
                        n += c.execute(cq.prune_sql(table, 0, others=False), (course, ts)).rowcount
                    if others_before is not None:
                        sql = cq.prune_sql(table, len(before), others=True)
                        n += c.execute(sql, (*before, others_before)).rowcount
            return n

        return await self._call(go)

    async def course_query(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        """The rows of one of ``course_queries``' statements, its names filled in."""
        named = self._named(sql)
        return await self._call(lambda c: c.execute(named, tuple(args)).fetchall())

    async def course_read(self, row: tuple[Any, ...]) -> None:
        """One reading of the course log, written at once (the reader's answer waits on it)."""
        sql = (
            f"INSERT INTO course_log_readings ({', '.join(cq.READING_COLUMNS)}) "
            f"VALUES ({cq.placeholders(len(cq.READING_COLUMNS))})"
        )

        def go(c: sqlite3.Connection) -> None:
            with c:
                c.execute(sql, row)

        await self._call(go)

    async def ping(self) -> bool:
        try:
            await self._call(lambda c: c.execute("SELECT 1").fetchone())
            return True
        except sqlite3.Error:
            return False

    async def close(self) -> None:
        def go() -> None:
            with self._lock:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

        await asyncio.to_thread(go)


# SQLite gives the files it makes beside the log (WAL, shared memory, rollback journal) the
# log's own mode: an owner-only log keeps them owner-only too
_SIDE_FILES = ("", "-wal", "-shm", "-journal")


def make_private(path: str) -> None:
    """Create the log owner-only before SQLite opens it, and narrow an existing log (and the
    files beside it) that other users can read: it holds user names, costs and, with
    log_prompts, the prompts. Creating the file ourselves (rather than changing the umask,
    which is process-wide and would race other threads) is what makes this safe."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, mode=0o700, exist_ok=True)  # the mode applies to a folder made here only
    if os.name != "posix":
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:  # an existing log, or another process made it first
        pass
    except OSError:  # SQLite's own open then fails with its own message
        return
    else:
        os.close(fd)
    if os.stat(folder).st_mode & (stat.S_IWOTH | stat.S_ISVTX) == stat.S_IWOTH:
        log.warning(
            "usage log: folder %s is writable by every user, who could replace the log: "
            "chmod 700 it or set c.RSQLProxy.database_url to a private folder",
            folder,
        )
    for name in (path + suffix for suffix in _SIDE_FILES):
        _narrow(name)


def _narrow(path: str) -> None:
    """Drop group and other bits from `path` when set, saying so; warn when it is not ours.
    By path, never by opening it: closing a descriptor of a SQLite file drops every POSIX lock
    this process holds on it, including a live connection's."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning("usage log: cannot check the mode of %s: %s", path, exc.strerror or exc)
        return
    old = stat.S_IMODE(info.st_mode)
    if not stat.S_ISREG(info.st_mode) or not old & 0o077:
        return
    if info.st_uid != os.geteuid():
        log.warning(
            "usage log: %s is open to other users (mode %04o) and owned by uid %d, not by this "
            "process (uid %d): make it private (chmod 600 %s)",
            path,
            old,
            info.st_uid,
            os.geteuid(),
            path,
        )
        return
    try:
        os.chmod(path, old & 0o700)
    except OSError as exc:  # a read-only file system
        log.warning(
            "usage log: %s is open to other users (mode %04o) and cannot be narrowed: %s",
            path,
            old,
            exc.strerror or exc,
        )
        return
    log.warning(
        "usage log: %s was open to other users (mode %04o), now %04o: it holds user names, "
        "costs and, with log_prompts, the prompts",
        path,
        old,
        old & 0o700,
    )


def _migrate(conn: sqlite3.Connection) -> None:
    """Add the columns a table made by an older version lacks (SQLite has no ADD COLUMN IF
    NOT EXISTS, so the table's columns are read first)."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(usage)")}
    added = [name for name, _ in ADDED_COLUMNS if name not in have]
    for name, kind in ADDED_COLUMNS:
        if name in added:
            with conn:
                conn.execute(f"ALTER TABLE usage ADD COLUMN {name} {kind}")
    if added:  # a migration that ran is one line
        log.info("usage log: added the columns %s to an older version's table", ", ".join(added))
    # one row per request: the unique index, once; rows an older version wrote twice first
    if conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'usage_request_id'"
    ).fetchone():
        return
    with conn:
        conn.execute("BEGIN IMMEDIATE")  # two processes opening one file: one after the other
        if conn.execute(duplicates_sql("usage")).fetchone()[0]:
            delete, rename = dedupe_sql("usage", COLUMNS, "user")
            deleted = conn.execute(delete).rowcount
            renamed = conn.execute(rename).rowcount
            log.warning(deduped_message("usage", deleted, renamed))
        conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS usage_request_id ON usage (request_id)")
