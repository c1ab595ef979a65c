"""SQL schema capture, shared by %%sql_ai (validation) and %%ask (context).

The captured shape itself (``Schema``, ``Table``, ``Column``, ``ForeignKey``) is
:mod:`rsql_sql.catalog`, below the databases that return it; re-exported here. One module per
concern: :mod:`.backends` (``capture_schema``: asks the connection's database),
:mod:`.render` (compact DDL within a budget: ``describe_schema``, ``describe_connection``),
:mod:`.notes` (the values and date ranges commented on columns),
:mod:`.words` (names and questions as comparable words), :mod:`.index` (per-schema word
index and join graph, built once), :mod:`.values` (``capture_values``: short text columns'
values, only where the context policy allows), :mod:`.rank` (tables ordered by relevance to
the question, join paths completed).
"""

from ..catalog import Column, ForeignKey, Schema, Table
from .backends import capture_schema, infer_dialect
from .rank import Ranking, rank, rank_tables
from .render import describe_connection, describe_schema, render_ddl
from .values import capture_values

__all__ = [
    "Column",
    "ForeignKey",
    "Schema",
    "Ranking",
    "Table",
    "capture_schema",
    "capture_values",
    "describe_connection",
    "describe_schema",
    "infer_dialect",
    "rank",
    "rank_tables",
    "render_ddl",
]
