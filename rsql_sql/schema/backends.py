"""Schema capture: the catalog of a connection, read in a few bulk queries.

``capture_schema(conn)`` asks the connection's database to read tables, views, columns, types,
primary and foreign keys from its catalog (never one query per table; each database's module in
:mod:`rsql_sql.databases` says how), then bounds the result in table and column count.
Engines without a module of their own are read through SQLAlchemy's bulk inspector.
"""

from __future__ import annotations

import time
from typing import Any

from ..catalog import MAX_COLUMNS, MAX_TABLES, Schema
from ..databases import DB, jupysql_current, resolve

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
    """Read the catalog of `conn` (any kind :func:`rsql_sql.connections.resolve` accepts)."""
    db = as_db(conn)
    t0 = time.perf_counter()
    schema = db.database.read_catalog(db, timeout_s)
    if db.table_kind is not None:
        for t in schema.tables:
            t.kind = db.table_kind
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
