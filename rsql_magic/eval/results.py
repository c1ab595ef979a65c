"""What rsql-eval finds: one row per question and model, the summary per model, the report.

:class:`QuestionResult` (one question asked of one model, chain or agent run, scored),
:class:`ModelSummary` (the scores over the question set, with the 95% Wilson interval of the
accuracy and, per answer, the requests, tool calls and tokens) and :class:`EvalReport`. The
runner (:mod:`.runner`) fills them; :mod:`.report` writes them out.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = [
    "EvalReport",
    "ModelSummary",
    "Outcome",
    "QuestionResult",
    "Retrieval",
    "wilson_interval",
]

Outcome = Literal["correct", "wrong", "refused", "error", "gold_error"]
# Was everything the gold SQL needs in the schema text the model saw? "ok": every table and
# column; "miss": something was not (`missing_tables`, `missing_columns`); "unknown": the
# gold's needs or the text seen are not known (`retrieval_note` says which).
Retrieval = Literal["ok", "miss", "unknown"]


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
    mode: str = "sql"  # "sql": %%sql_ai's loop; "agent": one agent turn
    steps: int = 0  # agent: the turn's tool calls (its requests are `calls`)
    ended: str = ""  # agent: "steps" or "tokens" when a limit ended the turn
    retrieval: Retrieval = "unknown"
    missing_tables: list[str] = field(default_factory=list)  # "db.table", lower case
    missing_columns: list[str] = field(default_factory=list)  # "db.table.column" of shown tables
    retrieval_note: str = ""  # why retrieval is unknown
    # each missing table or column -> why it was left out ("cut by width", "past the table
    # budget: 41st, 35 shown", ...: rsql_sql.schema.misses; agent mode: "not looked up by the
    # agent"); the reason's kind is the text before ": "
    miss_reasons: dict[str, str] = field(default_factory=dict)

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
    mode: str = "sql"  # "sql" or "agent"
    # per scored answer: requests to the model, tool calls (agent), tokens in and out
    requests_mean: float | None = None
    requests_median: float | None = None
    steps_mean: float | None = None
    steps_median: float | None = None
    tokens_mean: float | None = None
    tokens_median: float | None = None
    ended_by_steps: int = 0  # agent: turns the step limit ended
    ended_by_tokens: int = 0  # agent: turns the token limit ended
    # scored questions not answered right (wrong or refused), told apart by what was shown:
    # something the gold needs was not in the schema text (retrieval), or all of it was and the
    # answer still missed (model); unknown when the gold could not be qualified
    retrieval_misses: int = 0
    model_misses: int = 0
    misses_unknown: int = 0
    retrieval_miss_rate: float | None = None  # over the scored questions
    model_miss_rate: float | None = None
    # scored questions whose schema text showed every table and column the gold needs, over
    # those where that is known
    shown_all: int = 0
    shown_known: int = 0
    # the tables and columns missing in the retrieval misses, counted per reason's kind
    retrieval_miss_reasons: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(
        cls, model: str, chain: list[str] | None, rows: list[QuestionResult], mode: str = "sql"
    ) -> ModelSummary:
        scored = [r for r in rows if r.outcome in ("correct", "wrong", "refused")]
        n = len(scored)
        correct = sum(r.outcome == "correct" for r in scored)
        first = sum(r.first_try for r in scored)
        cost = sum(r.cost_usd for r in rows)
        lat = [r.latency_s for r in rows if r.outcome != "gold_error" and r.calls]
        low, high = wilson_interval(correct, n) if n else (None, None)
        misses = [r for r in scored if r.outcome != "correct"]
        retrieval_misses = sum(r.retrieval == "miss" for r in misses)
        model_misses = sum(r.retrieval == "ok" for r in misses)
        reasons: dict[str, int] = {}
        for r in misses:
            if r.retrieval == "miss":
                for why in r.miss_reasons.values():
                    kind = why.split(": ", 1)[0]
                    reasons[kind] = reasons.get(kind, 0) + 1
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
            mode=mode,
            **_per_answer("requests", [r.calls for r in scored]),
            **_per_answer("steps", [r.steps for r in scored] if mode == "agent" else []),
            **_per_answer("tokens", [r.prompt_tokens + r.completion_tokens for r in scored]),
            ended_by_steps=sum(r.ended == "steps" for r in rows),
            ended_by_tokens=sum(r.ended == "tokens" for r in rows),
            retrieval_misses=retrieval_misses,
            model_misses=model_misses,
            misses_unknown=len(misses) - retrieval_misses - model_misses,
            retrieval_miss_rate=retrieval_misses / n if n else None,
            model_miss_rate=model_misses / n if n else None,
            shown_all=sum(r.retrieval == "ok" for r in scored),
            shown_known=sum(r.retrieval != "unknown" for r in scored),
            retrieval_miss_reasons=dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        )


def _per_answer(name: str, values: list[int]) -> dict[str, float | None]:
    if not values:
        return {f"{name}_mean": None, f"{name}_median": None}
    return {f"{name}_mean": statistics.fmean(values), f"{name}_median": statistics.median(values)}


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
    agent: str = "off"  # "off", "only" or "both" (--agent)
    agent_max_steps: int | None = None  # with agent mode: the step limit of each turn

    def summary(self, model: str) -> ModelSummary:
        return next(m for m in self.models if m.model == model)

    def to_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "dialect": self.dialect,
            "questions": self.questions,
            "max_retries": self.max_retries,
            "replay": self.replay,
            "agent": self.agent,
            "agent_max_steps": self.agent_max_steps,
            "started": self.started,
            "elapsed_s": round(self.elapsed_s, 3),
            "gold_errors": self.gold_errors,
            "models": [asdict(m) for m in self.models],
            "results": [r.to_dict() for r in self.results],
        }
