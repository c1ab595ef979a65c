"""Error types of the %%sql_ai loop, and sqlglot-style messages that point at a token.

sqlglot marks the offending token with ANSI underline, which neither a model nor a plain-text
log shows. We keep its wording ("... Line 1, Col: 12.") and draw a caret line under the token.
Like sqlglot's ``ParseError``, an error also keeps where it points as data (:class:`Position`),
so a caller need not read it back out of the message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rsql_magic.errors import RSQLError

from .stages import CHECK_STAGES, STAGES, CheckStage, Stage  # a leaf the proxy reads too

__all__ = [
    "CHECK_STAGES",
    "STAGES",
    "CheckStage",
    "Position",
    "Refused",
    "SqlCheckError",
    "Stage",
    "caret",
    "check_stage",
    "offset_of",
    "pointer",
    "strip_ansi",
]


def check_stage(stage: str, allowed: frozenset[str] = STAGES) -> None:
    """Raise ValueError unless `stage` is one of `allowed`: a typo must not become a new stage."""
    if stage not in allowed:
        raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(sorted(allowed))}")


@dataclass(frozen=True)
class Position:
    """Where an error points in the SQL text that was checked, from sqlglot's token ``meta``:
    1-based ``line``, ``column`` as sqlglot counts it (the token's last character, 1-based), and
    ``start`` / ``end``, 0-based offsets of the token's first and last character."""

    line: int
    column: int
    start: int
    end: int


class SqlCheckError(RSQLError):
    """A generated statement failed a check; ``message`` is what the model is told.

    ``stage``: one of :data:`CheckStage`. ``line``, ``column``, ``start``, ``end``: where in the
    checked text the error points (see :class:`Position`), None when unknown.
    """

    def __init__(
        self,
        message: str,
        *,
        stage: CheckStage,
        sql: str | None = None,
        position: Position | None = None,
    ) -> None:
        check_stage(stage, CHECK_STAGES)
        super().__init__(message)
        self.message = message
        self.stage = stage
        self.sql = sql
        self.position = position
        self.line = position.line if position else None
        self.column = position.column if position else None
        self.start = position.start if position else None
        self.end = position.end if position else None


class Refused(SqlCheckError):
    """The read-only guard refused the statement: nothing ran."""

    def __init__(
        self, message: str, *, sql: str | None = None, position: Position | None = None
    ) -> None:
        super().__init__(message, stage="refused", sql=sql, position=position)


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
