"""The editor's inline completions (``{proxy}inline``): the request, the prompt, the answer's text.

JupyterLab's inline completer (``frontend/src/completion/``) asks with the text around the
cursor, a few previous cells and what the kernel holds: frames' and R objects' columns, the
tables of connected databases, names of variables. Names only, never a value, so the admin's
``context_policy`` (sample rows, value stats, redacted columns' values) holds for them as it is.

This module bounds and checks that body, turns it into one request for the admin's completion
model (fill-in-the-middle through ``v1/completions`` with ``suffix`` when the admin says the
model takes it, else a chat request) and turns the answer into the plain text to insert: fences
and prose gone, what the cell already holds before or after the cursor cut. Admission in the
completion rate class, budgets, windows, entitlements, redaction, the cache, failover, the
dropped-stream charge and the usage row are Engine.chat's, as for every other request: the edge
that asks it is ``engine/apis/inline/edge.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...bodies.request import (
    CONTROL_CHARACTERS as CONTROLS,  # rsql_common/hidden_characters.py: one list
)
from ...errors import BadRequest
from ...settings import InlineSettings

# what one completion may carry (the frontend keeps within these; more is cut, never refused:
# a long cell still deserves a completion)
MAX_PREFIX = 8000  # characters before the cursor: the last ones are kept
MAX_SUFFIX = 4000  # after it: the first ones
MAX_CELLS = 5
MAX_CELL = 2000
MAX_ITEMS = {"frames": 50, "r": 50, "tables": 100, "variables": 50}
MAX_COLUMNS = 200
MAX_NAME = 100
MAX_CONTEXT_CHARS = 12_000  # the live-session block of the prompt
# Each section of that block within a share of it, as the kernel shares its answer
# (rsql_magic/context/inline.py): variables, tables and R first, what one leaves over goes on,
# then the frames with all the rest; so fifty wide frames never crowd the tables out.
SHARES = (("variables", 0.10), ("tables", 0.25), ("r", 0.20))
# names read in all (columns and dtypes of every item): the work a body can ask for before
# admission is bounded by this, whatever its shape
MAX_NAMES = 6000
# what is inserted: a completion is the rest of a line or a few lines, never a page
MAX_LINES = 16
MAX_TEXT = 2000

CURSOR = "<CURSOR>"
SYSTEM = (
    "You are the code completion engine of a Jupyter notebook. Reply with only the code to "
    f"insert at {CURSOR}: no explanation, no markdown, no code fences, nothing the cell already "
    "holds before or after the cursor. Keep it short: the rest of the line, or a few lines. The "
    "live session lists what exists in memory now: prefer its names and columns."
)
COMMENT = {"python": "#", "r": "#", "sql": "--"}
_FENCE = re.compile(r"```[^\n]*\n?")
# the frontend's LANGUAGE_NAME (frontend/src/completion/language.ts): what one sends, the other
# takes ("c#", "f#", "q.sharp"); a word, never a sentence or markup in the prompt
_LANGUAGE = re.compile(r"^[a-z][a-z0-9+#._-]{0,31}$")


@dataclass(frozen=True)
class InlineRequest:
    prefix: str
    suffix: str
    language: str
    cells: tuple[str, ...]
    context: str  # the live session, rendered
    notebook: str | None
    stream: bool


def _str(body: dict[str, Any], name: str, default: str | None = None) -> str:
    value = body.get(name, default)
    if not isinstance(value, str):
        shown = "missing" if value is None else type(value).__name__
        raise BadRequest(f"{name!r} must be a string, got {shown}", extra={"param": name})
    return value


def _kept(match: re.Match[str]) -> str:
    char = match.group()
    return char if char in "\t\n" else ""


def _name(value: Any) -> str | None:
    """A name from the kernel (a column label, a table's name) as one bounded line, so no name
    can forge a line of the prompt's structure or hide text with bidi controls; None for what
    is no name (a list, an object): never turned into text, whatever its size."""
    if isinstance(value, str):
        text = value[:MAX_NAME]
    elif isinstance(value, bool | int | float):
        text = str(value)
    else:
        return None
    return CONTROLS.sub(" ", text)[:MAX_NAME]


class _Budget:
    """The names the whole context may still read, the characters the line being built may
    take, and whether something was left out."""

    def __init__(self) -> None:
        self.names = 0  # this section's, set by render_context
        self.room = MAX_CONTEXT_CHARS
        self.cut = False

    def take_name(self) -> bool:
        if self.names <= 0:
            self.cut = True
            return False
        self.names -= 1
        return True


def _items(context: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = context.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise BadRequest(
            f"'context.{key}' must be a list of objects", extra={"param": f"context.{key}"}
        )
    return [i for i in items[: MAX_ITEMS[key]] if isinstance(i, dict)]


def _columns(item: dict[str, Any], budget: _Budget, with_types: bool = False) -> str:
    cols = item.get("columns")
    if not isinstance(cols, list):
        return ""
    types = item.get("dtypes") if with_types else None
    types = types if isinstance(types, list) else []
    out: list[str] = []
    room = budget.room - 2 * MAX_NAME - 40  # the line's head and the note of what is left out
    seen = 0
    for c in cols[:MAX_COLUMNS]:
        if not budget.take_name():
            break
        col = _name(c)
        t = _name(types[seen]) if seen < len(types) else None
        if col is not None:  # else not a name: left out
            col = f"{col} {t}" if t else col
            room -= len(col) + 2
            if room < 0:
                budget.cut = True
                break
            out.append(col)
        seen += 1
    left_out = len(cols) - seen
    return ", ".join(out) + (f", ... ({left_out} more)" if left_out > 0 else "")


def _frame_line(f: dict[str, Any], budget: _Budget) -> str | None:
    name = _name(f.get("name"))
    if name is None:
        return None
    rows = f.get("rows")
    size = f", {rows} rows" if isinstance(rows, int) and not isinstance(rows, bool) else ""
    kind = _name(f.get("kind") or "frame") or "frame"
    return f"frame {name} ({kind}{size}): {_columns(f, budget, True)}"


def _r_line(r: dict[str, Any], budget: _Budget) -> str | None:
    name = _name(r.get("name"))
    if name is None:
        return None
    kind = _name(r.get("kind") or "object") or "object"
    return f"R {kind} {name}: {_columns(r, budget)}"


def _table_line(t: dict[str, Any], budget: _Budget) -> str | None:
    name = _name(t.get("name"))
    if name is None:
        return None
    where = _name(t.get("connection") or "")
    return f"table {f'{where}.{name}' if where else name}: {_columns(t, budget)}"


def _variable(v: dict[str, Any], budget: _Budget) -> str | None:
    name = _name(v.get("name"))
    if name is None or not budget.take_name():
        return None
    kind = _name(v.get("type") or "")
    return f"{name} {kind}" if kind else name


def _section(
    context: dict[str, Any],
    key: str,
    line: Callable[[dict[str, Any], _Budget], str | None],
    room: int,
    budget: _Budget,
) -> list[str]:
    """The section's lines (variables: its names) within `room` characters."""
    out: list[str] = []
    used = 0
    for item in _items(context, key):
        if budget.names <= 0:
            budget.cut = True
            break
        budget.room = room - used
        text = line(item, budget)
        if text is None:
            continue
        if used + len(text) + 2 > room:
            budget.cut = True
            break
        used += len(text) + 2
        out.append(text)
    return out


def render_context(context: Any) -> str:
    """The kernel's answer as the prompt's live-session block: one line per object, each
    section within its share of MAX_CONTEXT_CHARS (SHARES), the frames with what is left."""
    if context is None:
        return ""
    if not isinstance(context, dict):
        raise BadRequest("'context' must be an object or null", extra={"param": "context"})
    for key in MAX_ITEMS:  # the types are checked before any work
        _items(context, key)
    budget = _Budget()
    left = MAX_CONTEXT_CHARS - len("variables: ") - len("\n(more objects left out)")
    names_left = MAX_NAMES
    sections: dict[str, list[str]] = {}
    lines = {"variables": _variable, "tables": _table_line, "r": _r_line}
    for key, share in SHARES:  # the characters and the names read, shared alike
        room = min(left, int(MAX_CONTEXT_CHARS * share))
        budget.names = min(names_left, int(MAX_NAMES * share))
        given = budget.names
        sections[key] = _section(context, key, lines[key], room, budget)
        left -= sum(len(t) + 2 for t in sections[key])
        names_left -= given - budget.names
    budget.names = names_left
    sections["frames"] = _section(context, "frames", _frame_line, left, budget)
    out = [*sections["frames"], *sections["r"], *sections["tables"]]
    if sections["variables"]:
        out.append("variables: " + ", ".join(sections["variables"]))
    if budget.cut:
        out.append("(more objects left out)")
    return "\n".join(out)


def parse(body: Any) -> InlineRequest:
    """Check and bound a ``POST {proxy}inline`` body; BadRequest names the field at fault."""
    if not isinstance(body, dict):
        raise BadRequest(
            "request body must be a JSON object with 'prefix' (the text before the cursor)"
        )
    prefix = _str(body, "prefix")[-MAX_PREFIX:]
    suffix = _str(body, "suffix", "")[:MAX_SUFFIX]
    language = _str(body, "language", "python").strip().lower() or "python"
    if not _LANGUAGE.match(language):
        raise BadRequest(
            "'language' must be a short name like 'python', 'r' or 'sql'",
            extra={"param": "language"},
        )
    cells = body.get("cells") or []
    if not isinstance(cells, list) or not all(isinstance(c, str) for c in cells):
        raise BadRequest(
            "'cells' must be a list of the previous cells' sources", extra={"param": "cells"}
        )
    notebook = body.get("notebook")
    if notebook is not None and not isinstance(notebook, str):
        raise BadRequest("'notebook' must be a path or null", extra={"param": "notebook"})
    stream = body.get("stream", True)
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be true or false", extra={"param": "stream"})
    return InlineRequest(
        prefix,
        suffix,
        language,
        tuple(c[:MAX_CELL] for c in cells[-MAX_CELLS:]),
        render_context(body.get("context")),
        notebook,
        stream,
    )


def chat_body(req: InlineRequest, settings: InlineSettings) -> dict[str, Any]:
    """A chat request for a model that does not fill in the middle: the cell with its cursor."""
    parts = []
    if req.context:
        parts.append("Live session (names and columns only):\n" + req.context)
    if req.cells:
        parts.append("Previous cells:\n" + "\n\n".join(req.cells))
    parts.append(f"Cell ({req.language}):\n{req.prefix}{CURSOR}{req.suffix}")
    return _common(
        {
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": "\n\n".join(parts)},
            ]
        },
        req,
        settings,
    )


def fim_body(req: InlineRequest, settings: InlineSettings) -> dict[str, Any]:
    """A legacy completion with `suffix`: the live session and the previous cells as comments
    in the cell's language, then the cell up to the cursor."""
    mark = COMMENT.get(req.language, "#")
    head = []
    if req.context:
        head += [f"{mark} live session: {line}" for line in req.context.splitlines()]
    head += req.cells
    prompt = "\n".join([*head, req.prefix]) if head else req.prefix
    return _common({"prompt": prompt, "suffix": req.suffix}, req, settings)


def _common(body: dict[str, Any], req: InlineRequest, settings: InlineSettings) -> dict[str, Any]:
    # temperature 0: the same cell, cursor and session give the same answer, and the cache
    # answers a repeat (Engine.chat caches deterministic requests)
    body.update(max_tokens=settings.max_tokens, temperature=0, stream=req.stream)
    if settings.model:
        body["model"] = settings.model
    return body


def clean(raw: str, prefix: str, suffix: str, *, final: bool = True) -> str:
    """The model's text as the plain code to insert at the cursor.

    Models wrap code in fences, talk before them and repeat what the cell holds however they
    are told; so: the first fenced block's code (an unclosed one's too, mid-stream), else the
    whole answer once it has ended; no cursor marks, control or hidden characters; the current
    line's start and the suffix's first line cut where the answer repeats them; at most
    ``MAX_LINES`` lines.

    `final` False (a stream's middle) gives what the editor may show now, which is what Tab
    would insert: nothing until a fence opens, since the text before one may be the model
    talking ("Sure! Here is..."), not code; trailing backticks held back, as they may be a
    fence on its way; trailing blanks held back, as the final answer drops them.
    """
    text = CONTROLS.sub(_kept, raw.replace("\r\n", "\n")).replace(CURSOR, "")
    if not final:
        text = text.rstrip("`")
    fence = _FENCE.search(text)
    if fence is not None:
        body = text[fence.end() :]
        end = body.find("```")
        text = body if end < 0 else body[:end]
    elif not final:
        return ""  # code or talk: decided when a fence opens or the answer ends
    line = prefix.rsplit("\n", 1)[-1]
    for start in (line, line.lstrip()):
        if start.strip() and text.startswith(start):
            text = text[len(start) :]
            break
        if not final and text and start.strip() and start.startswith(text):
            return ""  # the current line is being repeated: nothing new yet
    text = text.rstrip()
    first = suffix.split("\n", 1)[0].strip()
    if first and text.rstrip().endswith(first):
        text = text.rstrip()[: -len(first)]
    lines = text.split("\n")
    if len(lines) > MAX_LINES:
        text = "\n".join(lines[:MAX_LINES])
    return text[:MAX_TEXT]


def answer_text(answer: Any) -> str:
    """The generated text of a chat or legacy completion answer (JSON)."""
    try:
        choice = answer["choices"][0]
    except (KeyError, IndexError, TypeError):
        return ""
    if not isinstance(choice, dict):
        return ""
    message = choice.get("message")
    text = message.get("content") if isinstance(message, dict) else choice.get("text")
    return text if isinstance(text, str) else ""
