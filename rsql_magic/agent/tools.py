"""The kernel's agent tools: read-only by construction (issue #37, item 1).

Every argument is hostile (the model's text, maybe steered by data it read: prompt injection).
What holds whatever the model asks:

- **Nothing the model wrote runs.** A frame or R object is named, never given as code: the
  name is looked up (``find_frames``; R's ``get`` of a string, after a strict name check:
  :mod:`.r_functions`), never evaluated. SQL goes through :mod:`.warehouse` (%%sql_ai's guard, database rules and
  read-only walls). ``propose_cell`` shows a cell; Accept puts it below, never runs it.
- **Only the notebook's own connections.** A connection is a name ``list_variables`` shows;
  a URL is refused: its user name or host would carry data out even if it never connected.
- **Bounded.** Results are cut to ``max_chars`` at a line end (a value cut in two escapes the
  proxy's pattern redaction). Work is bounded by construction (sampled statistics, capped
  listings, SQL's timeout, R's ``setTimeLimit`` and a sampled ``summary()``); pandas / polars
  work, which can still meet a slow object, runs in a worker thread waited for at most
  ``time_limit_s``: an error result, not a hang. SQL and R stay on the kernel's thread (a
  sqlite3 connection refuses other threads; R is single-threaded).
- **The context policy** (the admin's from the proxy and the user's: ``SessionConfig.policy_for``)
  applies to every value a result carries, as in %%ask's context; the proxy's pattern
  redaction applies when the result is sent. SQL over DataFrames sees the frames with the
  withheld columns' values already replaced, decided on each frame's own column labels
  (``FramesDB(policy=...)``): DuckDB's renamed columns (``salary_1``, ``"('salary', 'max')"``)
  and any alias or expression over them hold ``[redacted]`` only.
- **Text, never markup.** Results are plain text; shown as HTML, they are escaped and
  sanitized (:func:`result_html`; a proposed cell's view: :mod:`.proposal`).
"""

from __future__ import annotations

import html
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from IPython.display import display

from rsql_magic import render
from rsql_magic.context.frames import describe_frame, find_frames, frame_kind
from rsql_magic.context.rsession import import_robjects, r_session_exists
from rsql_magic.privacy import ContextPolicy
from rsql_magic.sanitize import clean_html
from rsql_magic.session.cells import Provenance
from rsql_sql.connections import DB, FramesDB, is_frame, jupysql_current, resolve

from .calls import (
    BadCall,
    ToolResult,
    dispatch,
    function_specs,
    one_line,
    warehouse_result,
    warehouse_table,
)
from .loop import Turn
from .proposal import Proposal, ProposalView, shown_code
from .r_functions import R_DESCRIBE, R_LIST, is_r_name, r_function

if TYPE_CHECKING:
    from rsql_magic.client import ProxyClient
    from rsql_magic.session import Session

__all__ = ["KernelTools", "ToolResult", "result_html"]

MAX_LISTED = 100  # per kind in list_variables: names beyond are counted, not listed
MAX_COLUMNS = 60  # columns described by describe_frame (the rest are counted)
SQL_ROWS = 20  # rows run_sql returns
LANGUAGES = ("python", "sql", "r")

# connection objects, by the module their type comes from (as the chat panel's SQL picker)
_CONN_MODULES = ("sqlite3", "duckdb", "_duckdb", "sqlalchemy", "psycopg", "psycopg2", "sql.")
_CONNECTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,199}")


def result_html(result: ToolResult) -> str:
    """A result as HTML for a step's folded view: escaped text in a ``<pre>``, sanitized."""
    cls = "rsql-tool-error" if result.error else "rsql-tool-result"
    return clean_html(
        f"<pre class='{cls}' style='white-space:pre-wrap;font-size:85%'>"
        f"{html.escape(result.text)}</pre>"
    )


def _is_connection(obj: Any) -> bool:
    if isinstance(obj, DB):
        return True
    if isinstance(obj, (str, bytes, type)):
        return False  # a URL in a string: the model could have put it there
    return (type(obj).__module__ or "").startswith(_CONN_MODULES)


def _shape(obj: Any) -> str:
    kind = frame_kind(obj)
    if kind == "pandas":
        return f"pandas, {obj.shape[0]:,} rows x {obj.shape[1]} columns"
    if kind == "polars":
        return f"polars, {obj.height:,} rows x {obj.width} columns"
    schema = obj.collect_schema() if hasattr(obj, "collect_schema") else obj.schema
    return f"polars LazyFrame, {len(schema)} columns (not collected)"


# -- the tools -----------------------------------------------------------------------------


_CONN = "The connection: a name list_variables shows ('' for the default)."
# name -> (description, {argument: its description}); every argument is a required string,
# and tool `name` runs KernelTools.handlers[name]
TOOLS: dict[str, tuple[str, dict[str, str]]] = {
    "list_variables": (
        "List the notebook's DataFrames (rows x columns), R objects (class and size) and SQL "
        "connections. Names and shapes only, no values.",
        {},
    ),
    "describe_frame": (
        "Describe one DataFrame: dtypes, statistics and sample rows, as the policy allows.",
        {"name": "The DataFrame's variable name, as list_variables shows it."},
    ),
    "r_describe": (
        "str() and summary() of one R object, as the context policy allows.",
        {"name": "The R variable's name (a name only, never an expression)."},
    ),
    # the warehouse tools from the one catalogue (rsql_sql.warehouse.CATALOGUE), on a connection
    **{
        name: spec
        for name, spec in warehouse_table(connection=_CONN).items()
        if name in ("search_schema", "run_sql")
    },
    "last_error": ("The last failed cell and its traceback.", {}),
    "propose_cell": (
        "Show the user a cell to add below the current one, with Accept and Reject. It never "
        "runs: an accepted cell is inserted for the user to run.",
        {"code": "The cell's code.", "language": "python, sql or r"},
    ),
}


class KernelTools:
    """The agent's tools over one shell's :class:`~rsql_magic.session.Session`.

    ``client``: the proxy the results go to (its admin's context policy applies); ``batch``:
    show proposed cells as code blocks, never insert them (also when the session is a batch
    run); ``time_limit_s`` and ``max_chars``: the bounds of every call; ``show``: where a
    proposal's view goes (default: displayed in the cell's output; the chat panel puts it in
    its own log)."""

    def __init__(
        self,
        session: Session,
        *,
        client: ProxyClient | None = None,
        batch: bool = False,
        time_limit_s: float = 5.0,
        max_chars: int = 6000,
        show: Callable[[ProposalView], None] | None = None,
    ) -> None:
        self.session = session
        self.show = show
        self.client = client
        self.batch = batch
        self.time_limit_s = max(0.05, float(time_limit_s))
        self.max_chars = max(500, int(max_chars))
        self.proposals: list[Proposal] = []
        self.views: list[ProposalView] = []  # the interactive proposals' widgets, in order
        # the agent turn these tools serve: a proposal names the request whose answer made it
        self.turn: Turn | None = None
        self._worker: tuple[str, threading.Thread] | None = None

    def serving(self, turn: Turn) -> KernelTools:
        """These tools, for `turn` (its last request made the proposals they show)."""
        self.turn = turn
        return self

    # -- the interface the agent loop uses ---------------------------------------------------

    def specs(self) -> list[dict[str, Any]]:
        """The tools as OpenAI function definitions."""
        return function_specs(TOOLS, {"language": LANGUAGES})

    def call(self, name: str, arguments: str | dict[str, Any]) -> ToolResult:
        """Run tool `name` with the model's `arguments` (JSON text or a dict). Never raises
        for what the model sent: a bad call is an error result that says what was wrong."""
        return dispatch(self.handlers, TOOLS, name, arguments, self.max_chars)

    @property
    def handlers(self) -> dict[str, Callable[..., ToolResult]]:
        """Each tool's function, by the name the model calls it."""
        return {
            "list_variables": self._list_variables,
            "describe_frame": self._describe_frame,
            "r_describe": self._r_describe,
            "search_schema": self._search_schema,
            "run_sql": self._run_sql,
            "last_error": self._last_error,
            "propose_cell": self._propose_cell,
        }

    def insert_accepted(self) -> int:
        """Insert every accepted proposal the frontend could not take at the click (call it
        from a running cell, e.g. a magic's). Returns how many were inserted; none runs."""
        done = 0
        for view in self.views:
            if view.decided == "accepted" and view.copy_area.layout.display == "":
                if self.session.cells.insert_cell(
                    view.cell, view.proposal.language, provenance=view.proposal.provenance
                ):
                    view.copy_area.layout.display = "none"
                    view.say("Accepted: the cell is below. It has not run.")
                    done += 1
        return done

    # -- helpers -------------------------------------------------------------------------------

    def _policy(self) -> ContextPolicy:
        return self.session.config.policy_for(self.client)[0]

    def _in_worker(self, what: str, work: Callable[[], str]) -> str:
        """`work()` in a worker thread, waited for at most ``time_limit_s``. A late worker is
        left to finish (its work is bounded) and its result dropped; while it runs, no other
        one starts, so a slow object cannot pile threads up."""
        if self._worker is not None and self._worker[1].is_alive():
            raise BadCall(
                f"the earlier {self._worker[0]} call is still running past its time limit; "
                "try again in a moment",
                "refused: busy",
            )
        box: list[str | BaseException] = []

        def run() -> None:
            try:
                box.append(work())
            except Exception as e:
                box.append(e)

        thread = threading.Thread(target=run, name=f"rsql-tool-{what}", daemon=True)
        thread.start()
        thread.join(self.time_limit_s)
        if thread.is_alive():
            self._worker = (what, thread)
            raise BadCall(
                f"{what} took longer than its {self.time_limit_s:g} s limit and was stopped "
                "waiting for",
                "failed: time limit",
            )
        out = box[0]
        if isinstance(out, BaseException):
            raise out
        return out

    def _connection(self, name: str) -> tuple[DB, ContextPolicy]:
        """The connection `name` means, as %%sql_ai resolves it, among the notebook's own, and
        the context policy its results are held to. DataFrames come as the model may see
        them: the columns the policy withholds registered with their values replaced, and
        DuckDB's names of those columns added to the policy (so a query naming them is
        refused with the reason, not answered with ``[redacted]``)."""
        name = name.strip()
        if name and not _CONNECTION_NAME.fullmatch(name):
            raise BadCall(
                "name a connection list_variables shows (a variable, a JupySQL alias, or "
                "'frames'); URLs and expressions are not accepted",
                "refused: not a connection name",
            )
        ns = self.session.shell.user_ns
        if name in ns and not (is_frame(ns[name]) or _is_connection(ns[name])):
            raise BadCall(f"{name} is not a connection ({type(ns[name]).__name__})")
        db, _label = self.session.sql_runner.resolve_connection(name or None)
        policy = self._policy()
        if isinstance(db, FramesDB) and policy.redact_columns:
            db.raw.close()  # registered as they are: never queried here
            db = FramesDB(db.frames, policy=policy)
            policy = db.context_policy(policy)
        return db, policy

    # -- the tools -----------------------------------------------------------------------------

    def _list_variables(self) -> ToolResult:
        deadline = time.monotonic() + self.time_limit_s
        ns = self.session.shell.user_ns
        frames = find_frames(ns)
        lines = ["DataFrames:"] if frames else ["DataFrames: none"]
        for i, (name, df) in enumerate(frames.items()):
            if i >= MAX_LISTED or time.monotonic() > deadline:
                lines.append(f"- ... {len(frames) - i} more")
                break
            lines.append(f"- {name}: {_shape(df)}")
        conns: list[str] = []
        for name, obj in list(ns.items()):
            if len(conns) >= MAX_LISTED or time.monotonic() > deadline:
                conns.append("- ... (more not listed)")
                break
            if name.startswith("_") or not _is_connection(obj):
                continue
            try:
                conns.append(f"- {name}: {resolve(obj).dialect or 'SQL'}")
            except Exception:  # not a connection after all: not offered
                continue
        if jupysql_current() is not None:
            conns.append("- '' (the default): JupySQL's current connection")
        if frames:
            conns.append("- frames: the DataFrames above, as tables (DuckDB)")
        lines += ["SQL connections:", *conns] if conns else ["SQL connections: none"]
        r_count = 0
        if r_session_exists():
            left = max(0.05, deadline - time.monotonic())
            out = [str(s) for s in r_function(R_LIST)(MAX_LISTED, left)]
            if out and out[0] == "!error":
                lines.append(f"R objects: not listed ({' '.join(out[1:])})")
            else:
                r_count = int(out[0]) if out and out[0].isdigit() else 0
                lines += ["R objects:", *out[1:]] if r_count else ["R objects: none"]
                if r_count > MAX_LISTED:
                    lines.append(f"- ... {r_count - MAX_LISTED} more")
        else:
            lines.append("R objects: no R session in this kernel")
        err = self.session.cells.last_error()
        if err is not None:
            at = f"In [{err.execution_count}]" if err.execution_count is not None else "a cell"
            lines.append(f"last error: {at} {err.ename} (last_error shows it)")
        summary = f"{len(frames)} frames, {len(conns)} connections, {r_count} R objects"
        return ToolResult("\n".join(lines), summary)

    def _describe_frame(self, name: str) -> ToolResult:
        frames = find_frames(self.session.shell.user_ns)
        if name not in frames:
            known = ", ".join(list(frames)[:30]) or "none"
            raise BadCall(
                f"no DataFrame named {name[:60]!r}; DataFrames: {known}", "refused: unknown"
            )
        df, policy, ask = frames[name], self._policy(), self.session.config.ask
        kind = frame_kind(df)
        ncols = len(df.columns) if kind in ("pandas", "polars") else 0
        part = df
        if ncols > MAX_COLUMNS:  # statistics for every column of a very wide frame: bounded
            part = (
                df.iloc[:, :MAX_COLUMNS]
                if kind == "pandas"
                else df.select(df.columns[:MAX_COLUMNS])
            )

        def work() -> str:
            return describe_frame(
                name,
                part,
                head_rows=min(int(ask.head_rows), 10),
                stats_sample=int(ask.stats_sample),
                budget_chars=self.max_chars,
                policy=policy,
            )

        text = self._in_worker("describe_frame", work)
        if part is not df:
            text = text.replace(
                f"x {MAX_COLUMNS} columns", f"x {ncols} columns (the first {MAX_COLUMNS} here)", 1
            )
        shape = _shape(df).split(", ", 1)[-1]
        return ToolResult(text, shape.replace(" x ", " × "))

    def _r_describe(self, name: str) -> ToolResult:
        if not is_r_name(name):
            raise BadCall(
                f"{one_line(name)[:60]!r} is not an R variable name: r_describe takes the "
                "name of an R object (list_variables shows them), never an expression",
                "refused: not a variable name",
            )
        if not r_session_exists():
            raise BadCall("no R session runs in this kernel", "refused: no R session")
        policy, ask = self._policy(), self.session.config.ask
        t0 = time.monotonic()
        # str() shows values (sample rows); summary() is statistics
        flags = (policy.sample_rows and policy.value_stats, policy.value_stats)
        redact = import_robjects().StrVector(list(policy.redact_columns))
        describe = r_function(R_DESCRIBE)
        out = [str(s) for s in describe(name, self.time_limit_s, redact, *flags, ask.stats_sample)]
        if out and out[0] == "!missing":
            raise BadCall(f"no R variable named {name} (see list_variables)", "refused: unknown")
        if out and out[0] == "!error":
            why = " ".join(out[1:])
            if "time limit" in why or time.monotonic() - t0 > self.time_limit_s:
                raise BadCall(
                    f"r_describe took longer than its {self.time_limit_s:g} s limit and was stopped",
                    "failed: time limit",
                )
            raise BadCall(f"R could not describe {name}: {why}", "failed: R error")
        head = out[0].split(": ", 1)[-1] if out else ""
        return ToolResult("\n".join(out), head)

    def _search_schema(self, connection: str, question: str) -> ToolResult:
        return self._warehouse("search_schema", connection, {"question": question})

    def _run_sql(self, connection: str, sql: str) -> ToolResult:
        return self._warehouse("run_sql", connection, {"sql": sql})

    def _warehouse(self, name: str, connection: str, args: dict[str, str]) -> ToolResult:
        """Catalogue tool `name` on the notebook's `connection`, within this box's bounds."""
        from rsql_sql.warehouse import CATALOGUE, ToolBounds

        db, policy = self._connection(connection)
        bounds = ToolBounds(
            policy=policy,
            sql_policy=self.session.config.sql_policy(),
            max_rows=SQL_ROWS,
            timeout_s=self.time_limit_s,
            max_chars=self.max_chars,
        )
        return warehouse_result(name, db, args, CATALOGUE[name].run(db, args, bounds))

    def _last_error(self) -> ToolResult:
        err = self.session.cells.last_error()
        if err is None:
            return ToolResult("No cell has failed in this session.", "no error")
        text = err.as_text()
        if len(text) > self.max_chars:  # the end of a traceback says what went wrong
            tail = text[-(self.max_chars - 60) :]
            text = "... (the start is cut)\n" + tail[tail.find("\n") + 1 :]
        return ToolResult(text, err.ename or "error")

    def _propose_cell(self, code: str, language: str) -> ToolResult:
        lang = render.normalize_lang(language)
        if lang not in LANGUAGES:
            raise BadCall(f"language must be one of {', '.join(LANGUAGES)}")
        if not code.strip():
            raise BadCall("the cell is empty")
        answered = self.turn.requests[-1] if self.turn is not None and self.turn.requests else None
        proposal = Proposal(code, lang, provenance=Provenance.of("agent", answered))
        self.proposals.append(proposal)
        number = len(self.proposals)
        # the magic the cell needs on top, when its extension is loaded (Cells.cell_code's rule)
        manager = getattr(self.session.shell, "extension_manager", None)
        loaded: set[str] = getattr(manager, "loaded", set())
        cell = code
        if lang == "r" and "rpy2.ipython" in loaded:
            cell = "%%R\n" + code
        elif lang == "sql" and "sql" in loaded:
            cell = "%%sql\n" + code
        if self.batch or self.session.config.is_batch():
            # hidden and bidi characters shown as escapes, as ProposalView shows them
            shown, _ = shown_code(cell)
            self.session.cells.insert_cell(shown, lang, title=f"Proposed cell {number}", batch=True)
            shown = f"Proposal {number} is shown in the output (batch run: not inserted, not run)."
            return ToolResult(shown, "proposed (batch run: shown)")
        view = ProposalView(self.session, proposal, cell, number)
        self.views.append(view)
        if self.show is not None:
            self.show(view)
        else:
            # the bundle itself, not the Output widget: a saved notebook keeps the proposal
            display(view.bundle, raw=True)  # type: ignore[no-untyped-call]  # IPython has no annotations
        return ToolResult(
            f"Proposal {number} is shown to the user with Accept and Reject. It does not run: "
            "if accepted, it is put below the current cell for the user to run.",
            "proposed: waiting for the user",
        )
