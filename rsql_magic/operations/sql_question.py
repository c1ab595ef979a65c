"""The SQL question: a question about a database in, checked read-only SQL and its rows out.

What ``%%sql_ai``, the chat panel's Run SQL button and rsql-eval's SQL mode (and its agent
mode's final answer) all do: one :class:`SqlRequest` handed to :class:`SqlOperation`, which
opens the route (:func:`~rsql_magic.session.open_route`: replay, client, the model check) unless the
request brings one, captures the schema once (``SqlRunner.capture``: the one capture on this
path, kept for the editor's completions, handed down so the escalation chain and the loop never
read it again), makes one model call per model (:class:`SqlCompleter`) and runs
:func:`rsql_sql.loop.run_question`, or :func:`~rsql_sql.loop.run_chain` for an escalation
chain, with ``SqlAIMagics``' settings for what the request leaves open.

A SQL question in tutor mode (issue 75): the approach and a query with blanks, never run
(:meth:`SqlOperation.tutor`). In a course's tutor window the proxy puts the course's tutoring
instruction first in every request. ``%%sql_ai`` then teaches: it asks for the steps of the
approach and a query with the key parts left as blanks (:func:`tutor_messages`), shows both, and
runs nothing. Nothing on that way calls the SQL loop, so no answer is executed, whatever the
model wrote; and a model that writes the whole query anyway does not hand the student the
solution: the kernel blanks the parts a student should work out (:func:`with_blanks`: the join
and filter conditions, the grouping, what is aggregated) before it is shown, and a query it
cannot read is not shown at all. An answer that comes back marked as the tutor's on the ordinary
way (a window that began since ``GET me`` was read) stops the SQL loop before its SQL is checked
or run (:class:`~rsql_magic.errors.TutorAnswer`) and is shown the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp

from rsql_common.fences import fenced_blocks
from rsql_magic.client import ChatResult
from rsql_magic.errors import Escalation, ProxyError, SqlAIError, TutorAnswer
from rsql_magic.session import Route, Session, open_route
from rsql_sql.catalog import Schema
from rsql_sql.checks.validate import extract_sql
from rsql_sql.connections import DB
from rsql_sql.dialects import sqlglot_dialect
from rsql_sql.loop import SqlAIResult, dialect_label, run_chain, run_question
from rsql_sql.policy import SqlPolicy
from rsql_sql.schema import describe_schema

__all__ = [
    "BLANK",
    "HIDDEN_QUERY",
    "NOT_RUN",
    "SqlCompleter",
    "SqlOperation",
    "SqlRequest",
    "TutorSql",
    "tutor_answer",
    "tutor_messages",
    "with_blanks",
]


@dataclass(frozen=True)
class SqlRequest:
    """One SQL question and everything that bounds it.

    ``db``: the connection; ``dialect``: the SQL to write (None: the connection's);
    ``tables``: only these (``--tables``). ``model``: the model to ask (None: the proxy's
    default); ``chain``: models in escalation order instead (``SqlAIMagics.models``), the next
    asked only when the previous one's SQL still failed; ``option``: the model came from
    ``--model`` (a model the admin does not allow is named so). ``max_retries`` and ``max_rows``
    (None: ``SqlAIMagics``'), ``allow_write``, ``dry_run``, ``explain``, ``no_cache``: as
    %%sql_ai's options say. ``policy``: the walls generated SQL meets (None:
    ``SqlAIMagics``'). ``context_values``: the context policy in force lets column values
    steer the tables shown (%%sql_ai; rsql-eval and Run SQL choose by names alone).

    ``cell``: the label the replay file keys answers by. ``route``: how requests go (None:
    opened from the session's settings, replay included). ``first_answer``: the answer to the
    first call, already at hand (Run SQL starts from the chat's answer); ``client_kind``:
    how the proxy counts the requests. ``schema``: already captured by this operation
    (rsql-eval reads it once per run); None: captured here.
    """

    question: str
    db: DB
    dialect: str | None = None
    tables: tuple[str, ...] = ()
    model: str | None = None
    chain: tuple[str, ...] = ()
    option: bool = False
    max_retries: int | None = None
    max_rows: int | None = None
    allow_write: bool = False
    dry_run: bool = False
    explain: bool = False
    no_cache: bool = False
    policy: SqlPolicy | None = None
    context_values: bool = True
    cell: str = ""
    route: Route | None = None
    first_answer: str | None = None
    client_kind: str = "sql"
    schema: Schema | None = None

    @property
    def models(self) -> list[str | None]:
        """The models asked, in order: the chain's, else the one model."""
        return [*self.chain] or [self.model]


@dataclass
class SqlCompleter:
    """The SQL loop's model call: ``complete(messages) -> text``, along the route.

    ``first_answer``: the answer to the first call, already at hand. ``calls``: the model's
    answers, in order (for a footer, or rsql-eval's usage).
    """

    session: Session
    route: Route
    model: str | None
    client_kind: str = "sql"
    no_cache: bool = False
    first_answer: str | None = None
    calls: list[ChatResult] = field(default_factory=list)
    escalation: str | None = None  # set by an escalation chain: why this model is asked

    def __call__(self, messages: list[dict[str, str]]) -> str:
        if self.first_answer is not None:
            text, self.first_answer = self.first_answer, None
            return text
        res = self.route.chat(
            self.session,
            messages,
            client_kind=self.client_kind,
            model=self.model,
            temperature=0,
            no_cache=self.no_cache,
            escalation=self.escalation,
        )
        self.calls.append(res)
        if res.mode == "tutor":  # the course's tutor answered: nothing of it may run
            raise TutorAnswer(res)
        return res.text


class SqlOperation:
    """Asks SQL questions of one session (see the module docstring). ``calls``: the model's
    answers to the last question, filled as they come, kept when it fails."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.calls: list[ChatResult] = []
        self.route: Route | None = None  # the last question's: its client, its replay

    def loop_options(self, request: SqlRequest) -> dict[str, Any]:
        """:func:`~rsql_sql.loop.run_question`'s options for `request`: the schema (captured
        here unless the request has it), ``SqlAIMagics``' bounds and policy where the request
        leaves them open; the context policy is the route's (:meth:`ask`). The one place they
        are built: a cell, the chat panel and the eval runner all come here."""
        runner, sql = self.session.sql_runner, self.session.config.sql
        opts: dict[str, Any] = dict(
            schema=runner.capture(request.db) if request.schema is None else request.schema,
            max_retries=sql.max_retries,
            max_rows=sql.max_rows,
            timeout_s=sql.timeout or None,
            budget_chars=sql.schema_chars,
            policy=self.session.config.sql_policy(),
            values_wait_s=sql.values_wait,
        )
        if request.tables:  # a table --tables names and the schema lacks: said before any request
            self.session.sql_runner.check_tables(request.tables, opts["schema"])
        opts.update(
            dialect=request.dialect,
            tables=list(request.tables) or None,
            allow_write=request.allow_write,
            dry_run=request.dry_run,
            explain=request.explain,
        )
        if request.max_retries is not None:
            opts["max_retries"] = request.max_retries
        if request.max_rows:
            opts["max_rows"] = request.max_rows
        if request.policy is not None:
            opts["policy"] = request.policy
        return opts

    def _route(self, request: SqlRequest) -> Route:
        self.route = request.route or open_route(
            self.session,
            kind="sql",
            question=request.question,
            cell=request.cell,
            models=request.models,
            option=request.option,
        )
        return self.route

    def in_tutor_mode(self, request: SqlRequest) -> bool:
        """Whether ``GET me`` says a tutor window is in force for this user now."""
        client = request.route.client if request.route else self.session.config.preview_client()
        return self.session.config.course(client).tutor is not None

    def tutor(self, request: SqlRequest) -> TutorSql:
        """`request` in tutor mode: one model call for the approach and a query with blanks,
        over the schema the ordinary way would send; nothing is checked or run. Raises
        ProxyError (no proxy, a refusal) and UsageError (a model not allowed)."""
        self.calls.clear()
        route = self._route(request)
        opts = self.loop_options(request)
        dialect = request.dialect or request.db.dialect
        tables = list(request.tables) or None
        schema_text = describe_schema(
            opts["schema"], request.question, tables, opts["budget_chars"], dialect
        )
        res = route.chat(
            self.session,
            tutor_messages(request.question, schema_text, dialect),
            client_kind=request.client_kind,
            model=request.models[0],
            temperature=0,
            no_cache=request.no_cache,
        )
        self.calls.append(res)
        return tutor_answer(res, dialect)

    def ask(self, request: SqlRequest) -> SqlAIResult:
        """The loop for `request`. Raises SqlAIError (no acceptable SQL, a bad option) and
        ProxyError (no proxy, a refusal, an upstream failure); UsageError for a model the admin
        does not allow, before anything is sent; TutorAnswer when the answer came in tutor mode
        (its SQL neither checked nor run)."""
        self.calls.clear()
        route = self._route(request)
        try:
            result = self._run(request, route)
        except (SqlAIError, ProxyError, TutorAnswer) as e:
            if route.settles_replay and route.replay is not None:
                # no failed attempt is replayed as an answer
                route.replay.settle(False, str(e).split("\n")[0])
            raise
        if route.settles_replay and route.replay is not None:
            route.replay.settle(True)  # the attempt that worked stands for the first request
        return result

    def _run(self, request: SqlRequest, route: Route) -> SqlAIResult:
        completers = [
            SqlCompleter(
                self.session,
                route,
                model,
                client_kind=request.client_kind,
                no_cache=request.no_cache,
                # the answer at hand is the first model's first answer
                first_answer=request.first_answer if i == 0 else None,
                calls=self.calls,
            )
            for i, model in enumerate(request.models)
        ]
        opts = self.loop_options(request)
        if request.context_values:
            # values steer the tables shown only as far as the admin's and the user's policy say
            opts["context_policy"] = self.session.config.policy_for(route.client)[0]
        if not request.chain:
            return run_question(request.question, request.db, completers[0], **opts)
        chain: Sequence[tuple[str, SqlCompleter]] = list(
            zip(request.chain, completers, strict=True)
        )

        def escalate(i: int, e: Escalation) -> None:
            chain[i][1].escalation = e.stage  # the proxy's usage row says why

        return run_chain(request.question, request.db, chain, on_escalate=escalate, **opts)


# -- tutor mode: the approach and a query with blanks, never run ------------------------------

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
