"""Check a generated statement before it runs: extract, parse, transpile, guard, qualify.

- ``extract_sql``: the SQL out of a model answer (a fenced block, or plain text).
- parsing is :func:`rsql_sql.parse.parse_statements`, which the guard uses too.
- ``detect_dialect``: when the target dialect cannot parse the answer but another common one
  can (``SELECT TOP 5`` is T-SQL, backticks are MySQL), we transpile with sqlglot instead of
  spending a model call; the same when the database rejects a function another dialect has.
- ``check_sql``: all of the above plus the read-only guard and qualification of every table and
  column against the captured schema (``sqlglot.optimizer.qualify``).

Parsing holds each statement to the bounds of :mod:`rsql_sql.defaults` (``parse_statements``);
qualification adds what stars expand to, so their expansion is bounded before it happens
(``SQL_MAX_NODES``), and qualifies against the tables the statement names rather than the whole
catalog (whose mapping sqlglot would build again on every call). Other dialects are tried only
for statements up to ``SQL_DETECT_CHARS``: each try is a parse.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, OptimizeError

from rsql_common.fences import sql_blocks
from rsql_sql.defaults import SQL_DETECT_CHARS, SQL_MAX_NODES
from rsql_sql.errors import Position, SqlCheckError, SqlTooLarge

from ..database_rules import unresolved_column
from ..databases import database_for
from ..parse import (
    explained_statements,
    explained_text,
    parse_statements,
    quiet_sqlglot,
    tree_size,
    without_trailing_semicolons,
)
from ..schema import Schema
from ..token_pointers import caret, pointer
from .guard import check_statements

__all__ = [
    "Checked",
    "check_sql",
    "detect_dialect",
    "extract_sql",
    "schema_named_by",
    "transpile_functions",
]

# Dialects a model most often answers in by mistake, tried in this order.
CANDIDATE_DIALECTS = (
    "tsql",
    "mysql",
    "postgres",
    "duckdb",
    "sqlite",
    "snowflake",
    "bigquery",
    "oracle",
    "spark",
)

# Schemas that hold the database's own catalog: queries on them are fine, but they are not in
# the captured schema, so their columns cannot be checked.
_SYSTEM_DBS = {"information_schema", "pg_catalog", "sys", "mysql", "performance_schema"}
_SYSTEM_PREFIXES = ("sqlite_", "duckdb_", "pg_")
# parts qualified in all by a database's rewrites of one statement (_as_the_database_reads)
_REWRITE_BUDGET = 2 * SQL_MAX_NODES


# -- extraction ---------------------------------------------------------------------------

_SQL_START = re.compile(
    r"^\s*(WITH|SELECT|EXPLAIN|SHOW|DESCRIBE|DESC|VALUES|INSERT|UPDATE|DELETE|MERGE|CREATE|"
    r"DROP|ALTER|TRUNCATE|PRAGMA|FROM|\()\b",
    re.IGNORECASE | re.MULTILINE,
)


def extract_sql(answer: str) -> tuple[str, str]:
    """``(sql, rest)``: the first SQL code block of a model answer (or the answer's SQL part when
    it has no fence), and the prose around it (an explanation, when one was asked for)."""
    text = answer.strip()
    # the same grammar the proxy uses to keep redacted values out of SQL blocks (``fences``)
    blocks = sql_blocks(text)
    chosen = blocks[0] if blocks else None
    if chosen is not None:
        sql = chosen.group(2).strip()
        rest = (text[: chosen.start()] + "\n" + text[chosen.end() :]).strip()
        return sql, rest
    # No fence: the SQL starts at the first line that opens like a statement.
    m = _SQL_START.search(text)
    if m is None:
        return "", text
    body = text[m.start() :].strip()
    # Prose after the statement (separated by a blank line, after a ';') is not SQL.
    semi = re.search(r";\s*\n\s*\n", body)
    if semi:
        return body[: semi.start() + 1].strip(), (text[: m.start()] + body[semi.end() :]).strip()
    return body, text[: m.start()].strip()


# -- transpiling from another dialect -----------------------------------------------------


def _parses(sql: str, dialect: str) -> list[exp.Expr] | None:
    try:
        return parse_statements(sql, dialect)
    except SqlCheckError:
        return None


def detect_dialect(sql: str, target: str) -> tuple[str, str] | None:
    """``(source_dialect, transpiled_sql)`` when `sql` fails to parse in `target` but parses in
    another common dialect and sqlglot can write it in `target`; else None (and always for a
    statement longer than ``SQL_DETECT_CHARS``)."""
    if len(sql) > SQL_DETECT_CHARS:
        return None
    for src in CANDIDATE_DIALECTS:
        if src == target:
            continue
        stmts = _parses(sql, src)
        if not stmts:
            continue
        try:
            with quiet_sqlglot():
                out = [
                    s.sql(dialect=target, unsupported_level=ErrorLevel.RAISE, pretty=True)
                    for s in stmts
                ]
        except Exception:
            continue
        text = ";\n".join(out)
        if _parses(text, target) is not None:
            return src, text
    return None


def _function_names(sql: str, dialect: str) -> set[str]:
    """Names written as calls (``NAME(``) in `sql`, upper-case."""
    try:
        tokens = sqlglot.Dialect.get_or_raise(dialect).tokenize(sql)
    except Exception:
        return set()
    names = set()
    for a, b in zip(tokens, tokens[1:], strict=False):
        if b.token_type == sqlglot.TokenType.L_PAREN and a.text and a.text[0].isalpha():
            names.add(a.text.upper())
    return names


def _native_names(stmt: exp.Expr, dialect: str) -> set[str] | None:
    try:
        with quiet_sqlglot():
            return _function_names(stmt.sql(dialect, unsupported_level=ErrorLevel.RAISE), dialect)
    except Exception:
        return None


def transpile_functions(
    sql: str, target: str, names: set[str] | None = None
) -> tuple[str, str] | None:
    """``(source_dialect, transpiled_sql)`` when `sql` calls functions that `target` does not
    spell that way but another dialect does (``LEN`` is T-SQL, ``DATE_ADD`` is MySQL).

    Used after the database rejected a function: sqlglot knows how each dialect spells them.
    `names` narrows the search to the functions the database named.
    """
    if len(sql) > SQL_DETECT_CHARS:
        return None  # up to nine parses: only for statements of an ordinary size
    written = _function_names(sql, target)
    stmts = _parses(sql, target)
    if not written or not stmts or len(stmts) != 1:
        return None
    in_target = _native_names(stmts[0], target) or set()
    # Foreign: sqlglot writes the name differently for the target (LEN -> LENGTH), or does not
    # know it at all in the target (an Anonymous function, e.g. GETDATE in PostgreSQL).
    unknown = {f.name.upper() for f in stmts[0].find_all(exp.Anonymous)}
    foreign = {n for n in (written - in_target) | unknown if names is None or n in names}
    if not foreign:
        return None
    for src in CANDIDATE_DIALECTS:
        if src == target:
            continue
        src_stmts = _parses(sql, src)
        if not src_stmts or len(src_stmts) != 1:
            continue
        native = _native_names(src_stmts[0], src)
        src_unknown = {f.name.upper() for f in src_stmts[0].find_all(exp.Anonymous)}
        if native is None or not foreign <= native or foreign & src_unknown:
            continue  # `src` would rewrite these names too, or does not know them either
        try:
            with quiet_sqlglot():
                out = src_stmts[0].sql(dialect=target, unsupported_level=ErrorLevel.RAISE)
        except Exception:
            continue
        if _parses(out, target) is not None and not (foreign & _function_names(out, target)):
            return src, out
    return None


# -- qualification ------------------------------------------------------------------------


@dataclass
class Checked:
    sql: str  # the statement that will run, in the target dialect
    statement: exp.Expr
    transpiled_from: str | None = None
    note: str | None = None


def _position(node: exp.Expr) -> Position | None:
    """Where the name of `node` (an identifier, or the first one under it) is, when known."""
    ident = node if isinstance(node, exp.Identifier) else node.find(exp.Identifier)
    meta = getattr(ident, "meta", None) or {}
    if "start" in meta and "end" in meta:
        return Position(
            meta.get("line", 1), meta.get("col", meta["end"] + 1), meta["start"], meta["end"]
        )
    return None


def _cte_names(stmt: exp.Expr) -> set[str]:
    return {cte.alias_or_name.lower() for cte in stmt.find_all(exp.CTE)}


def _is_system(table: exp.Table) -> bool:
    return table.db.lower() in _SYSTEM_DBS or table.name.lower().startswith(_SYSTEM_PREFIXES)


def _real_tables(stmt: exp.Expr) -> list[exp.Table]:
    ctes = _cte_names(stmt)
    out = []
    for t in stmt.find_all(exp.Table):
        if not isinstance(t.this, exp.Identifier):
            continue  # a table function: generate_series(...), read_csv(...)
        if not t.db and t.name.lower() in ctes:
            continue
        out.append(t)
    return out


def _check_tables(stmt: exp.Expr, schema: Schema, sql: str) -> bool:
    """Raise on a table the schema does not have; return False when a system table is used."""
    plain = True
    for t in _real_tables(stmt):
        if _is_system(t):
            plain = False
            continue
        if schema.table(t.name, t.db or None) is None:
            names = [x.name for x in schema.tables]
            close = difflib.get_close_matches(t.name, names, n=3, cutoff=0.6)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            if not close and len(names) <= 30:
                hint = f" Known tables: {', '.join(names)}."
            full = f"{t.db}.{t.name}" if t.db else t.name
            position = _position(t)
            where = pointer(sql, position) if position else ""
            raise SqlCheckError(
                f"Table '{full}' does not exist.{where}\n{hint.strip()}".rstrip(),
                stage="schema",
                sql=sql,
                position=position,
            )
    return plain


def _column_hint(stmt: exp.Expr, schema: Schema, name: str) -> str:
    """Which of the query's tables have a column like `name` (ambiguity, typos)."""
    tables = []
    for ref in _real_tables(stmt):
        st = schema.table(ref.name, ref.db or None)
        if st is not None and st not in tables:
            tables.append(st)
    having = [t.name for t in tables if any(c.name.lower() == name.lower() for c in t.columns)]
    if len(having) > 1:
        return f"'{name}' is in {', '.join(having)}: qualify it with the table name or alias."
    hints = []
    for t in tables:
        close = difflib.get_close_matches(name, [c.name for c in t.columns], n=3, cutoff=0.6)
        if close:
            hints.append(f"{t.name} has {', '.join(close)}")
    if hints:
        return "Did you mean: " + "; ".join(hints) + "?"
    cols = "; ".join(f"{t.name}({', '.join(c.name for c in t.columns[:25])})" for t in tables[:4])
    return f"Columns available: {cols}." if cols else ""


def _qualify_error(
    e: OptimizeError, stmt: exp.Expr, schema: Schema, sql: str
) -> tuple[str, Position | None]:
    """The message for the model and, when the column is found, where it is."""
    msg = str(e)
    name = unresolved_column(msg)
    if name is None:
        return msg, None
    # Point at the column: sqlglot's message has the position for some errors, not all.
    node = None
    for col in stmt.find_all(exp.Column):
        if col.name == name or col.name.lower() == name.lower():
            node = col.this
            mc = re.search(r"Col: (\d+)", msg)
            if mc is None or (node.meta or {}).get("col") == int(mc.group(1)):
                break
    position = None
    if node is not None and _position(node) is not None:
        meta = node.meta
        if "Line" not in msg:
            msg = f"{msg.rstrip('.')}. Line: {meta.get('line', 1)}, Col: {meta.get('col')}"
        msg = f"{msg}\n{caret(sql, meta['start'], meta['end'])}"
        position = Position(meta.get("line", 1), meta.get("col", 1), meta["start"], meta["end"])
    hint = _column_hint(stmt, schema, name)
    return (f"{msg}\n{hint}" if hint else msg), position


def schema_named_by(stmt: exp.Expr, schema: Schema) -> Schema:
    """The part of `schema` that `stmt` can resolve against: the tables it names (in any of
    the schema's namespaces, any case), which is all qualification reads; sqlglot builds the
    mapping of the schema it is given on each call, which on a catalog of thousands of tables
    costs more than the statement."""
    named = {t.name.lower() for t in stmt.find_all(exp.Table) if t.name}
    tables = [t for t in schema.tables if t.name.lower() in named]
    return Schema(schema.dialect, schema.default_db, tables=tables, truncated=schema.truncated)


def _check_expansion(stmt: exp.Expr, schema: Schema) -> None:
    """Refuse a statement whose stars would expand past ``SQL_MAX_NODES``, before they do:
    each star (or DuckDB's COLUMNS) is counted as every column of every table the statement
    reads (80 stars in a chain of CTEs over a table of 300 columns: 24,000 columns, seconds
    of qualification, from 2 kB of text)."""
    stars = sum(
        1
        for n in stmt.walk()
        if isinstance(n, exp.Columns)
        or (isinstance(n, exp.Star) and not isinstance(n.parent, exp.Count))
    )
    if not stars:
        return
    widths = [
        len(t.columns) for r in _real_tables(stmt) if (t := schema.table(r.name, r.db or None))
    ]
    reached = sum(widths)
    parts = tree_size(stmt)[0] + stars * reached
    if parts > SQL_MAX_NODES:
        raise SqlTooLarge(
            f"Its stars would expand the statement to about {parts:,} parts ({stars} * over "
            f"tables of {reached:,} columns in all); the checks take at most {SQL_MAX_NODES:,} "
            "(SQL_MAX_NODES): name the columns you need.",
            bound="SQL_MAX_NODES",
            limit=SQL_MAX_NODES,
            found=parts,
        )


def _qualify_columns(stmt: exp.Expr, schema: Schema, dialect: str) -> None:
    """Resolve every table and column of `stmt` (a copy) against `schema` as `dialect`
    resolves names; raises sqlglot's OptimizeError naming the first that does not resolve,
    and :class:`SqlTooLarge` when its stars would expand past the bound."""
    _check_expansion(stmt, schema)
    schema_named_by(stmt, schema).qualify(stmt.copy(), dialect)


def _resolution_error(stmt: exp.Expr, schema: Schema, dialect: str) -> OptimizeError | None:
    """What qualifying a plain statement's columns raises (None: every name resolves, or the
    statement is not one whose columns are checked)."""
    if isinstance(stmt, exp.Command | exp.Describe | exp.Show | exp.Table):
        return None
    try:
        if not _check_tables(stmt, schema, ""):
            return None
        _qualify_columns(stmt, schema, dialect)
    except OptimizeError as e:
        return e
    except SqlTooLarge:
        raise
    except SqlCheckError:
        return None  # an unknown table: _qualify says so
    return None


def _as_the_database_reads(
    sql: str, stmt: exp.Expr, schema: Schema, dialect: str
) -> tuple[str, str] | None:
    """``(sql, note)``: `sql` with the names the validator would read differently from the
    database rewritten to what the database makes of them (``Database.as_the_database_reads``).

    A database rewrites one name at a time, qualifying the statement again after each (up to
    ``MAX_REWRITES``): the rewrites share a budget of parts qualified, twice the largest
    statement, so a statement at the bounds is not qualified twenty times. Past it the names
    left are taken as resolving, and qualification then says which do not."""
    budget = _REWRITE_BUDGET

    def resolution_error(s: exp.Expr) -> OptimizeError | None:
        nonlocal budget
        parts = tree_size(s)[0]
        if parts > budget:
            return None
        budget -= parts
        return _resolution_error(s, schema, dialect)

    return database_for(dialect).as_the_database_reads(sql, stmt, schema, resolution_error)


def _qualify(stmt: exp.Expr, schema: Schema, dialect: str, sql: str) -> None:
    target: exp.Expr | None = stmt
    if isinstance(stmt, exp.Describe | exp.Show):
        target = stmt.this if isinstance(stmt, exp.Describe) else None
    if isinstance(stmt, exp.Command):
        if str(stmt.this).upper() != "EXPLAIN":
            return  # SHOW ...: nothing to qualify
        inner = explained_statements(stmt, dialect)
        if len(inner) == 1:  # positions in errors are relative to the explained text
            _qualify(inner[0], schema, dialect, explained_text(stmt))
        return
    if target is None or not isinstance(target, exp.Expression):
        return
    if isinstance(target, exp.Table):
        _check_tables(exp.select("*").from_(target.copy()), schema, sql)
        return
    if not _check_tables(target, schema, sql):
        return  # a catalog table: no columns of it to check against
    try:
        _qualify_columns(target, schema, dialect)
    except OptimizeError as e:
        message, position = _qualify_error(e, target, schema, sql)
        raise SqlCheckError(message, stage="schema", sql=sql, position=position) from None


def check_sql(
    sql: str,
    schema: Schema | None,
    dialect: str,
    *,
    allow_write: bool = False,
    allowed_functions: frozenset[str] = frozenset(),
) -> Checked:
    """Parse (transpiling from another dialect when needed), guard and qualify `sql`.

    `allowed_functions` extends the guard's function allowlist (see ``SqlPolicy``).

    Raises :class:`SqlCheckError` with a message fit to send back to the model, or
    :class:`~rsql_sql.errors.Refused` from the read-only guard.
    """
    if not sql.strip():
        raise SqlCheckError(
            "The answer holds no SQL: answer with one statement in a ```sql block.",
            stage="extract",
        )
    transpiled_from = None
    # what is checked and run ends at the statement: a `;` and comments after it are dropped
    sql = without_trailing_semicolons(sql, dialect)
    try:
        stmts = parse_statements(sql, dialect)
    except SqlTooLarge:
        raise  # as large in any dialect
    except SqlCheckError as err:
        found = detect_dialect(sql, dialect)
        if found is None:
            raise
        transpiled_from, sql = found
        stmts = parse_statements(sql, dialect)
        del err
    stmt = check_statements(
        stmts, dialect, allow_write=allow_write, allowed_functions=allowed_functions, sql=sql
    )
    notes = (
        [f"transpiled from {transpiled_from} to {dialect} with sqlglot"] if transpiled_from else []
    )
    if schema is not None:
        read = _as_the_database_reads(sql, stmt, schema, dialect)
        if read is not None:
            sql, note = read
            notes.append(note)
            # what runs is guarded, not what was written
            stmt = check_statements(
                parse_statements(sql, dialect),
                dialect,
                allow_write=allow_write,
                allowed_functions=allowed_functions,
                sql=sql,
            )
        _qualify(stmt, schema, dialect, sql)
    return Checked(sql.strip().rstrip(";").strip(), stmt, transpiled_from, "; ".join(notes) or None)
