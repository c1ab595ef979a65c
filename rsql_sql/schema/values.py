"""Values that point at columns: "dog" finds ``pets.PetType``, "Lyon" ``customers.city``.

Three reads, all only when the context policy allows value statistics, never of a redacted
column, inside the walls generated SQL runs in, bounded in time and cached per connection:

- the distinct values of short text columns (categorical ones: at most 50 in the first rows);
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

import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import QueryTimeout
from ..policy import SqlPolicy
from .backends import as_db
from .model import Schema, ValuesPolicy
from .rank import rank
from .words import name_words, question_literals

_Values = dict[tuple[str, str], dict[str, tuple[str, ...]]]
_Ranges = dict[tuple[str, str], dict[str, tuple[str, str]]]

__all__ = ["capture_values", "categorical_values"]


CACHE_TTL_S = 300.0  # values are read again after this long: they only steer the ranking
# key -> (when, values, ranges, the connection object): the object is held so that its id, part
# of the key, cannot be reused by another connection while the entry lives
_CACHE: dict[tuple[Any, ...], tuple[float, _Values, _Ranges, Any]] = {}
_CACHE_MAX = 8
VALUES_SHARE = 0.75  # of capture_values' time for the values, the rest for the date ranges
BATCH = 20  # columns per query: one round trip per column costs more than reading them

# The probe: a question's literals looked up in the text columns of its best tables.
PROBE_TABLES = 15  # the best-ranked tables whose text columns are probed
PROBE_PAIRS = 240  # (column, literal) lookups per question at most
PROBE_GROUP = 24  # lookups per query
PROBE_TIMEOUT_S = 0.4  # the whole probe; what it did not reach is tried on the next question
_PROBE_CACHE_MAX = 20000  # remembered lookups per connection
# key -> (when, connection object, {(db, table, column, literal lower): value or None})
_PROBES_LOCK = threading.Lock()
_PROBES: dict[tuple[Any, ...], tuple[float, Any, dict[tuple[str, str, str, str], str | None]]] = {}

_TEXT = re.compile(r"char|text|string|varchar|enum|clob|name|citext", re.I)
_DATE = re.compile(r"date|timestamp", re.I)
_INTEGER = re.compile(r"int|numeric|decimal|number", re.I)
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_YEAR = re.compile(r"[12][0-9]{3}")


def _is_text(type_: str) -> bool:
    # SQLite columns may have no declared type: their values decide (categorical_values)
    return not type_ or bool(_TEXT.search(type_))


def _is_ranged(type_: str, column: str) -> bool:
    """Dates and timestamps, and integer columns named like a year ("fiscal_year", "yr")."""
    if _DATE.search(type_ or ""):
        return True
    return bool(_INTEGER.search(type_ or "")) and "year" in name_words(column)


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


def schema_shape(schema: Schema) -> int:
    """A hash of every table's and column's name, part of the values' cache key. Kept on the
    schema while its table list is the same: hashing 10,000 names costs milliseconds, and
    ``%%sql_ai`` asks for it before every question."""
    fp = (id(schema.tables), len(schema.tables), sum(len(t.columns) for t in schema.tables))
    cached = schema.shape_cache
    if cached is not None and cached[0] == fp:
        return int(cached[1])
    shape = hash(tuple((t.db, t.name, tuple(c.name for c in t.columns)) for t in schema.tables))
    schema.shape_cache = (fp, shape)
    return shape


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
    question: str | None = None,
) -> _Values:
    """Read short text columns' distinct values into ``schema.values`` (and return them), and
    the ranges of date columns into ``schema.ranges``.

    `sql_policy`: the walls generated SQL runs inside (``SqlAIMagics``' PostgreSQL role,
    allowlists); these queries run inside them too (the default walls without one), so values
    come only from what generated SQL could read.

    `policy`: a :class:`rsql_common.context_policy.ContextPolicy`; None, or one without
    ``value_stats``, reads nothing. Columns the policy redacts are not read. Stops at
    `timeout_s` (the columns read so far keep their values); reads the first `sample_rows`
    rows of each column, so rare values may be missed. Cached per connection and catalog for
    ``CACHE_TTL_S``: a cell after another does not read them again.

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

    now = time.monotonic()
    hit = _CACHE.get(key)
    if (
        hit is not None
        and now - hit[0] < CACHE_TTL_S
        and (isinstance(target, str) or hit[3] is target)
    ):
        # the cached objects themselves: the same dict keeps the schema's index valid
        schema.values, schema.ranges = hit[1], hit[2]
    else:
        _capture(db, schema, policy, read, now, timeout_s, sample_rows, max_values, max_len)
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.pop(min(_CACHE, key=lambda k: _CACHE[k][0]))
        _CACHE[key] = (now, schema.values, schema.ranges, target)
    if question:
        _probe(db, schema, question, policy, read, key, target)
    return schema.values


def _capture(
    db: Any,
    schema: Schema,
    policy: ValuesPolicy,
    read: Callable[[str, float], list[tuple[Any, ...]]],
    start_s: float,
    timeout_s: float,
    sample_rows: int,
    max_values: int,
    max_len: int,
) -> None:
    q = db.engine.quote
    # tables only: reading a view runs its definition, which may read files or the network
    # (a DuckDB view over read_csv('https://...')) or call functions of the database's
    tables = [t for t in schema.tables if t.kind == "table"]
    todo = [
        (t.db, t.name, c.name)
        for t in tables
        for c in t.columns
        if _is_text(c.type) and not policy.redacts(c.name)
    ]
    ranged = [
        (t.db, t.name, c.name)
        for t in tables
        for c in t.columns
        if _is_ranged(c.type, c.name) and not policy.redacts(c.name)
    ]
    # a share of the time is left for the ranges: on a large warehouse the values alone
    # would take all of it
    deadline = start_s + timeout_s * VALUES_SHARE
    # One query per batch of columns: DISTINCT over each column's first rows, at most one
    # value more than we keep (enough to tell a column is not categorical).
    for start in range(0, len(todo), BATCH):
        batch = todo[start : start + BATCH]
        parts = [
            # cut to one character past max_len in the database: a column of long texts
            # crosses the wire as short prefixes, still long enough to be told apart as text
            f"SELECT {k} AS k, v FROM (SELECT DISTINCT substr(CAST(c AS VARCHAR), 1, {int(max_len) + 1}) AS v FROM "
            f"(SELECT {q(col)} AS c FROM {q(dbn)}.{q(tname)} LIMIT {int(sample_rows)}) AS r "
            f"WHERE c IS NOT NULL LIMIT {int(max_values) + 1}) AS d{k}"
            for k, (dbn, tname, col) in enumerate(batch)
        ]
        rows = _read_parts(read, parts, deadline)
        if rows is None:
            break
        by_col: dict[int, list[Any]] = {}
        for k, v in rows:
            by_col.setdefault(int(k), []).append(v)
        for k, vals in by_col.items():
            dbn, tname, col = batch[k]
            if all(isinstance(v, str) and _ISO_DATE.fullmatch(v[:10]) for v in vals) or (
                "year" in name_words(col) and all(_YEAR.fullmatch(str(v)) for v in vals)
            ):
                # dates (and years) kept as text or untyped (SQLite), however few: a range
                # says more than a list
                ranged.append((dbn, tname, col))
                continue
            found = categorical_values(vals, max_values=max_values, max_len=max_len)
            if found:
                schema.values.setdefault((dbn, tname), {})[col] = found
    # Ranges: min and max over the whole column (a year outside the first rows counts too).
    deadline = start_s + timeout_s
    for start in range(0, len(ranged), BATCH):
        batch = ranged[start : start + BATCH]
        parts = [
            f"SELECT {k} AS k, substr(CAST(min({q(col)}) AS VARCHAR), 1, 32) AS lo, "
            f"substr(CAST(max({q(col)}) AS VARCHAR), 1, 32) AS hi FROM {q(dbn)}.{q(tname)}"
            for k, (dbn, tname, col) in enumerate(batch)
        ]
        rows = _read_parts(read, parts, deadline)
        if rows is None:
            break
        for k, lo, hi in rows:
            if (
                isinstance(lo, str)
                and isinstance(hi, str)
                and lo[:4].isdigit()
                and hi[:4].isdigit()
            ):
                dbn, tname, col = batch[int(k)]
                schema.ranges.setdefault((dbn, tname), {})[col] = (lo, hi)


def _read_parts(
    read: Callable[[str, float], list[tuple[Any, ...]]], parts: list[str], deadline: float
) -> list[tuple[Any, ...]] | None:
    """The rows of ``UNION ALL`` of `parts`; when that fails (a view that fails, a permission,
    a type that cannot be cast, a table name the walls refuse, a time-out), each half on its
    own, down to the bad part, which is skipped. One bad column in a batch of 20 then costs
    about 9 queries, not 21. None: no time left before the first query."""
    left = deadline - time.monotonic()
    if left <= 0:
        return None
    try:
        return read(" UNION ALL ".join(parts), min(left, 2.0 if len(parts) > 1 else 1.0))
    except Exception:  # (a time-out too: one slow table must not cost the batch's others)
        if len(parts) == 1:
            return []
        rows: list[tuple[Any, ...]] = []
        mid = len(parts) // 2
        for half in (parts[:mid], parts[mid:]):
            got = _read_parts(read, half, deadline)
            if got is None:
                break
            rows += got
        return rows


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
    # exactly "2012" is rare, and the lookups cost the text columns of 15 tables each)
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
    lowers = [lit.lower() for lit in literals]
    hits: dict[str, list[tuple[str, str, str, str]]] = {}
    # categorical columns are skipped: their values are known (rank matches them)
    pairs: list[tuple[str, str, str, str]] = []
    for t in rank(schema, question, policy=policy).tables[:PROBE_TABLES]:
        if t.kind != "table":
            continue
        known_cols = {
            **schema.values.get((t.db, t.name), {}),
            **schema.ranges.get((t.db, t.name), {}),
        }
        for c in t.columns:
            if _is_text(c.type) and c.name not in known_cols and not policy.redacts(c.name):
                pairs += [(t.db, t.name, c.name, low) for low in lowers]
    pairs = pairs[:PROBE_PAIRS]
    todo = [p for p in pairs if p not in known]
    q = db.engine.quote
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
