"""The connections %%sql_ai, %%ask and the agent's tools accept, as one :class:`DB` each.

Accepted: ``sqlite3.Connection``, a DuckDB connection, a SQLAlchemy ``Engine`` or ``Connection``,
a SQLAlchemy URL string, JupySQL's connection objects, a psycopg connection, and a mapping of
pandas DataFrames (queried in-process through DuckDB under their variable names).

Every query runs with a time bound where the driver allows one (PostgreSQL
``statement_timeout``, SQLite's progress handler, DuckDB ``interrupt()`` from a timer) and fetches
at most ``max_rows`` rows and ``max_bytes`` bytes, chunk by chunk (:mod:`.fetch`; PostgreSQL
through a server-side cursor), so neither schema capture nor a generated query can hang a kernel
or fill its memory. Generated SQL (``query(..., policy=SqlPolicy(...))``) also meets the
database's own walls, so a mistake of the guard is still harmless. Each adapter, and its walls,
is in its database's module (:mod:`rsql_sql.databases`); this module is where callers find
them.
"""

from __future__ import annotations

from .databases import DB, jupysql_current, resolve
from .databases.duckdb import DuckDB
from .databases.frames import FramesDB, is_frame
from .databases.postgres import PostgresDBAPI
from .databases.sqlalchemy_adapter import SQLAlchemyDB
from .databases.sqlite import SQLiteDB
from .policy import Fetched

__all__ = [
    "DB",
    "DuckDB",
    "Fetched",
    "FramesDB",
    "PostgresDBAPI",
    "SQLAlchemyDB",
    "SQLiteDB",
    "is_frame",
    "jupysql_current",
    "resolve",
]
