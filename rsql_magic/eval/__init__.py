"""rsql-eval: score models on your own questions, as %%sql_ai would ask them.

Modules, bottom up:

- ``questions``: loading and checking a question set (JSON lines or YAML).
- ``compare``: when two results are the same answer (rows as a multiset, column order ignored,
  a float tolerance, order only when the gold query orders).
- ``results``: what a run finds: a row per question and model, the summaries, the report.
- ``agent``: ``--agent``: a question answered by one agent turn with the warehouse tools over
  its database (:mod:`rsql_magic.agent.eval_tools`), its final SQL then run as the loop runs
  an answer.
- ``database``: :func:`open_database`: the database opened as the magic opens it (a URL, or
  a SQLite or DuckDB file read-only).
- ``gold``: the gold answers (gold SQL run behind the model's guard and read-only walls) and
  whether the schema text the model saw held what they read.
- ``runner``: :func:`evaluate`: opens the database, asks each model (and chain) through the
  magic's loop and model call (and, with ``agent``, in agent mode), and scores each answer
  against its gold answer (:class:`EvalReport`).
- ``report``: the report as Markdown, HTML, JSON and a terminal table.
- ``cli``: the ``rsql-eval`` command.

Its errors are in :mod:`rsql_magic.errors`: :class:`EvalInputError` is a bad input (the command
prints it and exits 2).

From Python::

    from rsql_magic.eval import evaluate, load_questions
    report = evaluate(load_questions("flights.jsonl"), "flights.duckdb", ["small", "large"])
    report.summary("small").accuracy
"""

from rsql_magic.errors import EvalError, EvalInputError  # rsql-eval's errors, from the one tree

from .compare import Match, compare_results, gold_orders_rows
from .database import open_database
from .questions import Question, load_questions
from .report import to_html, to_json, to_markdown, to_terminal
from .runner import EvalReport, ModelSummary, QuestionResult, evaluate, wilson_interval

__all__ = [
    "EvalError",
    "EvalInputError",
    "EvalReport",
    "Match",
    "ModelSummary",
    "Question",
    "QuestionResult",
    "compare_results",
    "evaluate",
    "gold_orders_rows",
    "load_questions",
    "open_database",
    "to_html",
    "to_json",
    "to_markdown",
    "to_terminal",
    "wilson_interval",
]
