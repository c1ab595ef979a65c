"""Engines sqlglot knows that we reach only through SQLAlchemy: a name and a title each, no
walls of their own (the guard, the transaction rolled back, and the database's permissions).
An engine that earns walls, a function list or catalog queries gets a module of its own."""

from __future__ import annotations

from .base import SqlEngine

__all__ = ["ENGINES"]


class _NoEscapes(SqlEngine):
    backslash_escapes_vary = False  # plain '...' never reads escapes, whatever the settings


ENGINES: dict[str, SqlEngine] = {
    e.name: e
    for e in (
        _NoEscapes("tsql", "T-SQL (SQL Server)"),
        SqlEngine("mysql", "MySQL"),
        SqlEngine("bigquery", "BigQuery"),
        SqlEngine("snowflake", "Snowflake"),
        SqlEngine("oracle", "Oracle"),
        SqlEngine("redshift", "Redshift"),
        SqlEngine("trino", "Trino"),
        SqlEngine("clickhouse", "ClickHouse"),
    )
}
