"""SQL schema capture, shared by %%sql_ai (validation) and %%ask (context).

``capture_schema(conn)`` reads tables, views, columns, types, primary and foreign keys from the
database's catalog in a few bulk queries (never one query per table), bounded in time and in
table count. ``describe_connection(conn, question)`` renders it as compact DDL in the target
dialect, cut to the tables most relevant to the question within a character budget.
``Schema.mapping()`` is a ``sqlglot.schema.MappingSchema``-compatible dict.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from rsql_magic.sql.connections import DB, SQLAlchemyDB, jupysql_current, resolve

__all__ = [
    "Column",
    "ForeignKey",
    "Schema",
    "Table",
    "capture_schema",
    "describe_connection",
    "infer_dialect",
    "render_ddl",
]

MAX_TABLES = 5000  # a capture stops listing beyond this many tables (Schema.truncated)
MAX_COLUMNS = 300  # per table


@dataclass
class Column:
    name: str
    type: str
    nullable: bool = True


@dataclass
class ForeignKey:
    columns: tuple[str, ...]
    ref_db: str | None
    ref_table: str
    ref_columns: tuple[str, ...]


@dataclass
class Table:
    name: str
    db: str  # schema namespace: "main" for SQLite/DuckDB, "public" etc. for PostgreSQL
    columns: list[Column] = field(default_factory=list)
    primary_key: tuple[str, ...] = ()
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    kind: str = "table"  # "table" or "view"
    columns_truncated: int = 0


@dataclass
class Schema:
    dialect: str
    default_db: str
    tables: list[Table] = field(default_factory=list)
    truncated: bool = False  # more than MAX_TABLES tables (or the time bound hit)
    elapsed_s: float = 0.0

    def table(self, name: str, db: str | None = None) -> Table | None:
        key = name.lower()
        want_db = (db or self.default_db).lower()
        for t in self.tables:
            if t.name.lower() == key and t.db.lower() == want_db:
                return t
        if db is None:  # an unqualified name outside the default schema, if unique
            hits = [t for t in self.tables if t.name.lower() == key]
            if len(hits) == 1:
                return hits[0]
        return None

    def mapping(self) -> dict[str, dict[str, dict[str, str]]]:
        """``{db: {table: {column: type}}}``, for ``MappingSchema(..., dialect=self.dialect)``.

        Always two levels deep (sqlglot wants one depth throughout); pass ``db=default_db``
        to qualify() so unqualified tables resolve to the default schema.
        """
        out: dict[str, dict[str, dict[str, str]]] = {}
        for t in self.tables:
            out.setdefault(t.db, {})[t.name] = {c.name: c.type or "UNKNOWN" for c in t.columns}
        return out

    def sqlglot_schema(self, dialect: str | None = None) -> Any:
        """A ``MappingSchema`` for qualify(); names compare as the dialect compares them."""
        from sqlglot.dialects.dialect import Dialect, NormalizationStrategy
        from sqlglot.schema import MappingSchema

        d = dialect or self.dialect
        # Types are the database's own spellings: only names matter for qualification, and
        # one exotic type must not make the whole schema unusable.
        plain = {
            db: {t: {c: "UNKNOWN" for c in cols} for t, cols in tables.items()}
            for db, tables in self.mapping().items()
        }
        # Catalog names are stored exactly (PostgreSQL keeps "Region" as is): normalize only
        # where the database itself ignores case.
        strategy = Dialect.get_or_raise(d).normalization_strategy
        normalize = strategy == NormalizationStrategy.CASE_INSENSITIVE
        return MappingSchema(plain, dialect=d, normalize=normalize)


# -- capture ------------------------------------------------------------------------------


def infer_dialect(conn: Any) -> str:
    """The sqlglot dialect name for a connection (``postgres``, ``sqlite``, ``duckdb`` ...)."""
    return _as_db(conn).dialect


def _as_db(conn: Any) -> DB:
    if conn is None:
        cur = jupysql_current()
        if cur is None:
            raise TypeError("no connection given and JupySQL has no active connection")
        conn = cur
    return resolve(conn)


def capture_schema(conn: Any, *, timeout_s: float = 10.0, max_tables: int = MAX_TABLES) -> Schema:
    """Read the catalog of `conn` (any kind :func:`rsql_magic.sql.connections.resolve` accepts)."""
    db = _as_db(conn)
    t0 = time.perf_counter()
    if db.dialect == "sqlite":
        schema = _capture_sqlite(db, timeout_s)
    elif db.dialect == "duckdb":
        schema = _capture_duckdb(db, timeout_s)
    elif db.dialect == "postgres":
        schema = _capture_postgres(db, timeout_s)
    elif isinstance(db, SQLAlchemyDB):
        schema = _capture_inspector(db)
    else:
        raise TypeError(f"schema capture is not supported for {db.label}")
    if db.kind == "frames":
        for t in schema.tables:
            t.kind = "dataframe"
    schema.tables.sort(key=lambda t: (t.db != schema.default_db, t.db, t.name))
    if len(schema.tables) > max_tables:
        schema.tables = schema.tables[:max_tables]
        schema.truncated = True
    for t in schema.tables:
        if len(t.columns) > MAX_COLUMNS:
            t.columns_truncated = len(t.columns) - MAX_COLUMNS
            t.columns = t.columns[:MAX_COLUMNS]
    schema.elapsed_s = time.perf_counter() - t0
    return schema


def _assemble(
    dialect: str,
    default_db: str,
    col_rows: list[tuple],
    pk_rows: list[tuple],
    fk_rows: list[tuple],
) -> Schema:
    """col_rows: (db, table, kind, column, type, nullable) in column order;
    pk_rows: (db, table, [columns]); fk_rows: (db, table, [cols], ref_db, ref_table, [ref_cols])."""
    tables: dict[tuple[str, str], Table] = {}
    for db, tname, kind, cname, ctype, nullable in col_rows:
        t = tables.get((db, tname))
        if t is None:
            t = tables[(db, tname)] = Table(tname, db, kind=kind)
        t.columns.append(Column(cname, str(ctype or ""), bool(nullable)))
    for db, tname, cols in pk_rows:
        t = tables.get((db, tname))
        if t is not None and cols:
            t.primary_key = tuple(cols)
    for db, tname, cols, rdb, rtable, rcols in fk_rows:
        t = tables.get((db, tname))
        if t is None:
            continue
        if not rcols:  # SQLite: a FK without columns points at the target's primary key
            target = tables.get((rdb or db, rtable))
            rcols = list(target.primary_key) if target else []
        t.foreign_keys.append(ForeignKey(tuple(cols), rdb, rtable, tuple(rcols)))
    return Schema(dialect, default_db, list(tables.values()))


def _capture_sqlite(db: DB, timeout_s: float) -> Schema:
    # Table-valued pragmas let one query read every table's columns (SQLite >= 3.16).
    cols = db.rows(
        'SELECT m.name, m.type, p.name, p.type, p."notnull", p.pk '
        "FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS p "
        "WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
        "ORDER BY m.name, p.cid",
        timeout_s,
    )
    fks = db.rows(
        'SELECT m.name, f.id, f.seq, f."table", f."from", f."to" '
        "FROM sqlite_master AS m JOIN pragma_foreign_key_list(m.name) AS f "
        "WHERE m.type = 'table' ORDER BY m.name, f.id, f.seq",
        timeout_s,
    )
    col_rows = []
    pks: dict[str, list[tuple[int, str]]] = {}
    for tname, kind, cname, ctype, notnull, pk in cols:
        col_rows.append(("main", tname, kind, cname, ctype, not notnull and not pk))
        if pk:
            pks.setdefault(tname, []).append((pk, cname))
    pk_rows = [("main", t, [c for _, c in sorted(v)]) for t, v in pks.items()]
    grouped: dict[tuple[str, int], list[tuple]] = {}
    for tname, fid, _seq, rtable, frm, to in fks:
        grouped.setdefault((tname, fid), []).append((rtable, frm, to))
    fk_rows = []
    for (tname, _), parts in grouped.items():
        rcols = [to for _, _, to in parts]
        fk_rows.append(
            (
                "main",
                tname,
                [f for _, f, _ in parts],
                "main",
                parts[0][0],
                [] if any(c is None for c in rcols) else rcols,
            )
        )
    return _assemble("sqlite", "main", col_rows, pk_rows, fk_rows)


def _capture_duckdb(db: DB, timeout_s: float) -> Schema:
    (default_db,) = db.rows("SELECT current_schema()", timeout_s)[0]
    # Current database plus temp (where registered DataFrames live); not other attached ones.
    where = "table_catalog IN (current_database(), 'temp')"
    cols = db.rows(
        "SELECT c.table_schema, c.table_name, t.table_type, c.column_name, c.data_type, "
        "c.is_nullable = 'YES' "
        "FROM information_schema.columns AS c JOIN information_schema.tables AS t "
        "USING (table_catalog, table_schema, table_name) "
        f"WHERE c.{where} ORDER BY c.table_schema, c.table_name, c.ordinal_position",
        timeout_s,
    )
    cons = db.rows(
        "SELECT schema_name, table_name, constraint_type, constraint_column_names, "
        "referenced_table, referenced_column_names FROM duckdb_constraints() "
        "WHERE constraint_type IN ('PRIMARY KEY', 'FOREIGN KEY') "
        "AND database_name IN (current_database(), 'temp')",
        timeout_s,
    )
    col_rows = [
        (s, t, "view" if kind == "VIEW" else "table", c, ty, nullable)
        for s, t, kind, c, ty, nullable in cols
    ]
    pk_rows = [(s, t, list(c)) for s, t, kind, c, _, _ in cons if kind == "PRIMARY KEY"]
    fk_rows = [
        (s, t, list(c), s, rt, list(rc or []))
        for s, t, kind, c, rt, rc in cons
        if kind == "FOREIGN KEY"
    ]
    return _assemble("duckdb", default_db, col_rows, pk_rows, fk_rows)


_PG_SYSTEM = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'"
)


def _capture_postgres(db: DB, timeout_s: float) -> Schema:
    (default_db,) = db.rows("SELECT current_schema()", timeout_s)[0]
    # pg_catalog rather than information_schema: the latter's views are several times slower
    # on large catalogs. Arrays travel as JSON text so every driver returns them alike.
    cols = db.rows(
        "SELECT n.nspname, c.relname, c.relkind, a.attname, "
        "format_type(a.atttypid, a.atttypmod), NOT a.attnotnull "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition "
        "AND a.attnum > 0 AND NOT a.attisdropped "
        f"AND {_PG_SYSTEM} AND has_schema_privilege(n.oid, 'USAGE') "
        "ORDER BY n.nspname, c.relname, a.attnum",
        timeout_s,
    )
    cons = db.rows(
        "SELECT n.nspname, c.relname, con.contype, "
        "array_to_json(ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(n, i) "
        "  JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i))::text, "
        "fn.nspname, fc.relname, "
        "array_to_json(ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(n, i) "
        "  JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.i))::text "
        "FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_class fc ON fc.oid = con.confrelid "
        "LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace "
        f"WHERE con.contype IN ('p', 'f') AND {_PG_SYSTEM}",
        timeout_s,
    )
    col_rows = [
        (s, t, "view" if k in ("v", "m") else "table", c, ty, nullable)
        for s, t, k, c, ty, nullable in cols
    ]
    pk_rows = [(s, t, json.loads(c)) for s, t, kind, c, _, _, _ in cons if kind == "p"]
    fk_rows = [
        (s, t, json.loads(c), rs, rt, json.loads(rc))
        for s, t, kind, c, rs, rt, rc in cons
        if kind == "f"
    ]
    return _assemble("postgres", default_db, col_rows, pk_rows, fk_rows)


def _capture_inspector(db: SQLAlchemyDB) -> Schema:
    """Any other SQLAlchemy dialect: the inspector's bulk (get_multi_*) calls."""
    import sqlalchemy as sa
    from sqlalchemy.engine.reflection import ObjectKind

    with db._connection() as c:
        insp = sa.inspect(c)
        default_db = insp.default_schema_name or "main"
        cols = insp.get_multi_columns(kind=ObjectKind.ANY)
        pks = insp.get_multi_pk_constraint()
        fks = insp.get_multi_foreign_keys()
        views = set(insp.get_view_names())
    col_rows = []
    for (s, t), clist in cols.items():
        for col in clist:
            ty = col["type"]
            try:
                ty_s = ty.compile(dialect=c.dialect)
            except Exception:
                ty_s = str(ty)
            col_rows.append(
                (
                    s or default_db,
                    t,
                    "view" if t in views else "table",
                    col["name"],
                    ty_s,
                    col.get("nullable", True),
                )
            )
    pk_rows = [
        (s or default_db, t, pk.get("constrained_columns") or []) for (s, t), pk in pks.items()
    ]
    fk_rows = [
        (
            s or default_db,
            t,
            fk["constrained_columns"],
            fk.get("referred_schema") or (s or default_db),
            fk["referred_table"],
            fk["referred_columns"],
        )
        for (s, t), fl in fks.items()
        for fk in fl
    ]
    return _assemble(db.dialect, default_db, col_rows, pk_rows, fk_rows)


# -- rendering ----------------------------------------------------------------------------


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


_WORD = re.compile(r"[A-Za-z][a-z0-9]*|[0-9]+")


def _stem(w: str) -> str:
    w = w.lower()
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("es") and w[-3] in "sxz":
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


def _words(text: str) -> set[str]:
    out = set()
    for chunk in re.split(r"[^A-Za-z0-9]+", text):
        if not chunk:
            continue
        out.add(_stem(chunk))
        for w in _WORD.findall(chunk):  # snake_case and camelCase parts
            out.add(_stem(w))
    return out


def rank_tables(
    schema: Schema, question: str | None, pinned: list[str] | None = None
) -> list[Table]:
    """Tables in the order they should be shown: pinned, then by relevance to the question
    (name hits weigh most, then column-name hits, then being joined by FK to a hit)."""
    pinned_l = [p.lower() for p in (pinned or [])]

    def is_pinned(t: Table) -> int:
        full = f"{t.db}.{t.name}".lower()
        for i, p in enumerate(pinned_l):
            if p in (t.name.lower(), full):
                return i
        return -1

    q = _words(question or "")
    qtext = (question or "").lower()
    score: dict[int, float] = {}
    by_key = {(t.db, t.name): i for i, t in enumerate(schema.tables)}
    for i, t in enumerate(schema.tables):
        s = 0.0
        if q:
            if t.name.lower() in qtext or _stem(t.name) in q:
                s += 10
            tw = _words(t.name)
            s += 3 * len(tw & q)
            hits = sum(1 for c in t.columns if _words(c.name) & q)
            s += min(hits, 3)
        score[i] = s
    # Tables joined (by FK, either way) to a relevant table are likely needed for the join.
    bonus: dict[int, float] = {}
    for i, t in enumerate(schema.tables):
        for fk in t.foreign_keys:
            j = by_key.get((fk.ref_db or t.db, fk.ref_table))
            if j is None:
                continue
            if score[i] >= 3:
                bonus[j] = max(bonus.get(j, 0), score[i] * 0.3)
            if score[j] >= 3:
                bonus[i] = max(bonus.get(i, 0), score[j] * 0.3)
    for j, b in bonus.items():
        score[j] += b

    def key(i: int) -> tuple:
        p = is_pinned(schema.tables[i])
        return (0 if p >= 0 else 1, p, -score[i], i)

    return [schema.tables[i] for i in sorted(range(len(schema.tables)), key=key)]


def describe_schema(
    schema: Schema,
    question: str | None = None,
    tables: list[str] | None = None,
    budget_chars: int = 6000,
    dialect: str | None = None,
) -> str:
    """Compact DDL of `schema` within `budget_chars` (see :func:`describe_connection`)."""
    d = dialect or schema.dialect
    order = rank_tables(schema, question, tables)
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
    rest: list[Table] = []
    for t in order:
        ddl = render_ddl(t, schema, d)
        if shown == 0 and used + len(ddl) + 1 > budget_chars - 80:
            ddl = _narrowed(t, schema, d, budget_chars - 80 - used)  # one very wide table
        if used + len(ddl) + 1 <= budget_chars - 80 or shown == 0:
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
) -> str:
    """Compact DDL of `conn`'s schema in the target dialect, cut to what fits `budget_chars`.

    `conn`: sqlite3 / DuckDB connection, SQLAlchemy Engine / Connection / URL string, a JupySQL
    connection (None = JupySQL's active one), a psycopg connection, or a dict of DataFrames.
    Tables named in `tables` come first (and only they are shown); the rest are ordered by
    relevance to `question`. Tables that do not fit are listed by name.
    """
    return describe_schema(capture_schema(conn), question, tables, budget_chars, dialect)
