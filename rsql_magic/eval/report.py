"""An :class:`~rsql_magic.eval.runner.EvalReport` as Markdown, HTML, JSON or a terminal table.

Every value in a report may be hostile: the questions and gold SQL come from a file, the SQL
and errors from a model, the rows from a database. Markdown cells are written with
``rsql_magic.sanitize.escape_markdown`` (text that renders as itself: no raw HTML, link or
image, pipes escaped); HTML with ``html.escape`` on every value, and the page has no script
and a Content-Security-Policy that would refuse one.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from typing import Any

from rsql_magic.sanitize import escape_markdown

from .results import EvalReport, ModelSummary, QuestionResult

__all__ = ["to_html", "to_json", "to_markdown", "to_terminal"]

_MARKS = {
    "correct": "✓",
    "wrong": "✗",
    "refused": "refused",
    "error": "error",
    "gold_error": "gold error",
}


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _usd(x: float | None) -> str:
    if x is None:
        return "–"
    # small models cost fractions of a cent
    return f"${x:.4f}" if x >= 0.01 or x == 0 else f"${x:.6f}"


def _secs(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f} s"


def _summary_rows(report: EvalReport) -> tuple[list[str], list[list[str]]]:
    head = [
        "model",
        "accuracy (95% CI)",
        "first try",
        "correct / scored",
        "refused",
        "errors",
        "retries",
        "tokens in / out",
        "cost",
        "cost per correct",
        "latency median / p95",
        "retrieval misses",
        "model misses",
    ]
    rows = []
    for m in report.models:
        acc = _pct(m.accuracy)
        if m.accuracy is not None:
            acc += f" ({_pct(m.accuracy_low)}–{_pct(m.accuracy_high)})"
        rows.append(
            [
                m.model,
                acc,
                _pct(m.first_try_accuracy),
                f"{m.correct} / {m.scored}",
                str(m.refused),
                str(m.errors),
                str(m.retries),
                f"{m.prompt_tokens:,} / {m.completion_tokens:,}",
                _usd(m.cost_usd),
                _usd(m.cost_per_correct),
                f"{_secs(m.latency_median_s)} / {_secs(m.latency_p95_s)}",
                _count_pct(m.retrieval_misses, m.retrieval_miss_rate),
                _count_pct(m.model_misses, m.model_miss_rate),
            ]
        )
    return head, rows


def _count_pct(k: int, rate: float | None) -> str:
    return "–" if rate is None else f"{k} ({_pct(rate)})"


def _num(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x:,.{digits}f}".rstrip("0").rstrip(".")


def _agent_rows(report: EvalReport) -> tuple[list[str], list[list[str]]]:
    """Agent mode beside %%sql_ai's loop, per run: answers right, and per scored answer the
    requests, tool calls and tokens, and the turns a limit ended."""
    head = [
        "model",
        "mode",
        "right / scored (95% CI)",
        "requests mean / median",
        "tool calls mean / median",
        "tokens mean / median",
        "ended by step limit",
    ]

    def pair(mean: float | None, median: float | None) -> str:
        return f"{_num(mean)} / {_num(median)}"

    rows = []
    for m in report.models:
        right = f"{m.correct} / {m.scored}"
        if m.accuracy is not None:
            right += f" ({_pct(m.accuracy_low)}–{_pct(m.accuracy_high)})"
        agent = m.mode == "agent"
        ended = str(m.ended_by_steps) if agent else "–"
        if agent and m.ended_by_tokens:
            ended += f" (+{m.ended_by_tokens} by the token limit)"
        rows.append(
            [
                _base(m),
                "agent" if agent else "%%sql_ai",
                right,
                pair(m.requests_mean, m.requests_median),
                pair(m.steps_mean, m.steps_median) if agent else "–",
                pair(m.tokens_mean, m.tokens_median),
                ended,
            ]
        )
    return head, rows


def _base(m: ModelSummary) -> str:
    suffix = " (agent)"
    return m.model[: -len(suffix)] if m.mode == "agent" and m.model.endswith(suffix) else m.model


def _has_agent(report: EvalReport) -> bool:
    return any(m.mode == "agent" for m in report.models)


def _notes(report: EvalReport) -> list[str]:
    out = [
        f"{report.questions} question(s) on {report.database} ({report.dialect}), "
        f"up to {report.max_retries} retries each; run {report.started}, "
        f"{report.elapsed_s:.1f} s."
    ]
    if report.replay:
        out.append(
            f"Answers {report.replay}"
            + (
                "; tokens and cost are those recorded, latency is not the model's."
                if report.replay.startswith("replayed")
                else "."
            )
        )
    out.append(
        "Accuracy: execution accuracy over the scored questions (rows compared as a "
        "multiset, column order ignored, floats within 1e-6 relative, order only when "
        "the gold query has a top-level ORDER BY); questions the proxy refused (errors) "
        "or whose gold failed are not scored."
    )
    out.append(
        "Retrieval misses and model misses: scored questions not answered right (wrong or "
        "refused), as a share of the scored questions. A retrieval miss: the schema text the "
        "model saw lacked a table or column the gold SQL reads; a model miss: it showed all of "
        "them and the answer still missed. Questions without gold SQL, or whose gold SQL cannot "
        "be resolved against the schema, are neither (retrieval unknown). Each table or column "
        "missing says why it was left out: cut by width (its table's line showed only some "
        "columns), past the table budget (ranked past the tables shown), outranked by a value "
        "match (tables ranked above it by a value of the question took its place), not matched "
        "by the question, left out of a shown table; in agent mode, not looked up by the agent."
    )
    for m in report.models:
        parts = []
        if m.shown_known:
            parts.append(
                f"the schema text showed every table and column the gold needs for "
                f"{m.shown_all} of {m.shown_known} scored question(s)"
            )
        if m.retrieval_miss_reasons:
            parts.append(
                "left out in its retrieval misses: "
                + ", ".join(f"{k} {why}" for why, k in m.retrieval_miss_reasons.items())
            )
        if m.misses_unknown:
            parts.append(f"{m.misses_unknown} miss(es) with retrieval unknown")
        if parts:
            out.append(f"{m.model}: " + "; ".join(parts) + ".")
    if _has_agent(report):
        out.append(
            "In agent mode the schema text seen is every table line its search_schema and "
            "describe_table calls returned; column names seen only in run_sql results do not "
            "count as shown."
        )
    if _has_agent(report):
        out.append(
            "Agent mode (MODEL (agent)): each question is one turn of at most "
            f"{report.agent_max_steps} requests, with search_schema, describe_table and run_sql "
            "over the database; the turn's final ```sql block is checked and run once as "
            "%%sql_ai runs an answer (no retry) and scored the same way. A turn ended by its "
            "step or token limit has no final answer and is refused. Requests, tool calls and "
            "tokens are per scored answer."
        )
    for m in report.models:
        if m.chain:
            used = ", ".join(f"{k}: {v}" for k, v in m.answered_by.items()) or "none"
            out.append(
                f"Chain {m.model}: answered by {used}; escalated on {m.escalated} question(s)."
            )
        hits = m.cache_hits
        if hits:
            out.append(
                f"{m.model}: {hits} answer(s) from the proxy's cache "
                "(cost 0, fast: use --no-cache to measure)."
            )
    return out


def _failures(report: EvalReport) -> list[QuestionResult]:
    return [r for r in report.results if r.outcome != "correct"]


def _retrieval(r: QuestionResult) -> str:
    """What the model saw, for the list of answers not right: ok, or what was missing and why
    it was left out (``miss: main.sets.code (cut by width)``)."""
    if r.retrieval == "miss":
        return "miss: " + ", ".join(
            f"{x} ({r.miss_reasons[x]})" if r.miss_reasons.get(x) else x
            for x in [*r.missing_tables, *r.missing_columns]
        )
    return r.retrieval


def _detail(r: QuestionResult) -> str:
    if r.outcome == "wrong":
        return r.reason
    return (r.error or "").splitlines()[0] if r.error else ""


# -- Markdown ---------------------------------------------------------------------------------


def _md(value: Any) -> str:
    """A Markdown table cell that renders as its text: no HTML, no link or image (a model's
    SQL or a database value may hold one), pipes and line breaks escaped."""
    return escape_markdown(str(value).replace("\r", " "))


def _md_table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(_md(h) for h in head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return out


def _matrix(report: EvalReport) -> tuple[list[str], list[list[str]]]:
    labels = [m.model for m in report.models]
    by: dict[str, dict[str, QuestionResult]] = {}
    order: list[QuestionResult] = []
    for r in report.results:
        if r.id not in by:
            by[r.id] = {}
            order.append(r)
        by[r.id][r.model] = r
    rows = []
    for first in order:
        cells = [first.id, first.question]
        for lab in labels:
            got = by[first.id].get(lab)
            mark = _MARKS.get(got.outcome, got.outcome) if got else ""
            if got is not None and got.outcome == "correct" and got.retries:
                mark += f" ({got.retries} retr{'y' if got.retries == 1 else 'ies'})"
            if got is not None and got.answered_by:
                mark += f" by {got.answered_by}"
            if got is not None and got.ended:
                mark += f" ({'step' if got.ended == 'steps' else 'token'} limit)"
            cells.append(mark)
        rows.append(cells)
    return ["id", "question", *labels], rows


def to_markdown(report: EvalReport) -> str:
    """The report as Markdown: the summary, one row per question, and what went wrong."""
    lines = ["# rsql-eval report", ""]
    lines += [_md(n) for n in _notes(report)]
    lines += ["", "## Models", ""]
    lines += _md_table(*_summary_rows(report))
    if _has_agent(report):
        lines += ["", "## Agent mode", ""]
        lines += _md_table(*_agent_rows(report))
    lines += ["", "## Questions", ""]
    lines += _md_table(*_matrix(report))
    fails = _failures(report)
    if fails:
        lines += ["", "## Not correct", ""]
        lines += _md_table(
            ["model", "id", "outcome", "why", "retrieval", "SQL"],
            [[r.model, r.id, r.outcome, _detail(r), _retrieval(r), r.sql] for r in fails],
        )
    return "\n".join(lines) + "\n"


# -- HTML -------------------------------------------------------------------------------------

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>rsql-eval report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }}
td.correct {{ color: #176f2c; }} td.wrong, td.refused {{ color: #a11; }}
td.error, td.gold_error {{ color: #8a5a00; }}
pre {{ margin: 0; white-space: pre-wrap; }}
</style>
</head>
<body>
<h1>rsql-eval report</h1>
{notes}
<h2>Models</h2>
{summary}
{agent}<h2>Questions</h2>
{matrix}
{failures}
</body>
</html>
"""


def _h(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _html_table(
    head: Sequence[str], rows: Sequence[Sequence[Any]], cls: Callable[[int, Any], str] | None = None
) -> str:
    out = ["<table>", "<tr>" + "".join(f"<th>{_h(h)}</th>" for h in head) + "</tr>"]
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            k = cls(i, c) if cls else ""
            attr = f' class="{_h(k)}"' if k else ""
            cells.append(f"<td{attr}>{c if isinstance(c, _Safe) else _h(c)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


class _Safe(str):
    """HTML this module built from escaped parts."""


def _rows_html(rows: list[list[Any]], total: int | None) -> _Safe:
    if not rows:
        return _Safe("(no rows)")
    body = "\n".join(", ".join("NULL" if v is None else str(v) for v in r) for r in rows)
    more = f"\n… {total - len(rows)} more" if total is not None and total > len(rows) else ""
    return _Safe(f"<pre>{_h(body + more)}</pre>")


def to_html(report: EvalReport) -> str:
    """The report as one HTML page (every value escaped, no script)."""
    notes = "\n".join(f"<p>{_h(n)}</p>" for n in _notes(report))
    summary = _html_table(*_summary_rows(report))
    agent = ""
    if _has_agent(report):
        agent = "<h2>Agent mode</h2>\n" + _html_table(*_agent_rows(report)) + "\n"
    head, rows = _matrix(report)
    outcome_of = {mark: key for key, mark in _MARKS.items()}

    def cls(i: int, c: Any) -> str:
        if i < 2:
            return ""
        return outcome_of.get(str(c).split(" (")[0].split(" by ")[0], "")

    matrix = _html_table(head, rows, cls)
    fails = _failures(report)
    failures = ""
    if fails:
        failures = "<h2>Not correct</h2>\n" + _html_table(
            ["model", "id", "outcome", "why", "retrieval", "SQL", "rows", "expected rows"],
            [
                [
                    r.model,
                    r.id,
                    r.outcome,
                    _detail(r),
                    _retrieval(r),
                    _Safe(f"<pre>{_h(r.sql)}</pre>"),
                    _rows_html(r.rows, r.row_count),
                    _rows_html(r.gold_rows, r.gold_row_count),
                ]
                for r in fails
            ],
            lambda i, c: str(c) if i == 2 else "",
        )
    return _PAGE.format(notes=notes, summary=summary, agent=agent, matrix=matrix, failures=failures)


# -- JSON and the terminal ---------------------------------------------------------------------


def to_json(report: EvalReport) -> str:
    """The whole report with one row per question and model, as JSON."""
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False, default=str) + "\n"


def _aligned(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [line(head), line(["-" * w for w in widths])] + [line(r) for r in rows]


def to_terminal(report: EvalReport) -> str:
    """The summary as an aligned plain-text table (the caller prints it through ``shown``)."""
    head, rows = _summary_rows(report)
    keep = [0, 1, 2, 4, 5, 6, 8, 9, 10, 11, 12]
    out = _aligned([head[i] for i in keep], [[r[i] for i in keep] for r in rows])
    if _has_agent(report):
        out += ["", f"Agent mode (at most {report.agent_max_steps} requests a turn):"]
        out += _aligned(*_agent_rows(report))
    if report.gold_errors:
        out.append(
            f"{len(report.gold_errors)} question(s) not scored, their gold failed: "
            + ", ".join(report.gold_errors)
        )
    return "\n".join(out)
