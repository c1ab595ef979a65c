"""sqlglot-style messages that point at a token: a caret line under it.

sqlglot marks the offending token with ANSI underline, which neither a model nor a plain-text
log shows. We keep its wording ("... Line 1, Col: 12.") and draw a caret line under the token.
Where an error points is data on the error itself (:class:`~rsql_sql.errors.Position`), so a
caller need not read it back out of the message; the errors live in :mod:`rsql_sql.errors`.
"""

from __future__ import annotations

import re

from rsql_sql.errors import Position

__all__ = ["caret", "offset_of", "pointer", "strip_ansi"]


def offset_of(sql: str, line: int, col: int) -> int:
    """0-based offset of sqlglot's 1-based (line, col)."""
    lines = sql.split("\n")
    line = max(1, min(line, len(lines)))
    return sum(len(x) + 1 for x in lines[: line - 1]) + max(0, col - 1)


def caret(sql: str, start: int, end: int) -> str:
    """The source line holding ``sql[start:end+1]``, and a ``^^^`` line under that token."""
    start = max(0, min(start, len(sql)))
    end = max(start, min(end, max(len(sql) - 1, start)))
    line_start = sql.rfind("\n", 0, start) + 1
    line_end = sql.find("\n", start)
    if line_end < 0:
        line_end = len(sql)
    text = sql[line_start:line_end]
    col = start - line_start
    width = max(1, min(end, line_end - 1) - start + 1)
    # Very long lines (generated SQL often is one line): show a window around the token.
    if len(text) > 120:
        lo = max(0, col - 60)
        hi = min(len(text), col + width + 60)
        text = ("..." if lo else "") + text[lo:hi] + ("..." if hi < len(text) else "")
        col = col - lo + (3 if lo else 0)
    return f"  {text}\n  {' ' * col}{'^' * width}"


def pointer(sql: str, position: Position) -> str:
    """`` Line: 1, Col: 15`` and a caret line under the token: appended to a refusal."""
    return f" Line: {position.line}, Col: {position.column}\n{caret(sql, position.start, position.end)}"


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)
