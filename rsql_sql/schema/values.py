"""Values that point at columns: "dog" finds ``pets.PetType``, "Lyon" ``customers.city``.

Three reads, all only when the context policy allows value statistics, never of a redacted
column, inside the walls generated SQL runs in, each query bounded in time; the first two are
the value index (:mod:`.value_index`: read whole once, kept in memory and on disk):

- the distinct values of short text columns (categorical ones: at most 150 in the first
  rows: a lookup table of a hundred names is one);
- the range (min, max) of date and timestamp columns, of integer columns named like a year,
  and of text or untyped columns whose values read are ISO dates (or years, named like one);
- at question time, a probe: the question's literals looked up by equality in the text columns
  of the tables ranking best for it (a city column of 5,000 names is not categorical).

They rank tables and pick the columns of wide tables (:mod:`.rank`, :mod:`.render`); a value
equal to a literal of the question, and the range of every date and year column shown, are
shown in the schema text as a comment on their column (cut, made a SQL string literal: values
are hostile text).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import astuple
from typing import Any

from ..catalog import Schema, ValuesPolicy
from ..errors import QueryTimeout
from ..policy import SqlPolicy
from .backends import as_db
from .rank import rank
from .value_index import BuildParams, Column, Read, Values, categorical_values, value_index
from .words import name_words, question_literals

__all__ = ["capture_values", "categorical_values"]


# probed lookups are forgotten after this long: a value may come or go
CACHE_TTL_S = 300.0
_CACHE_MAX = 8

# The probe: a question's literals looked up in the text columns of its best tables.
PROBE_TABLES = 10  # the best-ranked tables whose text columns are probed
PROBE_PAIRS = 240  # (column, literal) lookups per question at most
PROBE_GROUP = 60  # lookups per query: each query pays the walls' check once
PROBE_TIMEOUT_S = 0.4  # the whole probe; what it did not reach is tried on the next question
_PROBE_CACHE_MAX = 20000  # remembered lookups per connection
# key -> (when, connection object, {(db, table, column, literal lower): value or None})
_PROBES_LOCK = threading.Lock()
_PROBES: dict[tuple[Any, ...], tuple[float, Any, dict[tuple[str, str, str, str], str | None]]] = {}

_TEXT = re.compile(r"char|text|string|varchar|enum|clob|name|citext", re.I)
_DATE = re.compile(r"date|timestamp", re.I)
_INTEGER = re.compile(r"int|numeric|decimal|number", re.I)


def is_text_type(type_: str) -> bool:
    """Whether a column of this declared type holds text (what values are read from)."""
    # SQLite columns may have no declared type: their values decide (categorical_values)
    return not type_ or bool(_TEXT.search(type_))


def _is_ranged(type_: str, column: str) -> bool:
    """Dates and timestamps, and integer columns named like a year ("fiscal_year", "yr")."""
    if _DATE.search(type_ or ""):
        return True
    return bool(_INTEGER.search(type_ or "")) and "year" in name_words(column)


def schema_shape(schema: Schema) -> str:
    """A digest of every table's and column's name and type: part of the value index's key,
    on disk too (so not Python's ``hash``, which changes between processes). Kept on the
    schema while its table list is the same: hashing 10,000 names costs milliseconds, and
    ``%%sql_ai`` asks for it before every question."""
    fp = (id(schema.tables), len(schema.tables), sum(len(t.columns) for t in schema.tables))
    cached = schema.shape_cache
    if cached is not None and cached[0] == fp:
        return str(cached[1])
    h = hashlib.blake2b(digest_size=16)
    for t in schema.tables:
        h.update(json.dumps([t.db, t.name, t.kind, [(c.name, c.type) for c in t.columns]]).encode())
    shape = h.hexdigest()
    schema.shape_cache = (fp, shape)
    return shape


def capture_values(
    conn: Any,
    schema: Schema,
    *,
    policy: ValuesPolicy | None = None,
    timeout_s: float = 3.0,
    sample_rows: int = 1000,
    max_values: int = 150,
    max_len: int = 40,
    sql_policy: SqlPolicy | None = None,
    question: str | None = None,
) -> Values:
    """Read short text columns' distinct values into ``schema.values`` (and return them), and
    the ranges of date columns into ``schema.ranges``.

    `sql_policy`: the walls generated SQL runs inside (``SqlAIMagics``' PostgreSQL role,
    allowlists); these queries run inside them too (the default walls without one), so values
    come only from what generated SQL could read.

    `policy`: a :class:`rsql_common.context_policy.ContextPolicy`; None, or one without
    ``value_stats``, reads nothing. Columns the policy redacts are not read. Reads the first
    `sample_rows` rows of each column, so rare values may be missed.

    The values come from the connection's value index (:mod:`.value_index`): read whole once
    per database, schema shape and policy, kept in memory and on disk. This call waits for it
    up to `timeout_s`; what is not read by then is read in the background (or by the next
    calls) and the call gets what was read so far (``schema.value_index`` says how much).

    `question`: its literals ("Lyon", 'New York', 2012, see
    :func:`~rsql_sql.schema.words.question_literals`) are also looked up, by equality,
    in the text columns of the tables that rank best for it (``PROBE_TABLES``), within
    ``PROBE_TIMEOUT_S``; what is found goes to ``schema.probes``. Each lookup is cached per
    connection, so the same literal is not looked up again.
    """
    # an empty dict stays the same object: the schema's index (keyed on it) is then kept, and
    # a schema-only policy does not rebuild it for every question
    if schema.values:
        schema.values = {}
    schema.ranges, schema.probes = {}, {}
    if policy is None or not getattr(policy, "value_stats", False):
        return schema.values
    shape = schema_shape(schema)
    # a DB wrapper is made per cell: the connection under it is what stays the same
    target = getattr(conn, "raw", None) or getattr(conn, "bind", None) or conn
    role = sql_policy.postgres_role if sql_policy is not None else None
    key = (
        target if isinstance(target, str) else id(target),
        shape,
        tuple(policy.redact_columns),
        role,
    )
    db = as_db(conn)
    walls = sql_policy if sql_policy is not None else SqlPolicy()

    def read(sql: str, timeout: float) -> list[tuple[Any, ...]]:
        # never outside the walls generated SQL runs in (#35): the same read-only transaction,
        # authorizer and PostgreSQL role, whoever asks for the values
        return db.query(sql, timeout_s=timeout, read_only=True, policy=walls).rows

    def columns() -> tuple[list[Column], list[Column]]:
        # tables only: reading a view runs its definition, which may read files or the
        # network (a DuckDB view over read_csv('https://...')) or call the database's functions
        tables = [t for t in schema.tables if t.kind == "table"]
        text = [
            (t.db, t.name, c.name)
            for t in tables
            for c in t.columns
            if is_text_type(c.type) and not policy.redacts(c.name)
        ]
        ranged = [
            (t.db, t.name, c.name)
            for t in tables
            for c in t.columns
            if _is_ranged(c.type, c.name) and not policy.redacts(c.name)
        ]
        return text, ranged

    params = BuildParams(sample_rows, max_values, max_len)

    def thread_read() -> tuple[Read, Callable[[], None]] | None:
        other = db.for_thread()
        if other is None:
            return None

        def read_there(sql: str, timeout: float) -> list[tuple[Any, ...]]:
            return other.query(sql, timeout_s=timeout, read_only=True, policy=walls).rows

        def close() -> None:
            raw = getattr(other, "raw", None)
            if raw is not None and other is not db:
                raw.close()

        return read_there, close

    index = value_index(
        key,
        target,
        db,
        read,
        thread_read,
        columns,
        (shape, sorted(policy.redact_columns), role, list(astuple(params))),
        params,
        timeout_s,
    )
    schema.values, schema.ranges = index.values, index.ranges
    schema.value_index = index
    if question:
        _probe(db, schema, question, policy, read, key, target)
    return schema.values


def _probe(
    db: Any,
    schema: Schema,
    question: str,
    policy: ValuesPolicy,
    read: Callable[[str, float], list[tuple[Any, ...]]],
    key: tuple[Any, ...],
    target: Any,
) -> None:
    """Look the question's literals up in the text columns of its best tables (see
    :func:`capture_values`); found values go to ``schema.probes``."""
    # years are not looked up: a date column's range answers for them (a text column holding
    # exactly "2012" is rare, and the lookups cost the text columns of 10 tables each)
    literals = [x for x in question_literals(question) if not x.isdigit()]
    if not literals:
        return
    from sqlglot import exp

    now = time.monotonic()
    with _PROBES_LOCK:  # the MCP server's workers share it
        entry = _PROBES.get(key)
        if (
            entry is None
            or now - entry[0] >= CACHE_TTL_S
            or not (isinstance(target, str) or entry[1] is target)
        ):
            if len(_PROBES) >= _CACHE_MAX and key not in _PROBES:
                _PROBES.pop(min(_PROBES, key=lambda k: _PROBES[k][0]))
            entry = _PROBES[key] = (now, target, {})
    known = entry[2]
    best = rank(schema, question, policy=policy).tables[:PROBE_TABLES]
    lowers = [lit.lower() for lit in literals]
    hits: dict[str, list[tuple[str, str, str, str]]] = {}
    # categorical columns are skipped: their values are known (rank matches them)
    pairs: list[tuple[str, str, str, str]] = []
    for t in best:
        if t.kind != "table":
            continue
        known_cols = {
            **schema.values.get((t.db, t.name), {}),
            **schema.ranges.get((t.db, t.name), {}),
        }
        for c in t.columns:
            if is_text_type(c.type) and c.name not in known_cols and not policy.redacts(c.name):
                pairs += [(t.db, t.name, c.name, low) for low in lowers]
    pairs = pairs[:PROBE_PAIRS]
    todo = [p for p in pairs if p not in known]
    q = db.database.quote
    by_lower = {lit.lower(): lit for lit in literals}

    def literal(s: str) -> str:
        return exp.Literal.string(s).sql(dialect=db.dialect)

    deadline = now + PROBE_TIMEOUT_S
    for start in range(0, len(todo), PROBE_GROUP):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        group = todo[start : start + PROBE_GROUP]
        parts = []
        for k, (dbn, tname, col, low) in enumerate(group):
            # the database's lower() may fold only ASCII: the literal as typed, ASCII folded
            typed = "".join(ch.lower() if ch.isascii() else ch for ch in by_lower[low])
            wanted = ", ".join(literal(x) for x in dict.fromkeys((low, typed)))
            text = f"CAST({q(col)} AS VARCHAR)"
            parts.append(
                f"SELECT {k} AS k, v FROM (SELECT substr({text}, 1, 41) AS v FROM "
                f"{q(dbn)}.{q(tname)} WHERE lower({text}) IN ({wanted}) LIMIT 1) AS p{k}"
            )
        answered: dict[int, str | None] = {}
        try:
            rows = read(" UNION ALL ".join(parts), left)
            answered = dict.fromkeys(range(len(group)))
            answered.update({int(k): v for k, v in rows})
        except QueryTimeout:
            break  # the time bound: what was not looked up is looked up next time
        except Exception:  # a table the role may not read, a type: one lookup at a time
            for k, part in enumerate(parts):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    answered[k] = next((v for _, v in read(part, left)), None)
                except QueryTimeout:
                    break
                except Exception:
                    answered[k] = None  # unreadable: nothing to find there
        for k, v in answered.items():
            known[group[k]] = v if isinstance(v, str) else None
    if len(known) > _PROBE_CACHE_MAX:
        known.clear()
    for dbn, tname, col, low in pairs:
        v = known.get((dbn, tname, col, low))
        if v is not None:
            hits.setdefault(low, []).append((dbn, tname, col, v))
    schema.probes = {low: tuple(found) for low, found in hits.items()}
