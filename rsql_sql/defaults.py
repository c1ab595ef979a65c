"""``%%sql_ai``'s defaults, declared once: the magic's settings (``SqlAIMagics.*``, through
:mod:`rsql_magic.defaults`) and the functions they feed read them from here, as ``rsql-mcp`` and
the proxy's MCP endpoint do."""

from __future__ import annotations

__all__ = ["SCHEMA_CHARS", "SQL_MAX_RETRIES", "SQL_MAX_ROWS", "SQL_TIMEOUT_S"]

SQL_MAX_RETRIES = 3  # asks again after a failed check, the error fed back
SQL_MAX_ROWS = 100_000  # rows fetched into the DataFrame
SQL_TIMEOUT_S = 60.0  # one statement
SCHEMA_CHARS = 6000  # the schema DDL sent
