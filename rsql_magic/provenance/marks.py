"""The provenance marks of a notebook's cells (issue 75), as ``rsql-provenance`` reads them.

Every cell the assistant writes or fills carries, in its metadata, ``rsql.provenance``: how it
came (``kind``), the ``model``, the proxy's ``request_id`` of the answer, the ``time`` it was
inserted, and a fingerprint of each line as the assistant wrote it. The frontend extension
(frontend/src/provenance/mark.ts) writes it and keeps its counts up to date as the student
edits: ``lines`` (the cell's lines now) and ``assistant_lines`` (of those, how many are still
as the assistant wrote them). Later contributions to the same cell (inline completions
accepted into it) are listed under ``more``::

    {"version": 1, "kind": "ask", "model": "m", "request_id": "9f..", "time": "2026-..Z",
     "lines": 5, "assistant_lines": 3, "fingerprints": ["a1b2c3d4e5f60718", ...],
     "more": [{"kind": "inline", "model": "m", "request_id": "..", "time": ".."}]}

A line counts when it is not blank, compared without the spaces and tabs around it; its
fingerprint is FNV-1a (64 bits) of its UTF-8 bytes, in hexadecimal: the same function in both
languages (tests hold the two equal on shared vectors). The counts are recounted here from the
fingerprints and the cell's source, whatever the mark says: an editor without the extension
(VS Code) does not update them, and a student may edit them. Everything in a notebook file is
the student's to change: read as hostile input, bounded.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ProvenanceError

__all__ = [
    "Contribution",
    "Mark",
    "MarkedCell",
    "NotebookMarks",
    "code_lines",
    "fingerprint",
    "read_mark",
    "read_notebook",
    "recount",
]

KINDS = ("ask", "sql_ai", "agent", "chat", "chat_sql", "inline")
MAX_FINGERPRINTS = 2000  # lines of one cell the mark may hold
MAX_MORE = 50  # later contributions kept per cell
_HEX16 = re.compile(r"[0-9a-f]{16}")
_REQUEST_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_EDGES = re.compile(r"^[ \t]+|[ \t]+$")
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3


def code_lines(source: str) -> list[str]:
    """The lines that count: not blank, without the spaces and tabs around them."""
    lines = source.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return [t for t in (_EDGES.sub("", line) for line in lines) if t]


def fingerprint(line: str) -> str:
    """FNV-1a, 64 bits, of the line's UTF-8 bytes, as 16 hexadecimal digits (a line as
    :func:`code_lines` gives it)."""
    h = _FNV_OFFSET
    # a lone surrogate (a JSON file may hold one) as U+FFFD, as the browser's encoder writes it
    whole = line.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    for byte in whole.encode("utf-8"):
        h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def recount(source: str, fingerprints: tuple[str, ...] | list[str]) -> int:
    """How many of `source`'s lines are still as the assistant wrote them: each fingerprint
    matches one line at most (a line the assistant wrote twice counts twice only if it is
    there twice)."""
    left = Counter(fingerprints)
    found = 0
    for line in code_lines(source):
        fp = fingerprint(line)
        if left[fp] > 0:
            left[fp] -= 1
            found += 1
    return found


@dataclass(frozen=True)
class Contribution:
    """One way the assistant wrote into a cell: the kind, the model, the answer's request id
    (None when the mark names none) and when it was inserted (ISO, as the mark says)."""

    kind: str
    model: str | None
    request_id: str | None
    time: str | None


@dataclass(frozen=True)
class Mark:
    """A cell's ``rsql.provenance``, as far as it could be read: its contributions (the first
    is the one that made or filled the cell), the fingerprints, and the counts it records."""

    contributions: tuple[Contribution, ...]
    fingerprints: tuple[str, ...]
    recorded_lines: int | None
    recorded_assistant_lines: int | None
    problems: tuple[str, ...] = ()  # what could not be read as it should


def _text(value: Any, limit: int = 200) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()[:limit]


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _contribution(value: Any, problems: list[str]) -> Contribution | None:
    if not isinstance(value, dict):
        problems.append("a contribution that is not an object")
        return None
    kind = _text(value.get("kind"), 40) or "unknown"
    if kind not in KINDS:
        problems.append(f"an unknown kind {kind!r}")
        kind = "unknown"
    rid = _text(value.get("request_id"), 200)
    if rid is not None and not _REQUEST_ID.fullmatch(rid):
        problems.append("a request id that is not one the proxy makes")
    return Contribution(kind, _text(value.get("model")), rid, _text(value.get("time"), 40))


def read_mark(metadata: Any) -> Mark | None:
    """The mark in a cell's metadata, or None when it has none. A mark that is there but not
    as the extension writes it is read as far as it goes, with what was wrong in ``problems``."""
    rsql = metadata.get("rsql") if isinstance(metadata, dict) else None
    if not isinstance(rsql, dict) or "provenance" not in rsql:
        return None
    raw = rsql["provenance"]
    problems: list[str] = []
    if not isinstance(raw, dict):
        return Mark((), (), None, None, ("the mark is not an object",))
    first = _contribution(raw, problems)
    given_more, given_prints = raw.get("more"), raw.get("fingerprints")
    more: list[Any] = given_more if isinstance(given_more, list) else []
    later = [_contribution(m, problems) for m in more[:MAX_MORE]]
    prints: list[Any] = given_prints if isinstance(given_prints, list) else []
    good = [p for p in prints[:MAX_FINGERPRINTS] if isinstance(p, str) and _HEX16.fullmatch(p)]
    if len(good) != len(prints):
        problems.append("fingerprints that are not the extension's")
    return Mark(
        tuple(c for c in [first, *later] if c is not None),
        tuple(good),
        _count(raw.get("lines")),
        _count(raw.get("assistant_lines")),
        tuple(dict.fromkeys(problems)),
    )


@dataclass(frozen=True)
class MarkedCell:
    """A code cell with a mark: where it is (``index`` among all cells, ``number`` among the
    code cells, from 1), its id, the mark and the counts recounted from its source."""

    index: int
    number: int
    cell_id: str | None
    mark: Mark
    lines: int
    assistant_lines: int

    @property
    def counts_agree(self) -> bool:
        """The counts the mark records are the recount's (None: the mark records none)."""
        m = self.mark
        return m.recorded_lines in (None, self.lines) and m.recorded_assistant_lines in (
            None,
            self.assistant_lines,
        )


@dataclass(frozen=True)
class NotebookMarks:
    """A notebook's marks: its code cells and lines, and the marked cells."""

    path: str
    code_cells: int
    code_lines: int
    cells: tuple[MarkedCell, ...]

    @property
    def assistant_lines(self) -> int:
        return sum(c.assistant_lines for c in self.cells)

    @property
    def share(self) -> float:
        """The share of the notebook's code lines that are as the assistant wrote them."""
        return self.assistant_lines / self.code_lines if self.code_lines else 0.0


def _source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    if isinstance(src, list):
        return "".join(s for s in src if isinstance(s, str))
    return src if isinstance(src, str) else ""


def read_notebook(path: str | Path) -> NotebookMarks:
    """The marks of the notebook at `path` (nbformat 4, read as JSON: nothing in it runs).
    Raises ProvenanceError (exit code 2) for a file that is not a notebook."""
    try:
        nb = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ProvenanceError(f"{path}: not a readable notebook ({e})", 2) from None
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list):
        raise ProvenanceError(f"{path}: not a notebook (no list of cells)", 2)
    marked: list[MarkedCell] = []
    code_cells = all_lines = 0
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        code_cells += 1
        source = _source(cell)
        lines = len(code_lines(source))
        all_lines += lines
        mark = read_mark(cell.get("metadata"))
        if mark is None:
            continue
        cell_id = cell.get("id") if isinstance(cell.get("id"), str) else None
        marked.append(
            MarkedCell(index, code_cells, cell_id, mark, lines, recount(source, mark.fingerprints))
        )
    return NotebookMarks(str(path), code_cells, all_lines, tuple(marked))
