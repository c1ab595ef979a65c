"""What a generated statement may do and bring back: the settings both walls (guard and
database) read (:class:`SqlPolicy`), and its result fetched within bounds of rows, bytes and
time (:func:`fetch_bounded`).

``max_rows`` alone does not bound memory: 1,000 rows of 445 kB are 445 MB, and psycopg's plain
cursor holds the whole result before the first fetch. So rows come in chunks sized to what is
left of a byte bound (``SqlPolicy.max_result_bytes``), and fetching stops, saying so, when the
bound is reached. PostgreSQL results of generated queries come through a server-side cursor
(:func:`rsql_sql.databases.postgres.postgres_fetch`), so the server keeps what is not
fetched.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import QueryTimeout

__all__ = [
    "DEFAULT_MAX_RESULT_BYTES",
    "KERNEL_ROLE_SETTING",
    "Fetched",
    "SqlPolicy",
    "fetch_bounded",
    "row_bytes",
]

DEFAULT_MAX_RESULT_BYTES = 50 * 1024 * 1024
_MAX_CHUNK = 1024
# Under a byte bound the first fetch is one row: a driver holds a whole fetch before its size
# can be checked, and one row may be large. Later fetches are sized from the rows seen.
_FIRST_CHUNK = 1

# how a kernel's user sets the PostgreSQL role (the default of SqlPolicy.role_setting)
KERNEL_ROLE_SETTING = "%config SqlAIMagics.postgres_role = '<role>'"


@dataclass(frozen=True)
class SqlPolicy:
    """``allowed_functions``: names added to the databases' allowlists (``name`` for every
    database, ``dialect:name`` for one; lower-case, stripped); ``postgres_role``: a role without
    superuser rights that PostgreSQL queries run as (``SET LOCAL ROLE``), or None;
    ``max_result_bytes``: fetching a result stops at about this many bytes of rows (0 or None:
    no byte bound); ``role_setting``: how a user of this front end sets ``postgres_role``, as
    the warning about a superuser connection tells them (a magic's setting in a kernel, an
    option on a command line)."""

    allowed_functions: frozenset[str] = field(default_factory=frozenset)
    postgres_role: str | None = None
    max_result_bytes: int | None = DEFAULT_MAX_RESULT_BYTES
    role_setting: str = KERNEL_ROLE_SETTING

    @classmethod
    def make(
        cls,
        allowed_functions: Iterable[str] = (),
        postgres_role: str | None = None,
        max_result_bytes: int | None = DEFAULT_MAX_RESULT_BYTES,
        *,
        role_setting: str = KERNEL_ROLE_SETTING,
    ) -> SqlPolicy:
        return cls(
            frozenset(n.strip().lower() for n in allowed_functions if n and n.strip()),
            (postgres_role or "").strip() or None,
            max_result_bytes if max_result_bytes and max_result_bytes > 0 else None,
            role_setting,
        )


# -- a result fetched within its bounds


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
