"""Engines sqlglot knows that we reach only through SQLAlchemy: a name and a title each, no
walls of their own (the guard, the transaction rolled back, and the database's permissions).
A database that earns walls, a function list or catalog queries gets a module of its own."""

from __future__ import annotations

from .base import Database

__all__ = ["DATABASES"]


class _NoEscapes(Database):
    backslash_escapes_vary = False  # plain '...' never reads escapes, whatever the settings


DATABASES: dict[str, Database] = {
    e.name: e
    for e in (
        _NoEscapes("tsql", "T-SQL (SQL Server)"),
        Database("mysql", "MySQL"),
        Database("bigquery", "BigQuery"),
        Database("snowflake", "Snowflake"),
        Database("oracle", "Oracle"),
        Database("redshift", "Redshift"),
        Database("trino", "Trino"),
        Database("clickhouse", "ClickHouse"),
    )
}
