"""Schema capture: the catalog of a connection, read in a few bulk queries.

``capture_schema(conn)`` reads tables, views, columns, types, primary and foreign keys from the
database's catalog (never one query per table), bounded in time and in table count. Four
backends: SQLite (table-valued pragmas), DuckDB (information_schema and duckdb_constraints()),
PostgreSQL (pg_catalog), and SQLAlchemy's bulk inspector for every other dialect.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ..connections import DB, SQLAlchemyDB, jupysql_current, resolve
from .model import MAX_COLUMNS, MAX_TABLES, Column, ForeignKey, Schema, Table

__all__ = ["as_db", "capture_schema", "infer_dialect"]


def infer_dialect(conn: Any) -> str:
    """The sqlglot dialect name for a connection (``postgres``, ``sqlite``, ``duckdb`` ...)."""
    return as_db(conn).dialect


def as_db(conn: Any) -> DB:
    """`conn` as a :class:`DB` (None: JupySQL's active connection)."""
    if conn is None:
        cur = jupysql_current()
        if cur is None:
            raise TypeError("no connection given and JupySQL has no active connection")
        conn = cur
    return resolve(conn)


def capture_schema(conn: Any, *, timeout_s: float = 10.0, max_tables: int = MAX_TABLES) -> Schema:
    """Read the catalog of `conn` (any kind :func:`rsql_magic.sql.connections.resolve` accepts)."""
    db = as_db(conn)
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
    col_rows: list[tuple[Any, ...]],
    pk_rows: list[tuple[Any, ...]],
    fk_rows: list[tuple[Any, ...]],
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
    grouped: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
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

    with db.connection() as c:
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
