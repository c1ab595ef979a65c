"""%%sql_ai: a question in, checked read-only SQL and a DataFrame out.

Registration: ``%load_ext rsql_magic`` (:mod:`rsql_magic`) registers :class:`SqlAIMagics`.
Its settings (:class:`~rsql_magic.session.SqlAISettings`) are ``SqlAIMagics.<name>``; the proxy
settings, the model's fallback chain, batch detection and Retry-After waits are the session's
(:mod:`rsql_magic.session`), so one ``%config RSQLMagic.*`` serves both magics.

Privacy: what leaves for the model is the question and the schema as DDL (names, types, keys),
never a value from the database (database errors go back to the model with their values
removed); the proxy's pattern redaction still masks personal data in the question. Where the
context policy allows value statistics, the values of short text columns help choose which
tables the DDL shows, and are not sent.

Tutor mode (a course's tutor window, issue 75): the approach and a query with blanks are shown,
and nothing runs (:mod:`rsql_magic.operations.sql_question`).
"""

from __future__ import annotations

from typing import Any

from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, cell_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display

from rsql_magic.client import ChatResult
from rsql_magic.errors import ProxyError, SqlAIError, TutorAnswer
from rsql_magic.operations import SqlOperation, SqlRequest
from rsql_magic.operations.sql_question import HIDDEN_QUERY, NOT_RUN, TutorSql, tutor_answer
from rsql_magic.render import (
    code_block,
    fallback_label,
    markdown_bundle,
    refusal_markdown,
    replayed_label,
    table_cell,
)
from rsql_magic.session import Provenance, Session, SqlAISettings
from rsql_magic.session.sql_runner import ConnectionChoice
from rsql_sql.dialects import sqlglot_dialect
from rsql_sql.loop import SqlAIResult, dialect_label

__all__ = ["SqlAIMagics"]


@magics_class
class SqlAIMagics(Magics, SqlAISettings):
    """``%%sql_ai``. Its settings are configurable as ``SqlAIMagics.<name>``."""

    shell: InteractiveShell  # IPython registers magics with its shell: never None here

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.last_result: SqlAIResult | None = None
        self.last_tutor: TutorSql | None = None  # the last answer in tutor mode (never run)
        self.chat_results: list[ChatResult] = []
        self.operation: SqlOperation | None = None  # the last cell's: its route, its calls

    # -- the magic -----------------------------------------------------------------------

    @no_var_expand
    @magic_arguments()
    @argument("conn", nargs="?", default=None, help="Connection variable, URL, or 'frames'.")
    @argument("-o", "--out", default=None, help="Store the DataFrame in this variable.")
    @argument("--dialect", default=None, help="SQL dialect (default: from the connection).")
    @argument("--dry-run", action="store_true", help="Show the checked SQL; run nothing.")
    @argument("--allow-write", action="store_true", help="Allow statements that write.")
    @argument("--explain", action="store_true", help="Add a plain-language explanation.")
    @argument("--emit", action="store_true", help="Put a ready-to-run cell next.")
    @argument("--max-retries", type=int, default=None, help="Retries with the error fed back.")
    @argument("--tables", default=None, help="Only these tables: T1,T2.")
    @argument("--model", default=None, help="Model to ask.")
    @argument("--limit", type=int, default=None, help="Rows fetched at most.")
    @argument("--no-cache", action="store_true", help="Bypass the proxy's answer cache.")
    @cell_magic
    def sql_ai(self, line: str, cell: str) -> None:
        """%%sql_ai [CONN] [options]: the cell body is a question about the database."""
        args = parse_argstring(self.sql_ai, line)
        question = (cell or "").strip()
        if not question:
            raise SqlAIError(
                "%%sql_ai needs a question: write it in the cell, under the %%sql_ai line, for "
                "example\n\n    %%sql_ai conn\n    Total order amount per region\n",
                attempts=[],
                sql="",
                stage="usage",
            )
        session = Session.of(self.shell)
        chosen = session.sql_runner.choose_connection(args.conn)
        db, conn_expr = chosen.db, chosen.conn_expr
        tables = [t.strip() for t in args.tables.split(",") if t.strip()] if args.tables else []
        chain = () if args.model else tuple(m.strip() for m in self.models if m.strip())
        request = SqlRequest(
            question,
            db,
            dialect=_dialect(args.dialect) if args.dialect else db.dialect,
            tables=tuple(tables),
            model=None if chain else session.config.model(args.model, sql=True),
            chain=chain,
            option=bool(args.model),
            max_retries=args.max_retries,
            max_rows=args.limit,
            allow_write=args.allow_write,
            dry_run=args.dry_run,
            explain=args.explain,
            no_cache=args.no_cache,
            cell=session.cells.cell_label("%%sql_ai", line),
        )
        batch = session.config.is_batch()
        operation = SqlOperation(session)
        self.chat_results = operation.calls  # filled as the model answers, for the footer
        self.operation = operation
        try:
            if operation.in_tutor_mode(request):
                self._show_tutor(operation.tutor(request), args.out, session)
                return
            res = operation.ask(request)
        except TutorAnswer as e:  # a tutor window began since GET me was read: nothing ran
            self._show_tutor(
                tutor_answer(e.result, request.dialect or db.dialect), args.out, session
            )
            return
        except SqlAIError as e:
            self._show_failure(e, chosen)
            raise
        except ProxyError as e:  # no proxy, a refused token, 429 beyond the batch waits, ...
            note = refusal_markdown(e)
            if note is not None:  # the admin's policy said no: what it said, and until when
                display(markdown_bundle(note), raw=True)
                if not batch:
                    return
            # the proxy's failure as the ProxyError it is (troubleshooting.md names it so):
            # SqlAIError is for SQL that failed, and no SQL was tried past this point
            raise
        self.last_result = res
        self._show(res, chosen)
        ns = self.shell.user_ns
        value: Any = res.sql if res.dry_run else res.frame
        if args.out:
            ns[args.out] = value
        ns["_"] = value
        if args.emit:
            self._emit(res, conn_expr, args.out, batch)

    # -- output --------------------------------------------------------------------------

    def _footer(self) -> str:
        if not self.chat_results:
            return ""
        last = self.chat_results[-1]
        pt = sum((r.usage or {}).get("prompt_tokens") or 0 for r in self.chat_results)
        ct = sum((r.usage or {}).get("completion_tokens") or 0 for r in self.chat_results)
        # a replayed answer cost nothing this time: only live calls are summed
        costs = [
            r.cost_usd for r in self.chat_results if r.cost_usd is not None and not r.replayed_at
        ]
        parts = [last.model or "model ?", f"{len(self.chat_results)} call(s)"]
        res = self.last_result
        if res is not None and res.escalations:
            parts.insert(
                0,
                "escalated: "
                + "; ".join(f"{e.model} failed at {e.stage}" for e in res.escalations),
            )
        fallbacks = sorted(
            {r.fallback for r in self.chat_results if r.fallback and not r.replayed_at}
        )
        if fallbacks:  # the proxy's local fallback wrote (some of) this SQL: say so first
            parts.insert(0, ", ".join(fallback_label(f) for f in fallbacks))
        parts.append(f"{pt} → {ct} tokens")
        replayed = [r.replayed_at for r in self.chat_results if r.replayed_at]
        if len(replayed) == len(self.chat_results):
            # every answer came from the replay store: nothing reached the proxy
            parts.append(replayed_label(replayed))
            return " · ".join(parts)
        if replayed:
            parts.append(f"{len(replayed)} replayed")
        if costs:
            parts.append(f"${sum(costs):.4f}")
        hits = sum(1 for r in self.chat_results if r.cache_hit)
        if hits:
            parts.append(f"{hits} cache hit(s)")
        parts.append(f"{sum(r.latency_s or 0 for r in self.chat_results):.1f} s")
        return " · ".join(parts)

    def _notice_lines(self, session: Session) -> list[str]:
        """What goes over the SQL, as Markdown quote lines (none when nothing is to be said):
        that every answer was replayed, and whether the proxy answers now; the course log's
        notice, with the first answer of the kernel session (as %%ask's)."""
        answered = self.chat_results[-1] if self.chat_results else None
        route = self.operation.route if self.operation is not None else None
        client = route.client if route is not None else session.config.preview_client()
        notices = [
            *session.replay_notice(self.chat_results, client, route.replay if route else None),
            *session.answer_notices(answered, client),
        ]
        return ["".join(f"> **{table_cell(n)}**\n>\n" for n in notices).removesuffix(">\n")]

    def _show(self, res: SqlAIResult, chosen: ConnectionChoice) -> None:
        session = Session.of(self.shell)
        md: list[str] = [*self._notice_lines(session), *_why(chosen), code_block(res.sql, "sql")]
        md = [m for m in md if m]
        info = [f"{dialect_label(res.dialect)} on {chosen.source}"]
        fixes = [a for a in res.attempts if a.stage != "ok"]
        if fixes:
            info.append(
                f"{len(res.attempts)} attempts; fixed: " + ", ".join(a.stage for a in fixes)
            )
        info += res.notes
        if res.dry_run:
            info.append("dry run: nothing ran")
        elif res.frame is not None:
            n = len(res.frame)
            cols = res.frame.shape[1]
            if res.more:
                info.append(
                    f"first {n:,} rows fetched (more not fetched: --limit) × {cols} columns"
                )
            else:
                info.append(f"{n:,} row{'s' if n != 1 else ''} × {cols} columns")
        md.append(" · ".join(info))
        if res.explanation:
            md.append(res.explanation)
        foot = self._footer()
        if foot:
            md.append(f"*{foot}*")
        text = "\n\n".join(md)
        plain = text.replace("*", "") if foot else text
        # the explanation and the SQL are model text: made safe like %%ask answers
        display(markdown_bundle(text, plain), raw=True)
        if res.frame is not None and not res.dry_run and res.frame.shape[1]:
            display(res.frame.head(self.display_rows))
            if len(res.frame) > self.display_rows:
                display(
                    {"text/plain": f"({self.display_rows} of {len(res.frame):,} rows shown)"},
                    raw=True,
                )

    def _show_tutor(self, tutor: TutorSql, out: str | None, session: Session) -> None:
        """Tutor mode's answer: the approach, the query with blanks, and why it did not run.
        The approach and the query are model text: made safe like every answer."""
        self.last_tutor = tutor
        client = session.config.preview_client()
        notices = session.answer_notices(tutor.result, client) or ["Tutor mode"]
        # the whole text goes through markdown_bundle's sanitizer: plain lines here
        md = ["".join(f"> **{table_cell(n)}**\n>\n" for n in notices).removesuffix(">\n")]
        if tutor.approach:
            md.append(tutor.approach)
        if tutor.query is not None:
            md.append(code_block(tutor.query, "sql"))
            if tutor.blanked:
                md.append("*The model wrote parts in full; they are left out as blanks.*")
        md.append(f"**{NOT_RUN if tutor.query is not None else HIDDEN_QUERY}**")
        if out:
            md.append(f"*-o {table_cell(out)}: not set, since nothing ran.*")
        foot = self._footer()
        if foot:
            md.append(f"*{foot}*")
        text = "\n\n".join(md)
        display(markdown_bundle(text, text.replace("*", "").replace("> ", "")), raw=True)

    def _show_failure(self, e: SqlAIError, chosen: ConnectionChoice) -> None:
        if not e.attempts:
            return
        if chosen.why:  # which connection the failed SQL ran on, when it was not named
            display(markdown_bundle(_why(chosen)[0]), raw=True)
        lines = [f"%%sql_ai on {chosen.source}: {len(e.attempts)} attempt(s)"]
        if e.escalations:
            lines.append(
                "  escalated: " + "; ".join(f"{x.model} failed at {x.stage}" for x in e.escalations)
            )
        for i, a in enumerate(e.attempts, 1):
            first = (a.error or "").splitlines()[0] if a.error else "ok"
            lines.append(f"  {i}. {a.stage}: {first}")
        display({"text/plain": "\n".join(lines)}, raw=True)

    def emitted_code(self, res: SqlAIResult, conn_expr: str, out: str | None) -> str:
        """A cell that runs `res.sql` without us: JupySQL ``%%sql`` when loaded, else Python."""
        return Session.of(self.shell).sql_runner.emitted_code(res.sql, conn_expr, out)

    def _emit(self, res: SqlAIResult, conn_expr: str, out: str | None, batch: bool) -> None:
        code = self.emitted_code(res, conn_expr, out)
        # the SQL is the answer's that worked: the last call's (a retry's, an escalation's)
        answered = self.chat_results[-1] if self.chat_results else None
        Session.of(self.shell).cells.insert_cell(
            code,
            "sql" if code.startswith("%%sql") else "python",
            title="Next cell",
            batch=batch,
            provenance=Provenance.of("sql_ai", answered),
        )


def _why(chosen: ConnectionChoice) -> list[str]:
    """The line that says why a connection nobody named was used (none when it was named,
    or the only candidate): first in the cell's output, before the SQL."""
    if not chosen.why:
        return []
    return [f"**Ran on {table_cell(chosen.source)}.** {table_cell(chosen.why)}"]


def _dialect(name: str) -> str:
    """``--dialect``'s sqlglot name; an unknown one is the user's mistake."""
    try:
        return sqlglot_dialect(name)
    except ValueError as e:
        raise SqlAIError(f"--dialect {name}: {e}", attempts=[], sql="", stage="usage") from None
