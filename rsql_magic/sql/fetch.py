"""Fetching a result within bounds: rows, bytes and time.

``max_rows`` alone does not bound memory: 1,000 rows of 445 kB are 445 MB, and psycopg's plain
cursor holds the whole result before the first fetch. So rows come in chunks sized to what is
left of a byte bound (``SqlPolicy.max_result_bytes``), and fetching stops, saying so, when the
bound is reached. PostgreSQL results of generated queries come through a server-side cursor
(``DECLARE ... CURSOR FOR``), so the server keeps what is not fetched; ``DECLARE`` takes exactly
one query, which psycopg 3 sends with the extended protocol (one statement, whatever the text
says), as it does every other generated statement (``prepare=True``).
"""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass
from typing import Any

from rsql_magic.errors import QueryTimeout

__all__ = [
    "DECLARE_PREFIX",
    "DEFAULT_MAX_RESULT_BYTES",
    "Fetched",
    "fetch_bounded",
    "in_transaction",
    "postgres_fetch",
    "row_bytes",
]

DEFAULT_MAX_RESULT_BYTES = 50 * 1024 * 1024
_MAX_CHUNK = 1024
# Under a byte bound the first fetch is one row: a driver holds a whole fetch before its size
# can be checked, and one row may be large. Later fetches are sized from the rows seen.
_FIRST_CHUNK = 1


@dataclass
class Fetched:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    more: bool  # True when the result had more than max_rows rows, or more than max_bytes
    capped_bytes: int | None = None  # the byte bound, when fetching stopped at it


def _value_bytes(value: Any) -> int:
    # About what a value costs in the kernel: its text's length plus a Python object's overhead,
    # nested lists and maps walked to any depth (a value nested deeper is no cheaper).
    total, todo = 0, [value]
    while todo:
        v = todo.pop()
        if isinstance(v, str | bytes | bytearray | memoryview):
            total += len(v) + 48
        elif isinstance(v, list | tuple | set | frozenset):
            total += 56
            todo.extend(v)
        elif isinstance(v, dict):
            total += 232
            todo.extend(v.keys())
            todo.extend(v.values())
        else:
            total += 32
    return total


def row_bytes(row: tuple[Any, ...]) -> int:
    """An estimate of what one fetched row takes in memory."""
    return 56 + sum(_value_bytes(v) for v in row)


def fetch_bounded(
    cur: Any,
    max_rows: int | None,
    max_bytes: int | None = None,
    deadline: float | None = None,
    timeout_s: float | None = None,
) -> Fetched:
    """Fetch at most `max_rows` rows and `max_bytes` bytes from `cur`, chunk by chunk; raise
    :class:`QueryTimeout` when fetching runs past `deadline` (``time.monotonic()``)."""
    chunk = _FIRST_CHUNK if max_bytes else _MAX_CHUNK
    first = None
    if cur.description is None and getattr(cur, "name", None):
        # psycopg2's server-side cursor describes its rows only after the first FETCH
        first = cur.fetchmany(chunk if max_rows is None else min(chunk, max_rows + 1))
    if cur.description is None:  # a statement without a result set (only with --allow-write)
        return Fetched([], [], False)
    columns = [d[0] for d in cur.description]
    rows: list[tuple[Any, ...]] = []
    used = 0
    while True:
        want = chunk if max_rows is None else min(chunk, max_rows + 1 - len(rows))
        if want <= 0:
            break
        batch, first = (first, None) if first is not None else (cur.fetchmany(want), None)
        if not batch:
            break
        for raw in batch:
            row = tuple(raw)
            size = row_bytes(row)
            if max_bytes is not None and used + size > max_bytes:
                return Fetched(columns, rows, True, capped_bytes=max_bytes)
            used += size
            rows.append(row)
        if deadline is not None and time.monotonic() > deadline:
            raise QueryTimeout(f"statement cancelled after {timeout_s or 0:g} s (while fetching)")
        if max_bytes:
            average = max(1, used // len(rows))
            chunk = max(1, min(_MAX_CHUNK, (max_bytes - used) // average // 2))
    more = max_rows is not None and len(rows) > max_rows
    return Fetched(columns, rows[:max_rows] if more else rows, more)


# Generated text that DECLARE can take: a query (after comments and parentheses).
_QUERY_START = re.compile(
    r"^\s*(?:(?:--[^\n]*(?:\n|$)|/\*.*?\*/)\s*)*(?:\(\s*)*(?:SELECT|WITH|VALUES|TABLE)\b",
    re.IGNORECASE | re.DOTALL,
)
DECLARE_PREFIX = "rsql_sql_ai_cursor_"
_CURSOR_IDS = itertools.count(1)


class _Declared:
    """A cursor declared by hand (``DECLARE``), read with ``FETCH FORWARD``: what a driver's own
    server-side cursor does, for the driver that will not make one here."""

    def __init__(self, cur: Any, name: str) -> None:
        self.cur, self.name = cur, name
        self.description = None  # known after the first FETCH, as with psycopg2's own

    def fetchmany(self, n: int) -> list[Any]:
        self.cur.execute(f'FETCH FORWARD {int(n)} FROM "{self.name}"')
        self.description = self.cur.description
        rows: list[Any] = self.cur.fetchall()
        return rows

    def close(self) -> None:
        self.cur.close()


def _driver(raw: Any) -> str:
    mod = type(raw).__module__
    if mod.startswith("psycopg2"):
        return "psycopg2"
    if mod == "psycopg" or mod.startswith("psycopg."):
        return "psycopg"
    return ""


def in_transaction(raw: Any) -> bool:
    """Whether a psycopg (3 or 2) connection is inside a transaction (not idle)."""
    info = getattr(raw, "info", None)
    status = getattr(info, "transaction_status", None)  # psycopg 3
    if status is None and hasattr(raw, "get_transaction_status"):  # psycopg2
        status = raw.get_transaction_status()
    return status is not None and int(status) != 0  # 0: idle, outside a transaction


def postgres_fetch(
    raw: Any,
    sql: str,
    *,
    max_rows: int | None,
    max_bytes: int | None,
    deadline: float | None,
    timeout_s: float | None,
    generated: bool,
) -> Fetched:
    """Run `sql` on a raw psycopg connection, inside the transaction the caller opened.

    `generated`: a model's statement. A query then runs as a server-side cursor, and psycopg 3
    sends anything else with the extended protocol, which refuses more than one statement.
    """
    driver = _driver(raw)
    query = generated and bool(_QUERY_START.match(sql)) and in_transaction(raw)  # DECLARE needs one
    # the driver's own server-side cursor; psycopg2 refuses one in autocommit mode (JupySQL's
    # connections), even inside the transaction we began, so there we declare it ourselves
    named = query and (driver == "psycopg" or (driver == "psycopg2" and not raw.autocommit))
    name = f"{DECLARE_PREFIX}{next(_CURSOR_IDS)}"
    cur = raw.cursor(name=name) if named else raw.cursor()
    try:
        if query and not named:
            cur.execute(f'DECLARE "{name}" CURSOR WITHOUT HOLD FOR {sql}')
            cur = _Declared(cur, name)
        elif generated and driver == "psycopg" and not named:
            cur.execute(sql, prepare=True)
        else:
            cur.execute(sql)
        return fetch_bounded(cur, max_rows, max_bytes, deadline, timeout_s)
    finally:
        try:
            cur.close()
        except Exception:  # the transaction failed: the caller rolls it back, cursor and all
            pass
