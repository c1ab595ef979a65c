"""String literals a database may read two ways: with or without backslash escapes.

PostgreSQL reads ``'\\'`` as a whole string, but with the legacy setting
``standard_conforming_strings = off`` (per database or role) the backslash escapes the quote
and the string runs on: ``SELECT '\\' AS q, '; COMMIT; CREATE TABLE ...; -- '`` is one SELECT
to the guard and three statements to the server. MySQL is the mirror image (escapes, unless
``NO_BACKSLASH_ESCAPES``). So a statement must tokenize the same both ways, or it is refused:
the statement the guard checked is then the one the database runs, whatever the setting.
PostgreSQL connections also pin the setting on for generated SQL (``walls``); this check holds
without that.
"""

from __future__ import annotations

import functools

from sqlglot import Token, Tokenizer, TokenType
from sqlglot.dialects.dialect import Dialect

from rsql_sql.errors import Position, Refused

from ..databases import database_for
from ..token_pointers import pointer

__all__ = ["check_backslash_quotes"]


@functools.cache
def _other_reading(dialect: str) -> Tokenizer:
    """The dialect's tokenizer with backslash escapes in strings switched the other way."""
    d = Dialect.get_or_raise(dialect)
    cls = d.tokenizer_class
    escapes = list(cls.STRING_ESCAPES)
    escapes = [e for e in escapes if e != "\\"] if "\\" in escapes else [*escapes, "\\"]
    other = type(f"{cls.__name__}OtherEscapes", (cls,), {"STRING_ESCAPES": escapes})
    tokenizer: Tokenizer = other(dialect=d)
    return tokenizer


def _shape(tokens: list[Token]) -> list[tuple[TokenType, int, int]]:
    return [(t.token_type, t.start, t.end) for t in tokens]


def check_backslash_quotes(sql: str | None, dialect: str) -> None:
    """Raise :class:`Refused` when `sql` splits into different tokens if the database reads
    backslashes in strings differently from the dialect's default."""
    if not sql or "\\" not in sql or not database_for(dialect).backslash_escapes_vary:
        return
    try:
        tokens = Dialect.get_or_raise(dialect).tokenize(sql)
    except Exception:
        return  # the parser has already accepted it; nothing more to learn here
    try:
        other = _shape(_other_reading(dialect).tokenize(sql))
    except Exception:
        other = None  # unterminated the other way: certainly read differently
    if other == _shape(tokens):
        return
    first = next((t for t in tokens if "\\" in sql[t.start : t.end + 1]), tokens[0])
    position = Position(first.line, first.col, first.start, first.end)
    raise Refused(
        "Refused: a string literal holds a backslash that the database may read as an escape "
        "(PostgreSQL does when standard_conforming_strings is off), so the string would end "
        "somewhere else than the check saw and the rest could run as other statements; write "
        "a quote inside a string as '' and keep backslashes away from quotes; nothing ran."
        f"{pointer(sql, position)}",
        sql=sql,
        position=position,
    )
