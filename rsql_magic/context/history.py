"""Notebook history: the last error's traceback, and ``{In[3]}`` / ``{Err[-1]}`` / ``{var}``.

Reference filling is deliberately conservative, because questions are full of R, SQL, glue
templates and f-strings whose braces must reach the model verbatim. A ``{...}`` is replaced
only when ALL of these hold:

- it is exactly ``{name}`` or ``{name[int]}`` (no spaces, no expressions);
- ``name`` resolves (``In``, ``Out``, ``Err`` or a user variable) and an index is in range;
- it is not inside a fenced code block or inline backticks;
- it is not part of ``{{x}}`` / ``${x}`` / ``#{x}`` / ``"{x}"`` / ``'{x}'`` templates;
- it does not follow ``)`` or ``else`` (R / C-like blocks: ``function(x) {x}``), nor an
  assignment or pipe (``=``, ``<-``, ``->``, ``%>%``, ``|>``, ``~``).

Everything else is left byte for byte.
"""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rsql_common.fences import fenced_blocks

__all__ = ["ErrorRecord", "fill_references", "format_exception", "strip_ansi"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_REF = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?:\[(-?\d+)\])?\}")
_INLINE = re.compile(r"`[^`\n]+`")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


@dataclass
class ErrorRecord:
    """One failed cell: its execution count, source and plain-text traceback."""

    execution_count: int | None
    source: str
    traceback: str
    ename: str = ""

    def as_text(self) -> str:
        head = f"In [{self.execution_count}]" if self.execution_count is not None else "cell"
        return f"{head}:\n{self.source.rstrip()}\n\n{self.traceback.rstrip()}"


def format_exception(exc: BaseException, max_chars: int = 3000) -> str:
    """A plain-text traceback, tail-biased (the end says what went wrong)."""
    render = getattr(exc, "_render_traceback_", None)
    lines: list[str]
    if callable(render):
        try:
            lines = list(render())
        except Exception:
            lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    else:
        tb = exc.__traceback__
        # drop IPython's own frames (run_code / exec) above the user's code
        while (
            tb is not None
            and tb.tb_next is not None
            and (f"{os.sep}IPython{os.sep}" in tb.tb_frame.f_code.co_filename)
        ):
            tb = tb.tb_next
        lines = traceback.format_exception(type(exc), exc, tb)
    text = strip_ansi("".join(ln if ln.endswith("\n") else ln + "\n" for ln in lines))
    if len(text) > max_chars:
        text = "... (traceback start cut)\n" + text[-(max_chars - 30) :]
    return text


def _protected_spans(text: str) -> list[tuple[int, int]]:
    spans = [(b.start, b.end) for b in fenced_blocks(text)]  # the blocks Markdown draws
    spans += [m.span() for m in _INLINE.finditer(text)]
    return spans


def _looks_like_code_block(text: str, start: int) -> bool:
    """True after ``)`` / ``else`` (R/C/JS blocks: ``function(x) {x}``, ``if (a) {b}``) and
    after assignment or pipe operators (``y = {n}``, ``x <- {n}``, ``%>% {n}``, ``|> {n}``)."""
    before = text[:start].rstrip(" \t")
    return before.endswith((")", "else", "->", "=", "<-", "%>%", "|>", "~"))


def fill_references(
    text: str,
    resolve: Callable[[str, int | None], str | None],
) -> str:
    """Replace resolvable ``{name}`` / ``{name[i]}`` references; leave everything else alone.

    ``resolve(name, index)`` returns the replacement text, or None when the reference does
    not resolve (then the braces stay verbatim).
    """
    spans = _protected_spans(text)
    out: list[str] = []
    pos = 0
    for m in _REF.finditer(text):
        s, e = m.span()
        if any(a <= s < b for a, b in spans):
            continue
        prev = text[s - 1] if s > 0 else ""
        nxt = text[e] if e < len(text) else ""
        if (prev and prev in "{$\"'#%@") or (nxt and nxt in "}\"'"):
            continue  # {{x}}, ${x}, "{x}", '{x}', #{x}, %{x}: template syntax of other languages
        if _looks_like_code_block(text, s):
            continue
        idx = int(m.group(2)) if m.group(2) is not None else None
        try:
            rep = resolve(m.group(1), idx)
        except Exception:
            rep = None
        if rep is None:
            continue
        out.append(text[pos:s])
        out.append(rep)
        pos = e
    out.append(text[pos:])
    return "".join(out)


def index_list(seq: Any, idx: int | None) -> Any:
    """``seq[idx]`` for In / Err style lists; None when out of range."""
    if idx is None:
        return None
    try:
        return seq[idx]
    except (IndexError, KeyError, TypeError):
        return None
