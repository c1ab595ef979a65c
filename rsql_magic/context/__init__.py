"""Context collectors for %%ask: small pure functions, each bounded in time and size.

``build_context`` runs the collectors a question needs under ONE token budget (estimated as the
proxy estimates: :func:`rsql_common.tokens.text_tokens`): every section gets an equal share of
what is left when its turn comes, so budget a small section does not use flows on to the next
ones.

Collectors: :mod:`.frames` (pandas / polars), :mod:`.rsession` (R through rpy2),
``rsql_sql.schema.describe_connection`` (SQL through sqlglot) and :mod:`.history` (last error).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rsql_common.tokens import text_tokens, token_chars
from rsql_magic import defaults

from .history import ErrorRecord

if TYPE_CHECKING:
    from rsql_magic.privacy import ContextPolicy

__all__ = ["Context", "Section", "build_context", "text_tokens"]


@dataclass
class Section:
    title: str
    text: str
    elapsed_ms: float = 0.0


@dataclass
class Context:
    sections: list[Section] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # things the user should know (not sent)
    budget_chars: int = 0
    # "frame.column" names whose values a policy withheld (for --show-context's summary)
    withheld: list[str] = field(default_factory=list)

    def render(self) -> str:
        return "\n\n".join(f"## {s.title}\n{s.text}" for s in self.sections if s.text)

    @property
    def tokens(self) -> int:
        return text_tokens(self.render())

    def timings(self) -> str:
        return ", ".join(f"{s.title}: {s.elapsed_ms:.0f} ms" for s in self.sections)


@dataclass
class _Plan:
    title: str
    run: Any  # Callable[[int], str]: budget_chars -> text


def build_context(
    *,
    question: str,
    ns: dict[str, Any],
    frames: list[str] | None = None,
    recent_frames: list[str] | None = None,
    include_frames: bool = True,
    include_r: bool = False,
    sql: tuple[str, Any] | None = None,
    last_error: ErrorRecord | None = None,
    no_data: bool = False,
    budget_tokens: int = defaults.CONTEXT_TOKENS,
    max_frames: int = defaults.MAX_FRAMES,
    head_rows: int = defaults.HEAD_ROWS,
    stats_sample: int = defaults.STATS_SAMPLE,
    policy: ContextPolicy | None = None,
    sql_policy: Any = None,
) -> Context:
    """Collect the context for one question.

    ``frames``: explicit frame names (``--df``); otherwise frames named in the question, else
    the ``max_frames`` most recent. ``sql``: ``(label, connection)``; a connection of None is
    JupySQL's active one. ``last_error``: include this failed cell and its traceback.
    ``policy``: the context policy every collector applies (see :mod:`rsql_magic.privacy`);
    SQL schemas carry names, types and keys only, never values, under any policy;
    ``sql_policy`` (an ``rsql_sql.policy.SqlPolicy``): the walls the values that steer which
    tables are shown are read in, those of generated SQL.
    """
    from . import frames as fr

    ctx = Context(budget_chars=max(200, token_chars(budget_tokens)))
    plans: list[_Plan] = []

    if last_error is not None:
        err = last_error

        def run_err(budget: int) -> str:
            text = err.as_text()
            if len(text) > budget:  # keep the end of a traceback: it says what went wrong
                text = "... (cut)\n" + text[-max(0, budget - 10) :]
            return text

        plans.append(_Plan("Last error", run_err))

    if sql is not None:
        label, conn = sql

        def run_sql(budget: int) -> str:
            try:
                from rsql_sql.schema import describe_connection
            except ImportError as e:
                ctx.notes.append(f"SQL schema not included: {e}")
                return ""
            try:
                # values may steer which tables are shown (never shown), as the policy allows
                ddl = describe_connection(
                    conn,
                    question=question,
                    budget_chars=budget,
                    policy=None if no_data else policy,
                    sql_policy=sql_policy,
                )
            except Exception as e:  # a broken connection must not kill the question
                ctx.notes.append(f"SQL schema of {label} not included: {type(e).__name__}: {e}")
                return ""
            return f"connection `{label}`:\n{ddl}"

        plans.append(_Plan("SQL schema", run_sql))

    if include_r:

        def run_r(budget: int) -> str:
            try:
                from .rsession import describe_r_session
            except ImportError as e:
                ctx.notes.append(f"R session not included: {e}")
                return ""
            words = fr.identifiers_in(question)
            try:
                text = describe_r_session(
                    no_data=no_data,
                    head_rows=min(head_rows, 3),
                    budget_chars=budget,
                    prefer=sorted(words),
                    policy=policy,
                )
                if policy is not None and policy.redact_columns:
                    from rsql_magic.privacy import withheld_in_text

                    ctx.withheld.extend(withheld_in_text(text))
                return text
            except ImportError as e:
                ctx.notes.append(f"R session not included (rpy2 missing): {e}")
            except Exception as e:
                ctx.notes.append(f"R session not included: {type(e).__name__}: {e}")
            return ""

        plans.append(_Plan("R session", run_r))

    if include_frames:
        names, missing = fr.pick_frames(ns, question, frames, recent_frames, max_frames)
        for m in missing:
            what = type(ns[m]).__name__ if m in ns else "undefined"
            ctx.notes.append(f"--df {m}: not a DataFrame ({what}); skipped")
        for name in names:

            def run_frame(budget: int, name: str = name) -> str:
                text = fr.describe_frame(
                    name,
                    ns[name],
                    no_data=no_data,
                    head_rows=head_rows,
                    stats_sample=stats_sample,
                    budget_chars=budget,
                    policy=policy,
                )
                ctx.withheld.extend(f"{name}.{c}" for c in fr.redacted_columns(ns[name], policy))
                return text

            plans.append(_Plan(f"DataFrame {name}", run_frame))

    remaining = ctx.budget_chars
    for i, plan in enumerate(plans):
        share = remaining // (len(plans) - i)
        t0 = time.perf_counter()
        try:
            text = plan.run(share) or ""
        except Exception as e:
            ctx.notes.append(f"{plan.title} not included: {type(e).__name__}: {e}")
            text = ""
        if len(text) > share:  # a collector that ignored its budget is cut, not trusted
            # at a line end: a value cut in two escapes the proxy's pattern redaction
            text = text[: max(0, share - 20)].rsplit("\n", 1)[0] + "\n... (cut)"
        ms = (time.perf_counter() - t0) * 1000
        if text:
            ctx.sections.append(Section(plan.title, text, ms))
            remaining -= len(text) + len(plan.title) + 6
    return ctx
