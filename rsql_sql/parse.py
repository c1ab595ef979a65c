"""Parsing generated SQL with sqlglot, shared by the guard and the validator.

``parse_statements`` parses in the target dialect; a failure becomes a :class:`SqlCheckError`
(stage "parse") whose message keeps sqlglot's wording, points at the token, and whose
position is kept as data. ``explained_text`` / ``explained_statements`` reach the statement an
``EXPLAIN`` command explains, which sqlglot keeps as text.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, TokenError

from rsql_sql.errors import Position, SqlCheckError

from .carets import caret, offset_of, strip_ansi

__all__ = ["explained_statements", "explained_text", "parse_statements", "quiet_sqlglot"]


@contextlib.contextmanager
def quiet_sqlglot() -> Iterator[None]:
    """sqlglot logs a warning when it falls back to a Command (EXPLAIN, SHOW): not ours to show."""
    log = logging.getLogger("sqlglot")
    old = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(old)


def _parse_error(e: ParseError | TokenError, sql: str) -> tuple[str, Position | None]:
    """The message for the model and, when sqlglot knows it, where the error points."""
    if isinstance(e, ParseError) and e.errors:
        err = e.errors[0]
        desc = err.get("description") or "Invalid expression"
        line, col = err.get("line") or 1, err.get("col") or 1
        hl = err.get("highlight") or ""
        end = offset_of(sql, line, col)
        start = end - max(1, len(hl)) + 1
        msg = f"{desc}. Line {line}, Col: {col}."
        return f"{msg}\n{caret(sql, start, end)}", Position(line, col, start, end)
    return strip_ansi(str(e)), None


def parse_statements(sql: str, dialect: str) -> list[exp.Expr]:
    """Parse every statement of `sql`; raise :class:`SqlCheckError` (stage "parse")."""
    try:
        with quiet_sqlglot():
            stmts = sqlglot.parse(sql, read=dialect, error_level=ErrorLevel.RAISE)
    except (ParseError, TokenError) as e:
        message, position = _parse_error(e, sql)
        raise SqlCheckError(message, stage="parse", sql=sql, position=position) from None
    return [s for s in stmts if s is not None]


_EXPLAIN_OPTS = re.compile(
    r"^\s*(?:\((?:[^()]|\([^()]*\))*\)|ANALYZE|ANALYSE|VERBOSE|QUERY\s+PLAN|FORMAT\s+\w+)\s*",
    re.IGNORECASE,
)


def explained_text(stmt: exp.Command) -> str:
    """The text of the statement an ``EXPLAIN [ANALYZE] [(options)]`` command explains."""
    arg = stmt.expression
    text = arg.name if isinstance(arg, exp.Literal) else str(arg or "")
    while True:  # strip EXPLAIN's options to reach the statement it explains
        m = _EXPLAIN_OPTS.match(text)
        if not m or not m.group(0):
            break
        text = text[m.end() :]
    return text


def explained_statements(stmt: exp.Command, dialect: str) -> list[exp.Expr]:
    """The statement(s) an EXPLAIN command explains, parsed."""
    return parse_statements(explained_text(stmt), dialect)
