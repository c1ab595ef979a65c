"""One module per SQL database, registered by name (sqlglot's dialect name).

Each database's module holds everything that is that database's: its connection adapter (bounded,
time-limited queries), the walls it puts around generated SQL, its function allowlists, how it
reads names (:meth:`Database.as_the_database_reads`) and how its catalog is read. The guard, the
validator, the retry loop and retrieval ask the database object (:func:`database_for`); none of them
compares database names.

- :mod:`.base`: ``Database`` (what a database declares), ``DB`` (a connection of one) and the
  databases by name (``database_for``; those known by name only, T-SQL, MySQL, ..., reached
  through SQLAlchemy, listed there too);
- :mod:`.sqlite`, :mod:`.duckdb`, :mod:`.postgres`: the databases with walls of their own;
- :mod:`.sqlalchemy_adapter` and :mod:`.frames`: the SQLAlchemy and DataFrames adapters, thin
  wrappers that hand each statement to a database above.

Modules are imported when first asked for, as sqlglot does with its dialects. Adding a database
is one new module defining ``DATABASE`` and one line in ``_MODULES`` of :mod:`.base`
(docs/architecture.md shows a worked example).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from .base import (
    DB,
    Database,
    QueryBounds,
    database_for,
    database_for_file,
    database_for_url,
    databases,
    file_kinds,
    url_examples,
)

__all__ = [
    "DB",
    "QueryBounds",
    "Database",
    "database_for",
    "database_for_file",
    "database_for_url",
    "databases",
    "file_kinds",
    "jupysql_current",
    "resolve",
    "url_examples",
]


def _jupysql_inner(obj: Any) -> Any | None:
    """JupySQL wraps connections (SQLAlchemyConnection, DBAPIConnection): unwrap to ours."""
    if type(obj).__module__.startswith("sql.connection"):
        return getattr(obj, "_connection", None)
    return None


def jupysql_current() -> Any | None:
    """JupySQL's active connection (``%sql sqlite://`` ...), unwrapped; None when there is none."""
    mod = sys.modules.get("sql.connection")  # only when the user loaded JupySQL
    if mod is None:
        return None
    cur = getattr(getattr(mod, "ConnectionManager", None), "current", None)
    return _jupysql_inner(cur) if cur is not None else None


def resolve(obj: Any) -> DB:
    """Wrap any accepted connection object in a :class:`DB`. Raises TypeError otherwise.

    Accepted: a connection of any database's driver (``sqlite3``, DuckDB, psycopg 3 or 2), a
    SQLAlchemy ``Engine``, ``Connection`` or URL, JupySQL's connection objects, and a DataFrame
    or a mapping of them (queried through DuckDB under their names)."""
    if isinstance(obj, DB):
        return obj
    inner = _jupysql_inner(obj)
    if inner is not None:
        return resolve(inner)
    for database in databases():
        db = database.connect(obj)
        if db is not None:
            return db
    if isinstance(obj, str):
        from .sqlalchemy_adapter import from_url

        return from_url(obj)
    if type(obj).__module__.startswith("sqlalchemy") and hasattr(obj, "dialect"):
        if hasattr(obj, "connect") or hasattr(obj, "exec_driver_sql"):
            from .sqlalchemy_adapter import SQLAlchemyDB

            return SQLAlchemyDB(obj)
    from .frames import FramesDB, is_frame

    if isinstance(obj, Mapping) and obj and all(is_frame(v) for v in obj.values()):
        return FramesDB(obj)
    if is_frame(obj):
        return FramesDB({"df": obj})
    raise TypeError(
        f"cannot use a {type(obj).__module__}.{type(obj).__name__} as a database connection: "
        "expected a sqlite3 or DuckDB connection, a SQLAlchemy engine, connection or URL, "
        "a JupySQL connection, or a dict of DataFrames"
    )
