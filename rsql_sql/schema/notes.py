"""Comments on the columns of the schema text: a value of the question a column holds, the
range of a date or year column. Only under a context policy that allows value statistics, never
on a redacted column; values are hostile text, so each is cut and made a SQL string literal with
no comment delimiter in it.
"""

from __future__ import annotations

import re

from ..catalog import Schema, Table, ValuesPolicy
from .rank import Ranking
from .words import one_line

__all__ = ["NOTE_LEN", "RANGES_PER_TABLE", "column_notes"]

NOTE_LEN = 40  # characters of a value shown as an example
RANGES_PER_TABLE = 2


def _value_note(value: str, dialect: str) -> str:
    """A value as a comment's text: one line, cut, a SQL string literal made by sqlglot, with
    no comment delimiter in it. Database values are hostile: "*/ DROP TABLE x; --" and a
    newline stay inside the comment."""
    from sqlglot import exp

    lit = exp.Literal.string(one_line(value)[:NOTE_LEN]).sql(dialect=dialect)
    return lit.replace("*/", "* /").replace("/*", "/ *")


def _bound_note(value: str, dialect: str) -> str:
    s = one_line(value)[:26]
    if re.fullmatch(r"[0-9][0-9 :T.+\-Z]*", s):
        return s
    return _value_note(s, dialect)


def column_notes(
    t: Table, ranking: Ranking, schema: Schema, policy: ValuesPolicy | None, dialect: str
) -> tuple[dict[str, str], set[str]]:
    """Comments for `t`'s columns, and the columns they make needed: a value equal to a
    literal of the question and the range of a date column holding a year of it (needed:
    a wide table keeps them), the range of every other date and year column (shown when its
    column is). Only under a policy that allows value statistics, never on a redacted
    column."""
    if policy is None or not getattr(policy, "value_stats", False):
        return {}, set()
    out = {
        col: f"e.g. {_value_note(v, dialect)}"
        for col, v in ranking.examples.get(id(t), {}).items()
        if not policy.redacts(col)
    }
    ranges = schema.ranges.get((t.db, t.name), {})
    if ranking.years and ranges:
        matched = ranking.matched.get(id(t), set())
        position = {c.name: k for k, c in enumerate(t.columns)}
        holding = [
            col
            for col, (lo, hi) in ranges.items()
            if col in position
            and not policy.redacts(col)
            and any(lo[:4] <= y <= hi[:4] for y in ranking.years)
        ]
        holding.sort(key=lambda c: (c not in matched, position[c]))
        for col in holding[:RANGES_PER_TABLE]:
            lo, hi = ranges[col]
            out.setdefault(col, f"{_bound_note(lo, dialect)} .. {_bound_note(hi, dialect)}")
    needed = set(out)
    if ranges:  # every date column's range, wherever it is shown
        for col, note in _range_notes(t, schema, policy, dialect).items():
            out.setdefault(col, note)
    return out, needed


def _range_notes(t: Table, schema: Schema, policy: ValuesPolicy, dialect: str) -> dict[str, str]:
    """The range notes of `t`'s date columns, the same for every question: kept while the
    schema's ranges are the same object (it lives as long as the values' cache entry)."""
    ranges = schema.ranges
    cache = _RANGE_NOTES.get(id(ranges))
    if cache is None or cache[0] is not ranges:
        if len(_RANGE_NOTES) >= 8:
            _RANGE_NOTES.clear()
        cache = _RANGE_NOTES[id(ranges)] = (ranges, {})
    key = (id(t), dialect, tuple(policy.redact_columns))
    notes = cache[1].get(key)
    if notes is None:
        notes = cache[1][key] = {
            col: f"{_bound_note(lo, dialect)} .. {_bound_note(hi, dialect)}"
            for col, (lo, hi) in ranges.get((t.db, t.name), {}).items()
            if not policy.redacts(col)
        }
    return notes


# id(schema.ranges) -> (those ranges, {(id(table), dialect, redacted columns): notes})
_RANGE_NOTES: dict[int, tuple[object, dict[tuple[object, ...], dict[str, str]]]] = {}
