"""The schema as compact DDL in the target dialect, cut to what fits a character budget.

``render_ddl`` writes one ``CREATE TABLE`` line per table; ``describe_schema`` puts the tables
most relevant to the question first (:mod:`.rank`) and names those that do not fit;
``describe_connection`` captures and describes in one call.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from ..policy import SqlPolicy
from .backends import capture_schema
from .index import SchemaIndex, index_of
from .model import MAX_TABLES, Schema, Table
from .rank import rank
from .values import ValuesPolicy, capture_values

__all__ = ["describe_connection", "describe_schema", "render_ddl"]


@lru_cache(maxsize=4096)
def _type_sql(raw: str, source: str, target: str) -> str:
    if not raw:
        return ""
    from sqlglot import exp

    # Through sqlglot even within one dialect: "character varying(20)" becomes "VARCHAR(20)".

    try:
        return exp.DataType.build(raw, dialect=source, udt=True).sql(target)
    except Exception:
        return raw


# Words reserved in most SQL dialects: a column named like one must be quoted in the DDL we
# show, or the model copies it unquoted and the query fails to parse.
_RESERVED = frozenset(
    """all and any array as asc between both by case cast check collate column constraint create
    cross current_date current_time current_timestamp current_user default desc distinct do else
    end except exists false fetch for foreign from full grant group having in inner intersect
    into is join lateral leading left like limit natural not null offset on only or order outer
    over primary references right select session_user some table then to trailing true union
    unique user using when where window with""".split()
)


@lru_cache(maxsize=16384)
def _ident(name: str, dialect: str) -> str:
    from sqlglot import exp
    from sqlglot.dialects.dialect import Dialect

    d = Dialect.get_or_raise(dialect)
    reserved = _RESERVED | {w.lower() for w in getattr(d.generator_class, "RESERVED_KEYWORDS", ())}
    # Quote when the name is not a plain word, would change case, or is a reserved word.
    safe = (
        re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)
        and not d.case_sensitive(name)
        and name.lower() not in reserved
    )
    return exp.to_identifier(name).sql(dialect, identify=not safe)


def _table_name(t: Table, schema: Schema, dialect: str) -> str:
    name = _ident(t.name, dialect)
    if t.db != schema.default_db:
        return f"{_ident(t.db, dialect)}.{name}"
    return name


def render_ddl(t: Table, schema: Schema, dialect: str | None = None) -> str:
    """One compact ``CREATE TABLE`` (or ``CREATE VIEW``-marked) line for a table."""
    d = dialect or schema.dialect
    pk = t.primary_key
    single_fk = {fk.columns[0]: fk for fk in t.foreign_keys if len(fk.columns) == 1}
    parts = []
    for c in t.columns:
        s = f"{_ident(c.name, d)} {_type_sql(c.type, schema.dialect, d)}".rstrip()
        if len(pk) == 1 and c.name == pk[0]:
            s += " PRIMARY KEY"
        elif not c.nullable and t.kind == "table":
            s += " NOT NULL"
        fk = single_fk.get(c.name)
        if fk is not None:
            ref = _ident(fk.ref_table, d)
            if fk.ref_db and fk.ref_db != schema.default_db:
                ref = f"{_ident(fk.ref_db, d)}.{ref}"
            s += f" REFERENCES {ref}"
            if fk.ref_columns:
                s += f"({', '.join(_ident(x, d) for x in fk.ref_columns)})"
        parts.append(s)
    if len(pk) > 1:
        parts.append(f"PRIMARY KEY ({', '.join(_ident(x, d) for x in pk)})")
    for fk in t.foreign_keys:
        if len(fk.columns) > 1:
            ref = _ident(fk.ref_table, d)
            parts.append(
                f"FOREIGN KEY ({', '.join(_ident(x, d) for x in fk.columns)}) REFERENCES {ref}"
                f"({', '.join(_ident(x, d) for x in fk.ref_columns)})"
            )
    if t.columns_truncated:
        parts.append(f"/* {t.columns_truncated} more columns */")
    suffix = {"view": "  -- a view", "dataframe": "  -- a pandas DataFrame"}.get(t.kind, "")
    return f"CREATE TABLE {_table_name(t, schema, d)} ({', '.join(parts)});{suffix}"


def describe_schema(
    schema: Schema,
    question: str | None = None,
    tables: list[str] | None = None,
    budget_chars: int = 6000,
    dialect: str | None = None,
    *,
    policy: ValuesPolicy | None = None,
) -> str:
    """Compact DDL of `schema` within `budget_chars` (see :func:`describe_connection`).

    `policy`: the context policy (``rsql_magic.privacy.ContextPolicy``); only one that allows
    value statistics lets the values captured by ``capture_values`` steer the ranking.
    """
    d = dialect or schema.dialect
    ranking = rank(schema, question, tables, policy=policy)
    order = ranking.tables
    idx = index_of(schema)
    n = len(order)
    if tables:  # --tables: only the pinned ones (their FK targets are still named in DDL)
        pinned_l = {p.lower() for p in tables}
        order = [
            t for t in order if t.name.lower() in pinned_l or f"{t.db}.{t.name}".lower() in pinned_l
        ]
    header = f"-- {d} schema: {n} table{'s' if n != 1 else ''}"
    lines: list[str] = []
    used = len(header) + 1
    shown = 0
    room = budget_chars - 80
    rest: list[Table] = []
    smallest = min((len(t.name) + 20 for t in order), default=0)
    for t in order:
        if used + smallest + 1 > room and shown:
            rest.append(t)  # nothing more can fit: skip rendering the rest
            continue
        ddl = _cached_ddl(idx, t, schema, d)
        if (
            not tables
            and len(t.columns) > WIDE_COLUMNS
            and not (shown == 0 and len(ddl) <= budget_chars * FIRST_WIDE_SHARE)
        ):
            ddl = _elided(t, schema, d, ranking.matched.get(id(t), set()), idx, ddl)
        if shown == 0 and used + len(ddl) + 1 > room:
            ddl = _narrowed(t, schema, d, room - used)  # one very wide table
        if used + len(ddl) + 1 <= room or shown == 0:
            lines.append(ddl)
            used += len(ddl) + 1
            shown += 1
        else:
            rest.append(t)
    if shown < n:
        header += f", {shown} shown" + (" (most relevant to the question)" if question else "")
    if schema.truncated:
        header += f"; listing stopped at {MAX_TABLES} tables"
    if rest:
        # Name the tables we could not show, as many as fit: the model can ask about them.
        names: list[str] = []
        body = sum(len(x) + 1 for x in lines)
        room = (
            budget_chars
            - len(header)
            - body
            - len("-- other tables: ")
            - len(f" (+{len(rest)} more)")
        )
        for t in rest:
            nm = _table_name(t, schema, d)
            if room - len(nm) - 2 < 0:
                break
            names.append(nm)
            room -= len(nm) + 2
        more = len(rest) - len(names)
        tail = f"-- other tables: {', '.join(names)}" if names else "-- other tables:"
        if more:
            tail += f" (+{more} more)"
        lines.append(tail)
    return "\n".join([header, *lines])[:budget_chars]


# A table wider than this shows its keys, the columns the question matched and its first few
# columns, and a "/* N more columns */" marker: wide warehouses then fit more tables. The best
# match keeps all its columns when they take at most FIRST_WIDE_SHARE of the budget.
WIDE_COLUMNS = 20
KEEP_LEADING = 4
FIRST_WIDE_SHARE = 0.35


def _cached_ddl(idx: SchemaIndex, t: Table, schema: Schema, dialect: str) -> str:
    key = (id(t), dialect)
    ddl = idx.ddl.get(key)
    if ddl is None:
        ddl = idx.ddl[key] = render_ddl(t, schema, dialect)
    return ddl


def _elided(
    t: Table, schema: Schema, dialect: str, matched: set[str], idx: SchemaIndex, full: str
) -> str:
    """`t` with only its keys, join columns, matched columns and first few columns."""
    pos = idx.position.get(id(t))
    keep = set(matched) | set(t.primary_key)
    if pos is not None:
        keep |= idx.infos[pos].key_columns
    for fk in t.foreign_keys:
        keep.update(fk.columns)
    cols = [c for k, c in enumerate(t.columns) if k < KEEP_LEADING or c.name in keep]
    if len(cols) >= len(t.columns):
        return full
    names = {c.name for c in cols}
    cut = Table(
        t.name,
        t.db,
        cols,
        primary_key=t.primary_key if all(c in names for c in t.primary_key) else (),
        foreign_keys=[f for f in t.foreign_keys if all(c in names for c in f.columns)],
        kind=t.kind,
        columns_truncated=len(t.columns) - len(cols) + t.columns_truncated,
    )
    return render_ddl(cut, schema, dialect)


def _narrowed(t: Table, schema: Schema, dialect: str, room: int) -> str:
    """The DDL of `t` with as many leading columns as fit in `room` characters."""
    lo, hi = 0, len(t.columns)
    best = render_ddl(
        Table(t.name, t.db, [], kind=t.kind, columns_truncated=len(t.columns)), schema, dialect
    )
    while lo < hi:  # binary search on the number of columns kept
        k = (lo + hi + 1) // 2
        cut = Table(
            t.name,
            t.db,
            t.columns[:k],
            primary_key=t.primary_key
            if all(c in {x.name for x in t.columns[:k]} for c in t.primary_key)
            else (),
            foreign_keys=[
                f
                for f in t.foreign_keys
                if all(c in {x.name for x in t.columns[:k]} for c in f.columns)
            ],
            kind=t.kind,
            columns_truncated=len(t.columns) - k + t.columns_truncated,
        )
        ddl = render_ddl(cut, schema, dialect)
        if len(ddl) <= room:
            best, lo = ddl, k
        else:
            hi = k - 1
    return best


def describe_connection(
    conn: Any,
    question: str | None = None,
    tables: list[str] | None = None,
    budget_chars: int = 6000,
    dialect: str | None = None,
    *,
    policy: ValuesPolicy | None = None,
    sql_policy: SqlPolicy | None = None,
) -> str:
    """Compact DDL of `conn`'s schema in the target dialect, cut to what fits `budget_chars`.

    `conn`: sqlite3 / DuckDB connection, SQLAlchemy Engine / Connection / URL string, a JupySQL
    connection (None = JupySQL's active one), a psycopg connection, or a dict of DataFrames.
    Tables named in `tables` come first (and only they are shown); the rest are ordered by
    relevance to `question`. Tables that do not fit are listed by name.
    `policy` (``rsql_magic.privacy.ContextPolicy``): when it allows value statistics, the
    values of short text columns are read (bounded, see :func:`capture_values`) and help pick
    the tables; the text shows no value under any policy. `sql_policy`: the walls those reads
    run in, the ones generated SQL runs in (``SqlAIMagics.postgres_role`` and the rest).
    """
    schema = capture_schema(conn)
    # reads nothing unless the policy allows values
    capture_values(conn, schema, policy=policy, sql_policy=sql_policy)
    return describe_schema(schema, question, tables, budget_chars, dialect, policy=policy)
