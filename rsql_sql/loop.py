"""The question -> checked SQL -> DataFrame loop, independent of IPython and of the client.

``complete(messages) -> str`` is any chat completion (the proxy client in the magic, a scripted
fake provider in tests). Each answer is extracted, checked (``validate.check_sql``) and run; on
any failure the exact error goes back to the model as the next user message, up to
``max_retries`` times, then :class:`SqlAIError` carries the last SQL and error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from rsql_common.stages import CHECK_STAGES, Stage
from rsql_sql import defaults
from rsql_sql.errors import Attempt, Escalation, QueryTimeout, SqlAIError, SqlCheckError

from .catalog import ValuesPolicy
from .checks.guard import ALLOWED
from .checks.validate import Checked, check_sql, extract_sql, transpile_functions
from .connections import DB
from .database_rules import target_spelling
from .databases import database_for
from .execute import database_error_message, function_names_in_error, is_syntax_error, run_query
from .policy import SqlPolicy
from .schema import Schema, capture_schema, capture_values, describe_schema

__all__ = [
    "ESCALATING_STAGES",
    "SqlAIResult",
    "dialect_label",
    "run_chain",
    "run_question",
    "sql_messages",
]

Complete = Callable[[list[dict[str, str]]], str]


def dialect_label(dialect: str) -> str:
    """How prompts and footers name the database of a sqlglot dialect (``PostgreSQL``)."""
    return database_for(dialect).title


@dataclass
class SqlAIResult:
    question: str
    dialect: str
    sql: str  # the statement that ran (or, with dry_run, would run)
    frame: pd.DataFrame | None
    more: bool
    attempts: list[Attempt]
    explanation: str | None = None
    transpiled_from: str | None = None
    dry_run: bool = False
    elapsed_s: float = 0.0
    schema_text: str = ""
    notes: list[str] = field(default_factory=list)
    model: str | None = None  # which model of a chain answered (``run_chain``); None: one model
    escalations: list[Escalation] = field(default_factory=list)

    @property
    def row_count(self) -> int:
        return 0 if self.frame is None else len(self.frame)


_STAGE_WORDS = {
    "extract": "no SQL found in the answer",
    "parse": "it does not parse, or is too large to check",
    "schema": "it does not match the schema",
    "refused": "the read-only guard refused it",
    "database": "the database raised an error",
    "timeout": "the statement timed out",
}


def sql_messages(
    question: str,
    schema_text: str,
    dialect: str,
    *,
    allow_write: bool = False,
    explain: bool = False,
) -> list[dict[str, str]]:
    """The messages %%sql_ai sends: its rules and the schema as DDL (system), the question
    (user)."""
    label = dialect_label(dialect)
    rules = [
        f"You write one {label} SQL statement that answers the user's question about the "
        "database described below.",
        "Use only tables and columns that appear in the schema; qualify columns with table "
        "aliases when more than one table is involved.",
        f"Write {label} syntax and functions only.",
        "Answer with exactly one statement in a single ```sql fenced block.",
    ]
    if allow_write:
        rules.append(
            "Writes (INSERT, UPDATE, DELETE, DDL) are allowed if the question asks for them."
        )
    else:
        rules.append(f"The statement must be read-only: {ALLOWED}.")
    if explain:
        rules.append(
            "After the block, explain in 2-4 plain-language sentences what the query does."
        )
    else:
        rules.append("Do not add an explanation.")
    system = " ".join(rules) + f"\n\nSchema ({label}):\n{schema_text}"
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


# the line under a refusal that ended the loop: the model kept answering with what the guard
# refuses, so asking it again would not help
REFUSED_WHAT_TO_DO = (
    "What to do: rephrase the question as one that reads data (name the tables with --tables), "
    "or write the SQL yourself."
)


def feedback_message(stage: str, error: str) -> str:
    why = _STAGE_WORDS.get(stage, stage)
    return (
        f"That SQL failed: {why}.\n{error}\n\n"
        "Answer again with the corrected statement in one ```sql block."
    )


# what DuckDB's parser wall says of a statement it cannot parse (its own text: no data in it)
_DUCKDB_SYNTAX = "Refused by DuckDB's own parser: syntax error"


def _run_checked(
    db: DB,
    checked: Checked,
    schema: Schema | None,
    dialect: str,
    *,
    max_rows: int,
    timeout_s: float | None,
    allow_write: bool,
    policy: SqlPolicy,
) -> tuple[Checked, Any]:
    def run(c: Checked) -> Any:
        return run_query(
            db,
            c.sql,
            max_rows=max_rows,
            timeout_s=timeout_s,
            read_only=not allow_write,
            policy=policy,
        )

    def rerun(text: str, src: str | None, note: str) -> tuple[Checked, Any] | None:
        """`text` in place of the statement, through every check again; None if it fails."""
        try:
            fixed = check_sql(
                text,
                schema,
                dialect,
                allow_write=allow_write,
                allowed_functions=policy.allowed_functions,
            )
            fixed.transpiled_from = src or fixed.transpiled_from
            fixed.note = "; ".join(n for n in (checked.note, note) if n)
            return fixed, run(fixed)
        except Exception:
            return None  # the model gets the database's error on the original

    def respelled() -> tuple[Checked, Any] | None:
        # the database rejected the syntax (LIMIT 5, 10 on PostgreSQL, ILIKE on SQLite): the
        # statement as sqlglot writes it for this database, when that differs
        text = target_spelling(checked.sql, dialect)
        if text is None:
            return None
        return rerun(
            text,
            None,
            f"rewritten in {dialect_label(dialect)} syntax with sqlglot "
            "after the database rejected the original",
        )

    try:
        return checked, run(checked)
    except SqlCheckError as e:
        # refused by the database's own parser (DuckDB): nothing ran
        if e.message.startswith(_DUCKDB_SYNTAX):
            done = respelled()
            if done is not None:
                return done
        raise
    except QueryTimeout as e:
        raise SqlCheckError(
            f"{e}. Make the query cheaper: filter earlier, aggregate, or add a LIMIT.",
            stage="timeout",
            sql=checked.sql,
        ) from None
    except Exception as e:
        # The database rejected a function another dialect has: sqlglot can translate it
        # without a model call (LEN -> LENGTH, DATEADD -> + INTERVAL, GETDATE -> CURRENT_...).
        names = function_names_in_error(e)
        done = None
        if names:
            found = transpile_functions(checked.sql, dialect, names)
            if found is not None:
                src, text = found
                done = rerun(
                    text,
                    src,
                    f"transpiled {', '.join(sorted(names))} from {src} to "
                    f"{dialect} with sqlglot after the database rejected it",
                )
        elif is_syntax_error(e):
            done = respelled()
        if done is not None:
            return done
        # The message goes back to the model: only what it needs, no values from the data.
        known = (
            []
            if schema is None
            else [n for t in schema.tables for n in (t.name, *(c.name for c in t.columns))]
        )
        raise SqlCheckError(
            database_error_message(e, checked.sql, known), stage="database", sql=checked.sql
        ) from None


def run_question(
    question: str,
    db: DB,
    complete: Complete,
    *,
    dialect: str | None = None,
    schema: Schema | None = None,
    tables: list[str] | None = None,
    max_retries: int = defaults.SQL_MAX_RETRIES,
    allow_write: bool = False,
    dry_run: bool = False,
    explain: bool = False,
    max_rows: int = defaults.SQL_MAX_ROWS,
    timeout_s: float | None = defaults.SQL_TIMEOUT_S,
    budget_chars: int = defaults.SCHEMA_CHARS,
    policy: SqlPolicy | None = None,
    context_policy: ValuesPolicy | None = None,
    values_wait_s: float = defaults.VALUES_WAIT_S,
) -> SqlAIResult:
    """Ask for SQL, check it, run it; feed every failure back, up to `max_retries` times.

    `policy`: extra allowed functions and the PostgreSQL role (``SqlAIMagics.policy()``); the
    default allows only the built-in allowlist and keeps the connection's own role.
    `context_policy`: the context policy in force (:class:`rsql_common.context_policy.ContextPolicy`);
    when it allows value statistics, the values of short text columns steer which tables the
    schema text shows (a question naming "dogs" finds the table whose column holds "dog");
    a value equal to a literal of the question ("Lyon") is shown on its column as an example
    (see ``capture_values``). None: names only. `values_wait_s`: how long the question waits
    for the connection's value index (the first on a large warehouse); what is not read by
    then is read in the background, and a note on the result says how much was read.
    """
    t0 = time.perf_counter()
    policy = policy or SqlPolicy()
    dialect = dialect or db.dialect
    if schema is None:
        schema = capture_schema(db)
    if tables:
        missing = [t for t in tables if schema.table(*reversed(t.split(".", 1))) is None]
        if missing:
            raise SqlAIError(
                f"--tables names unknown table(s): {', '.join(missing)}",
                attempts=[],
                sql="",
                stage="usage",  # the user's mistake: no model would do better
            )
    if context_policy is not None:
        # bounded in time, cached per connection, inside the same walls as generated SQL
        capture_values(
            db,
            schema,
            policy=context_policy,
            sql_policy=policy,
            question=question,
            timeout_s=values_wait_s,
        )
    schema_text = describe_schema(
        schema, question, tables, budget_chars, dialect, policy=context_policy
    )
    messages = sql_messages(
        question, schema_text, dialect, allow_write=allow_write, explain=explain
    )
    attempts: list[Attempt] = []
    refusals_in_a_row = 0
    for _ in range(max_retries + 1):
        answer = complete(messages)
        sql, prose = extract_sql(answer)
        try:
            checked = check_sql(
                sql,
                schema,
                dialect,
                allow_write=allow_write,
                allowed_functions=policy.allowed_functions,
            )
            result = None
            if not dry_run:
                checked, result = _run_checked(
                    db,
                    checked,
                    schema,
                    dialect,
                    max_rows=max_rows,
                    timeout_s=timeout_s,
                    allow_write=allow_write,
                    policy=policy,
                )
        except SqlCheckError as e:
            attempts.append(Attempt(answer, e.sql or sql, e.stage, e.message, position=e.position))
            refusals_in_a_row = refusals_in_a_row + 1 if e.stage == "refused" else 0
            if refusals_in_a_row >= 2:
                break  # asked twice for a read-only statement: the question wants a write
            messages = [
                *messages,
                {"role": "assistant", "content": answer},
                {"role": "user", "content": feedback_message(e.stage, e.message)},
            ]
            continue
        attempts.append(Attempt(answer, checked.sql, "ok", None, checked.transpiled_from))
        out = SqlAIResult(
            question=question,
            dialect=dialect,
            sql=checked.sql,
            frame=None if result is None else result.frame,
            more=False if result is None else result.more,
            attempts=attempts,
            transpiled_from=checked.transpiled_from,
            dry_run=dry_run,
            schema_text=schema_text,
        )
        if checked.note:
            out.notes.append(checked.note)
        if result is not None and result.capped_bytes:
            out.notes.append(
                f"stopped fetching at the result bound of {result.capped_bytes / 2**20:g} MB "
                f"with {len(result.frame):,} rows (SqlAIMagics.max_result_bytes; select fewer "
                "or narrower columns)"
            )
        index = schema.value_index if context_policy is not None else None
        if index is not None and not index.complete:
            # the first question on a large warehouse: say why a later one may see more
            out.notes.append(
                f"values read from {index.columns_read:,} of {index.columns_total:,} columns so "
                "far; the rest are read in the background, so later questions may find more "
                "tables by the values they name"
            )
        if explain:
            out.explanation = prose.strip() or _explain(complete, question, checked.sql, dialect)
        out.elapsed_s = time.perf_counter() - t0
        return out
    last = attempts[-1]
    # every attempt failed (a passing one returned above); "ok" is only there for the type
    failed: Stage = "database" if last.stage == "ok" else last.stage
    tries = len(attempts)
    if last.stage == "refused":
        # the guard's message says what was refused and why, once; then what the user can do
        message = f"{last.error}\n{REFUSED_WHAT_TO_DO}"
    else:
        message = (
            f"no acceptable SQL after {tries} attempt{'s' if tries != 1 else ''}; "
            f"last error ({last.stage}):\n{last.error}"
        )
    raise SqlAIError(
        message,
        attempts=attempts,
        sql=last.sql,
        stage=failed,
        position=last.position,
    )


# Failures of the model's SQL (the check stages): a stronger model may do better. A bad
# --tables ("usage") or a proxy refusal ("proxy") would fail the same way for every model.
ESCALATING_STAGES: frozenset[str] = CHECK_STAGES


def run_chain(
    question: str,
    db: DB,
    completes: Sequence[tuple[str, Complete]],
    *,
    on_escalate: Callable[[int, Escalation], None] | None = None,
    **options: Any,
) -> SqlAIResult:
    """:func:`run_question` with each ``(model, complete)`` of `completes` in turn: the next
    model is asked only when the previous one's SQL still failed after its retries (a stage of
    :data:`ESCALATING_STAGES`). The result says which model answered (``model``) and why the
    ones before it were passed over (``escalations``); its ``attempts`` are all models' attempts.
    `options` are :func:`run_question`'s; the schema is captured once for the whole chain.
    `on_escalate(i, escalation)` runs before the model at index ``i`` is asked.
    """
    if not completes:
        raise ValueError("run_chain needs at least one (model, complete) pair")
    if options.get("schema") is None:
        options["schema"] = capture_schema(db)
    escalations: list[Escalation] = []
    attempts: list[Attempt] = []
    for i, (model, complete) in enumerate(completes):
        try:
            res = run_question(question, db, complete, **options)
        except SqlAIError as e:
            e.attempts = attempts + e.attempts
            if i == len(completes) - 1 or e.stage not in ESCALATING_STAGES:
                e.escalations = escalations
                raise
            escalations.append(Escalation(model, e.stage, e.message))
            attempts = e.attempts
            if on_escalate is not None:
                on_escalate(i + 1, escalations[-1])
            continue
        res.model, res.escalations, res.attempts = model, escalations, attempts + res.attempts
        return res
    raise AssertionError("unreachable: the last model's failure is raised")


def _explain(complete: Complete, question: str, sql: str, dialect: str) -> str:
    """A second call when the answer carried no explanation of its own."""
    messages = [
        {
            "role": "system",
            "content": "Explain in 2-4 plain-language sentences, for someone who does not read "
            "SQL, what the query does and how it answers the question. No code.",
        },
        {
            "role": "user",
            "content": f"Question: {question}\n\n{dialect_label(dialect)} query:\n```sql\n{sql}\n```",
        },
    ]
    return complete(messages).strip()
