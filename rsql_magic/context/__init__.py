"""Context collectors for %%ask: small pure functions, each bounded in time and size.

``build_context`` runs the collectors a question needs under ONE token budget (estimated as the
proxy estimates: :func:`rsql_common.tokens.text_tokens`): every section gets an equal share of
what is left when its turn comes, so budget a small section does not use flows on to the next
ones.

Collectors: :mod:`.frames` (pandas / polars), :mod:`.rsession` (R through rpy2),
``rsql_sql.schema.describe_connection`` (SQL through sqlglot) and :mod:`.history` (last error).
What the user names (``--df``, ``--sql``, CONN, ``--tables``, the chat's pickers) is looked up
by :mod:`.named` before anything is sent; a named source a collector cannot read is in the
context's ``unreadable``, and its question is not sent. A question's ``{var}`` references are
filled in by :mod:`.references`, within the context policy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rsql_common.hidden_characters import escaped
from rsql_common.tokens import text_tokens, token_chars
from rsql_magic import defaults

from .history import ErrorRecord

if TYPE_CHECKING:
    from rsql_magic.privacy import ContextPolicy

__all__ = ["Context", "Section", "build_context", "reason_text", "text_tokens"]


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
    # what the user named (--df, --sql, --r, a picker) and could not be read: the question
    # must not go without it (issue 77), so its sender stops before anything is sent
    unreadable: list[str] = field(default_factory=list)

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
    run: Callable[[int], str]  # budget_chars -> text; raises when its source cannot be read
    named: bool = False  # the user named this source: a failure stops the question
    what: str = ""  # how a note names the source (default: the title)


def reason_text(e: BaseException) -> str:
    """An exception as one short line for a message: a driver's text may be long, or hold
    controls (shown, not obeyed)."""
    text = " ".join(f"{type(e).__name__}: {e}".split())
    return escaped(text if len(text) <= 300 else text[:299] + "…")


def build_context(
    *,
    question: str,
    ns: dict[str, Any],
    frames: list[str] | None = None,
    recent_frames: list[str] | None = None,
    include_frames: bool = True,
    include_r: bool = False,
    r_named: bool = False,
    r_frames: list[str] | None = None,
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
    JupySQL's active one. ``r_named``: the user asked for the R session (``--r``, the panel's
    box), ``r_frames``: R data frames ``--df`` named, described first. What the user named
    (explicit frames, ``sql``, the R session when ``r_named``) and cannot be read goes to
    ``unreadable``, not to ``notes``: the caller stops. ``last_error``: include this failed
    cell and its traceback.
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
            from rsql_sql.schema import describe_connection

            # values may steer which tables are shown (never shown), as the policy allows
            ddl = describe_connection(
                conn,
                question=question,
                budget_chars=budget,
                policy=None if no_data else policy,
                sql_policy=sql_policy,
            )
            return f"connection `{label}`:\n{ddl}"

        # a schema is asked for by name alone (--sql, the SQL picker): always the user's choice
        plans.append(_Plan("SQL schema", run_sql, named=True, what=f"the schema of {label}"))

    if include_r:
        prefer = list(dict.fromkeys([*(r_frames or []), *sorted(fr.identifiers_in(question))]))

        def run_r(budget: int) -> str:
            from .rsession import describe_r_session

            text = describe_r_session(
                no_data=no_data,
                head_rows=min(head_rows, 3),
                budget_chars=budget,
                prefer=prefer,
                policy=policy,
            )
            if policy is not None and policy.redact_columns:
                from rsql_magic.privacy import withheld_in_text

                ctx.withheld.extend(withheld_in_text(text))
            return text

        plans.append(
            _Plan("R session", run_r, named=r_named or bool(r_frames), what="the R session")
        )

    if include_frames:
        names, missing = fr.pick_frames(ns, question, frames, recent_frames, max_frames)
        for m in missing:
            what = type(ns[m]).__name__ if m in ns else "undefined"
            ctx.unreadable.append(f"--df {escaped(m)}: not a DataFrame ({what})")
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

            plans.append(_Plan(f"DataFrame {name}", run_frame, named=frames is not None))

    remaining = ctx.budget_chars
    for i, plan in enumerate(plans):
        share = remaining // (len(plans) - i)
        t0 = time.perf_counter()
        try:
            text = plan.run(share) or ""
        except Exception as e:  # a broken source must not kill the question, unless named
            what = plan.what or plan.title
            if plan.named:
                ctx.unreadable.append(f"{what} could not be read: {reason_text(e)}")
            else:
                ctx.notes.append(f"{what} not included: {reason_text(e)}")
            text = ""
        if len(text) > share:  # a collector that ignored its budget is cut, not trusted
            # at a line end: a value cut in two escapes the proxy's pattern redaction
            text = text[: max(0, share - 20)].rsplit("\n", 1)[0] + "\n... (cut)"
        ms = (time.perf_counter() - t0) * 1000
        if text:
            ctx.sections.append(Section(plan.title, text, ms))
            remaining -= len(text) + len(plan.title) + 6
    return ctx
