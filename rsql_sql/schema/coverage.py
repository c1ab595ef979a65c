"""What a schema text shows and what a query needs, compared: retrieval told apart from reasoning.

- :func:`shown_columns`: the tables and columns of each ``CREATE TABLE`` line of a schema text
  (what :func:`~rsql_sql.schema.render.describe_schema` writes, or an agent tool's text).
- :func:`needed_columns`: the tables and columns a query reads, resolved against the captured
  schema with sqlglot's ``qualify`` (aliases, CTEs, subqueries, USING joins).
- :func:`coverage`: whether everything needed was shown, and what was not.

Names are compared in lower case throughout. SQLite and DuckDB compare names case-insensitively;
PostgreSQL keeps a quoted name's case, so ``"Region"`` and ``region`` could be two tables there.
A schema holding both is rare enough that one lower-case key per name is the measure we take:
it can only call such a pair covered when one of them is shown, never miss a shown one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.scope import Scope, traverse_scope

from ..catalog import Schema, Table

__all__ = ["Coverage", "coverage", "needed_columns", "shown_columns"]


@dataclass(frozen=True)
class Coverage:
    tables_ok: bool  # every table the query reads has a CREATE TABLE line in the text
    columns_ok: bool  # ... and every column it reads is in that line (implies tables_ok)
    missing_tables: tuple[str, ...]  # "db.table", lower case
    # "db.table.column", lower case; only of the tables that are shown (a missing table's
    # columns are all missing: naming the table says it)
    missing_columns: tuple[str, ...]


# -- what the text shows ------------------------------------------------------------------------

# Quoted names and string literals (kept as they are, whatever they hold), or a comment (dropped).
# Every quoting the dialects describe_schema writes use: "x" (ANSI), `x` (MySQL, BigQuery),
# [x] (T-SQL), 'x' (a literal in a type such as ENUM('a', 'b')).
_QUOTED_OR_COMMENT = re.compile(
    r"""("(?:[^"]|"")*"|`(?:[^`]|``)*`|\[[^\]]*\]|'(?:[^']|'')*')|(/\*.*?\*/|--[^\n]*)""",
    re.DOTALL,
)
# a comma left before the closing parenthesis once "/* N more columns */" is gone
_DANGLING_COMMA = re.compile(r",\s*\)\s*;?\s*$")
_EMPTY_LIST = re.compile(r"\(\s*\)\s*;?\s*$")
_PLACEHOLDER = "rsql_no_column_shown"  # stands in an empty column list, so the line parses


def _without_comments(line: str) -> str | None:
    """`line` with its comments removed (quoted names kept whole); None when a quote or a
    comment is left open (a line cut at the budget)."""
    out: list[str] = []
    pos = 0
    for m in [*_QUOTED_OR_COMMENT.finditer(line), None]:
        gap = line[pos : len(line) if m is None else m.start()]
        if any(ch in gap for ch in "\"`'[") or "/*" in gap:
            return None  # a quote or comment left open: the text was cut inside it
        out.append(gap)
        if m is None:
            break
        if m.group(1) is not None:
            out.append(m.group(1))
        elif m.group(2).startswith("/*"):
            out.append(" ")
        pos = m.end()
    return "".join(out).strip()


def _whole_part(body: str, dialect: str) -> str | None:
    """`body`, a DDL line cut before its end, up to its last whole column definition and
    closed (an empty list when none is whole); None when it was cut before its column list or
    does not tokenize."""
    try:
        tokens = sqlglot.Dialect.get_or_raise(dialect).tokenize(body)
    except (SqlglotError, ValueError):
        return None
    depth, last_comma, opening = 0, None, None
    for tok in tokens:
        if tok.token_type == sqlglot.TokenType.L_PAREN:
            depth += 1
            opening = tok.start if opening is None else opening
        elif tok.token_type == sqlglot.TokenType.R_PAREN:
            depth -= 1
        elif tok.token_type == sqlglot.TokenType.COMMA and depth == 1:
            last_comma = tok.start  # the end of a column definition in the table's list
    if last_comma is not None:
        return body[:last_comma] + ");"
    # the name and the list's start were seen, no whole column: the table, with no column
    return None if opening is None else body[:opening] + "();"


@lru_cache(maxsize=65536)
def _ddl_line(
    line: str, dialect: str, default_db: str, partial: bool = False
) -> tuple[str, frozenset[str]] | None:
    """``('db.table', columns)`` of one ``CREATE TABLE`` line, lower case; None when it is not
    a whole DDL line (cut at the budget, or not DDL at all). `partial`: a line cut before its
    end shows the column definitions written whole before the cut."""
    body = _without_comments(line)
    if body is None:
        return None
    # every whole line describe_schema writes ends with ");": a line cut anywhere before that
    # could still parse (a column list cut after a name), so it is not read as it is
    if not re.search(r"\)\s*;\s*$", body):
        whole = _whole_part(body, dialect) if partial else None
        if whole is None:
            return None
        body = whole
    empty = _EMPTY_LIST.search(body) is not None
    if empty:  # every column elided ("/* 40 more columns */" alone): the table is still shown
        body = _EMPTY_LIST.sub(f"({_PLACEHOLDER} INT);", body)
    else:
        body = _DANGLING_COMMA.sub(");", body)
    try:
        parsed = sqlglot.parse(body, read=dialect)
    except (SqlglotError, ValueError):
        return None
    if len(parsed) != 1 or not isinstance(parsed[0], exp.Create):
        return None
    target = parsed[0].this
    if not isinstance(target, exp.Schema) or not isinstance(target.this, exp.Table):
        return None
    table = target.this
    if not table.name:
        return None
    cols = frozenset(
        d.name.lower()
        for d in target.expressions
        if isinstance(d, exp.ColumnDef) and d.name and not empty
    )
    return f"{(table.db or default_db).lower()}.{table.name.lower()}", cols


def shown_columns(
    text: str, dialect: str, default_db: str, *, partial: bool = False
) -> dict[str, set[str]]:
    """'db.table' (lower) -> lower-case column names of each CREATE TABLE line in `text` (the
    text `describe_schema` in rsql_sql/schema/render.py writes: one line per table, maybe
    with /* ... */ comments inside the column list and a `-- a view` tail; other lines such as
    `-- other tables: ...` are not DDL and show nothing).

    A line that does not parse (the text was cut inside it at its budget) shows nothing; with
    `partial`, a line cut inside its column list shows its table and the columns whose whole
    definition came before the cut (what a reader of the cut text saw). A table whose columns
    were all elided is shown with no column. A table on two lines (two texts joined, an
    agent's tool results) shows the columns of both."""
    out: dict[str, set[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line[:12].upper().startswith("CREATE TABLE"):
            continue
        found = _ddl_line(line, dialect, default_db, partial)
        if found is not None:
            out.setdefault(found[0], set()).update(found[1])
    return out


# -- what the query needs -----------------------------------------------------------------------


def _source_of(scope: Scope, name: str) -> exp.Expression | Scope | None:
    """What alias `name` stands for in `scope`, or in a scope around it (a correlated
    subquery reads the outer query's tables)."""
    s: Scope | None = scope
    while s is not None:
        if name in s.sources:
            return s.sources[name]
        s = s.parent
    return None


def needed_columns(sql: str, schema: Schema, dialect: str) -> dict[str, set[str]]:
    """'db.table' (lower) -> lower-case columns the query reads, resolved against `schema` with
    sqlglot's qualify (aliases, CTEs, subqueries, `SELECT *` = no specific column, USING/NATURAL
    joins); tables only of the real schema (CTE names are not tables). Raises ValueError when
    the SQL cannot be parsed or qualified."""
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except (SqlglotError, ValueError) as e:
        raise ValueError(f"cannot parse: {_first_line(e)}") from None
    if len(statements) != 1:
        raise ValueError(f"one statement expected, found {len(statements)}")
    # qualify against the tables the statement names only: a MappingSchema of a whole
    # warehouse takes tens of milliseconds to build, one of three tables a fraction of one
    named: dict[int, Table] = {}
    for ref in statements[0].find_all(exp.Table):
        found = schema.table(ref.name, ref.db or None) if ref.name else None
        if found is not None:
            named[id(found)] = found
    reading = Schema(schema.dialect, schema.default_db, list(named.values()))
    try:
        # SELECT * needs the table, no column of it in particular
        tree = reading.qualify(statements[0], dialect, expand_stars=False)
        scopes = traverse_scope(tree)
    except (SqlglotError, ValueError, KeyError) as e:
        raise ValueError(f"cannot qualify: {_first_line(e)}") from None
    out: dict[str, set[str]] = {}

    def table_key(t: exp.Table) -> str:
        found = schema.table(t.name, t.db or None)
        if found is None:
            raise ValueError(f"table {t.sql(dialect)} is not in the schema")
        return f"{found.db.lower()}.{found.name.lower()}"

    for scope in scopes:
        for source in scope.sources.values():
            # a table read (even for COUNT(*) alone); a table function has no real name
            if isinstance(source, exp.Table) and isinstance(source.this, exp.Identifier):
                out.setdefault(table_key(source), set())
        for col in scope.columns:
            if not col.table or not col.name:
                continue  # an output alias (ORDER BY total), not a column of a table
            read = _source_of(scope, col.table)
            if isinstance(read, exp.Table) and isinstance(read.this, exp.Identifier):
                out.setdefault(table_key(read), set()).add(col.name.lower())
    return out


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# -- compared -----------------------------------------------------------------------------------


def coverage(needed: dict[str, set[str]], shown: dict[str, set[str]]) -> Coverage:
    """Whether every table and column in `needed` is in `shown` (both as the functions above
    give them), and which are not."""
    missing_tables = tuple(sorted(t for t in needed if t not in shown))
    missing_columns = tuple(
        sorted(f"{t}.{c}" for t, cols in needed.items() if t in shown for c in cols - shown[t])
    )
    tables_ok = not missing_tables
    return Coverage(tables_ok, tables_ok and not missing_columns, missing_tables, missing_columns)
