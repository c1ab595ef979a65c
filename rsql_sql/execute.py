"""Run a checked statement and turn the result into a DataFrame; word database errors."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from .connections import DB
from .databases.postgres import DECLARE_PREFIX
from .policy import SqlPolicy

__all__ = [
    "QueryResult",
    "database_error_message",
    "function_names_in_error",
    "run_query",
    "sanitize_error",
]


@dataclass
class QueryResult:
    frame: pd.DataFrame
    more: bool  # the result had more rows than were fetched
    elapsed_s: float
    capped_bytes: int | None = None  # fetching stopped at this byte bound


def run_query(
    db: DB,
    sql: str,
    *,
    max_rows: int,
    timeout_s: float | None,
    read_only: bool = True,
    policy: SqlPolicy | None = None,
) -> QueryResult:
    """Run generated `sql` on `db`, fetch at most `max_rows` rows and the policy's
    ``max_result_bytes``, cancel after `timeout_s`.

    The executor of checked statements: with `read_only` the database's own walls apply too
    (read-only transaction, authorizer, DuckDB's parser, role; see ``connections``), under
    `policy` or the default one, whether or not the guard saw the statement.
    """
    t0 = time.perf_counter()
    policy = policy or SqlPolicy()
    fetched = db.query(
        sql,
        max_rows=max_rows,
        timeout_s=timeout_s,
        read_only=read_only,
        policy=policy,
        max_bytes=policy.max_result_bytes,
    )
    frame = pd.DataFrame.from_records(fetched.rows, columns=fetched.columns)
    return QueryResult(frame, fetched.more, time.perf_counter() - t0, fetched.capped_bytes)


def _root(e: BaseException) -> BaseException:
    # SQLAlchemy wraps the driver's exception; its own text appends the SQL and a URL.
    return getattr(e, "orig", None) or e


def database_error_message(
    e: BaseException, sql: str | None = None, names: Iterable[str] = ()
) -> str:
    """The driver's own message (PostgreSQL's includes ``LINE 1: ...`` and a caret).

    With `sql` (the statement that failed), the message is reduced to what a model needs to fix
    its SQL: see :func:`sanitize_error` (`names`: table and column names it may keep).
    """
    root = _root(e)
    msg = str(root).strip()
    msg = re.sub(r"\n?\[SQL: .*", "", msg, flags=re.DOTALL).strip()
    msg = f"{type(root).__name__}: {msg}"
    return msg if sql is None else sanitize_error(msg, sql, names=names)


WITHHELD = "<value withheld>"

# Lines a driver adds after the message. DETAIL and CONTEXT quote rows and values; HINT and
# DuckDB's candidate lists are kept only after the same filtering as the message.
_DROP_LINES = re.compile(r"^\s*(DETAIL|CONTEXT|WHERE|QUERY|STATEMENT|INTERNAL QUERY)\b", re.I)
_LINE_OF_SQL = re.compile(r"^\s*LINE \d+:")
# PostgreSQL echoes the statement it ran: a query runs as our server-side cursor's DECLARE.
_DECLARE = re.compile(
    rf'(?:DECLARE "?{DECLARE_PREFIX}\d+"?|\.\.\.[^\n]*?{DECLARE_PREFIX}\d+"?) CURSOR '
    r"(?:WITHOUT HOLD )?FOR "
)
_QUOTED = re.compile(r"\"(?:[^\"]|\"\")*\"|'(?:[^']|'')*'")
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")
# Numbers that are positions, not values: "LINE 1:", "position 12", "Line 1, Col: 5"
_POSITION_WORDS = re.compile(r"(?:line|col|column|position|character|pos)\s*:?\s*$", re.IGNORECASE)


def sanitize_error(
    message: str, sql: str, *, names: Iterable[str] = (), max_chars: int = 1200
) -> str:
    """A database error with every value that did not come from `sql` removed.

    A model can make the database quote data in its errors (``CAST(secret AS int)`` puts the
    secret into "invalid input syntax ..."), and the error goes back to the model. What stays:
    the error class and message wording, positions, the ``LINE n:`` echo of the model's own SQL
    with its caret, and quoted text or numbers that are a word, literal or identifier of the SQL
    or one of `names` (the schema's tables and columns, which the model was given); other quoted
    text and numbers become ``<value withheld>``; DETAIL / CONTEXT lines go.
    """
    low_sql = sql.lower()
    known = {w.lower() for w in names}
    known.update(w.lower() for w in re.findall(r"[\w$]+", sql))
    known.update(
        m.group(0)[1:-1].replace("''", "'").replace('""', '"').lower()
        for m in _QUOTED.finditer(sql)
    )
    out: list[str] = []
    keep_next_caret = False
    shift = 0
    for line in message.splitlines():
        if _DROP_LINES.match(line):
            keep_next_caret = False
            continue
        declared = _DECLARE.search(line) if _LINE_OF_SQL.match(line) else None
        if _LINE_OF_SQL.match(line):  # the model's own text, and its caret moved back under it
            shift = declared.end() - declared.start() if declared else 0
        if declared:
            line = line[: declared.start()] + line[declared.end() :]
        if _LINE_OF_SQL.match(line):
            # the database echoes a line of the statement: keep it only if it is the model's
            echoed = line.split(":", 1)[1].strip()
            if echoed.strip(".").strip().lower() in low_sql or not echoed:
                out.append(line)
                keep_next_caret = True
            else:
                keep_next_caret = False
            continue
        if keep_next_caret and line.strip() and set(line.strip()) <= {"^"}:
            out.append(line[shift:] if line[:shift].strip() == "" else line)
            continue
        keep_next_caret = False
        out.append(_scrub(line, known))
    text = "\n".join(x.rstrip() for x in out).strip()
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."


def _scrub(line: str, known: set[str]) -> str:
    # Whole words and literals only: a substring test would let short values through.
    def quoted(m: re.Match[str]) -> str:
        q = m.group(0)
        inner = q[1:-1]
        if inner.strip() and inner.lower() in known:
            return q
        return q[0] + WITHHELD + q[-1]

    def number(m: re.Match[str]) -> str:
        before = m.string[: m.start()]
        if _POSITION_WORDS.search(before) or m.group(0).lstrip("+-") in known:
            return m.group(0)
        return WITHHELD

    parts = []
    last = 0
    for m in _QUOTED.finditer(line):
        parts.append(_NUMBER.sub(number, line[last : m.start()]))
        parts.append(quoted(m))
        last = m.end()
    parts.append(_NUMBER.sub(number, line[last:]))
    return "".join(parts)


_FUNC_ERRORS = (
    re.compile(r"function ([A-Za-z_][\w.]*)\(", re.IGNORECASE),  # PostgreSQL
    re.compile(r"no such function: ([A-Za-z_]\w*)", re.IGNORECASE),  # SQLite
    re.compile(r"Function with name \"?([A-Za-z_]\w*)\"? does not exist", re.IGNORECASE),  # DuckDB
    re.compile(r"'([A-Za-z_]\w*)' is not a recognized built-in function", re.IGNORECASE),  # T-SQL
    re.compile(r"FUNCTION [\w.]*?\.?([A-Za-z_]\w*) does not exist", re.IGNORECASE),  # MySQL
)


def function_names_in_error(e: BaseException | str) -> set[str]:
    """Upper-case names of functions a database error says do not exist."""
    text = e if isinstance(e, str) else str(_root(e))
    out: set[str] = set()
    for rx in _FUNC_ERRORS:
        out.update(m.group(1).split(".")[-1].upper() for m in rx.finditer(text))
    return out


# SQLite names the token its parser stopped at; nothing from the data is in such a message
_SQLITE_SYNTAX = re.compile(r'^(near "[^"]*": syntax error|incomplete input)$')


def is_syntax_error(e: BaseException) -> bool:
    """Did the database reject the statement's syntax (not its names, types or data)? Decided
    by the error's class and code, never by searching its text, which can quote a value."""
    root = _root(e)
    code = getattr(root, "sqlstate", None) or getattr(root, "pgcode", None)
    if isinstance(code, str):
        return code == "42601"  # PostgreSQL: syntax_error
    if type(root).__name__ == "ParserException":  # DuckDB
        return True
    return type(root).__name__ == "OperationalError" and bool(_SQLITE_SYNTAX.match(str(root)))
