"""The budget every collector of the editor's inline context keeps (:mod:`.inline`).

:class:`CollectionBudget` holds the time and the JSON size a request has left and whether a
bound cut something; :func:`json_length` is what one name costs of the size; ``MAX_NAME`` and
``MAX_COLUMNS`` cut a name and a column list wherever they come from (a frame, R, a table).
Standard library only: :mod:`.inline` is imported on the editor's keystroke.
"""

from __future__ import annotations

import json
import time

__all__ = ["MAX_COLUMNS", "MAX_NAME", "CollectionBudget", "json_length"]

MAX_COLUMNS = 200  # per frame, R data.frame or table
MAX_NAME = 100  # characters of one name or column label


class CollectionBudget:
    """The time and size left, and whether a bound cut something.

    `budget_ms`: the time the whole collection may take (``deadline``, checked between items
    by :meth:`out_of_time`); `max_bytes`: about how many JSON characters it may answer, shared
    out by section (:meth:`start`) and spent item by item (:meth:`take`)."""

    __slots__ = ("deadline", "left", "section_left", "truncated")

    def __init__(self, budget_ms: float, max_bytes: int) -> None:
        self.deadline = time.perf_counter() + max(0.0, budget_ms) / 1000.0
        self.left = max_bytes
        self.section_left = 0
        self.truncated = False

    def out_of_time(self) -> bool:
        if time.perf_counter() > self.deadline:
            self.truncated = True
            return True
        return False

    def start(self, size: int) -> None:
        self.section_left = min(self.left, size)

    def take(self, size: int) -> bool:
        """Room for `size` more characters in this section? Takes them when there is."""
        if size > self.section_left:
            self.truncated = True
            return False
        self.section_left -= size
        self.left -= size
        return True


def json_length(s: str) -> int:
    """Characters `s` takes as a JSON string, with its quotes and a separator."""
    if s.isascii() and s.isprintable() and '"' not in s and "\\" not in s:
        return len(s) + 4
    return len(json.dumps(s)) + 2
