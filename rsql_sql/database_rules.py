"""Names and spellings as the target database reads them, where models and databases part ways.

A check stricter than the database refuses SQL that was right and costs a model call; a check
looser than it lets through SQL the database then rejects. Each database's own rules live in its
module (``Database.as_the_database_reads`` in :mod:`rsql_sql.databases`: SQLite's
double-quoted strings, PostgreSQL's folded names); each edits only the tokens it is about, so
the rest of the statement runs as written, and each says what it did (a note for the footer).
This module holds what they share, and the rule every database has:

- ``target_spelling``: the statement as sqlglot writes it for the target, used once the
  database rejected the original's syntax (``LIMIT 5, 10`` on PostgreSQL or DuckDB, ``ILIKE``
  on SQLite); the rewritten statement goes through every check again.
"""

from __future__ import annotations

import re

from sqlglot import exp
from sqlglot.errors import ErrorLevel

from .parse import parse_statements, quiet_sqlglot

__all__ = [
    "MAX_REWRITES",
    "literal",
    "replace_spans",
    "span",
    "target_spelling",
    "unresolved_column",
]

# at most this many tokens rewritten in one statement: each costs one qualification pass
MAX_REWRITES = 20


def span(ident: exp.Identifier) -> tuple[int, int] | None:
    """Where `ident` is in the text it was parsed from (quotes included), when known."""
    meta = ident.meta or {}
    if "start" in meta and "end" in meta:
        return meta["start"], meta["end"] + 1
    return None


def replace_spans(sql: str, edits: list[tuple[int, int, str]]) -> str:
    """`sql` with each ``(start, end, text)`` span replaced by its text."""
    for start, end, text in sorted(edits, reverse=True):
        sql = sql[:start] + text + sql[end:]
    return sql


def literal(text: str) -> str:
    """`text` as a single-quoted SQL string."""
    return "'" + text.replace("'", "''") + "'"


_UNRESOLVED = re.compile(r"Column '(.*)' could not be resolved|Unknown column: (\S+)")


def unresolved_column(message: str) -> str | None:
    """The column a qualification error (sqlglot's wording) could not resolve, if any."""
    m = _UNRESOLVED.search(message)
    return (m.group(1) or m.group(2)) if m else None


def target_spelling(sql: str, dialect: str) -> str | None:
    """`sql` as sqlglot writes it for `dialect`, when that differs from the text beyond
    layout and case (``LIMIT 5, 10`` -> ``LIMIT 10 OFFSET 5``); None otherwise."""
    try:
        stmts = parse_statements(sql, dialect)
        with quiet_sqlglot():
            out = ";\n".join(
                s.sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE) for s in stmts
            )
    except Exception:
        return None

    def squeeze(text: str) -> str:
        return " ".join(text.replace(";", " ").split()).lower()

    return out if squeeze(out) != squeeze(sql) else None
