"""Which fenced blocks of a model answer are SQL: one definition for the kernel and the proxy.

``extract_sql`` (``rsql_sql/validate.py``) runs the first block that :data:`FENCE_BLOCK` finds
with a language in :data:`SQL_FENCE_LANGUAGES` (a bare fence counts). The proxy maps
redaction placeholders back to a user's values in answers, and must never do so inside a
block that would run as SQL (a value mapped into it would be data turned into code), so it
reads answers with this same grammar, streamed: :class:`SqlBlockScanner`. The grammar is
``extract_sql``'s, quirks included: a fence opens at three backticks anywhere in a line, the
language is the run of ``[A-Za-z0-9_+-]`` after them (so four backticks open a bare fence),
and a block ends at the next three backticks or the end of the text.

Pure and dependency-free: the proxy's engine imports it without the kernel side.
"""

from __future__ import annotations

import re

__all__ = [
    "FENCE_BLOCK",
    "SQL_FENCE_LANGUAGES",
    "SqlBlockScanner",
    "fence_language",
    "is_sql_language",
    "sql_blocks",
]

# "" is a bare fence: models often leave the language out of an SQL answer
SQL_FENCE_LANGUAGES = frozenset({
    "sql", "postgres", "postgresql", "psql", "pgsql", "sqlite", "duckdb", "mysql", "tsql",
    "mssql", "plsql", "bigquery", "snowflake", "",
})  # fmt: skip

FENCE_BLOCK = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_LANGUAGE = re.compile(r"[ \t]*([A-Za-z0-9_+-]*)")
_LANGUAGE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-")
_LONGEST_LANGUAGE = max(len(lang) for lang in SQL_FENCE_LANGUAGES)


def fence_language(info: str) -> str:
    """The language a fence's info text (what follows the backticks) names, lower-cased."""
    m = _LANGUAGE.match(info)
    return m.group(1).lower() if m else ""


def is_sql_language(language: str) -> bool:
    return language.lower() in SQL_FENCE_LANGUAGES


def sql_blocks(text: str) -> list[re.Match[str]]:
    """The SQL blocks of ``text`` in order: group 1 the language, group 2 the SQL."""
    return [m for m in FENCE_BLOCK.finditer(text) if is_sql_language(m.group(1))]


_OUT, _INFO, _BODY = 0, 1, 2


class SqlBlockScanner:
    """:data:`FENCE_BLOCK` read piece by piece: after ``feed(text)``, ``in_sql`` says whether
    the next character would be inside an SQL block's body (what ``extract_sql`` runs).

    Feeding a whole text gives the state ``FENCE_BLOCK.finditer`` leaves at its end, so
    deciding before each piece is exact for a stream. One difference only makes it stricter:
    an opening line never ended by a newline counts as the start of a block (the regex needs
    the newline; the block would be empty)."""

    def __init__(self) -> None:
        self.state = _OUT
        self.ticks = 0  # backticks in a row just before this point, not yet three
        self.language = ""
        self.language_done = False  # the language run ended (a character outside it came)
        self.started = False  # past the blanks before the language
        self.sql = False

    @property
    def in_sql(self) -> bool:
        return self.state == _BODY and self.sql

    def feed(self, text: str) -> None:
        i, n = 0, len(text)
        while i < n:
            if self.state == _INFO:
                end = text.find("\n", i)
                self._info(text[i:] if end < 0 else text[i:end])
                if end < 0:
                    return
                self.state, self.ticks = _BODY, 0
                self.sql = is_sql_language(self.language)
                i = end + 1
                continue
            # outside a block or in one's body: only a run of three backticks changes anything
            tick = text.find("`", i)
            if tick < 0:
                self.ticks = 0
                return
            if tick > i:
                self.ticks = 0
            run_end = tick
            while run_end < n and text[run_end] == "`":
                run_end += 1
            if self.ticks + (run_end - tick) < 3:
                self.ticks += run_end - tick
                i = run_end
                continue
            i = tick + 3 - self.ticks  # the third backtick ends the marker; the rest is text
            self.ticks = 0
            if self.state == _OUT:
                self.state, self.language, self.language_done, self.started = (
                    _INFO,
                    "",
                    False,
                    False,
                )
            else:
                self.state = _OUT

    def _info(self, piece: str) -> None:
        for ch in piece:
            if self.language_done:
                return
            if not self.started and ch in " \t":
                continue
            self.started = True
            if ch not in _LANGUAGE_CHARS:
                self.language_done = True
            elif len(self.language) <= _LONGEST_LANGUAGE:  # longer than that: no SQL language
                self.language += ch
