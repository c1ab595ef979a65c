"""Why a schema text left out a table or column a query needs (rsql-eval's retrieval misses).

:func:`why_missing` takes what a query needs (as :func:`.coverage.needed_columns` gives it), the
text :func:`~rsql_sql.schema.render.describe_schema` wrote, and the arguments it was given, and
names for each missing table or column one reason:

- ``cut by width``: the table is shown, its line cut to some of its columns (a wide table, or a
  line cut at the text's bound), and the column is in the part left out;
- ``left out of a shown table``: the table is shown whole and the column is still absent;
- ``not among the pinned tables``: only pinned tables were shown (``--tables``);
- ``not matched by the question``: no word or value of the question scores the table (0) and
  it ranks past the tables shown;
- ``outranked by a value match``: tables ranked above it by a value of the question (their
  part of the score from values, ``Ranking.value_scores``, is what puts them above it) took
  the places it would have had; they are named;
- ``past the table budget``: it ranks past the tables shown (``41st, 35 shown``), or, ranked
  within them, did not fit in the space left (``too long for the space left``).

The ranking is computed again (:func:`.rank.rank`, a few ms): pass the question, pinned tables
and values policy describe_schema was given, or the reasons may not be those of the text.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..catalog import Schema, Table, ValuesPolicy
from .coverage import shown_columns
from .rank import rank

__all__ = ["REASONS", "Miss", "column_reason", "why_missing"]

CUT = "cut by width"
LEFT_OUT = "left out of a shown table"
NOT_PINNED = "not among the pinned tables"
NOT_MATCHED = "not matched by the question"
OUTRANKED = "outranked by a value match"
PAST_BUDGET = "past the table budget"
REASONS = (CUT, LEFT_OUT, NOT_PINNED, NOT_MATCHED, OUTRANKED, PAST_BUDGET)
NAMED = 3  # value-matched tables named in a reason, at most


@dataclass(frozen=True)
class Miss:
    """One missing table (``db.table``) or column (``db.table.column``), lower case as
    :func:`.coverage.coverage` names them, and why it was left out."""

    item: str
    reason: str  # one of REASONS (or a caller's own, e.g. rsql-eval's agent path)
    detail: str = ""  # "41st, 35 shown"; the value-matched tables; "" when none

    @property
    def text(self) -> str:
        """The reason with its detail: ``past the table budget: 41st, 35 shown``."""
        return f"{self.reason}: {self.detail}" if self.detail else self.reason

    def __str__(self) -> str:
        return f"{self.item} ({self.text})"


def _key(t: Table) -> str:
    return f"{t.db}.{t.name}".lower()


def _ordinal(n: int) -> str:
    tail = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{tail}"


def column_reason(table: Table, shown: set[str]) -> str:
    """Why a column of `table` is not among its `shown` columns (lower case): its line was cut
    to fewer columns than the table has, or the line was whole and the column still absent."""
    return CUT if len(shown) < len(table.columns) + table.columns_truncated else LEFT_OUT


def why_missing(
    needed: dict[str, set[str]],
    text: str,
    schema: Schema,
    question: str | None,
    pinned: list[str] | None = None,
    policy: ValuesPolicy | None = None,
    *,
    dialect: str | None = None,
) -> list[Miss]:
    """Each table and column of `needed` ('db.table' -> columns, lower case) that `text` does
    not show, with its reason; missing tables first, then columns, each sorted (as coverage
    lists them); [] when nothing is missing.

    `question`, `pinned` (describe_schema's ``tables``) and `policy` (None: no values): what
    describe_schema was given for `text`; `dialect`: the text's (default: the schema's)."""
    shown = shown_columns(text, dialect or schema.dialect, schema.default_db, partial=True)
    by_key = {_key(t): t for t in schema.tables}
    out: list[Miss] = []
    absent = sorted(t for t in needed if t not in shown)
    if absent:
        out += _table_misses(absent, by_key, set(shown), schema, question, pinned, policy)
    for key in sorted(t for t in needed if t in shown):
        table = by_key.get(key)
        for col in sorted(needed[key] - shown[key]):
            reason = column_reason(table, shown[key]) if table is not None else LEFT_OUT
            out.append(Miss(f"{key}.{col}", reason))
    return out


def _table_misses(
    absent: list[str],
    by_key: dict[str, Table],
    shown: set[str],
    schema: Schema,
    question: str | None,
    pinned: list[str] | None,
    policy: ValuesPolicy | None,
) -> list[Miss]:
    ranking = rank(schema, question, pinned, policy=policy)
    place = {id(t): k for k, t in enumerate(ranking.tables)}
    pinned_l = {p.lower() for p in pinned or ()}
    n_shown = len(shown)
    out = []
    for key in absent:
        t = by_key.get(key)
        if t is None or id(t) not in place:
            out.append(Miss(key, PAST_BUDGET))
            continue
        if pinned_l and t.name.lower() not in pinned_l and key not in pinned_l:
            out.append(Miss(key, NOT_PINNED))
            continue
        pos = place[id(t)]
        where = f"{_ordinal(pos + 1)}, {n_shown} shown"
        if pos < n_shown:  # ranked among the shown ones: skipped, too long for what was left
            out.append(Miss(key, PAST_BUDGET, where + ", too long for the space left"))
            continue
        score = ranking.scores.get(id(t), 0.0)
        if score <= 0:
            out.append(Miss(key, NOT_MATCHED, where))
            continue
        # above it only by what their values gave: without that part they would rank below it
        lifted = [
            u
            for u in ranking.tables[:pos]
            if ranking.value_scores.get(id(u), 0.0) > 0
            and ranking.scores.get(id(u), 0.0) - ranking.value_scores[id(u)] < score
        ]
        if lifted and pos - len(lifted) < n_shown:
            # those shown took its place in the text (one may have been too long to show)
            names = [_key(u) for u in lifted if _key(u) in shown] or [_key(u) for u in lifted]
            named = ", ".join(names[:NAMED]) + (
                f" (+{len(names) - NAMED})" if len(names) > NAMED else ""
            )
            out.append(Miss(key, OUTRANKED, named))
            continue
        out.append(Miss(key, PAST_BUDGET, where))
    return out
