"""%%ask, %ask, %ask_status and %ask_cost.

``%%ask [options]`` + a question in the cell body (or ``%ask [options] question`` on one line)
gathers live context (DataFrames, the R session, a database schema, the last error), sends it
to the rsql proxy and renders the answer. Configure with ``%config RSQLMagic.<name> = ...`` or
``c.RSQLMagic.<name>`` in ``ipython_config.py``.

Batch runs (nbconvert, papermill) are told apart from interactive ones by the session
(:mod:`rsql_magic.session`): no streaming, ``--insert`` shows the code in the output, 429 / 503
answers are waited out, and every final failure raises.

Replay (:mod:`rsql_magic.replay`): ``RSQLMagic.replay`` / ``RSQL_REPLAY`` (off, auto, only,
refresh; auto in batch runs, off otherwise) answers %%ask and %%sql_ai from a JSON-lines file of
recorded answers, so a rerun shows the same answers without a proxy or quota.

Each request says which notebook and cell it comes from (:mod:`rsql_magic.session.notebook`),
so the proxy attributes its cost there; ``%ask_cost`` shows this notebook's spend. A refusal the
admin's policy decided (a policy window in force, a model not allowed) shows as a note in the
cell, saying what the admin said and until when; in a batch run it still fails the run.
"""

from __future__ import annotations

import re
import sys
import time
from typing import Any

from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display

from rsql_common.labextension import missing_labextension_notice
from rsql_magic import render
from rsql_magic.client import ChatResult, ProxyClient
from rsql_magic.context.rsession import r_session_exists
from rsql_magic.errors import ProxyError, UsageError
from rsql_magic.operations import (
    AgentOperation,
    AgentRequest,
    AskOperation,
    AskRequest,
    ContextChoice,
    Route,
)
from rsql_magic.privacy import ContextPolicy, context_report, preview, remember_me
from rsql_magic.replay import ReplayStore, resolve_mode, resolve_path
from rsql_magic.sanitize import plain_text
from rsql_magic.session import AskSettings, ContextRequest, Provenance, Session

__all__ = ["RSQLMagic", "protect_question_mark", "render_me", "split_options"]

NOTEBOOK_UNKNOWN = (
    "**rsql**: this notebook is not known here, so its spend cannot be looked up. Name it "
    "(its path relative to the Jupyter server's root): `%config RSQLMagic.notebook = "
    "'path/to/notebook.ipynb'`, or the environment variable `RSQL_NOTEBOOK`."
)
NO_QUESTION = (
    "%%ask needs a question: write it in the cell, under the %%ask line, for example\n\n"
    "    %%ask --df sales\n"
    "    Which region grew fastest last quarter?\n\n"
    "or on one line: %ask why did the last cell fail?  (%ask? lists the options)"
)
NO_COST_PER_NOTEBOOK = "this proxy does not record cost per notebook (upgrade it)"

# what each replay mode does to a cell, said beside "proxy answers now" in %ask_status
_REPLAY_MEANS = {
    "auto": "a question recorded in an earlier run is answered from the file, the proxy not asked",
    "only": "answers come from the file alone, the proxy is never asked",
    "refresh": "every question goes to the proxy, its answer recorded",
}

# Options that take a value: used to split "%ask --df x what is ..." into options + question.
_VALUE_OPTS = {"--df", "--sql", "--model", "--lang", "-o", "--out"}
_FLAG_OPTS = {"--r", "--no-data", "--insert", "--no-cache", "--show-context", "--agent"}


def split_options(text: str) -> tuple[str, str]:
    """Split leading ``--options`` from free text: ``("--df a -o x", "what is ...")``.

    The question is kept verbatim (quotes, apostrophes, braces): only the options part goes
    through argparse, so "what's wrong" never meets a shell-style quote parser.
    """
    pos = 0
    n = len(text)
    opts_end = 0
    expect_value = False
    while pos < n:
        while pos < n and text[pos].isspace():
            pos += 1
        if pos >= n:
            break
        end = pos
        while end < n and not text[end].isspace():
            end += 1
        tok = text[pos:end]
        if expect_value:
            expect_value = False
            opts_end = end
        elif tok in _FLAG_OPTS or any(tok.startswith(o + "=") for o in _VALUE_OPTS):
            opts_end = end
        elif tok in _VALUE_OPTS:
            expect_value = True
            opts_end = end
        else:
            break
        pos = end
    return text[:opts_end].strip(), text[opts_end:].strip()


@magics_class
class RSQLMagic(Magics, AskSettings):
    """The %%ask family. Its settings (:class:`~rsql_magic.session.AskSettings`) are
    configurable as ``RSQLMagic.<name>``."""

    shell: InteractiveShell  # IPython registers magics with its shell: never None here

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.last_result: ChatResult | None = None
        self.last_messages: list[dict] | None = None
        self.last_policy: ContextPolicy | None = None
        self.last_turn: Any = None  # the last %%ask --agent turn (rsql_magic.agent.loop.Turn)

    @property
    def session(self) -> Session:
        return Session.of(self.shell)

    # -- %%ask ---------------------------------------------------------------------------

    @magic_arguments()
    @argument(
        "--df",
        default=None,
        help="Frames to include: NAME[,NAME]. Default: frames named "
        "in the question, else the few most recently defined.",
    )
    @argument("--r", action="store_true", help="Include the R session (rpy2).")
    @argument(
        "--sql",
        default=None,
        metavar="CONN",
        help="Include the schema of connection "
        "variable CONN (sqlite3, DuckDB, SQLAlchemy engine or URL; 'jupysql' or '%%sql' "
        "for JupySQL's current connection).",
    )
    @argument("--no-data", action="store_true", help="Schemas only: no sample rows or values.")
    @argument(
        "--model", default=None, help="Model to ask (default: RSQLMagic.model or the proxy's)."
    )
    @argument("--lang", default=None, choices=["python", "r", "sql"], help="Language for code.")
    @argument("--insert", action="store_true", help="Put the answer's code into a new cell.")
    @argument("-o", "--out", default=None, metavar="VAR", help="Store the answer text in VAR.")
    @argument("--no-cache", action="store_true", help="Bypass the proxy's answer cache.")
    @argument("--show-context", action="store_true", help="Show what would be sent; send nothing.")
    @argument(
        "--agent",
        action="store_true",
        help="Let the model look further with read-only tools (variables, frames, R objects, "
        "schemas, read-only SQL, the last error) over several steps; it can propose a cell, "
        "never run one. Stop it with the notebook's interrupt button.",
    )
    @no_var_expand
    @line_cell_magic
    def ask(self, line: str = "", cell: str | None = None) -> None:
        """Ask about your data and code: %%ask [options] + question, or %ask [options] question."""
        opts, rest = split_options(line)
        if rest.startswith("-"):
            raise UsageError(f"%ask: unknown option {rest.split()[0]!r} (see %ask? for options)")
        args = parse_argstring(self.ask, opts)
        question = "\n".join(p for p in (rest, cell or "") if p.strip()).strip()
        if not question:
            raise UsageError(NO_QUESTION)
        self._ask(
            args,
            question,
            self.session.cells.cell_label("%%ask" if cell is not None else "%ask", line),
        )

    def _ask(self, args: Any, question: str, cell: str = "") -> None:
        session = self.session
        ns = self.shell.user_ns
        batch = session.config.is_batch()
        frames = [f.strip() for f in args.df.split(",") if f.strip()] if args.df else None
        sql: str | None = args.sql or None  # looked up by the operation, before any request
        lang = args.lang or ("sql" if sql else "r" if args.r else "python")
        r_loaded = "rpy2.ipython" in getattr(self.shell.extension_manager, "loaded", set())
        # R comes along when asked for (--r, --lang r), or by default when the rpy2 extension
        # is loaded and the question did not pick its context explicitly (--df / --sql)
        auto_r = r_loaded and sql is None and frames is None and r_session_exists()
        # what --df and --sql name first: a name that resolves to nothing stops the cell before
        # any request. Then the proxy: its admin's policy decides what every collector (and
        # every {var} reference) may show; with no proxy the cell fails here. An agent's turn
        # is not replayed: its requests depend on what its tools found each time
        operation = AskOperation(
            session,
            AskRequest(
                question,
                ContextChoice(
                    frames=None if frames is None else tuple(frames),
                    include_r=bool(args.r or lang == "r" or auto_r),
                    # --r names the R session: one that cannot be read stops the question;
                    # --lang r only asks for R code, and the session comes along if it can
                    r_named=bool(args.r),
                    sql=sql,
                    lang=lang,
                    no_data=args.no_data,
                    # about R or SQL: frames only when named (not "the recent ones")
                    named_frames_only=bool(args.r or sql),
                ),
                model=args.model,
                cell=cell,
                replayed=not args.agent,
                preview=args.show_context,
                stream=bool(self.stream and not batch),
                no_cache=args.no_cache,
            ),
        )
        client = operation.route.client
        req = operation.context()
        self.last_policy = req.policy
        for note in req.notes:
            print(f"rsql: {note}", file=sys.stderr)
        messages = req.messages
        self.last_messages = messages

        if args.show_context:
            self._show_context(req, client, args.no_data)
            if args.out:
                ns[args.out] = messages
            return

        if args.agent:
            self._agent(args, operation.route, messages)
            return

        handle = None
        buf: list[str] = []
        stream = operation.request.stream
        # tutor mode with the admin's words, over the answer as it streams in (GET me's)
        ahead = session.answer_notices(None, client)
        if stream:
            handle = display(
                render.mimebundle("", None, mode=self.render_mode, streaming=True, notices=ahead),
                raw=True,
                display_id=True,
            )
        last_push = [0.0]

        def on_delta(piece: str) -> None:
            buf.append(piece)
            now = time.monotonic()
            if handle is not None and now - last_push[0] > 0.1:  # ~10 updates/s is plenty
                last_push[0] = now
                handle.update(
                    render.mimebundle(
                        "".join(buf), None, mode=self.render_mode, streaming=True, notices=ahead
                    ),
                    raw=True,
                )

        try:
            res = operation.send(
                messages, on_retry=buf.clear, on_delta=on_delta if stream else None
            )
        except ProxyError as e:
            refusal = render.refusal_markdown(e)
            if refusal is not None:  # the admin's policy said no: say what it said, and until when
                bundle = render.markdown_bundle(refusal)
                if handle is not None:
                    handle.update(bundle, raw=True)
                else:
                    display(bundle, raw=True)
                if batch:
                    raise  # a batch run must fail, with the same message
                return
            if handle is not None:
                handle.update(render.error_bundle("".join(buf), f"rsql: {e}"), raw=True)
            raise
        self.last_result = res
        notices = [
            *session.replay_notice([res], client, operation.route.replay),
            *session.answer_notices(res, client),
        ]
        bundle = render.mimebundle(res.text, res, mode=self.render_mode, notices=notices)
        if handle is not None:
            handle.update(bundle, raw=True)
        else:
            display(bundle, raw=True)
        if args.out:
            ns[args.out] = res.text
        if args.insert:
            found = session.cells.cell_code(res.text, lang)
            if found is None:
                print("rsql: --insert: the answer has no code block", file=sys.stderr)
            else:
                session.cells.insert_cell(
                    found[1], found[0], batch=batch, provenance=Provenance.of("ask", res)
                )

    def _agent(self, args: Any, route: Route, messages: list[dict[str, Any]]) -> None:
        """%%ask --agent: one turn of tool calls, then the answer (:mod:`rsql_magic.agent`)."""
        from rsql_magic.agent.cell import run_agent_cell
        from rsql_magic.agent.tools import KernelTools

        session = self.session
        operation = AgentOperation(
            session,
            AgentRequest(
                tuple(messages),
                route,
                model=session.config.model(args.model),
                no_cache=args.no_cache,
                instead="Pick another with --model, or ask without --agent",
            ),
        )
        tools = KernelTools(session, client=route.client, batch=route.batch)
        try:
            turn = run_agent_cell(
                lambda on_step, turn: operation.run(tools.serving(turn), turn, on_step=on_step),
                model=operation.request.model or "",
                render_mode=self.render_mode,
                no_answer=operation.no_answer,
            )
        except ProxyError as e:
            note = render.refusal_markdown(e)
            if note is None or route.batch:
                raise
            display(render.markdown_bundle(note), raw=True)
            return
        self.last_turn = turn
        if turn.requests:
            self.last_result = turn.result()
            # the course log's notice with the first answer of the session, as %%ask's
            notices = session.answer_notices(self.last_result, route.client, tutor=False)
            if notices:
                md = "\n".join(f"> **{render.table_cell(n)}**" for n in notices)
                display(render.markdown_bundle(md), raw=True)
        if args.out:
            self.shell.user_ns[args.out] = turn.answer

    def _show_context(
        self, req: ContextRequest, client: ProxyClient, no_data: bool = False
    ) -> None:
        """What would leave: after the policy and after the proxy's redaction (``POST
        redact``, which the proxy answers itself: no model sees it), and what was withheld."""
        pv = preview(client, req.messages)
        ctx = req.context
        header = (
            f"rsql: nothing sent (--show-context) to the model. Context ~{ctx.tokens} "
            f"tokens of {self.context_tokens}; {ctx.timings() or 'no sections'}"
        )
        text = context_report(req.messages, ctx, req.policy, pv, header=header, no_data=no_data)
        # values from frames and databases are in there: plain text only, control chars out
        display({"text/plain": plain_text(text)}, raw=True)

    # -- %ask_status ---------------------------------------------------------------------

    def _replay_status(self) -> str:
        try:
            mode = resolve_mode(self.replay, self.session.config.is_batch())
        except UsageError as e:
            return f"**replay**: invalid ({e})"
        if mode == "off":
            return "**replay**: off"
        path = resolve_path(self.replay_file)
        held = f"{len(ReplayStore(path).latest())} answer(s) in {path.name}"
        return f"**replay**: {mode} ({held}): {_REPLAY_MEANS[mode]}"

    def _kernel_status(self, client: ProxyClient | None) -> list[str]:
        """The kernel's side of %ask_status: batch run, replay, this notebook, the model."""
        session = self.session
        origin = session.cells.origin()
        if origin.notebook:
            where = f"{origin.notebook} (this cell: {origin.cell or 'unknown'}; {origin.how})"
        else:
            where = "unknown (%config RSQLMagic.notebook = 'path/to/notebook.ipynb' names it)"
        rows = [
            f"- **batch run**: {'yes' if session.config.is_batch() else 'no'}",
            "- " + self._replay_status(),
            f"- **notebook**: {render.table_cell(where)}",
        ]
        if client is not None:
            model = (
                render.table_cell(session.config.model(client=client))
                or "the proxy's default model"
            )
            rows.append(f"- **this kernel asks**: {model}")
        # an editable install whose frontend was never built: say why JupyterLab shows nothing
        notice = missing_labextension_notice()
        if notice is not None:
            rows.append(f"- **JupyterLab extension**: {render.table_cell(notice)}")
        return rows

    @line_magic
    def ask_status(self, line: str = "") -> None:
        """Which proxy is used and whether it answers now (asked here, whatever replay does),
        who I am there, which models I may use, what is left of my limits and budget, the
        policy window in force and the context policy."""
        session = self.session
        try:
            client = session.config.client()
        except ProxyError as e:
            text = f"rsql: {e}"
            kernel = [
                f"- **proxy answers now**: {render.table_cell(render.proxy_answers(None, e))}",
                *self._kernel_status(None),
            ]
            md = "\n".join([render.code_block(text, ""), *kernel])
            display(
                render.markdown_bundle(md, "\n".join([text, *kernel]).replace("**", "")), raw=True
            )
            return
        me: Any = None
        try:
            me = client.me()
            remember_me(client, me)  # the defaults and models the magics use: fresh from here
            answers = render.proxy_answers(client, None)
        except ProxyError as e:
            answers = render.proxy_answers(client, e)
        rows = [
            f"- **proxy**: {client.description}",
            f"- **proxy answers now**: {render.table_cell(answers)}",
            *self._kernel_status(client),
        ]
        if isinstance(me, dict):
            rows += render_me(me)
        md = "\n".join(rows)
        # the proxy's answers (user names, limits) are shown as Markdown: made safe like an answer
        display(render.markdown_bundle(md, md.replace("**", "")), raw=True)

    # -- %ask_cost -----------------------------------------------------------------------

    @line_magic
    def ask_cost(self, line: str = "") -> None:
        """This notebook's spend at the proxy: today and this week (requests, tokens, cost),
        and its dearest cells this week."""
        session = self.session
        origin = session.cells.origin()
        if not origin.notebook:
            display(render.markdown_bundle(NOTEBOOK_UNKNOWN), raw=True)
            return
        try:
            cost = session.config.client().notebook_cost(
                origin.notebook, timeout=min(self.timeout, 30.0)
            )
        except ProxyError as e:
            text = NO_COST_PER_NOTEBOOK if e.status == 404 else str(e)
            display(render.markdown_bundle(f"**rsql**: {render.table_cell(text)}"), raw=True)
            return
        md = render.cost_markdown(cost, origin.notebook, session.cells.cell_labels())
        display(render.markdown_bundle(md, md.replace("**", "")), raw=True)


def render_me(me: dict[str, Any]) -> list[str]:
    """Markdown lines for ``GET me`` (:func:`rsql_magic.render.me_markdown`): whatever keys
    come back, in sections; keys not known here are shown as they are (the shape may grow)."""
    return render.me_markdown(me)


_ASK_LINE = re.compile(r"^([ \t]*)%ask(?:[ \t]+(.*?))?[ \t]*\?[ \t]*(\r?\n)?$")
# a cell of ours that is its magic line alone (options allowed; not "%%ask?", which is help)
_BODILESS_CELL = re.compile(r"^%%(?:ask|sql_ai)(?:[ \t][^\r\n]*)?\r?\n?$")


def protect_question_mark(lines: list[str]) -> list[str]:
    """An IPython input transform: ``%ask what is X?`` must not become a help lookup.

    IPython turns any line ending in ``?`` into ``pinfo`` ("Object `X` not found") before
    magics run. Rewrite such ``%ask`` lines into the explicit ``run_line_magic`` call first.
    Cells that start with ``%%`` (a cell magic owns its body) are left alone, but for a
    ``%%ask`` or ``%%sql_ai`` cell with no body: IPython would refuse it with its own message
    about line and cell magics, so it gets an empty line for a body and the magic says what to
    write, with an example.
    """
    if lines and lines[0].lstrip().startswith("%%"):
        if len(lines) == 1 and _BODILESS_CELL.match(lines[0]):
            return [lines[0].rstrip("\r\n") + "\n", "\n"]
        return lines
    if not lines:
        return lines
    out = []
    for ln in lines:
        m = _ASK_LINE.match(ln)
        if m is None or not m.group(2):  # "%ask?" is still help on %ask
            out.append(ln)
            continue
        arg = m.group(2) + "?"
        out.append(f"{m.group(1)}get_ipython().run_line_magic('ask', {arg!r}){m.group(3) or ''}")
    return out
