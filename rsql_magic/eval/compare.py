"""Is a result the right answer? Execution accuracy as the text-to-SQL literature scores it.

Two results match when some permutation of the answer's columns makes the two the same
**multiset of rows** (the test-suite method of Zhong, Yu and Klein, 2020):

- **Column order and names are ignored**, but the columns are matched as a whole permutation,
  the same one for every row. Comparing each row's values as a bag instead would be wrong:
  ``(1, 2), (2, 1)`` and ``(1, 2), (1, 2)`` have the same bag in every row, yet no order of the
  columns makes one the other. Candidate permutations are pruned by comparing each column's
  own multiset of values first, so the search rarely tries more than one.
- **Rows are a multiset**: duplicates count (``1, 1`` is not ``1``), order does not...
- ... **unless the gold query orders its result** (a top-level ``ORDER BY``, told by sqlglot's
  parse tree, not by the text): then rows are compared position by position. An ``ORDER BY``
  inside a subquery or a window does not order the result and does not count. Rows the gold's
  order leaves tied are compared as they come, as the literature does: write gold queries whose
  order is total.
- **Numbers compare by value with a tolerance**: ``math.isclose(a, b, rel_tol=1e-6,
  abs_tol=1e-9)``, so ``3``, ``3.0`` and ``Decimal('3.00')`` are equal and so are ``0.1 + 0.2``
  and ``0.3``; two integers compare exactly (no float rounding of big ids). Booleans are numbers
  (``True == 1``) since SQLite has none.
- **NULLs are equal to each other** and to nothing else.
- Dates and times compare as ISO text (``2013-01-01``, ``2013-01-01 05:00:00``), so a
  ``DATE`` value and the same date built with ``strftime`` agree; other values compare as
  text (a number and the string of that number do not).
- Both results empty: a match, whatever their columns (there is nothing to tell them apart).
"""

from __future__ import annotations

import datetime as _dt
import decimal
import itertools
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp

__all__ = [
    "ABS_TOL",
    "REL_TOL",
    "Match",
    "compare_results",
    "gold_orders_rows",
    "normalize",
]

REL_TOL = 1e-6
ABS_TOL = 1e-9
_MAX_PERMUTATIONS = 5_000  # tried at most; candidates are pruned by column first
_MATCHING_LIMIT = 5_000  # rows above which the tolerant fallback matching is not tried


@dataclass(frozen=True)
class Match:
    """The verdict, with why when it is no match (``reason``, for the report)."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


# -- values ---------------------------------------------------------------------------------


def normalize(value: Any) -> Any:
    """One comparable form per value: None, an int, a float, or a str."""
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value  # pandas reads NULLs as NaN
    if isinstance(value, decimal.Decimal):
        if value.is_nan():
            return None
        return (
            int(value)
            if value == value.to_integral_value() and abs(value) < 2**63
            else float(value)
        )
    if isinstance(value, _dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    try:  # numpy scalars (a DataFrame's cells), pandas Timestamps and NaT
        import numpy as np
        import pandas as pd

        if value is pd.NaT:
            return None
        if isinstance(value, pd.Timestamp):
            return normalize(value.to_pydatetime())
        if isinstance(value, np.generic):
            return normalize(value.item())
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    return str(value)


def _num(v: Any) -> bool:
    return isinstance(v, int | float)


def _equal(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if _num(a) and _num(b):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    if _num(a) or _num(b):
        return False
    return a == b


def _rows_equal(a: Sequence[Any], b: Sequence[Any]) -> bool:
    return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))


def _key(v: Any) -> tuple[int, Any]:
    """A sort key that puts equal values next to each other: NULLs, numbers (rounded to the
    tolerance, so values equal within it mostly sort together), then text."""
    if v is None:
        return (0, 0)
    if _num(v):
        return (1, float(f"{float(v):.6g}"))
    return (2, v)


def _row_key(row: Sequence[Any]) -> tuple[tuple[int, Any], ...]:
    return tuple(_key(v) for v in row)


def _same_multiset(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> bool:
    """Two lists of rows as multisets, numbers within the tolerance."""
    if len(a) != len(b):
        return False
    sa, sb = sorted(a, key=_row_key), sorted(b, key=_row_key)
    if all(_rows_equal(x, y) for x, y in zip(sa, sb, strict=True)):
        return True
    # Rounding for the sort key can put two rows equal within the tolerance on either side of
    # a boundary. Rows equal exactly pair off first; the rest are matched as a bipartite graph
    # (a greedy pairing can take the partner another row needed: 1.0 with 1.0000009, leaving
    # 1.0000018 without its 1.0).
    if len(a) > _MATCHING_LIMIT:
        return False
    counts: dict[tuple[Any, ...], int] = {}
    for row in sb:
        counts[tuple(row)] = counts.get(tuple(row), 0) + 1
    left: list[tuple[Any, ...]] = []
    for row in sa:
        if counts.get(tuple(row), 0):
            counts[tuple(row)] -= 1
        else:
            left.append(row)
    right = [row for row, n in counts.items() for _ in range(n)]
    return _perfect_matching(left, right)


def _perfect_matching(left: list[tuple[Any, ...]], right: list[tuple[Any, ...]]) -> bool:
    """Can every row of `left` be paired with its own row of `right` equal within the
    tolerance? Augmenting paths found breadth first (Kuhn's algorithm, without recursion)."""
    edges = [[j for j, r in enumerate(right) if _rows_equal(row, r)] for row in left]
    owner: dict[int, int] = {}  # right row -> the left row paired with it
    partner: dict[int, int] = {}  # left row -> its right row
    for start in range(len(left)):
        came_from: dict[int, int] = {}  # right row -> the left row that reached it
        queue, found = deque([start]), None
        while queue and found is None:
            u = queue.popleft()
            for j in edges[u]:
                if j in came_from:
                    continue
                came_from[j] = u
                if j not in owner:
                    found = j
                    break
                queue.append(owner[j])
        if found is None:
            return False
        j = found
        while True:  # flip the path: each left row on it takes the right row it reached
            u = came_from[j]
            previous = partner.get(u)
            owner[j], partner[u] = u, j
            if previous is None:
                break
            j = previous
    return True


# -- the order of the gold query -------------------------------------------------------------


def gold_orders_rows(sql: str, dialect: str | None = None) -> bool:
    """Does `sql` order its result? True for a top-level ``ORDER BY`` (of the outermost
    SELECT, or of the last part of a UNION); an ``ORDER BY`` inside a subquery, a CTE or a
    window function orders nothing the caller sees. Unparsable SQL: False."""
    try:
        stmt = sqlglot.parse_one(sql, read=dialect or None)
    except Exception:
        return False
    while isinstance(stmt, exp.Subquery | exp.Paren):  # (SELECT ... ORDER BY ...) orders too
        stmt = stmt.this
    if stmt is None:
        return False
    return stmt.args.get("order") is not None if isinstance(stmt, exp.Query) else False


# -- results ---------------------------------------------------------------------------------


def _columns(rows: list[tuple[Any, ...]], n: int) -> list[list[Any]]:
    return [[r[i] for r in rows] for i in range(n)]


def _candidates(got: list[tuple[Any, ...]], want: list[tuple[Any, ...]], n: int) -> list[list[int]]:
    """For each column of `want`, the columns of `got` holding the same multiset of values."""
    gcols, wcols = _columns(got, n), _columns(want, n)
    out = []
    for w in wcols:
        wt = [(x,) for x in w]
        out.append([i for i, g in enumerate(gcols) if _same_multiset([(x,) for x in g], wt)])
    return out


def _permutations(cands: list[list[int]]) -> Iterable[tuple[int, ...]]:
    """Assignments of distinct `got` columns to the `want` columns, each from its candidates."""
    n = len(cands)
    order = sorted(range(n), key=lambda j: len(cands[j]))  # fewest choices first

    def walk(k: int, used: set[int], chosen: dict[int, int]) -> Iterable[tuple[int, ...]]:
        if k == n:
            yield tuple(chosen[j] for j in range(n))
            return
        j = order[k]
        for i in cands[j]:
            if i not in used:
                chosen[j] = i
                used.add(i)
                yield from walk(k + 1, used, chosen)
                used.discard(i)
                del chosen[j]

    return walk(0, set(), {})


def compare_results(
    got: Iterable[Sequence[Any]],
    want: Iterable[Sequence[Any]],
    *,
    ordered: bool = False,
) -> Match:
    """Does `got` (the answer's rows) match `want` (the gold's rows)? See the module's rules.

    `ordered`: compare rows position by position (the gold query has a top-level ``ORDER BY``,
    see :func:`gold_orders_rows`).
    """
    g = [tuple(normalize(v) for v in row) for row in got]
    w = [tuple(normalize(v) for v in row) for row in want]
    if not g and not w:
        return Match(True)
    if len(g) != len(w):
        return Match(False, f"{len(g)} row(s), expected {len(w)}")
    ng, nw = len(g[0]), len(w[0])
    if any(len(r) != ng for r in g) or any(len(r) != nw for r in w):
        return Match(False, "rows of different widths")
    if ng != nw:
        return Match(False, f"{ng} column(s), expected {nw}")
    cands = _candidates(g, w, nw)
    missing = [j for j, c in enumerate(cands) if not c]
    if missing:
        if nw == 1:
            return Match(False, "different values")
        return Match(False, f"no column holds the values of expected column {missing[0] + 1}")
    for perm in itertools.islice(_permutations(cands), _MAX_PERMUTATIONS):
        moved = [tuple(r[i] for i in perm) for r in g]
        if ordered:
            if all(_rows_equal(a, b) for a, b in zip(moved, w, strict=True)):
                return Match(True)
        elif _same_multiset(moved, w):
            return Match(True)
    if ordered and any(
        _same_multiset([tuple(r[i] for i in p) for r in g], w)
        for p in itertools.islice(_permutations(cands), _MAX_PERMUTATIONS)
    ):
        return Match(False, "the right rows in the wrong order")
    return Match(False, "different rows")
