"""Code fences in model answers: how Markdown draws them, and which blocks run as SQL.

Two grammars, each defined once for the kernel and the proxy:

- **How a fence is drawn** (:func:`fence_open`, :meth:`Fence.closed_by`,
  :func:`fenced_blocks`): CommonMark's fence lines, read leniently. A fence opens on a line of
  three or more backticks or tildes, after any indent and at most one list marker (``- ``,
  ``1. ``); a backtick fence's info text may not hold a backtick; the block ends at a line of
  the same character, at least as many, with nothing else but blanks, or at the end of the
  text (a partial answer); control characters count for nothing, as the sanitizer drops them
  before it draws. The sanitizer re-draws exactly these blocks, the chat offers them
  for insertion, reference filling leaves them alone and the proxy's placeholder restorer
  reads them, so what the sanitizer draws as code is code to all four. A fence in a
  blockquote or a nested list (``> ~~~sql``) is prose to all four; a frontend may still draw
  it as code, and nothing offers or runs it.
- **What runs as SQL** (:data:`FENCE_BLOCK`, :func:`sql_blocks`, :class:`SqlBlockScanner`):
  ``extract_sql`` (``rsql_sql/checks/validate.py``) runs the first block that :data:`FENCE_BLOCK`
  finds with a language in :data:`SQL_FENCE_LANGUAGES` (a bare fence counts). The proxy maps
  redaction placeholders back to a user's values in answers, and must never do so inside a
  block that would run as SQL (a value mapped into it would be data turned into code), so it
  reads answers with this same grammar, streamed: :class:`SqlBlockScanner`. The grammar is
  ``extract_sql``'s, quirks included: a fence opens at three backticks anywhere in a line,
  the language is the run of ``[A-Za-z0-9_+-]`` after them (so four backticks open a bare
  fence), and a block ends at the next three backticks or the end of the text. It is wider
  than the drawn grammar on purpose: it finds SQL in answers whose fences are broken.
  Moving it onto the drawn grammar would change which SQL malformed answers run, a decision
  for the SQL eval bench, not for a refactor.

Pure and dependency-free: the proxy's engine imports it without the kernel side.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

__all__ = [
    "CONTROL_CHARACTERS",
    "FENCE_BLOCK",
    "SQL_FENCE_LANGUAGES",
    "Fence",
    "FencedBlock",
    "SqlBlockScanner",
    "fence_open",
    "fenced_blocks",
    "is_sql_language",
    "may_become_fence_line",
    "split_lines",
    "sql_blocks",
]

# "" is a bare fence: models often leave the language out of an SQL answer
SQL_FENCE_LANGUAGES = frozenset({
    "sql", "postgres", "postgresql", "psql", "pgsql", "sqlite", "duckdb", "mysql", "tsql",
    "mssql", "plsql", "bigquery", "snowflake", "",
})  # fmt: skip

FENCE_BLOCK = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_LANGUAGE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-")
_LONGEST_LANGUAGE = max(len(lang) for lang in SQL_FENCE_LANGUAGES)


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


# -- fences as Markdown draws them --------------------------------------------------------

_FENCE_LINE = re.compile(
    r"(?P<indent>[ \t]*(?:(?:[-*+]|\d{1,9}[.)])[ \t]+)?)(?P<marker>`{3,}|~{3,})(?P<info>.*)"
)
# what may still become a fence line (opening or closing) as more of the line arrives
_FENCE_LINE_START = re.compile(r"[ \t]*(?:(?:[-*+]|\d{1,9}[.)]?)[ \t]*)?(?:[`~].*)?")
_TAG = re.compile(r"[A-Za-z0-9_+.#-]*")  # a language tag: python, c++, c#, objective-c
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")  # Markdown's line endings only
# C0 and C1 control characters but tab and the line endings: a Markdown view drops them (the
# sanitizer does, before it reads fences), so "\x00~~~sql" is a fence to every reader
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def split_lines(text: str) -> list[str]:
    """``text``'s lines, each with its ending: ``\\n``, ``\\r\\n`` or ``\\r``, as in Markdown
    (``str.splitlines`` also splits at form feeds, ``\\x1c`` and ``\\u2028``, which it does not)."""
    return _LINE.findall(text)


def _as_drawn(line: str) -> str:
    """A line as a Markdown view reads it: without its ending and control characters."""
    return CONTROL_CHARACTERS.sub("", line.rstrip("\r\n"))


@dataclass(frozen=True)
class Fence:
    """An opening fence line: its ``marker`` (three or more backticks or tildes), ``indent``
    (how many characters come before the marker, a list marker included) and ``info`` (the
    rest of the line)."""

    marker: str
    indent: int
    info: str

    @cached_property  # read for each line of a streamed block
    def tag(self) -> str:
        """The info's language tag as written (``Python``, ``c++``); "" for a bare fence."""
        return _TAG.match(self.info.strip()).group(0)  # type: ignore[union-attr]  # matches any text

    @cached_property
    def language(self) -> str:
        """:attr:`tag`, lower-cased."""
        return self.tag.lower()

    def closed_by(self, line: str) -> bool:
        """Whether ``line`` (its line ending or not) closes this fence: the same character, at
        least as many, nothing else but blanks around."""
        if self.marker[0] not in line:
            return False  # most lines: no regex, no copy
        core = _as_drawn(line).strip(" \t")
        return len(core) >= len(self.marker) and core == self.marker[0] * len(core)

    def body_line(self, line: str) -> str:
        """A line of the block as code: up to ``indent`` leading spaces go (a fence in a list
        item is indented with the item, its code is not)."""
        spaces = len(line) - len(line.lstrip(" "))
        return line[min(spaces, self.indent) :]


def fence_open(line: str) -> Fence | None:
    """The fence ``line`` (its line ending or not) opens, or None when it opens none."""
    if "`" not in line and "~" not in line:
        return None  # most lines: no regex, no copy
    m = _FENCE_LINE.fullmatch(_as_drawn(line))
    if m is None or (m["marker"][0] == "`" and "`" in m["info"]):
        return None  # a backtick in a backtick fence's info: an inline code span, not a fence
    return Fence(m["marker"], len(m["indent"]), m["info"])


def may_become_fence_line(start: str) -> bool:
    """Whether a line that begins with ``start`` may still open or close a fence: a stream
    must hold such a line back until it ends. False means no ending of it can."""
    return _FENCE_LINE_START.fullmatch(CONTROL_CHARACTERS.sub("", start)) is not None


@dataclass(frozen=True)
class FencedBlock:
    """One fenced block of a text: ``start`` is where its opening line begins, ``end`` where
    the line after its closing fence begins (the text's end when the fence is not closed);
    ``code`` is its body, each line as :meth:`Fence.body_line` gives it."""

    fence: Fence
    code: str
    start: int
    end: int
    closed: bool


def fenced_blocks(text: str) -> list[FencedBlock]:
    """The fenced blocks of ``text`` in order, as Markdown draws them."""
    blocks: list[FencedBlock] = []
    lines = split_lines(text)
    i, offset = 0, 0
    while i < len(lines):
        fence = fence_open(lines[i])
        if fence is None:
            offset += len(lines[i])
            i += 1
            continue
        start, body = offset, []
        offset += len(lines[i])
        i += 1
        closed = False
        while i < len(lines):
            line = lines[i]
            offset += len(line)
            i += 1
            if fence.closed_by(line):
                closed = True
                break
            body.append(fence.body_line(line.rstrip("\r\n")))
        blocks.append(FencedBlock(fence, "\n".join(body), start, offset, closed))
    return blocks
