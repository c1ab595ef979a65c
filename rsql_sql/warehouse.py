"""The warehouse tools: search the schema, describe a table, run one read-only query.

One set of functions over a :class:`~rsql_sql.connections.DB`, used by the kernel's agent
tools and by MCP (``rsql-mcp``). A model calls them with text it wrote, possibly steered by
data it read earlier (prompt injection), so each is bounded and read-only by construction:

- ``search_schema``: the ranked, budgeted schema text %%sql_ai sends (``describe_schema``); the
  values that steer the ranking are read only where the context policy allows them, and never
  shown.
- ``describe_table``: one table's DDL and columns; names and types only, no value.
- ``run_sql``: the statement goes through ``check_sql`` (parse, the read-only guard, the database
  rules, qualification against the captured schema) and then ``DB.query`` with a ``SqlPolicy``,
  so the database's own walls stand behind the guard (SQLite's authorizer and ``query_only``,
  DuckDB's parser check and read-only transaction, PostgreSQL's read-only transaction and
  role), within a row, byte and time bound: exactly %%sql_ai's path. A refusal is returned,
  never raised. The context policy is applied before anything runs: a statement that names a
  redacted column anywhere (not only in its output: a ``WHERE`` on it answers questions about
  its values too) is refused, and so is any statement whose columns cannot all be told.
  It reads the tables the captured schema describes and nothing else of the server: a catalog
  or system table (PostgreSQL's pg_catalog and information_schema, SQLite's sqlite_master,
  DuckDB's) and ``SHOW`` are refused, since what they hold (other schemas' tables, roles,
  functions' source, settings) is not what an admin serves; ``search_schema`` and
  ``describe_table`` give the served tables' names and types. The call's time limit counts
  from before the checks: the statement gets what the checks left of it.

Results are plain text: each value as its ``str``, with line breaks and the characters a
terminal obeys written as escapes (so a value cannot forge a row or a line of the answer), cut
to a bound per value and per result. Markup in a value is text; nothing here renders it.
"""

from __future__ import annotations

import difflib
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from sqlglot import exp

from rsql_common.context_policy import REDACTED, ContextPolicy
from rsql_common.terminal import shown
from rsql_common.tokens import CHARS_PER_TOKEN, token_chars
from rsql_sql.checks.validate import Checked, check_sql, schema_named_by
from rsql_sql.connections import DB
from rsql_sql.errors import QueryTimeout, SqlCheckError
from rsql_sql.execute import database_error_message
from rsql_sql.parse import explained_statements
from rsql_sql.policy import SqlPolicy
from rsql_sql.schema import Schema, capture_schema, capture_values, describe_schema
from rsql_sql.schema.render import render_ddl

__all__ = [
    "CATALOGUE",
    "MAX_CELL_CHARS",
    "SqlToolResult",
    "ToolBounds",
    "WarehouseTool",
    "describe_table",
    "run_sql",
    "search_schema",
]

MAX_CELL_CHARS = 200  # one value in the text; longer ones end in "..."
# A tool result goes into a prompt: far less than %%sql_ai's 50 MB frame bound is ever useful.
TOOL_MAX_BYTES = 2 * 1024 * 1024
COUNT_UP_TO = 500  # rows fetched to say how many there are; beyond: "more than"
SCHEMA_TTL_S = 60.0  # a captured schema is reused this long (one tool call after another)
CAPTURE_TIMEOUT_S = 10.0
MAX_NAME_CHARS = 200  # a table name echoed back in a message


@dataclass(frozen=True)
class SqlToolResult:
    """What ``run_sql`` returns. ``text`` goes back to the model: a bounded plain-text table, or
    the refusal or error. ``rows``: the first rows only (at most ``max_rows``); ``row_count``:
    the total when it was counted (up to ``COUNT_UP_TO``), None when there are more.
    ``refused``: non-empty when nothing ran (the guard's, parser's, schema's, policy's or a
    database wall's message, pointing at the token). ``error``: non-empty when the statement ran
    and failed (a database error with its values removed, or the time bound)."""

    text: str
    columns: list[str]
    rows: list[tuple[Any, ...]]
    row_count: int | None
    refused: str = ""
    error: str = ""


# -- the schema, captured once per connection for a while ---------------------------------

# (the connection's id, the role it is read as) -> (when, the connection, its schema)
_SCHEMAS: dict[tuple[int, str], tuple[float, Any, Schema]] = {}
_SCHEMAS_MAX = 16
_LOCK = threading.Lock()


def _target(db: DB) -> Any:
    # a DB wrapper may be made per call: the connection under it is what stays the same
    return getattr(db, "raw", None) or getattr(db, "bind", None) or db


def _as_the_role_reads(db: DB, schema: Schema, sql_policy: SqlPolicy) -> Schema:
    """`schema` (read as the connection's login) cut to the tables `sql_policy`'s role may
    read, and to the foreign keys between them: a table of a schema the role cannot use, or
    one it has no grant on, is not served, so not shown by name either."""
    from rsql_sql.databases.postgres import readable_tables

    readable = readable_tables(db, sql_policy, CAPTURE_TIMEOUT_S)
    schema.tables = [t for t in schema.tables if (t.db, t.name) in readable]
    for t in schema.tables:
        t.foreign_keys = [
            fk
            for fk in t.foreign_keys
            if (fk.ref_db or schema.default_db, fk.ref_table) in readable
        ]
    return schema


def _schema(db: DB, sql_policy: SqlPolicy | None = None) -> Schema:
    """`db`'s captured schema, as `sql_policy`'s PostgreSQL role may read it when it names one;
    reused for SCHEMA_TTL_S."""
    target = _target(db)
    role = sql_policy.postgres_role if sql_policy is not None else None
    role = role if role and db.database.runs_as_role else None
    key = (id(target), role or "")
    now = time.monotonic()
    with _LOCK:
        hit = _SCHEMAS.get(key)
        # the object is held in the entry, so its id cannot be reused while the entry lives
        if hit is not None and hit[1] is target and now - hit[0] < SCHEMA_TTL_S:
            return hit[2]
    schema = capture_schema(db, timeout_s=CAPTURE_TIMEOUT_S)
    if role and sql_policy is not None:
        schema = _as_the_role_reads(db, schema, sql_policy)
    with _LOCK:
        if len(_SCHEMAS) >= _SCHEMAS_MAX:
            _SCHEMAS.pop(min(_SCHEMAS, key=lambda k: _SCHEMAS[k][0]))
        _SCHEMAS[key] = (now, target, schema)
    return schema


def forget_schema(db: DB) -> None:
    """Capture `db`'s schema again on the next call (after the user changed its tables)."""
    target = id(_target(db))
    with _LOCK:
        for key in [k for k in _SCHEMAS if k[0] == target]:
            _SCHEMAS.pop(key, None)


# -- search_schema and describe_table -----------------------------------------------------


def search_schema(
    db: DB,
    question: str,
    *,
    policy: ContextPolicy | None = None,
    budget_tokens: int = 1500,
    sql_policy: SqlPolicy | None = None,
) -> str:
    """The schema text %%sql_ai would send for `question`: tables ranked by relevance, as DDL,
    within `budget_tokens`; the tables that do not fit are named.

    `policy`: only one that allows value statistics lets short text columns' values steer the
    ranking (read inside `sql_policy`'s walls, never from a redacted column); a value equal to
    a literal of the question is shown on its column as an example."""
    schema = _schema(db, sql_policy)
    # a frozen ContextPolicy is what the schema code's ValuesPolicy protocol describes, but a
    # protocol's plain attributes read as settable to mypy
    values_policy: Any = policy
    # reads nothing unless the policy allows values (and resets what an earlier call read)
    capture_values(
        db, schema, policy=values_policy, sql_policy=sql_policy, question=question or None
    )
    budget = max(200, token_chars(int(budget_tokens)))
    return describe_schema(schema, question or None, None, budget, db.dialect, policy=values_policy)


def _split_name(name: str) -> tuple[str | None, str]:
    quotes = "\"'`[] "
    db_part, _, table = name.strip().rpartition(".")
    return (db_part.strip(quotes) or None), table.strip(quotes)


def describe_table(
    db: DB,
    table: str,
    *,
    policy: ContextPolicy | None = None,
    sql_policy: SqlPolicy | None = None,
) -> str:
    """`table`'s DDL (columns, types, keys) and its columns one a line, those whose values the
    context policy withholds marked; no value is read. An unknown table gets a message naming
    the closest tables. With `sql_policy`'s PostgreSQL role, only the tables it may read are
    known (as in ``search_schema`` and ``run_sql``)."""
    schema = _schema(db, sql_policy)
    db_part, name = _split_name(table)
    found = schema.table(name, db_part)
    if found is None:
        asked = shown(table.strip())[:MAX_NAME_CHARS]
        names = [f"{t.db}.{t.name}" if t.db != schema.default_db else t.name for t in schema.tables]
        close = difflib.get_close_matches(name, [t.name for t in schema.tables], n=5, cutoff=0.6)
        if close:
            hint = f" Did you mean: {', '.join(close)}?"
        elif names and len(names) <= 50:
            hint = f" Known tables: {', '.join(names)}."
        elif names:
            hint = f" There are {len(names)} tables; search_schema finds the relevant ones."
        else:
            hint = " The database has no tables."
        return f"Table '{asked}' does not exist.{hint}"
    lines = [render_ddl(found, schema, db.dialect), "", "Columns:"]
    for c in found.columns:
        note = (
            " (values withheld by the context policy)" if policy and policy.redacts(c.name) else ""
        )
        key = " primary key" if c.name in found.primary_key else ""
        null = "" if c.nullable else " not null"
        lines.append(f"- {c.name}: {c.type or 'untyped'}{key}{null}{note}")
    if found.columns_truncated:
        lines.append(f"- ... {found.columns_truncated} more columns")
    return shown("\n".join(lines))


# -- run_sql ------------------------------------------------------------------------------


# The guard words its refusals for %%sql_ai, whose user may pass --allow-write; no caller of
# these tools can, so the model is not told it could.
_SQL_AI_WORDING = (
    (
        re.compile(r"%%sql_ai runs only (.*?) unless --allow-write is given"),
        r"These tools run only \1",
    ),
    (re.compile(r";? ?--allow-write does not lift this"), ""),
)


def _refusal(message: str) -> SqlToolResult:
    for pattern, repl in _SQL_AI_WORDING:
        message = pattern.sub(repl, message)
    text = message if message.lower().startswith("refused") else f"Nothing ran: {message}"
    return SqlToolResult(text=text, columns=[], rows=[], row_count=None, refused=message)


def _unserved_table(stmt: exp.Expr, schema: Schema) -> str:
    """The first table `stmt` reads that the captured schema does not describe ('' if none):
    a catalog or system table (a table function's arguments are walked like any value)."""
    ctes = {c.alias_or_name.lower() for c in stmt.find_all(exp.CTE)}
    for t in stmt.find_all(exp.Table):
        if not isinstance(t.this, exp.Identifier) or (not t.db and t.name.lower() in ctes):
            continue  # a table function, or a CTE
        if schema.table(t.name, t.db or None) is None:
            return f"{t.db}.{t.name}" if t.db else t.name
    return ""


def _unserved(checked: Checked, schema: Schema, dialect: str) -> str:
    """Why `checked` reads more of the server than the tables served ('' when it does not)."""
    stmt = checked.statement
    if isinstance(stmt, exp.Show) or (
        isinstance(stmt, exp.Command) and str(stmt.this).upper() == "SHOW"
    ):
        return (
            "Refused: SHOW reads the server's settings and catalog, not the tables these tools "
            "serve; search_schema and describe_table give their names and types; nothing ran."
        )
    if isinstance(stmt, exp.Command):  # EXPLAIN: what it explains reads the same tables
        if str(stmt.this).upper() != "EXPLAIN":
            return ""
        inner = explained_statements(stmt, dialect)
        name = next((n for s in inner if (n := _unserved_table(s, schema))), "")
    elif isinstance(stmt, exp.Describe):
        return ""  # names and types only
    else:
        name = _unserved_table(stmt, schema)
    if not name:
        return ""
    return (
        f"Refused: {shown(name)[:MAX_NAME_CHARS]} is not one of the tables these tools serve (a "
        "catalog or system table holds other tables, roles, functions and settings); "
        "search_schema and describe_table give the served tables' names and types; nothing ran."
    )


def _withheld(checked: Checked, schema: Schema, dialect: str, policy: ContextPolicy | None) -> str:
    """Why `checked` may not run under `policy`'s redacted columns ('' when it may).

    Conservative by design: refusing a harmless statement costs the model one more try, while
    letting a value through cannot be undone. A statement is refused when any of its names
    (select list, WHERE, JOIN ... USING, ORDER BY, a subquery's, a NATURAL join's, as
    qualification spells them out) is a redacted column; when it reaches columns without naming
    them: a star or DuckDB's COLUMNS() left unexpanded, a column by position (``#3``), a table
    used as a value (its whole row), a table alias that renames the table's columns; and when it
    reads a table the captured schema does not describe (a catalog table such as PostgreSQL's
    pg_stats holds sampled values)."""
    if policy is None or not policy.redact_columns:
        return ""
    pats = ", ".join(policy.redact_columns)
    stmt = checked.statement
    if isinstance(stmt, exp.Describe):
        return ""  # names and types only
    if not isinstance(stmt, exp.Query):  # EXPLAIN, SHOW: not read here, so not allowed
        return (
            "Refused: while the context policy withholds the values of columns matching "
            f"{pats}, only plain queries run here; nothing ran."
        )
    try:
        q = schema_named_by(stmt, schema).qualify(stmt.copy(), dialect)
    except Exception:
        return (
            "Refused: the columns this statement reads cannot all be told, and the context "
            f"policy withholds the values of columns matching {pats}; name the columns; "
            "nothing ran."
        )
    ctes = {c.alias_or_name.lower() for c in q.find_all(exp.CTE)}
    for t in q.find_all(exp.Table):
        if not isinstance(t.this, exp.Identifier) or (not t.db and t.name.lower() in ctes):
            continue  # a table function (its arguments are walked below), or a CTE
        if schema.table(t.name, t.db or None) is None:
            return (
                f"Refused: {t.name} is not a table of the captured schema, so the columns it "
                f"exposes cannot be checked against the context policy ({pats}); nothing ran."
            )
    # every name a table or its alias goes by: used as a value, such a name is the whole row
    # (DuckDB ``SELECT people FROM people``, PostgreSQL ``row_to_json(p)``), every column in it
    sources = {
        n.name.lower()
        for n in q.find_all(exp.Table, exp.TableAlias)
        if isinstance(n.this, exp.Identifier) and n.name
    }
    for node in q.walk():
        if isinstance(node, exp.PositionalColumn):  # DuckDB's #3: a column without its name
            return (
                "Refused: a column by position (#n) cannot be checked against the context "
                f"policy ({pats}); name the columns; nothing ran."
            )
        if (
            isinstance(node, exp.TableAlias)
            and node.args.get("columns")
            and isinstance(node.parent, exp.Table)
            and isinstance(node.parent.this, exp.Identifier)
        ):  # people AS p(a, b, c) renames the table's own columns, a withheld one among them
            return (
                "Refused: renaming a table's columns in its alias hides which of them are "
                f"withheld by the context policy ({pats}); alias each column instead; nothing ran."
            )
        if (
            isinstance(node, exp.Identifier)
            and node.name.lower() in sources
            and not isinstance(node.parent, exp.Table | exp.TableAlias)
            and not (isinstance(node.parent, exp.Column) and node.arg_key != "this")
        ):
            return (
                f"Refused: {node.name} is a table used as a value (its whole row, withheld "
                f"columns matching {pats} included); name the columns; nothing ran."
            )
        if isinstance(node, exp.Columns) or (
            isinstance(node, exp.Star) and not isinstance(node.parent, exp.Count)
        ):
            return (
                "Refused: a * or COLUMNS() is left that could not be expanded into named "
                f"columns, and the context policy withholds columns matching {pats}; name the "
                "columns; nothing ran."
            )
        if isinstance(node, exp.Identifier) and policy.redacts(node.name):
            # an output name (AS ssn), a table or its alias is a name, not a read
            if isinstance(node.parent, exp.Alias | exp.Table | exp.TableAlias):
                continue
            return (
                f"Refused: the statement uses the column {node.name}, whose values the context "
                f"policy withholds (columns matching {pats}); leave it out; nothing ran."
            )
    return ""


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(bytes(value))} bytes>"
    text = str(value)
    if len(text) > MAX_CELL_CHARS * 2:
        text = text[: MAX_CELL_CHARS * 2]  # escaping below may lengthen it; cut after that too
    # a line break would let a value forge a row (or a line of the answer): written as escapes
    for raw, esc in (("\\", "\\\\"), ("\r", "\\r"), ("\n", "\\n"), ("\t", "\\t")):
        text = text.replace(raw, esc)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    text = shown(text)
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 3] + "..."


def _table_text(
    columns: list[str],
    rows: list[tuple[Any, ...]],
    total: int | None,
    max_chars: int,
    *,
    at_least: int,
    notes: list[str],
) -> str:
    """`rows` under a header of `columns`, one a line, as many as fit `max_chars` with the
    footer (how many rows there are, and `notes`)."""
    header = " | ".join(_cell(c) for c in columns)
    lines = [header]
    used = len(header) + 1
    tail = "".join(f"\n({n})" for n in notes)
    room = max_chars - 100 - len(tail)  # kept for the footer
    shown_rows = 0
    for row in rows:
        line = " | ".join(_cell(v) for v in row)
        if used + len(line) + 1 > room:
            break
        lines.append(line)
        used += len(line) + 1
        shown_rows += 1
    of = f"{total}" if total is not None else f"at least {at_least}"
    if total == 0:
        lines.append("(no rows)")
    elif shown_rows == total:
        lines.append(f"({total} row{'s' if total != 1 else ''})")
    else:
        why = "" if shown_rows == len(rows) else "; the text bound was reached"
        lines.append(f"(first {shown_rows} of {of} rows shown{why})")
    text = "\n".join(lines) + tail
    return text if len(text) <= max_chars else text[: max(0, max_chars - 3)] + "..."


def run_sql(
    db: DB,
    sql: str,
    *,
    sql_policy: SqlPolicy | None = None,
    policy: ContextPolicy | None = None,
    max_rows: int = 20,
    timeout_s: float = 10.0,
    max_chars: int = 6000,
) -> SqlToolResult:
    """Run one read-only statement as %%sql_ai runs its checked SQL, and return its first
    `max_rows` rows as plain text within `max_chars`.

    Nothing the guard, the database rules, the schema check or the context policy refuses runs,
    nor a statement reading a table the captured schema does not describe (a catalog);
    what runs meets the database's own read-only walls under `sql_policy` (allowed functions,
    PostgreSQL role) and a byte bound, within what the checks left of `timeout_s` (the schema,
    read once a minute, has a bound of its own). A refusal comes back in ``refused``, a
    database error (values removed) or a timeout in ``error``; neither raises. A policy that
    withholds sample rows or value statistics lets no result out at all."""
    walls = sql_policy or SqlPolicy()
    max_rows = max(1, int(max_rows))
    max_chars = max(300, int(max_chars))  # room for a header and the footer
    if policy is not None and not (policy.sample_rows and policy.value_stats):
        kinds = (("sample rows", policy.sample_rows), ("value statistics", policy.value_stats))
        withheld = [what for what, allowed in kinds if not allowed]
        return _refusal(
            f"Refused: the context policy withholds {' and '.join(withheld)}, so no query "
            "result may be sent; nothing ran."
        )
    schema = _schema(db, walls)
    clock = time.monotonic()  # the call's time limit counts the checks, then the statement's
    try:
        checked = check_sql(
            sql, schema, db.dialect, allow_write=False, allowed_functions=walls.allowed_functions
        )
    except SqlCheckError as e:
        return _refusal(e.message)
    why = _unserved(checked, schema, db.dialect) or _withheld(checked, schema, db.dialect, policy)
    if why:
        return _refusal(why)
    spent = time.monotonic() - clock
    if spent >= timeout_s:
        msg = (
            f"Checking the statement took {spent:.2f} s, all of this call's time limit of "
            f"{timeout_s:g} s; nothing ran. Write a shorter statement."
        )
        return SqlToolResult(text=msg, columns=[], rows=[], row_count=None, error=msg)
    cap = min(walls.max_result_bytes or TOOL_MAX_BYTES, TOOL_MAX_BYTES)
    bounded = replace(walls, max_result_bytes=cap)
    try:
        # what run_query does for %%sql_ai, with rows kept as tuples (no DataFrame's dtypes)
        fetched = db.query(
            checked.sql,
            max_rows=max(max_rows, COUNT_UP_TO),
            timeout_s=timeout_s - spent,
            read_only=True,
            policy=bounded,
            max_bytes=cap,
        )
    except SqlCheckError as e:  # a database wall refused it before it ran (DuckDB's parser)
        return _refusal(e.message)
    except QueryTimeout:
        msg = (
            f"statement cancelled after {timeout_s:g} s, this call's time limit (its check "
            "included). Make the query cheaper: filter earlier, aggregate, or add a LIMIT."
        )
        return SqlToolResult(text=msg, columns=[], rows=[], row_count=None, error=msg)
    except Exception as e:
        known = [n for t in schema.tables for n in (t.name, *(c.name for c in t.columns))]
        msg = shown(database_error_message(e, checked.sql, known))
        return SqlToolResult(text=msg, columns=[], rows=[], row_count=None, error=msg)
    columns = [str(c) for c in fetched.columns]
    hidden = [i for i, c in enumerate(columns) if policy is not None and policy.redacts(c)]
    rows = [tuple(REDACTED if i in hidden else v for i, v in enumerate(r)) for r in fetched.rows]
    total = None if fetched.more else len(rows)
    notes = []
    if fetched.capped_bytes:
        notes.append(f"fetching stopped at the result bound of {cap // 1024} kB")
    if checked.note:
        notes.append(f"note: {shown(checked.note)[:MAX_CELL_CHARS]}")
    at_least = len(rows) + (1 if fetched.more else 0)
    text = _table_text(columns, rows[:max_rows], total, max_chars, at_least=at_least, notes=notes)
    return SqlToolResult(text=text, columns=columns, rows=rows[:max_rows], row_count=total)


# -- the catalogue: every caller offers these tools to a model from here ----------------------


@dataclass(frozen=True)
class ToolBounds:
    """What one caller's warehouse tools run within: the context policy and the walls of
    generated SQL, the rows and time of a query, the characters of a result (search_schema's
    budget too)."""

    policy: ContextPolicy | None = None
    sql_policy: SqlPolicy | None = None
    max_rows: int = 20
    timeout_s: float = 10.0
    max_chars: int = 6000


@dataclass(frozen=True)
class WarehouseTool:
    """One warehouse tool as the kernel's agent, rsql-eval's agent and both MCP servers offer
    it: its name, what the model is told it does and takes (every argument a string; a caller
    holding many connections adds ``connection`` first), and the function that runs it."""

    name: str
    description: str
    parameters: tuple[tuple[str, str], ...]  # (argument, what the model is told it is)
    run: Callable[[DB, Mapping[str, str], ToolBounds], str | SqlToolResult]


def _run_search(db: DB, args: Mapping[str, str], b: ToolBounds) -> str:
    budget = max(200, b.max_chars // CHARS_PER_TOKEN)
    return search_schema(
        db, args["question"], policy=b.policy, budget_tokens=budget, sql_policy=b.sql_policy
    )


def _run_describe(db: DB, args: Mapping[str, str], b: ToolBounds) -> str:
    return describe_table(db, args["table"], policy=b.policy, sql_policy=b.sql_policy)


def _run_sql(db: DB, args: Mapping[str, str], b: ToolBounds) -> SqlToolResult:
    return run_sql(
        db,
        args["sql"],
        sql_policy=b.sql_policy,
        policy=b.policy,
        max_rows=b.max_rows,
        timeout_s=b.timeout_s,
        max_chars=b.max_chars,
    )


CATALOGUE: dict[str, WarehouseTool] = {
    t.name: t
    for t in (
        WarehouseTool(
            "search_schema",
            "The tables most relevant to a question, as CREATE TABLE statements within a "
            "budget; the tables that do not fit are named.",
            (("question", "What you want to find in the database."),),
            _run_search,
        ),
        WarehouseTool(
            "describe_table",
            "One table: its columns, types and keys (names and types only, no values).",
            (("table", "The table's name, as search_schema shows it."),),
            _run_describe,
        ),
        WarehouseTool(
            "run_sql",
            "Run one read-only SQL statement (SELECT, WITH ... SELECT, EXPLAIN) in the "
            "database's own dialect; returns the first rows and the row count as text. Writes, "
            "file and network access, settings, unknown functions and redacted columns are "
            "refused; nothing refused runs.",
            (("sql", "One SELECT statement in the database's dialect."),),
            _run_sql,
        ),
    )
}
