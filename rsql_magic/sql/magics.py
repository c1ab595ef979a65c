"""%%sql_ai: a question in, checked read-only SQL and a DataFrame out.

Registration: ``%load_ext rsql_magic`` (``rsql_magic.magics.load_ipython_extension``) imports
this module and calls its :func:`load_ipython_extension`, which registers
:class:`SqlAIMagics` (a ``@magics_class`` taking ``shell``). ``%load_ext rsql_magic.sql.magics``
works on its own too.

Proxy settings (URL, token, default model, batch detection, Retry-After waits) are taken from
the ``RSQLMagic`` instance of %%ask when it is loaded, so one ``%config RSQLMagic.*`` serves
both magics; this class's own traits are ``SqlAIMagics.*``.

Privacy: what leaves for the model is the question and the schema as DDL (names, types, keys),
never a value from the database, so the admin's context policy has nothing to withhold here
(database errors go back to the model with their values removed); the proxy's pattern
redaction still masks personal data in the question.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from IPython.core.magic import Magics, cell_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display
from traitlets import Float, Int, List, Unicode

from rsql_magic.context.sql_schema import capture_schema
from rsql_magic.render import markdown_bundle

from .connections import _SA_TO_SQLGLOT, DB, FramesDB, _is_frame, jupysql_current, resolve
from .loop import SqlAIError, SqlAIResult, dialect_label, run_question
from .policy import SqlPolicy

__all__ = ["SqlAIMagics", "load_ipython_extension"]


def _fence(code: str, lang: str) -> str:
    fence = "```"
    while fence in code:
        fence += "`"
    return f"{fence}{lang}\n{code}\n{fence}"


def _dialect_name(name: str) -> str:
    """A sqlglot dialect name from what a user may type (postgresql, mssql, sqlserver ...)."""
    from sqlglot.dialects.dialect import Dialect

    d = name.strip().lower()
    d = {"sqlserver": "tsql", "pg": "postgres"}.get(d, _SA_TO_SQLGLOT.get(d, d))
    try:
        Dialect.get_or_raise(d)
    except ValueError as e:
        raise SqlAIError(f"--dialect {name}: {e}", attempts=[], sql="", stage="usage") from None
    return d


@magics_class
class SqlAIMagics(Magics):
    """``%%sql_ai``. Traits are configurable as ``SqlAIMagics.<name>``."""

    display_rows = Int(10, help="Rows of the result shown in the output.").tag(config=True)
    max_rows = Int(100_000, help="Rows fetched into the DataFrame at most.").tag(config=True)
    timeout = Float(60.0, help="Statement timeout in seconds (0: none).").tag(config=True)
    max_retries = Int(3, help="Default --max-retries.").tag(config=True)
    schema_chars = Int(6000, help="Character budget for the schema DDL sent.").tag(config=True)
    model = Unicode(
        "", help="Model for SQL (empty: RSQLMagic.model, env RSQL_MODEL, else the proxy's)."
    ).tag(config=True)
    allowed_functions = List(
        Unicode(),
        default_value=[],
        help="Functions added to the allowlist of pure functions generated SQL may call: "
        "'name' for every dialect, 'dialect:name' for one (e.g. 'duckdb:levenshtein'). "
        "Only add functions that neither write, read files or the network, nor run SQL.",
    ).tag(config=True)
    postgres_role = Unicode(
        "",
        help="PostgreSQL role generated SQL runs as (SET LOCAL ROLE): one without superuser "
        "rights that can SELECT your tables. Empty: the connection's own role.",
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.last_result: SqlAIResult | None = None
        self.chat_results: list[Any] = []

    def policy(self) -> SqlPolicy:
        """What generated SQL may do, from ``allowed_functions`` and ``postgres_role``."""
        return SqlPolicy.make(self.allowed_functions, self.postgres_role)

    # -- settings shared with %%ask ------------------------------------------------------

    def _ask_magic(self) -> Any | None:
        registry = getattr(getattr(self.shell, "magics_manager", None), "registry", {})
        return registry.get("RSQLMagic")

    def is_batch(self) -> bool:
        ask = self._ask_magic()
        if ask is not None and hasattr(ask, "is_batch"):
            return bool(ask.is_batch())
        env = os.environ.get("RSQL_BATCH", "").strip().lower()
        if env in ("1", "true", "yes"):
            return True
        if env in ("0", "false", "no"):
            return False
        kernel = getattr(self.shell, "kernel", None)
        return kernel is not None and not bool(getattr(kernel, "_allow_stdin", True))

    def _client(self) -> Any:
        from rsql_magic.client import ProxyClient

        ask = self._ask_magic()
        if ask is not None and hasattr(ask, "client"):
            return ask.client()
        return ProxyClient.discover()

    def _replay(self, question: str, line: str, batch: bool) -> Any:
        """The replay settings for this cell (shared with %%ask's ``RSQLMagic.replay``)."""
        from rsql_magic.replay import Replay, ReplayStore, resolve_mode, resolve_path

        ask = self._ask_magic()
        if ask is not None and hasattr(ask, "replay_session"):
            return ask.replay_session("sql", question, ask.cell_label("%%sql_ai", line))
        mode = resolve_mode(None, batch)  # loaded on its own: the environment decides
        if mode == "off":
            return None
        return Replay(mode, ReplayStore(resolve_path()), kind="sql", cell=f"`%%sql_ai {line}`",
                      question=question)

    def _complete_fn(
        self, model: str | None, no_cache: bool, batch: bool, replay: Any = None
    ) -> Any:
        from rsql_magic.client import ProxyError

        ask = self._ask_magic()
        if ask is not None and hasattr(ask, "replay_client"):
            # replay on: a missing proxy only matters once a call really needs it
            client = ask.replay_client(replay)
        else:
            client = self._client()
        retries = int(getattr(ask, "batch_retries", 3))
        max_wait = float(getattr(ask, "batch_max_wait", 300.0))
        self.chat_results = []

        def complete(messages: list[dict[str, str]]) -> str:
            waited = 0.0
            for attempt in range(retries + 1):
                try:
                    res = client.chat(
                        messages, model=model, client_kind="sql", temperature=0,
                        no_cache=no_cache, replay=replay,
                    )
                    self.chat_results.append(res)
                    return res.text
                except ProxyError as e:
                    # Batch runs have nobody to press run again: wait out a 429 / 503.
                    wait = float(e.retry_after or 0)
                    retriable = batch and e.status in (429, 503) and e.retry_after is not None
                    if not retriable or attempt >= retries or waited + wait > max_wait:
                        raise
                    print(
                        f"rsql: {e}; batch run: waiting {wait:g}s and retrying",
                        file=sys.stderr,
                        flush=True,
                    )
                    time.sleep(wait)
                    waited += wait
            raise AssertionError("unreachable")

        return complete, client

    # -- connection ----------------------------------------------------------------------

    def resolve_connection(self, name: str | None) -> tuple[DB, str]:
        """The connection CONN names, and how to name it in an emitted cell."""
        ns = self.shell.user_ns
        if name:
            if name in ns:
                obj = ns[name]
                if _is_frame(obj):
                    return FramesDB({name: obj}), "frames"
                return resolve(obj), name
            if "://" in name:
                return resolve(name), repr(name)
            if name in ("frames", "pandas", "dataframes"):
                return FramesDB(self._frames()), "frames"
            try:  # a JupySQL alias (%sql sqlite:// --alias mydb)
                from sql.connection import ConnectionManager

                conn = ConnectionManager.connections.get(name)
                if conn is not None:
                    if conn is ConnectionManager.current:
                        return resolve(conn), ""
                    url = getattr(conn, "url", None)
                    return resolve(conn), repr(str(url)) if url else ""
            except ImportError:
                pass
            raise SqlAIError(
                f"CONN {name!r}: no such variable (expected a sqlite3 / DuckDB connection, a "
                "SQLAlchemy engine, a database URL, a JupySQL alias, a DataFrame, or 'frames')",
                attempts=[],
                sql="",
                stage="connection",
            )
        cur = jupysql_current()
        if cur is not None:
            return resolve(cur), ""
        frames = self._frames()
        if frames:
            return FramesDB(frames), "frames"
        raise SqlAIError(
            "no connection: name one (%%sql_ai conn), open one with JupySQL (%sql URL), or "
            "define pandas DataFrames to query them through DuckDB",
            attempts=[],
            sql="",
            stage="connection",
        )

    def _frames(self) -> dict[str, Any]:
        return {
            k: v for k, v in self.shell.user_ns.items() if not k.startswith("_") and _is_frame(v)
        }

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
                "%%sql_ai needs a question in the cell body", attempts=[], sql="", stage="usage"
            )
        db, conn_expr = self.resolve_connection(args.conn)
        dialect = _dialect_name(args.dialect) if args.dialect else db.dialect
        tables = [t.strip() for t in args.tables.split(",") if t.strip()] if args.tables else None
        batch = self.is_batch()
        ask = self._ask_magic()
        model = (
            args.model
            or self.model
            or getattr(ask, "model", "")
            or os.environ.get("RSQL_MODEL")  # as %%ask: env default, else the proxy's
            or None
        )
        from rsql_magic.client import ProxyError

        try:
            replay = self._replay(question, line, batch)
            complete, client = self._complete_fn(model, args.no_cache, batch, replay)
            schema = capture_schema(db)
            res = run_question(
                question,
                db,
                complete,
                dialect=dialect,
                schema=schema,
                tables=tables,
                max_retries=self.max_retries if args.max_retries is None else args.max_retries,
                allow_write=args.allow_write,
                dry_run=args.dry_run,
                explain=args.explain,
                max_rows=args.limit or self.max_rows,
                timeout_s=self.timeout or None,
                budget_chars=self.schema_chars,
                policy=self.policy(),
            )
        except SqlAIError as e:
            self._show_failure(e, db)
            raise
        except ProxyError as e:  # no proxy, 429 beyond the batch waits, upstream failure
            raise SqlAIError(str(e), attempts=[], sql="", stage="proxy") from None
        self.last_result = res
        self._show(res, db, client)
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
        costs = [r.cost_usd for r in self.chat_results if r.cost_usd is not None and not r.replayed_at]
        parts = [last.model or "model ?", f"{len(self.chat_results)} call(s)"]
        fallbacks = sorted({r.fallback for r in self.chat_results if r.fallback and not r.replayed_at})
        if fallbacks:  # the proxy's local fallback wrote (some of) this SQL: say so first
            from rsql_magic.render import fallback_label

            parts.insert(0, ", ".join(fallback_label(f) for f in fallbacks))
        parts.append(f"{pt} → {ct} tokens")
        replayed = [r.replayed_at for r in self.chat_results if r.replayed_at]
        if len(replayed) == len(self.chat_results):
            # every answer came from the replay store: nothing reached the proxy
            from rsql_magic.render import replayed_label

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

    def _show(self, res: SqlAIResult, db: DB, client: Any) -> None:
        md: list[str] = [_fence(res.sql, "sql")]
        info = [f"{dialect_label(res.dialect)} on {db.label}"]
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

    def _show_failure(self, e: SqlAIError, db: DB) -> None:
        if not e.attempts:
            return
        lines = [f"%%sql_ai on {db.label}: {len(e.attempts)} attempt(s)"]
        for i, a in enumerate(e.attempts, 1):
            first = (a.error or "").splitlines()[0] if a.error else "ok"
            lines.append(f"  {i}. {a.stage}: {first}")
        display({"text/plain": "\n".join(lines)}, raw=True)

    def emitted_code(self, res: SqlAIResult, conn_expr: str, out: str | None) -> str:
        """A cell that runs `res.sql` without us: JupySQL ``%%sql`` when loaded, else Python."""
        loaded = getattr(self.shell.extension_manager, "loaded", set())
        var = out or "df"
        if "sql" in loaded and conn_expr == "":
            # JupySQL's active connection: its own cell magic (`<<` stores a ResultSet;
            # `.DataFrame()` on it gives pandas)
            head = f"%%sql {out} <<" if out else "%%sql"
            return f"{head}\n{res.sql}"
        multiline = "\n" in res.sql and '"""' not in res.sql and "\\" not in res.sql
        sql_lit = f'"""\n{res.sql}\n"""' if multiline else repr(res.sql)
        if conn_expr == "frames":
            # DuckDB finds DataFrames by their variable names (replacement scans)
            return f"import duckdb\n\n{var} = duckdb.sql({sql_lit}).df()"
        if conn_expr.startswith("'"):  # a URL: pandas makes the engine
            return f"import pandas as pd\n\n{var} = pd.read_sql_query({sql_lit}, {conn_expr})"
        target = conn_expr or "conn"
        db_obj = self.shell.user_ns.get(conn_expr)
        if type(db_obj).__module__.startswith(("duckdb", "_duckdb")):
            return f"{var} = {target}.execute({sql_lit}).df()"
        return f"import pandas as pd\n\n{var} = pd.read_sql_query({sql_lit}, {target})"

    def _emit(self, res: SqlAIResult, conn_expr: str, out: str | None, batch: bool) -> None:
        code = self.emitted_code(res, conn_expr, out)
        if batch:
            # nbclient drops set_next_input: put the cell where a reader of the output sees it
            md = "**Next cell** (batch run: not inserted):\n\n" + _fence(
                code, "sql" if code.startswith("%%sql") else "python"
            )
            display(markdown_bundle(md), raw=True)  # model SQL inside: made safe
        else:
            self.shell.set_next_input(code, replace=False)


def load_ipython_extension(ip: Any) -> None:
    """Register %%sql_ai (called by ``%load_ext rsql_magic``)."""
    ip.register_magics(SqlAIMagics(shell=ip))
