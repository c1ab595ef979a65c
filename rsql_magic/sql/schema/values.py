"""Distinct values of short text columns, so "dog" can find ``pets.PetType``.

Values are data: ``capture_values`` reads them only when the context policy allows value
statistics, never from a redacted column, and they serve the ranking only: the schema text
shows names, types and keys, never a value. Bounded in time (the whole capture), in rows read
per column, in values kept per column and in their length.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ..policy import SqlPolicy
from .backends import as_db
from .model import Schema

__all__ = ["capture_values", "categorical_values"]


class ValuesPolicy(Protocol):
    """What the schema code needs of a context policy (``rsql_magic.privacy.ContextPolicy``,
    which the SQL layer does not import): whether values may be used, and which columns not."""

    value_stats: bool
    redact_columns: tuple[str, ...]

    def redacts(self, column: str) -> bool: ...


CACHE_TTL_S = 300.0  # values are read again after this long: they only steer the ranking
# key -> (when, values, the connection object): the object is held so that its id, part of
# the key, cannot be reused by another connection while the entry lives
_CACHE: dict[
    tuple[Any, ...], tuple[float, dict[tuple[str, str], dict[str, tuple[str, ...]]], Any]
] = {}
_CACHE_MAX = 8
BATCH = 20  # columns per query: one round trip per column costs more than reading them

_TEXT = re.compile(r"char|text|string|varchar|enum|clob|name|citext", re.I)


def _is_text(type_: str) -> bool:
    # SQLite columns may have no declared type: their values decide (categorical_values)
    return not type_ or bool(_TEXT.search(type_))


def categorical_values(
    values: Iterable[Any], *, max_values: int = 50, max_len: int = 40
) -> tuple[str, ...] | None:
    """The distinct values of one column if it looks categorical, else None.

    Categorical: at most `max_values` distinct non-empty strings, none longer than `max_len`,
    not all numbers. Free text, identifiers and numbers are not what a question names.
    """
    seen: dict[str, None] = {}
    for v in values:
        if v is None:
            continue
        s = str(v).strip()
        if len(s) > max_len:
            return None
        if s and s not in seen:
            seen[s] = None
            if len(seen) > max_values:
                return None
    if not seen or all(s.replace(".", "", 1).lstrip("-").isdigit() for s in seen):
        return None
    return tuple(seen)


def _quoter(dialect: str) -> Callable[[str], str]:
    if dialect in ("sqlite", "duckdb", "postgres"):
        return lambda n: '"' + n.replace('"', '""') + '"'
    from sqlglot import exp

    return lambda n: exp.Identifier(this=n).sql(dialect, identify=True)


def capture_values(
    conn: Any,
    schema: Schema,
    *,
    policy: ValuesPolicy | None = None,
    timeout_s: float = 3.0,
    sample_rows: int = 1000,
    max_values: int = 50,
    max_len: int = 40,
    sql_policy: SqlPolicy | None = None,
) -> dict[tuple[str, str], dict[str, tuple[str, ...]]]:
    """Read short text columns' distinct values into ``schema.values`` (and return them).

    `sql_policy`: the walls generated SQL runs inside (``SqlAIMagics``' PostgreSQL role,
    allowlists); these queries run inside them too (the default walls without one), so values
    come only from what generated SQL could read.

    `policy`: a :class:`rsql_magic.privacy.ContextPolicy`; None, or one without
    ``value_stats``, reads nothing. Columns the policy redacts are not read. Stops at
    `timeout_s` (the columns read so far keep their values); reads the first `sample_rows`
    rows of each column, so rare values may be missed. Cached per connection and catalog for
    ``CACHE_TTL_S``: a cell after another does not read them again.
    """
    schema.values = {}
    if policy is None or not getattr(policy, "value_stats", False):
        return schema.values
    shape = hash(tuple((t.db, t.name, tuple(c.name for c in t.columns)) for t in schema.tables))
    # a DB wrapper is made per cell: the connection under it is what stays the same
    target = getattr(conn, "raw", None) or getattr(conn, "bind", None) or conn
    role = sql_policy.postgres_role if sql_policy is not None else None
    key = (
        target if isinstance(target, str) else id(target),
        shape,
        tuple(policy.redact_columns),
        role,
    )
    now = time.monotonic()
    hit = _CACHE.get(key)
    if (
        hit is not None
        and now - hit[0] < CACHE_TTL_S
        and (isinstance(target, str) or hit[2] is target)
    ):
        schema.values = dict(hit[1])
        return schema.values
    db = as_db(conn)
    q = _quoter(db.dialect)

    walls = sql_policy if sql_policy is not None else SqlPolicy()

    def read(sql: str, timeout: float) -> list[tuple[Any, ...]]:
        # never outside the walls generated SQL runs in (#35): the same read-only transaction,
        # authorizer and PostgreSQL role, whoever asks for the values
        return db.query(sql, timeout_s=timeout, read_only=True, policy=walls).rows

    deadline = now + timeout_s
    # tables only: reading a view runs its definition, which may read files or the network
    # (a DuckDB view over read_csv('https://...')) or call functions of the database's
    todo = [
        (t.db, t.name, c.name)
        for t in schema.tables
        if t.kind == "table"
        for c in t.columns
        if _is_text(c.type) and not policy.redacts(c.name)
    ]
    # One query per batch of columns: DISTINCT over each column's first rows, at most one
    # value more than we keep (enough to tell a column is not categorical).
    for start in range(0, len(todo), BATCH):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        batch = todo[start : start + BATCH]
        parts = [
            # cut to one character past max_len in the database: a column of long texts
            # crosses the wire as short prefixes, still long enough to be told apart as text
            f"SELECT {k} AS k, v FROM (SELECT DISTINCT substr(CAST(c AS VARCHAR), 1, {int(max_len) + 1}) AS v FROM "
            f"(SELECT {q(col)} AS c FROM {q(dbn)}.{q(tname)} LIMIT {int(sample_rows)}) AS r "
            f"WHERE c IS NOT NULL LIMIT {int(max_values) + 1}) AS d{k}"
            for k, (dbn, tname, col) in enumerate(batch)
        ]
        try:
            rows = read(" UNION ALL ".join(parts), min(left, 2.0))
        except Exception:  # a view that fails, a permission, a type that cannot be cast
            rows = []
            for k, part in enumerate(parts):  # then column by column, skipping the bad one
                if time.monotonic() >= deadline:
                    break
                try:
                    rows += [(k, v) for _, v in read(part, 1.0)]
                except Exception:
                    continue
        by_col: dict[int, list[Any]] = {}
        for k, v in rows:
            by_col.setdefault(int(k), []).append(v)
        for k, vals in by_col.items():
            found = categorical_values(vals, max_values=max_values, max_len=max_len)
            if found:
                dbn, tname, col = batch[k]
                schema.values.setdefault((dbn, tname), {})[col] = found
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.pop(min(_CACHE, key=lambda k: _CACHE[k][0]))
    _CACHE[key] = (now, dict(schema.values), target)
    return schema.values
