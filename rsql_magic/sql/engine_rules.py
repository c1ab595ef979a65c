"""Names and spellings as the target engine reads them, where models and engines part ways.

A check stricter than the engine refuses SQL that was right and costs a model call; a check
looser than it lets through SQL the engine then rejects. Three rules close the well-known gaps;
each edits only the tokens it is about, so the rest of the statement runs as written, and each
says what it did (a note for the footer):

- ``sqlite_string_literals``: SQLite reads a double-quoted token that names no column in scope
  as a string (``WHERE Country = "USA"``); models write this all the time. It becomes the
  single-quoted literal SQLite would have made of it.
- ``postgres_folded_names``: PostgreSQL folds unquoted names to lower case, so ``FROM Orders``
  misses a table created as ``"Orders"``. A name that exists only in another case is quoted
  with the catalog's spelling.
- ``target_spelling``: the statement as sqlglot writes it for the target, used once the
  database rejected the original's syntax (``LIMIT 5, 10`` on PostgreSQL or DuckDB, ``ILIKE``
  on SQLite); the rewritten statement goes through every check again.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlglot import exp
from sqlglot.errors import ErrorLevel, OptimizeError

from .parse import parse_statements, quiet_sqlglot
from .schema import Schema

__all__ = [
    "postgres_folded_names",
    "sqlite_string_literals",
    "target_spelling",
    "unresolved_column",
]

# at most this many tokens rewritten in one statement: each costs one qualification pass
_MAX_REWRITES = 20


def _span(ident: exp.Identifier) -> tuple[int, int] | None:
    """Where `ident` is in the text it was parsed from (quotes included), when known."""
    meta = ident.meta or {}
    if "start" in meta and "end" in meta:
        return meta["start"], meta["end"] + 1
    return None


def _replace(sql: str, edits: list[tuple[int, int, str]]) -> str:
    for start, end, text in sorted(edits, reverse=True):
        sql = sql[:start] + text + sql[end:]
    return sql


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def sqlite_string_literals(
    sql: str, qualify_errors: Callable[[exp.Expr], OptimizeError | None]
) -> tuple[str, list[str]] | None:
    """``(sql, strings)``: `sql` with each double-quoted token that resolves to no column in
    scope written as the string literal SQLite makes of it; None when there is none.

    `qualify_errors(statement)` is the validator's column resolution: the error it raises for
    the statement, or None. A token is rewritten only when that resolution names it as
    unresolved, it is an unqualified column reference, and it was written with double quotes
    (backticks and brackets are identifiers only, in SQLite too). Only the occurrence the error
    points at is rewritten, one at a time: the same name may resolve in another scope (a
    subquery over a table that has that column).
    """
    strings: list[str] = []
    for _ in range(_MAX_REWRITES):
        stmts = parse_statements(sql, "sqlite")
        if len(stmts) != 1:
            return None
        err = qualify_errors(stmts[0])
        if err is None:
            break
        name = unresolved_column(str(err))
        if name is None:
            break
        where = _POINTS_AT.search(str(err))
        edits = []
        for col in stmts[0].find_all(exp.Column):
            ident = col.this
            span = _span(ident) if isinstance(ident, exp.Identifier) else None
            if (
                span is None
                or col.table
                or not ident.quoted
                or ident.name.lower() != name.lower()
                or sql[span[0]] != '"'
            ):
                continue
            meta = ident.meta or {}
            if where and (meta.get("line"), meta.get("col")) != (
                int(where.group(1)),
                int(where.group(2)),
            ):
                continue
            edits.append((span[0], span[1], _literal(ident.name)))
        if len(edits) != 1:
            break  # an unquoted name, a quoted one SQLite would not turn into a string, or unsure which
        token = sql[edits[0][0] : edits[0][1]]
        if token not in strings:
            strings.append(token)
        sql = _replace(sql, edits)
    return (sql, strings) if strings else None


_POINTS_AT = re.compile(r"Line: (\d+), Col: (\d+)")
_UNRESOLVED = re.compile(r"Column '(.*)' could not be resolved|Unknown column: (\S+)")


def unresolved_column(message: str) -> str | None:
    """The column a qualification error (sqlglot's wording) could not resolve, if any."""
    m = _UNRESOLVED.search(message)
    return (m.group(1) or m.group(2)) if m else None


def postgres_folded_names(sql: str, stmt: exp.Expr, schema: Schema) -> tuple[str, list[str]] | None:
    """``(sql, names)``: `sql` with each unquoted table or column name that PostgreSQL would
    fold to a name the catalog lacks, but that the catalog has in exactly one other case,
    quoted as the catalog spells it; None when there is none.

    Names the statement defines itself (CTEs, table and column aliases) are left alone: they
    fold the same way at their definition and at their use. A column's table qualifier that
    names a rewritten table is quoted with it.
    """
    tables: dict[str, set[str]] = {}
    for t in schema.tables:
        tables.setdefault(t.name.lower(), set()).add(t.name)
    columns: dict[str, set[str]] = {}
    for t in schema.tables:
        for c in t.columns:
            columns.setdefault(c.name.lower(), set()).add(c.name)
    defined = {cte.alias_or_name.lower() for cte in stmt.find_all(exp.CTE)}
    defined |= {a.alias.lower() for a in stmt.find_all(exp.Alias) if a.alias}
    defined |= {t.alias.lower() for t in stmt.find_all(exp.Table) if t.alias}
    edits: list[tuple[int, int, str]] = []
    names: list[str] = []

    def spelled(ident: exp.Identifier, known: dict[str, set[str]]) -> str | None:
        """The catalog's one spelling of an unquoted name it lacks as folded, if any."""
        folded = ident.name.lower()
        options = known.get(folded, set())
        if ident.quoted or folded in defined or folded in options or len(options) != 1:
            return None
        return next(iter(options))

    def fix(ident: exp.Identifier, name: str) -> None:
        span = _span(ident)
        if span is None:
            return
        edits.append((span[0], span[1], '"' + name.replace('"', '""') + '"'))
        if name not in names:
            names.append(name)

    for ref in stmt.find_all(exp.Table):
        if isinstance(ref.this, exp.Identifier) and (name := spelled(ref.this, tables)) is not None:
            fix(ref.this, name)
    for col in stmt.find_all(exp.Column):
        if (
            isinstance(col.this, exp.Identifier)
            and (name := spelled(col.this, columns)) is not None
        ):
            fix(col.this, name)
        qualifier = col.args.get("table")
        if (
            isinstance(qualifier, exp.Identifier)
            and (name := spelled(qualifier, tables)) is not None
        ):
            fix(qualifier, name)
    return (_replace(sql, edits), names) if edits else None


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
