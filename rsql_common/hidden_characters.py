"""Characters a reader does not see as they are: controls, invisible marks, direction changes.

A model's answer or a name from a kernel can hold characters that a terminal obeys, that an
editor draws as nothing, or that reorder the text around them: a right-to-left override inside
a string makes code read differently from how it runs (Trojan Source, CVE-2021-42574). This is
the project's one list of them. Completions drop them, proposed cells and the command-line
tools show them as escapes (:func:`escaped`), and a caller's header holding one is dropped.

The JupyterLab extension keeps the same ranges in ``frontend/src/hiddenCharacters.ts`` (it draws
proposals from notebook files our kernel never saw); a unit test holds the two equal.
"""

from __future__ import annotations

import re

__all__ = ["CONTROL_CHARACTERS", "HIDDEN", "HIDDEN_RANGES", "escaped"]

# (first, last) code points, both included. Tab and newline are layout and not here.
HIDDEN_RANGES: tuple[tuple[int, int], ...] = (
    (0x00, 0x08),  # C0 controls
    (0x0B, 0x1F),  # C0 controls, carriage return among them
    (0x7F, 0x9F),  # DEL and the C1 controls (CSI, NEL)
    (0xAD, 0xAD),  # soft hyphen
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x061C, 0x061C),  # Arabic letter mark
    (0x115F, 0x1160),  # Hangul fillers: drawn blank, yet letters in a Python name
    (0x17B4, 0x17B5),  # Khmer inherent vowels, drawn as nothing
    (0x180E, 0x180E),  # Mongolian vowel separator
    (0x200B, 0x200F),  # zero-width space and joiners, left-to-right and right-to-left marks
    (0x2028, 0x202E),  # line and paragraph separators, bidi embeddings and overrides
    (0x2060, 0x206F),  # word joiner, invisible operators, bidi isolates, deprecated formats
    (0x3164, 0x3164),  # Hangul filler
    (0xFEFF, 0xFEFF),  # zero-width no-break space (a byte-order mark)
    (0xFFA0, 0xFFA0),  # halfwidth Hangul filler
    (0xFFF9, 0xFFFB),  # interlinear annotation marks
    (0xE0000, 0xE007F),  # tags: invisible copies of ASCII letters
)


def _class(ranges: tuple[tuple[int, int], ...]) -> str:
    """The ranges as a regex character class's body, in escapes (``\\U0000202e``)."""
    return "".join(f"\\U{a:08x}" + (f"-\\U{b:08x}" if b != a else "") for a, b in ranges)


# every hidden character; tab and newline stay (text of many lines: code, a terminal's output)
HIDDEN = re.compile(f"[{_class(HIDDEN_RANGES)}]")
# the same with tab and newline: for a value that is one line (a header, a name in a prompt)
CONTROL_CHARACTERS = re.compile(f"[\\t\\n{_class(HIDDEN_RANGES)}]")


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def escaped(text: str) -> str:
    """`text` with every hidden character written as its escape, as Python writes one in a
    string (``\\x1b``, ``\\r``, ``\\u202e``, ``\\U000e0041``): visible, ASCII, and in a Python
    or R string literal the same character again."""
    return HIDDEN.sub(_escape, text)
