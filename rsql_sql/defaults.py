"""``%%sql_ai``'s defaults, declared once: the magic's settings (``SqlAIMagics.*``, through
:mod:`rsql_magic.defaults`) and the functions they feed read them from here, as ``rsql-mcp`` and
the proxy's MCP endpoint do.

The ``SQL_MAX_*`` bounds are not settings: every statement any caller checks (%%sql_ai, the
agent's tools, both MCP servers) is held to them before any check, because sqlglot's parser
recurses on parentheses and its qualification grows with the square of a statement's depth and
of the columns its stars expand to (issue 53: a 45 kB chain of ORs took 14-16 s of CPU). At
the bounds, the slowest statements found check in about a second on one core
(tests/unit/test_abuse_mcp_bounds.py); generated SQL comes nowhere near them.
"""

from __future__ import annotations

__all__ = [
    "SCHEMA_CHARS",
    "SQL_DETECT_CHARS",
    "SQL_MAX_CHARS",
    "SQL_MAX_DEPTH",
    "SQL_MAX_NESTING",
    "SQL_MAX_NODES",
    "SQL_MAX_RETRIES",
    "SQL_MAX_ROWS",
    "SQL_TIMEOUT_S",
    "VALUES_WAIT_S",
]

SQL_MAX_RETRIES = 3  # asks again after a failed check, the error fed back
SQL_MAX_ROWS = 100_000  # rows fetched into the DataFrame
SQL_TIMEOUT_S = 60.0  # one statement
SCHEMA_CHARS = 6000  # the schema DDL sent
VALUES_WAIT_S = 3.0  # a question's wait for the value index; the rest is read in the background

SQL_MAX_CHARS = 20_000  # a statement's characters, read before it is tokenized
SQL_MAX_NESTING = 32  # parentheses inside each other, counted on the tokens before parsing
SQL_MAX_DEPTH = 100  # levels of the parsed tree: a chain of ORs is one level per operand
SQL_MAX_NODES = 3_000  # parts of the parsed tree (names, values, operators), stars expanded
# a statement that does not parse is tried in other dialects (nine parses) only up to this size
SQL_DETECT_CHARS = 5_000
