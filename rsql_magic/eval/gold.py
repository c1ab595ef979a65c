"""What rsql-eval scores an answer against: the gold answer, and what the model was shown.

:func:`gold_answer` runs a question's gold SQL as the model's SQL runs (the same read-only
guard, ``check_sql``, and executor inside the database's read-only walls; a failure is the
question's ``gold_error``, never a crash) or takes its expected rows, and finds the tables and
columns it reads. :func:`record_seen_text` and :func:`record_seen_by_agent` record in a
:class:`~.results.QuestionResult` whether the schema text the model saw held all of them
(``retrieval``: ok, miss or unknown), so a wrong answer reads as a retrieval or a model miss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rsql_magic.agent.loop import Turn
from rsql_magic.errors import SqlCheckError
from rsql_sql.connections import DB
from rsql_sql.execute import run_query
from rsql_sql.policy import SqlPolicy
from rsql_sql.schema import Schema, describe_schema
from rsql_sql.schema.coverage import coverage, needed_columns, shown_columns
from rsql_sql.validate import check_sql

from .compare import gold_orders_rows
from .questions import Question
from .results import QuestionResult

__all__ = [
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


def _seen(r: QuestionResult, gold: Gold, shown: dict[str, set[str]]) -> None:
    """Record in `r` whether `shown` held everything the gold needs."""
    if gold.needed is None:
        r.retrieval, r.retrieval_note = "unknown", gold.unknown_needs
        return
    found = coverage(gold.needed, shown)
    r.retrieval = "ok" if found.columns_ok else "miss"
    r.missing_tables, r.missing_columns = list(found.missing_tables), list(found.missing_columns)


def record_seen_text(r: QuestionResult, gold: Gold, text: str, db: DB, schema: Schema) -> None:
    """Record in `r` whether the schema `text` the loop sent showed what `gold` reads."""
    # partial: a line cut at the text's bound still showed the columns written before the cut
    _seen(r, gold, shown_columns(text, db.dialect, schema.default_db, partial=True))


def loop_schema_text(q: Question, db: DB, opts: dict[str, Any]) -> str:
    """The schema text run_question sent for `q`, when it raised instead of returning it: the
    same call with the arguments this runner gives it (no --tables, no context policy), so the
    same text (describe_schema depends on nothing else)."""
    return describe_schema(opts["schema"], q.question, None, opts["budget_chars"], db.dialect)


def record_seen_by_agent(r: QuestionResult, gold: Gold, turn: Turn, db: DB, schema: Schema) -> None:
    """Record what an agent turn saw: every table line its schema tools returned."""
    shown: dict[str, set[str]] = {}
    for step in turn.steps:
        if step.tool in SCHEMA_TOOLS and not step.error:
            # a wide table's describe_table is cut at the tool's character bound: partial
            seen = shown_columns(step.result, db.dialect, schema.default_db, partial=True)
            for table, cols in seen.items():
                shown.setdefault(table, set()).update(cols)
    _seen(r, gold, shown)
