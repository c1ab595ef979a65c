"""A SQL question in tutor mode (issue 75): the approach and a query with blanks, never run.

In a course's tutor window the proxy puts the course's tutoring instruction first in every
request. ``%%sql_ai`` then teaches: it asks for the steps of the approach and a query with the
key parts left as blanks (:func:`tutor_messages`), shows both, and runs nothing. Nothing here
calls the SQL loop, so no answer is executed, whatever the model wrote; and a model that writes
the whole query anyway does not hand the student the solution: the kernel blanks the parts a
student should work out (:func:`with_blanks`: the join and filter conditions, the grouping,
what is aggregated) before it is shown, and a query it cannot read is not shown at all. An
answer that comes back marked as the tutor's on the ordinary path (a window that began since
``GET me`` was read) stops the SQL loop before its SQL is checked or run
(:class:`~rsql_magic.errors.TutorAnswer`) and is shown the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from rsql_common.fences import fenced_blocks
from rsql_magic.client import ChatResult
from rsql_sql.checks.validate import extract_sql
from rsql_sql.dialects import sqlglot_dialect
from rsql_sql.loop import dialect_label

__all__ = ["BLANK", "TutorSql", "tutor_answer", "tutor_messages", "with_blanks"]

BLANK = "____"  # how a blank is written, by the model and by the kernel alike
_MODEL_BLANK = "___"  # three underscores or more: the model's own blank
NOT_RUN = (
    "Tutor mode: this query was not run. Fill in the blanks (____) yourself, then run it "
    "with %%sql, pandas or your database client."
)
HIDDEN_QUERY = (
    "Tutor mode: the model wrote a query this kernel could not show with blanks, so it is "
    "not shown; follow the steps above and write it yourself."
)


def tutor_messages(question: str, schema_text: str, dialect: str) -> list[dict[str, str]]:
    """What %%sql_ai asks in tutor mode: the approach in steps and a query with blanks, over
    the same schema the ordinary path sends (the proxy puts the course's instruction first)."""
    label = dialect_label(dialect)
    rules = (
        f"You help a student learn to write {label} SQL for the database described below. "
        "Do not write the finished query. First explain the approach in 2-5 short numbered "
        "steps: which tables hold what the question needs, how they join, what to filter, "
        "group and sort. Then give the query's skeleton in one ```sql fenced block, with "
        f"the key parts the student should write themselves (join and filter conditions, "
        f"grouping, what is aggregated) written as {BLANK}. Use only tables and columns that "
        "appear in the schema."
    )
    return [
        {"role": "system", "content": f"{rules}\n\nSchema ({label}):\n{schema_text}"},
        {"role": "user", "content": question},
    ]


@dataclass(frozen=True)
class TutorSql:
    """A tutor's answer to a SQL question, as shown: ``approach`` (the model's prose, its
    code blocks left out), ``query`` (the skeleton with blanks; None when it could not be shown
    with blanks), ``blanked`` (the kernel blanked parts the model had written whole) and the
    answer it came from."""

    approach: str
    query: str | None
    blanked: bool
    result: ChatResult


def tutor_answer(result: ChatResult, dialect: str) -> TutorSql:
    """`result`, an answer in tutor mode, as it may be shown: nothing of it is ever run."""
    sql, prose = extract_sql(result.text)
    query, blanked = with_blanks(sql, dialect) if sql else (None, False)
    return TutorSql(_prose_only(prose), query, blanked, result)


def _prose_only(text: str) -> str:
    """`text` without its fenced blocks: a second block may hold the whole query."""
    out, at = [], 0
    for block in fenced_blocks(text):
        out.append(text[at : block.start])
        out.append("(code left out in tutor mode)\n")
        at = block.end
    out.append(text[at:])
    return "".join(out).strip()


def with_blanks(sql: str, dialect: str) -> tuple[str | None, bool]:
    """`sql` with the parts a student should write as blanks, and whether the kernel blanked
    any: join and filter conditions, HAVING, the grouping keys and the aggregates' arguments
    (else, a query with none of those, its selected columns). A query it cannot parse is
    shown only when the model left blanks in it (a skeleton does not always parse); else None.
    Comments are dropped: they may hold the answer."""
    try:
        trees = sqlglot.parse(sql, read=_read_dialect(dialect))
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError, ValueError):
        return (sql, False) if _MODEL_BLANK in sql else (None, False)
    statements = [t for t in trees if t is not None]
    if len(statements) != 1:
        return (sql, False) if _MODEL_BLANK in sql and statements else (None, False)
    tree = statements[0]
    blanked = _blank_parts(tree)
    if not blanked and _MODEL_BLANK not in sql:
        return None, False
    return tree.sql(dialect=_read_dialect(dialect), pretty=True, comments=False), blanked


def _read_dialect(dialect: str) -> str | None:
    try:
        return sqlglot_dialect(dialect)
    except ValueError:
        return None


def _blank() -> exp.Expr:
    return exp.Var(this=BLANK)


def _is_blank(node: exp.Expr | None) -> bool:
    return node is not None and _MODEL_BLANK in node.sql()


def _blank_parts(tree: exp.Expr) -> bool:
    """Blank the parts a student should write, in place, in every SELECT of `tree` (CTEs and
    subqueries too); True when anything was blanked. The selected columns go only from a
    query that had nothing else to leave out and no blank of the model's."""
    had_blanks = _MODEL_BLANK in tree.sql()
    blanked = False
    for select in list(tree.find_all(exp.Select)):
        for key in ("where", "having"):
            part = select.args.get(key)
            if part is not None and not _is_blank(part.this):
                part.set("this", _blank())
                blanked = True
        group = select.args.get("group")
        if group is not None and group.expressions and not _is_blank(group):
            group.set("expressions", [_blank()])
            blanked = True
        for join in select.args.get("joins") or []:
            on = join.args.get("on")
            if on is not None and not _is_blank(on):
                join.set("on", _blank())
                blanked = True
        for agg in list(select.find_all(exp.AggFunc)):
            inner = agg.this
            if inner is not None and not isinstance(inner, exp.Star) and not _is_blank(inner):
                agg.set("this", _blank())
                blanked = True
    if blanked or had_blanks:
        return blanked
    for select in list(tree.find_all(exp.Select)):  # nothing else to leave out: the columns
        columns = [e for e in select.expressions if not isinstance(e, exp.Star)]
        if columns:
            select.set("expressions", [_blank() for _ in select.expressions])
            blanked = True
    return blanked
