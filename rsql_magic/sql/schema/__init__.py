"""SQL schema capture, shared by %%sql_ai (validation) and %%ask (context).

One module per concern: :mod:`.model` (``Schema``, ``Table``, ``Column``, ``ForeignKey``),
:mod:`.backends` (``capture_schema``: SQLite, DuckDB, PostgreSQL, SQLAlchemy's inspector),
:mod:`.render` (compact DDL within a budget: ``describe_schema``, ``describe_connection``),
:mod:`.rank` (tables ordered by relevance to the question).
"""

from .backends import capture_schema, infer_dialect
from .model import Column, ForeignKey, Schema, Table
from .rank import rank_tables
from .render import describe_connection, describe_schema, render_ddl

__all__ = [
    "Column",
    "ForeignKey",
    "Schema",
    "Table",
    "capture_schema",
    "describe_connection",
    "describe_schema",
    "infer_dialect",
    "rank_tables",
    "render_ddl",
]
