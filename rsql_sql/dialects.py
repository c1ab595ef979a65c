"""Dialect names: what SQLAlchemy or a user calls a SQL dialect, as sqlglot names it."""

from __future__ import annotations

__all__ = ["sqlglot_dialect"]

# SQLAlchemy dialect names, and what users type (``--dialect sqlserver``), -> sqlglot names.
_SQLGLOT_NAMES = {
    "postgresql": "postgres",
    "pg": "postgres",
    "mssql": "tsql",
    "sqlserver": "tsql",
    "mariadb": "mysql",
    "awsathena": "athena",
}


def sqlglot_dialect(name: str, *, check: bool = True) -> str:
    """The sqlglot dialect for `name` (``postgresql``, ``mssql``, ``sqlserver``, ``duckdb`` ...).

    Raises ValueError (sqlglot's "Unknown dialect ...") when sqlglot does not know it, unless
    `check` is False: a SQLAlchemy connection of a dialect sqlglot lacks still runs queries.
    """
    key = name.strip().lower()
    dialect = _SQLGLOT_NAMES.get(key, key)
    if check:
        from sqlglot.dialects.dialect import Dialect

        Dialect.get_or_raise(dialect)
    return dialect
