"""Run a question set through %%sql_ai's loop, model by model, and score every answer.

Each question goes through :func:`rsql_magic.sql.loop.run_question` (a chain through
:func:`~rsql_magic.sql.loop.run_chain`) with the magic's own model call
(:class:`rsql_magic.session.SqlCompleter`: the proxy client, temperature 0, its 429 policy) and
the magic's own defaults (``SqlAIMagics``' row cap, timeout, schema budget and SQL policy).

Gold SQL is no more trusted than the model's: it is checked by the same read-only guard
(``check_sql``) and run by the same executor inside the database's read-only walls
(``run_query`` with the policy), on the same connection. A gold query that fails or is refused
makes its question unscorable (``gold_error``), never a crash, and nothing it asked for runs.

Outcomes per question and model: ``correct``, ``wrong`` (SQL ran, rows differ), ``refused``
(no acceptable SQL within the retries: parse, schema, guard, database, timeout), ``error`` (the
proxy refused the call: a 429, a budget, an outage; not the model's doing) and ``gold_error``.
Accuracy is over the scored questions: those without ``error`` or ``gold_error``.
"""

from __future__ import annotations

import math
import os
import sqlite3
import statistics
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from rsql_magic.client import ChatResult, ProxyClient
from rsql_magic.errors import (
    Escalation,
    EvalInputError,
    ProxyError,
    ReplayMissing,
    SqlAIError,
    SqlCheckError,
)
from rsql_magic.replay import Replay, ReplayStore
from rsql_magic.session import Session, SqlAISettings, SqlCompleter
from rsql_magic.sql import loop
from rsql_magic.sql.connections import DB, DuckDB, SQLiteDB, resolve
from rsql_magic.sql.execute import run_query
from rsql_magic.sql.policy import SqlPolicy
from rsql_magic.sql.schema import Schema, capture_schema
from rsql_magic.sql.validate import check_sql

from .compare import Match, compare_results, gold_orders_rows, normalize
from .questions import Question

__all__ = [
    "EvalReport",
    "ModelSummary",
    "Outcome",
    "QuestionResult",
    "evaluate",
    "open_database",
    "wilson_interval",
]

Outcome = Literal["correct", "wrong", "refused", "error", "gold_error"]
SHOWN_ROWS = 5  # rows of each result kept for the report (values from the database)
Progress = Callable[[str, int, int], None]  # (model label, questions done, questions in all)


# -- the database ---------------------------------------------------------------------------


def _safe_url(url: str) -> str:
    """`url` without its password, for messages."""
    try:
        import sqlalchemy as sa

        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        parts = urllib.parse.urlsplit(url)
        return urllib.parse.urlunsplit((parts.scheme, "…", parts.path, parts.query, parts.fragment))


def open_database(target: str) -> DB:
    """`target` as %%sql_ai opens it: a SQLAlchemy URL (``postgresql://…``, ``duckdb:///f``), or
    the path of a SQLite or DuckDB file, opened read-only and told apart by its header.

    Raises :class:`EvalInputError` for a file that is not there or not a database, an unknown
    kind of URL, or a database that cannot be reached or has no tables.
    """
    if "://" in target:
        shown = _safe_url(target)
        try:
            db = resolve(target)
        except Exception as e:
            kind = target.split("://", 1)[0]
            raise EvalInputError(
                f"--db {shown}: cannot open a {kind!r} database "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
            ) from None
        return _checked(db, shown)
    path = Path(os.path.expanduser(target))
    if not path.exists():
        raise EvalInputError(
            f"--db {target}: no such file (give a SQLite or DuckDB file, or a "
            "SQLAlchemy URL such as postgresql://user@host/db)"
        )
    if not path.is_file():
        raise EvalInputError(f"--db {target}: not a file")
    with path.open("rb") as f:
        head = f.read(16)
    if head.startswith(b"SQLite format 3\x00"):
        uri = "file:" + urllib.parse.quote(str(path.resolve())) + "?mode=ro"
        db: DB = SQLiteDB(sqlite3.connect(uri, uri=True, check_same_thread=False), label=str(path))
    elif head[8:12] == b"DUCK":
        try:
            import duckdb
        except ImportError:
            raise EvalInputError(
                f"--db {target}: a DuckDB file needs DuckDB: pip install 'rsql-assistant[duckdb]'"
            ) from None
        try:
            db = DuckDB(duckdb.connect(str(path), read_only=True), label=str(path))
        except Exception as e:
            raise EvalInputError(
                f"--db {target}: DuckDB cannot open it: {str(e).splitlines()[0]}"
            ) from None
    else:
        raise EvalInputError(f"--db {target}: not a SQLite or DuckDB database file")
    return _checked(db, target)


def _checked(db: DB, shown: str) -> DB:
    try:
        schema = capture_schema(db)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EvalInputError(f"--db {shown}: cannot read its schema: {first}") from None
    if not schema.tables:
        raise EvalInputError(f"--db {shown}: the database has no tables")
    return db


# -- results --------------------------------------------------------------------------------


@dataclass
class QuestionResult:
    """One question asked of one model (or chain), scored."""

    model: str  # the model, or the chain's label ("a → b")
    id: str
    question: str
    outcome: Outcome
    first_try: bool = False  # correct with the first answer of the first model
    attempts: int = 0
    # each attempt's stage ("ok" or where it failed)
    stages: list[str] = field(default_factory=list)
    sql: str = ""
    gold_sql: str | None = None
    error: str | None = None
    reason: str = ""  # why the rows differ (``wrong``)
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cache_hits: int = 0
    replayed: int = 0
    latency_s: float = 0.0  # the loop's wall time: model calls, checks and the query
    answered_by: str | None = None  # chains: which model's SQL ran
    escalations: list[dict[str, str]] = field(default_factory=list)
    row_count: int | None = None
    gold_row_count: int | None = None
    rows: list[list[Any]] = field(default_factory=list)  # the first SHOWN_ROWS of the answer
    gold_rows: list[list[Any]] = field(default_factory=list)

    @property
    def retries(self) -> int:
        return max(0, self.attempts - 1)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "retries": self.retries}


def wilson_interval(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion `k`/`n` ((0, 1) when n is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    # at 0 and at n the interval ends exactly at 0 and 1 (not 1e-16 away, by rounding)
    return (0.0 if k == 0 else max(0.0, centre - half)), (
        1.0 if k == n else min(1.0, centre + half)
    )


def _p95(values: list[float]) -> float:
    """The 95th percentile, nearest rank."""
    s = sorted(values)
    return s[max(0, math.ceil(0.95 * len(s)) - 1)]


@dataclass
class ModelSummary:
    """Scores of one model (or one chain) over the question set."""

    model: str
    chain: list[str] | None
    questions: int
    scored: int  # questions without a proxy error or a gold error
    correct: int
    first_try: int
    wrong: int
    refused: int
    errors: int
    retries: int
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    accuracy: float | None
    accuracy_low: float | None  # 95% Wilson interval
    accuracy_high: float | None
    first_try_accuracy: float | None
    cost_per_correct: float | None
    latency_median_s: float | None
    latency_p95_s: float | None
    cache_hits: int = 0
    replayed: int = 0
    answered_by: dict[str, int] = field(default_factory=dict)  # chains: questions per model
    escalated: int = 0  # chains: questions passed on at least once

    @classmethod
    def of(cls, model: str, chain: list[str] | None, rows: list[QuestionResult]) -> ModelSummary:
        scored = [r for r in rows if r.outcome in ("correct", "wrong", "refused")]
        n = len(scored)
        correct = sum(r.outcome == "correct" for r in scored)
        first = sum(r.first_try for r in scored)
        cost = sum(r.cost_usd for r in rows)
        lat = [r.latency_s for r in rows if r.outcome != "gold_error" and r.calls]
        low, high = wilson_interval(correct, n) if n else (None, None)
        by: dict[str, int] = {}
        for r in rows:
            if r.answered_by:
                by[r.answered_by] = by.get(r.answered_by, 0) + 1
        return cls(
            model=model,
            chain=chain,
            questions=len(rows),
            scored=n,
            correct=correct,
            first_try=first,
            wrong=sum(r.outcome == "wrong" for r in rows),
            refused=sum(r.outcome == "refused" for r in rows),
            errors=sum(r.outcome == "error" for r in rows),
            retries=sum(r.retries for r in rows),
            calls=sum(r.calls for r in rows),
            prompt_tokens=sum(r.prompt_tokens for r in rows),
            completion_tokens=sum(r.completion_tokens for r in rows),
            cost_usd=cost,
            accuracy=correct / n if n else None,
            accuracy_low=low,
            accuracy_high=high,
            first_try_accuracy=first / n if n else None,
            cost_per_correct=cost / correct if correct else None,
            latency_median_s=statistics.median(lat) if lat else None,
            latency_p95_s=_p95(lat) if lat else None,
            cache_hits=sum(r.cache_hits for r in rows),
            replayed=sum(r.replayed for r in rows),
            answered_by=by,
            escalated=sum(bool(r.escalations) for r in rows),
        )


@dataclass
class EvalReport:
    """Everything one run found: the summaries per model and chain, and every question's row."""

    database: str
    dialect: str
    questions: int
    max_retries: int
    models: list[ModelSummary]
    results: list[QuestionResult]
    gold_errors: dict[str, str]  # question id -> why its gold could not be computed
    replay: str | None = None  # "recorded to FILE" / "replayed from FILE"
    started: str = ""
    elapsed_s: float = 0.0

    def summary(self, model: str) -> ModelSummary:
        return next(m for m in self.models if m.model == model)

    def to_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "dialect": self.dialect,
            "questions": self.questions,
            "max_retries": self.max_retries,
            "replay": self.replay,
            "started": self.started,
            "elapsed_s": round(self.elapsed_s, 3),
            "gold_errors": self.gold_errors,
            "models": [asdict(m) for m in self.models],
            "results": [r.to_dict() for r in self.results],
        }


# -- gold answers ----------------------------------------------------------------------------


@dataclass
class _Gold:
    rows: list[tuple[Any, ...]] | None
    ordered: bool
    error: str | None = None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _gold(q: Question, db: DB, schema: Schema, opts: dict[str, Any]) -> _Gold:
    if q.expected is not None:
        return _Gold([tuple(r) for r in q.expected], q.ordered)
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
        return _Gold(None, False, f"gold SQL failed ({e.stage}): {e.message.splitlines()[0]}")
    except Exception as e:
        return _Gold(None, False, f"gold SQL failed (database): {_first_line(e)}")
    if res.more:
        return _Gold(None, False, f"gold SQL returns more than {opts['max_rows']:,} rows")
    return _Gold(_rows(res.frame), gold_orders_rows(checked.sql, dialect))


def _rows(frame: Any) -> list[tuple[Any, ...]]:
    if frame is None:
        return []
    return [tuple(r) for r in frame.itertuples(index=False, name=None)]


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
    """Makes the magic's model call for one model and one question."""

    session: Session
    client: ProxyClient
    no_cache: bool
    replay_mode: str | None  # "refresh" (--record) or "only" (--replay)
    replay_path: Path | None

    def completer(self, model: str, q: Question) -> SqlCompleter:
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
        return self.session.sql_completer(
            self.client, model=model, no_cache=self.no_cache, replay=replay
        )


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
    gold: _Gold,
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
        return r
    r.gold_row_count, r.gold_rows = len(gold.rows or []), _shown(gold.rows or [])
    models = chain or [label]
    completers = [(m, asker.completer(m, q)) for m in models]
    t0 = time.perf_counter()
    try:
        if chain:

            def escalate(i: int, e: Escalation) -> None:
                completers[i][1].escalation = e.stage  # as the magic: the usage row says why

            res = loop.run_chain(q.question, db, completers, on_escalate=escalate, **opts)
        else:
            res = loop.run_question(q.question, db, completers[0][1], **opts)
    except SqlAIError as e:
        r.latency_s = time.perf_counter() - t0
        r.attempts, r.stages, r.sql = len(e.attempts), [a.stage for a in e.attempts], e.sql
        last = e.attempts[-1].error if e.attempts and e.attempts[-1].error else e.message
        r.error = f"{e.stage}: {last.strip().splitlines()[0]}" if last.strip() else e.stage
        r.escalations = [_escalation(x) for x in e.escalations]
        _usage([c for _, s in completers for c in s.calls], r)
        return r
    except ProxyError as e:
        r.latency_s = time.perf_counter() - t0
        _usage([c for _, s in completers for c in s.calls], r)
        if stop_on_fatal and _fatal(e):
            raise EvalInputError(f"model {label!r}: {e}") from None
        r.outcome, r.error = "error", str(e)
        return r
    r.latency_s = time.perf_counter() - t0
    _usage([c for _, s in completers for c in s.calls], r)
    r.attempts, r.stages, r.sql = len(res.attempts), [a.stage for a in res.attempts], res.sql
    r.answered_by = res.model if chain else None
    r.escalations = [_escalation(x) for x in res.escalations]
    got = _rows(res.frame)
    r.row_count, r.rows = len(got), _shown(got)
    verdict = compare_results(got, gold.rows or [], ordered=gold.ordered)
    if res.more:
        verdict = Match(False, f"more than {opts['max_rows']:,} rows")
    r.outcome = "correct" if verdict.ok else "wrong"
    r.reason = verdict.reason
    r.first_try = verdict.ok and len(res.attempts) == 1 and not res.escalations
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
    max_retries: int = 3,
    limit: int | None = None,
    record: str | os.PathLike[str] | None = None,
    replay: str | os.PathLike[str] | None = None,
    no_cache: bool = False,
    postgres_role: str | None = None,
    progress: Progress | None = None,
) -> EvalReport:
    """Ask every question of each model in `models` and of each chain in `chains` (models in
    escalation order, see :func:`~rsql_magic.sql.loop.run_chain`), and score the answers.

    `db`: a :class:`~rsql_magic.sql.connections.DB` or what :func:`open_database` takes.
    `client`: the proxy (default: found as the magics find it, ``RSQL_PROXY_URL`` first).
    `record`: a replay file to record every model answer in; `replay`: answer from such a file
    only, calling no model (a missing answer is that question's ``error``). `postgres_role`:
    the role model and gold SQL run as on PostgreSQL (``SqlAIMagics.postgres_role``).

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
    if isinstance(db, str):
        db = open_database(db)
    schema = capture_schema(db)
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
    settings = SqlAISettings()
    # no context_policy: tables are chosen without column values, so a run's prompts depend on
    # the questions and the schema only, and --replay finds each recorded answer again
    opts: dict[str, Any] = {
        "schema": schema,
        "max_retries": max_retries,
        "max_rows": settings.max_rows,
        "timeout_s": settings.timeout or None,
        "budget_chars": settings.schema_chars,
        "policy": SqlPolicy.make(
            settings.allowed_functions,
            postgres_role or settings.postgres_role,
            settings.max_result_bytes,
        ),
    }
    asker = _Asker(
        Session(None),
        client,
        no_cache,
        "refresh" if record else "only" if replay else None,
        Path(record or replay) if (record or replay) else None,
    )
    qs = list(questions)[:limit] if limit else list(questions)
    t_start = time.time()
    golds = {q.id: _gold(q, db, schema, opts) for q in qs}
    runs: list[tuple[str, list[str] | None]] = [(m, None) for m in dict.fromkeys(models)]
    for chain in chains:
        for m in chain:  # each model of a chain is also scored alone, to compare with
            if (m, None) not in runs:
                runs.append((m, None))
        runs.append((chain_label(chain), list(chain)))
    results: list[QuestionResult] = []
    summaries: list[ModelSummary] = []
    for label, chain in runs:
        rows: list[QuestionResult] = []
        for i, q in enumerate(qs):
            rows.append(
                _ask(
                    label,
                    chain,
                    q,
                    golds[q.id],
                    db,
                    asker,
                    opts,
                    stop_on_fatal=not any(x.calls for x in rows),
                )
            )
            if progress is not None:
                progress(label, i + 1, len(qs))
        results += rows
        summaries.append(ModelSummary.of(label, chain, rows))
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
    )
