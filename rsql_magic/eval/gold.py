"""What rsql-eval scores an answer against: the gold answer, and what the model was shown.

:func:`gold_answer` runs a question's gold SQL as the model's SQL runs (the same read-only
guard, ``check_sql``, and executor inside the database's read-only walls; a failure is the
question's ``gold_error``, never a crash) or takes its expected rows, and finds the tables and
columns it reads. :func:`record_seen_text` and :func:`record_seen_by_agent` record in a
:class:`~.results.QuestionResult` whether the schema text the model saw held all of them
(``retrieval``: ok, miss or unknown), so a wrong answer reads as a retrieval or a model miss,
and why each one missing was left out (``miss_reasons``, :mod:`rsql_sql.schema.misses`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rsql_magic.agent.loop import Turn
from rsql_magic.errors import SqlCheckError
from rsql_sql.catalog import ValuesPolicy
from rsql_sql.checks.validate import check_sql
from rsql_sql.connections import DB
from rsql_sql.execute import run_query
from rsql_sql.policy import SqlPolicy
from rsql_sql.schema import Schema, describe_schema
from rsql_sql.schema.coverage import coverage, needed_columns, shown_columns
from rsql_sql.schema.misses import column_reason, why_missing

from .compare import gold_orders_rows
from .questions import Question
from .results import QuestionResult

__all__ = [
    "NOT_LOOKED_UP",
    "SCHEMA_TOOLS",
    "Gold",
    "frame_rows",
    "gold_answer",
    "loop_schema_text",
    "record_seen_by_agent",
    "record_seen_text",
]


# -- gold answers ----------------------------------------------------------------------------


@dataclass
class Gold:
    """A question's gold answer: its rows (None when `error` says why there are none) and
    whether their order counts."""

    rows: list[tuple[Any, ...]] | None
    ordered: bool
    error: str | None = None
    # the tables and columns the gold SQL reads ('db.table' -> columns); None: not known, and
    # `unknown_needs` says why (no gold SQL, or it cannot be qualified)
    needed: dict[str, set[str]] | None = None
    unknown_needs: str = ""


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def gold_answer(q: Question, db: DB, schema: Schema, opts: dict[str, Any]) -> Gold:
    """`q`'s gold answer on `db`: its expected rows, or its gold SQL checked and run as the
    model's is (`opts`: the runner's ``policy``, ``max_rows`` and ``timeout_s``). A gold query
    that is refused, fails or returns too many rows is a :class:`Gold` with an ``error``."""
    if q.expected is not None:
        return Gold(
            [tuple(r) for r in q.expected],
            q.ordered,
            unknown_needs="no gold SQL (expected rows only): what it needs is not known",
        )
    assert q.gold_sql is not None
    policy: SqlPolicy = opts["policy"]
    dialect = db.dialect
    try:
        # the same guard as the model's SQL: a gold query is data from a file
        checked = check_sql(q.gold_sql, schema, dialect, allowed_functions=policy.allowed_functions)
        res = run_query(
            db,
            checked.sql,
            max_rows=opts["max_rows"],
            timeout_s=opts["timeout_s"],
            read_only=True,
            policy=policy,
        )
    except SqlCheckError as e:
        return Gold(None, False, f"gold SQL failed ({e.stage}): {e.message.splitlines()[0]}")
    except Exception as e:
        return Gold(None, False, f"gold SQL failed (database): {_first_line(e)}")
    if res.more:
        return Gold(None, False, f"gold SQL returns more than {opts['max_rows']:,} rows")
    gold = Gold(frame_rows(res.frame), gold_orders_rows(checked.sql, dialect))
    try:  # what ran, as the engine reads it (check_sql may have transpiled or rewritten it)
        gold.needed = needed_columns(checked.sql, schema, dialect)
    except ValueError as e:
        gold.unknown_needs = f"the gold SQL's columns cannot be resolved: {_first_line(e)}"
    return gold


def frame_rows(frame: Any) -> list[tuple[Any, ...]]:
    """A result's DataFrame as rows of values (none for no frame)."""
    if frame is None:
        return []
    return [tuple(r) for r in frame.itertuples(index=False, name=None)]


# -- what the model saw -----------------------------------------------------------------------

# the agent tools whose results are schema text (run_sql's column names are not counted)
SCHEMA_TOOLS = ("search_schema", "describe_table")
NOT_LOOKED_UP = "not looked up by the agent"  # a missing table's reason in agent mode


def _seen(r: QuestionResult, gold: Gold, shown: dict[str, set[str]]) -> bool:
    """Record in `r` whether `shown` held everything the gold needs; True on a miss."""
    if gold.needed is None:
        r.retrieval, r.retrieval_note = "unknown", gold.unknown_needs
        return False
    found = coverage(gold.needed, shown)
    r.retrieval = "ok" if found.columns_ok else "miss"
    r.missing_tables, r.missing_columns = list(found.missing_tables), list(found.missing_columns)
    return not found.columns_ok


def record_seen_text(
    r: QuestionResult,
    gold: Gold,
    text: str,
    db: DB,
    schema: Schema,
    *,
    pinned: list[str] | None = None,
    policy: ValuesPolicy | None = None,
) -> None:
    """Record in `r` whether the schema `text` the loop sent showed what `gold` reads, and why
    what it did not show was left out. `pinned` and `policy`: what describe_schema was given
    with `r.question` (the runner gives neither, see :func:`loop_schema_text`)."""
    # partial: a line cut at the text's bound still showed the columns written before the cut
    if _seen(r, gold, shown_columns(text, db.dialect, schema.default_db, partial=True)):
        assert gold.needed is not None
        misses = why_missing(
            gold.needed, text, schema, r.question, pinned, policy, dialect=db.dialect
        )
        r.miss_reasons = {m.item: m.text for m in misses}


def loop_schema_text(q: Question, db: DB, opts: dict[str, Any]) -> str:
    """The schema text run_question sent for `q`, when it raised instead of returning it: the
    same call with the arguments this runner gives it (no --tables, no context policy), so the
    same text (describe_schema depends on nothing else)."""
    return describe_schema(opts["schema"], q.question, None, opts["budget_chars"], db.dialect)


def record_seen_by_agent(r: QuestionResult, gold: Gold, turn: Turn, db: DB, schema: Schema) -> None:
    """Record what an agent turn saw: every table line its schema tools returned. A table no
    tool returned was "not looked up by the agent" (the agent chose its searches: there is no
    one ranking to place it in); a column, as in the loop's text, was cut by width (the
    tool's text cut the table's line) or left out of a shown table."""
    shown: dict[str, set[str]] = {}
    for step in turn.steps:
        if step.tool in SCHEMA_TOOLS and not step.error:
            # a wide table's describe_table is cut at the tool's character bound: partial
            seen = shown_columns(step.result, db.dialect, schema.default_db, partial=True)
            for table, cols in seen.items():
                shown.setdefault(table, set()).update(cols)
    if _seen(r, gold, shown):
        reasons = dict.fromkeys(r.missing_tables, NOT_LOOKED_UP)
        by_key = {f"{t.db}.{t.name}".lower(): t for t in schema.tables}
        for key, cols in (gold.needed or {}).items():
            found = by_key.get(key)
            if key in shown and found is not None:
                for col in sorted(cols - shown[key]):
                    reasons[f"{key}.{col}"] = column_reason(found, shown[key])
        r.miss_reasons = reasons
