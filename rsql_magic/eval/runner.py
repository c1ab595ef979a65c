"""Run a question set through %%sql_ai's loop, model by model, and score every answer.

Each question is the SQL question operation %%sql_ai hands its cell to
(:class:`rsql_magic.operations.SqlOperation`: :func:`rsql_sql.loop.run_question`, a chain
through :func:`~rsql_sql.loop.run_chain`) with the magic's own model call (the proxy client,
temperature 0, its 429 policy) and the magic's own defaults (``SqlAIMagics``' row cap, timeout,
schema budget and SQL policy).

Gold SQL (:mod:`.gold`) is no more trusted than the model's: it is checked by the same read-only guard
(``check_sql``) and run by the same executor inside the database's read-only walls
(``run_query`` with the policy), on the same connection. A gold query that fails or is refused
makes its question unscorable (``gold_error``), never a crash, and nothing it asked for runs.

Outcomes per question and model: ``correct``, ``wrong`` (SQL ran, rows differ), ``refused``
(no acceptable SQL within the retries: parse, schema, guard, database, timeout), ``error`` (the
proxy refused the call: a 429, a budget, an outage; not the model's doing) and ``gold_error``.
Accuracy is over the scored questions: those without ``error`` or ``gold_error``.

With ``agent``, a model is also (or only) asked in agent mode (:mod:`.agent`): one turn of
tool calls over the database, its final SQL checked and run as above and scored the same way,
under the label ``MODEL (agent)``; a turn ended by its step or token limit is ``refused``.

Retrieval or reasoning (:mod:`.gold`): each answer also records whether every table and column the gold SQL
reads (:func:`~rsql_sql.schema.coverage.needed_columns`) was in the schema text the model
saw (``retrieval``: ok, miss or unknown). That text is the loop's (``SqlAIResult.schema_text``:
one text per question, the same for every attempt); in agent mode the union of what its
search_schema and describe_table calls returned. A scored answer that is not right is then a
retrieval miss or a model miss (:class:`ModelSummary`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsql_magic import defaults
from rsql_magic.agent.loop import Turn
from rsql_magic.client import ChatResult, ProxyClient
from rsql_magic.errors import (
    Escalation,
    EvalInputError,
    ProxyError,
    ReplayMissing,
    SqlAIError,
)
from rsql_magic.operations import AgentOperation, AgentRequest, Route, SqlOperation, SqlRequest
from rsql_magic.replay import Replay, ReplayStore
from rsql_magic.session import Session
from rsql_sql import loop
from rsql_sql.connections import DB
from rsql_sql.policy import SqlPolicy

from .agent import SUFFIX, agent_messages, answer_with_agent, check_agent_mode
from .compare import Match, compare_results, normalize
from .database import open_database
from .gold import (
    Gold,
    frame_rows,
    gold_answer,
    loop_schema_text,
    record_seen_by_agent,
    record_seen_text,
)
from .questions import Question
from .results import EvalReport, ModelSummary, Outcome, QuestionResult, wilson_interval

__all__ = [
    "EvalReport",
    "ModelSummary",
    "Outcome",
    "QuestionResult",
    "evaluate",
    "wilson_interval",
]

SHOWN_ROWS = 5  # rows of each result kept for the report (values from the database)
Progress = Callable[[str, int, int], None]  # (model label, questions done, questions in all)


def _shown(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    return [[normalize(v) for v in r] for r in rows[:SHOWN_ROWS]]


# -- the model calls ------------------------------------------------------------------------


def _fatal(e: ProxyError) -> bool:
    """A proxy error that every question would meet: stop the run instead of scoring it."""
    if isinstance(e, ReplayMissing):
        return False
    return e.status in (0, 401, 404) or e.code == "model_not_found"


@dataclass
class _Asker:
    """The run's way to the model, and its replay file, for one question at a time."""

    session: Session
    client: ProxyClient
    no_cache: bool
    replay_mode: str | None  # "refresh" (--record) or "only" (--replay)
    replay_path: Path | None

    def route(self, q: Question) -> Route:
        """`q`'s route: the run's client, and `q`'s own answers in the replay file (every
        attempt replayed as it was recorded: nothing is settled)."""
        replay = None
        if self.replay_mode and self.replay_path is not None:
            replay = Replay(
                self.replay_mode,
                ReplayStore(self.replay_path),
                kind="sql",
                cell=f"rsql-eval {q.id}",
                question=q.question,
                secrets=(self.client.token,) if self.client.token else (),
            )
        return Route(self.client, replay=replay)


def _usage(calls: list[ChatResult], r: QuestionResult) -> None:
    r.calls = len(calls)
    r.prompt_tokens = sum(int((c.usage or {}).get("prompt_tokens") or 0) for c in calls)
    r.completion_tokens = sum(int((c.usage or {}).get("completion_tokens") or 0) for c in calls)
    r.cost_usd = sum(c.cost_usd or 0.0 for c in calls)
    r.cache_hits = sum(bool(c.cache_hit) for c in calls)
    r.replayed = sum(bool(c.replayed_at) for c in calls)


def _ask(
    label: str,
    chain: list[str] | None,
    q: Question,
    gold: Gold,
    db: DB,
    asker: _Asker,
    opts: dict[str, Any],
    *,
    stop_on_fatal: bool,
) -> QuestionResult:
    """Ask `q` of one model or chain and score the answer. `stop_on_fatal`: until the model
    has answered once, an error every question would meet stops the run (EvalInputError);
    later (the proxy went down mid-run), it is that question's error."""
    r = QuestionResult(
        model=label, id=q.id, question=q.question, outcome="refused", gold_sql=q.gold_sql
    )
    if gold.error is not None:
        r.outcome, r.error = "gold_error", gold.error
        r.retrieval_note = "the gold SQL failed"
        return r
    r.gold_row_count, r.gold_rows = len(gold.rows or []), _shown(gold.rows or [])
    operation = SqlOperation(asker.session)
    request = SqlRequest(
        q.question,
        db,
        model=None if chain else label,
        chain=tuple(chain or ()),
        max_retries=opts["max_retries"],
        no_cache=asker.no_cache,
        policy=opts["policy"],
        context_values=False,
        route=asker.route(q),
        schema=opts["schema"],
    )
    t0 = time.perf_counter()
    try:
        res = operation.ask(request)
    except SqlAIError as e:
        r.latency_s = time.perf_counter() - t0
        _usage(operation.calls, r)
        record_seen_text(r, gold, loop_schema_text(q, db, opts), db, opts["schema"])
        return _failed(r, e)
    except ProxyError as e:
        r.latency_s = time.perf_counter() - t0
        _usage(operation.calls, r)
        if stop_on_fatal and _fatal(e):
            raise EvalInputError(f"model {label!r}: {e}") from None
        r.outcome, r.error = "error", str(e)
        record_seen_text(r, gold, loop_schema_text(q, db, opts), db, opts["schema"])
        return r
    r.latency_s = time.perf_counter() - t0
    _usage(operation.calls, r)
    r.answered_by = res.model if chain else None
    record_seen_text(r, gold, res.schema_text, db, opts["schema"])
    return _scored(r, res, gold, opts)


def _failed(r: QuestionResult, e: SqlAIError) -> QuestionResult:
    """`r` refused: no acceptable SQL (`e` says at which stage)."""
    r.attempts, r.stages, r.sql = len(e.attempts), [a.stage for a in e.attempts], e.sql or ""
    last = e.attempts[-1].error if e.attempts and e.attempts[-1].error else e.message
    r.error = f"{e.stage}: {last.strip().splitlines()[0]}" if last.strip() else e.stage
    r.escalations = [_escalation(x) for x in e.escalations]
    return r


def _scored(
    r: QuestionResult, res: loop.SqlAIResult, gold: Gold, opts: dict[str, Any]
) -> QuestionResult:
    """`r` with the result of SQL that ran, compared with the gold rows."""
    r.attempts, r.stages, r.sql = len(res.attempts), [a.stage for a in res.attempts], res.sql
    r.escalations = [_escalation(x) for x in res.escalations]
    got = frame_rows(res.frame)
    r.row_count, r.rows = len(got), _shown(got)
    verdict = compare_results(got, gold.rows or [], ordered=gold.ordered)
    if res.more:
        verdict = Match(False, f"more than {opts['max_rows']:,} rows")
    r.outcome = "correct" if verdict.ok else "wrong"
    r.reason = verdict.reason
    r.first_try = verdict.ok and len(res.attempts) == 1 and not res.escalations
    return r


def _ask_agent(
    label: str,
    model: str,
    q: Question,
    gold: Gold,
    db: DB,
    asker: _Asker,
    opts: dict[str, Any],
    agent: dict[str, Any],
    *,
    stop_on_fatal: bool,
) -> QuestionResult:
    """Ask `q` of `model` in agent mode (:func:`.agent.answer_with_agent`) and score it as
    :func:`_ask` scores an answer. `agent`: the turn's limits and the context policy."""
    r = QuestionResult(
        model=label, id=q.id, question=q.question, outcome="refused", gold_sql=q.gold_sql
    )
    r.mode = "agent"
    if gold.error is not None:
        r.outcome, r.error = "gold_error", gold.error
        r.retrieval_note = "the gold SQL failed"
        return r
    r.gold_row_count, r.gold_rows = len(gold.rows or []), _shown(gold.rows or [])

    operation = AgentOperation(
        asker.session,
        AgentRequest(
            tuple(agent_messages(q.question, db)),
            Route(asker.client),  # as %%ask --agent: a window that turns agent mode off refuses it
            model=model,
            kernel_rules=False,  # the messages carry the rules for the warehouse tools
            max_steps=agent["max_steps"],
            max_tokens=agent["max_tokens"],
            no_cache=asker.no_cache,
        ),
    )
    turn = Turn()
    t0 = time.perf_counter()
    try:
        done = answer_with_agent(
            q.question, db, operation, opts, context_policy=agent["context_policy"], turn=turn
        )
    except ProxyError as e:
        r.latency_s, r.steps = time.perf_counter() - t0, len(turn.steps)
        _usage(turn.requests, r)
        if stop_on_fatal and _fatal(e):
            raise EvalInputError(f"model {model!r} (agent mode): {e}") from None
        r.outcome, r.error = "error", str(e)
        record_seen_by_agent(r, gold, turn, db, opts["schema"])
        return r
    r.latency_s, r.steps, r.ended = done.seconds, len(turn.steps), turn.ended
    _usage(turn.requests, r)
    record_seen_by_agent(r, gold, turn, db, opts["schema"])
    if done.result is not None:
        _scored(r, done.result, gold, opts)
    elif done.failure is not None:
        _failed(r, done.failure)
    else:
        r.stages, r.error = done.stages, done.no_answer
    return r


def _escalation(x: Escalation) -> dict[str, str]:
    return {
        "model": str(x.model),
        "stage": str(x.stage),
        "error": str(x.error).splitlines()[0] if x.error else "",
    }


def chain_label(models: Sequence[str]) -> str:
    return " → ".join(models)


# -- the run --------------------------------------------------------------------------------


def evaluate(
    questions: Sequence[Question],
    db: DB | str,
    models: Sequence[str],
    *,
    chains: Sequence[Sequence[str]] = (),
    client: ProxyClient | None = None,
    max_retries: int = defaults.SQL_MAX_RETRIES,
    limit: int | None = None,
    record: str | os.PathLike[str] | None = None,
    replay: str | os.PathLike[str] | None = None,
    no_cache: bool = False,
    postgres_role: str | None = None,
    progress: Progress | None = None,
    agent: str | bool | None = "off",
    agent_max_steps: int = 8,
    agent_max_tokens: int | None = None,
) -> EvalReport:
    """Ask every question of each model in `models` and of each chain in `chains` (models in
    escalation order, see :func:`~rsql_sql.loop.run_chain`), and score the answers.

    `db`: a :class:`~rsql_sql.connections.DB` or what :func:`open_database` takes.
    `client`: the proxy (default: found as the magics find it, ``RSQL_PROXY_URL`` first).
    `record`: a replay file to record every model answer in; `replay`: answer from such a file
    only, calling no model (a missing answer is that question's ``error``). `postgres_role`:
    the role model and gold SQL run as on PostgreSQL (``SqlAIMagics.postgres_role``).
    `agent`: "off", "only" (True) or "both": ask each model in agent mode (:mod:`.agent`),
    instead of or beside %%sql_ai's loop, each turn within `agent_max_steps` requests and
    `agent_max_tokens` tokens (default ``RSQLMagic.agent_max_tokens``'s).

    Raises :class:`EvalInputError` for a bad input, no proxy, or a proxy error every question
    would meet (not authenticated, unknown model). A 429 or a spent budget is the question's
    ``error``.
    """
    if record and replay:
        raise EvalInputError("--record and --replay together: record a run, then replay it")
    if not models and not chains:
        raise EvalInputError("no model: give --model (or --chain)")
    if max_retries < 0:
        raise EvalInputError("--max-retries must be 0 or more")
    if limit is not None and limit < 1:
        raise EvalInputError("--limit must be 1 or more")
    try:
        agent = check_agent_mode(agent)
    except ValueError as e:
        raise EvalInputError(str(e)) from None
    if agent != "off":
        if isinstance(agent_max_steps, bool) or not isinstance(agent_max_steps, int):
            raise EvalInputError("--agent-max-steps must be a whole number")
        if agent_max_steps < 1:
            raise EvalInputError("--agent-max-steps must be 1 or more")
        if agent_max_tokens is not None and agent_max_tokens < 1:
            raise EvalInputError("agent_max_tokens must be 1 or more")
        if chains:
            raise EvalInputError(
                "--chain and --agent together: a chain escalates %%sql_ai's answers from "
                "model to model; agent mode asks one model (give the chain's models with --model)"
            )
        if record or replay:
            raise EvalInputError(
                "--agent with --record or --replay: agent turns are not recorded (a turn's "
                "requests depend on what its tools found); run agent mode without them"
            )
    if isinstance(db, str):
        db = open_database(db)
    session = Session(None)
    settings = session.config.sql
    # the loop's options every question gets, the schema captured once for the run (the SQL
    # question's own capture); no context_policy: tables are chosen without column values, so
    # a run's prompts depend on the questions and the schema only, and --replay finds each
    # recorded answer again
    opts = SqlOperation(session).loop_options(
        SqlRequest(
            "",
            db,
            max_retries=max_retries,
            policy=SqlPolicy.make(
                settings.allowed_functions,
                postgres_role or settings.postgres_role,
                settings.max_result_bytes,
                role_setting="--postgres-role ROLE",
            ),
            context_values=False,
        )
    )
    schema = opts["schema"]
    if replay is not None:
        rpath = Path(replay)
        if not rpath.is_file():
            raise EvalInputError(f"--replay {replay}: no such file")
        # nothing may reach a model: any call that would is refused by the client itself
        client = ProxyClient(
            description=f"replay file {replay}",
            unavailable=ProxyError(0, "--replay: no model is called"),
        )
    elif client is None:
        try:
            client = ProxyClient.discover(local_model=False)
        except ProxyError:
            raise EvalInputError(
                "no proxy: set RSQL_PROXY_URL to the proxy's root (e.g. "
                "http://127.0.0.1:8888/rsql/ or https://hub.example.org/services/rsql/) and "
                "RSQL_PROXY_TOKEN (or JUPYTERHUB_API_TOKEN) to your token"
            ) from None
    asker = _Asker(
        session,
        client,
        no_cache,
        "refresh" if record else "only" if replay else None,
        Path(record or replay or "") if (record or replay) else None,
    )
    qs = list(questions)[:limit] if limit else list(questions)
    t_start = time.time()
    golds = {q.id: gold_answer(q, db, schema, opts) for q in qs}
    runs: list[tuple[str, list[str] | None]] = [(m, None) for m in dict.fromkeys(models)]
    for chain in chains:
        for m in chain:  # each model of a chain is also scored alone, to compare with
            if (m, None) not in runs:
                runs.append((m, None))
        runs.append((chain_label(chain), list(chain)))
    modes = {"off": ["sql"], "only": ["agent"], "both": ["sql", "agent"]}[agent]
    # (label, model, chain, mode); with --agent both each model's two runs side by side
    plan = [
        (m + SUFFIX if how == "agent" else m, m, steps, how) for m, steps in runs for how in modes
    ]
    limits = {
        "max_steps": agent_max_steps,
        "max_tokens": agent_max_tokens or asker.session.config.ask.agent_max_tokens,
        # run_sql's rows go to the model: the admin's context policy and the user's decide
        "context_policy": asker.session.config.policy_for(client)[0] if agent != "off" else None,
    }
    results: list[QuestionResult] = []
    summaries: list[ModelSummary] = []
    for label, model, steps, how in plan:
        rows: list[QuestionResult] = []
        for i, q in enumerate(qs):
            first = not any(x.calls for x in rows)
            if how == "agent":
                row = _ask_agent(
                    label, model, q, golds[q.id], db, asker, opts, limits, stop_on_fatal=first
                )
            else:
                row = _ask(label, steps, q, golds[q.id], db, asker, opts, stop_on_fatal=first)
            rows.append(row)
            if progress is not None:
                progress(label, i + 1, len(qs))
        results += rows
        summaries.append(ModelSummary.of(label, steps, rows, how))
    mode = f"recorded to {record}" if record else f"replayed from {replay}" if replay else None
    return EvalReport(
        database=db.label,
        dialect=db.dialect,
        questions=len(qs),
        max_retries=max_retries,
        models=summaries,
        results=results,
        gold_errors={k: g.error for k, g in golds.items() if g.error},
        replay=mode,
        started=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t_start)),
        elapsed_s=time.time() - t_start,
        agent=agent,
        agent_max_steps=agent_max_steps if agent != "off" else None,
    )
