"""The %%sql_ai runner of one shell: :class:`SqlRunner`, and its model call :class:`SqlCompleter`.

What a connection name means in the notebook, and the SQL loop run on it with ``SqlAIMagics``'
settings (:mod:`rsql_sql.loop`: capture the schema, ask, parse, validate, guard, run).
%%sql_ai, the chat panel's Run SQL button and rsql-eval share it. The model is asked through
the session's request flow (:meth:`Session.chat <rsql_magic.session.session.Session.chat>`:
the 429 policy, the request's origin), which this module knows only as :class:`ChatSession`,
so the session can hold a runner without the two modules importing each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rsql_sql.connections import DB, FramesDB, is_frame, jupysql_current, resolve
from rsql_sql.loop import SqlAIResult, run_chain, run_question
from rsql_sql.schema import capture_schema

from ..client import ChatResult, ProxyClient
from ..context.inline import remember_schema
from ..errors import Escalation, SqlAIError
from ..replay import Replay
from .config import SessionConfig

__all__ = ["ChatSession", "SqlCompleter", "SqlRunner"]


class ChatSession(Protocol):
    """What the SQL loop asks the model through: the session's ``chat``."""

    def chat(
        self,
        client: ProxyClient,
        messages: list[dict[str, Any]],
        *,
        client_kind: str,
        batch: bool,
        **kw: Any,
    ) -> ChatResult: ...


@dataclass
class SqlCompleter:
    """The model call of the SQL loop: ``complete(messages) -> text``, with the 429 policy.

    ``first_answer``: the answer to the first call, already at hand (the chat panel's Run SQL
    starts from the answer shown). ``calls``: the model's answers, in order (for a footer).
    """

    session: ChatSession
    client: ProxyClient
    model: str | None
    client_kind: str = "sql"
    batch: bool = False
    no_cache: bool = False
    replay: Replay | None = None
    first_answer: str | None = None
    calls: list[ChatResult] = field(default_factory=list)
    escalation: str | None = None  # set by an escalation chain: why this model is asked

    def __call__(self, messages: list[dict[str, str]]) -> str:
        if self.first_answer is not None:
            text, self.first_answer = self.first_answer, None
            return text
        res = self.session.chat(
            self.client,
            messages,
            client_kind=self.client_kind,
            batch=self.batch,
            model=self.model,
            temperature=0,
            no_cache=self.no_cache,
            replay=self.replay,
            escalation=self.escalation,
        )
        self.calls.append(res)
        return res.text


class SqlRunner:
    """%%sql_ai's connections and loop for one shell (see the module docstring)."""

    def __init__(self, shell: Any, config: SessionConfig, session: ChatSession) -> None:
        self.shell = shell
        self.config = config
        self.session = session

    def resolve_connection(self, name: str | None) -> tuple[DB, str]:
        """The connection ``name`` means (a variable, URL, JupySQL alias, DataFrame or
        'frames'; None: JupySQL's current one, else the notebook's DataFrames), and how to
        name it in an emitted cell. Raises :class:`SqlAIError` (stage "connection")."""
        ns = self.shell.user_ns
        if name:
            if name in ns:
                obj = ns[name]
                if is_frame(obj):
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
            k: v for k, v in self.shell.user_ns.items() if not k.startswith("_") and is_frame(v)
        }

    def sql_completer(
        self,
        client: ProxyClient,
        *,
        model: str | None,
        client_kind: str = "sql",
        batch: bool = False,
        no_cache: bool = False,
        replay: Replay | None = None,
        first_answer: str | None = None,
        calls: list[ChatResult] | None = None,
    ) -> SqlCompleter:
        """The SQL loop's model call (:class:`SqlCompleter`); `calls` collects its answers."""
        return SqlCompleter(
            self.session,
            client,
            model=model,
            client_kind=client_kind,
            batch=batch,
            no_cache=no_cache,
            replay=replay,
            first_answer=first_answer,
            calls=[] if calls is None else calls,
        )

    def run_sql(
        self,
        question: str,
        db: DB,
        complete: Callable[[list[dict[str, str]]], str] | Sequence[tuple[str, SqlCompleter]],
        *,
        dialect: str | None = None,
        tables: list[str] | None = None,
        max_retries: int | None = None,
        allow_write: bool = False,
        dry_run: bool = False,
        explain: bool = False,
        max_rows: int | None = None,
        client: ProxyClient | None = None,
    ) -> SqlAIResult:
        """%%sql_ai's loop on ``db``: capture the schema, ask, parse, validate, guard and run,
        feeding failures back; ``SqlAIMagics``' settings fill what is not given. `complete`: one
        model's call, or a chain of ``(model, completer)`` pairs (``run_chain``). `client`'s
        context policy lets values steer the tables shown. Raises SqlAIError, ProxyError."""
        options = self._sql_options(
            db,
            dialect=dialect,
            tables=tables,
            max_retries=max_retries,
            allow_write=allow_write,
            dry_run=dry_run,
            explain=explain,
            max_rows=max_rows,
        )
        if client is not None:
            options["context_policy"] = self.config.policy_for(client)[0]
        if isinstance(complete, Sequence):
            chain = complete

            def escalate(i: int, e: Escalation) -> None:
                chain[i][1].escalation = e.stage  # the proxy's usage row says why

            return run_chain(question, db, chain, on_escalate=escalate, **options)
        return run_question(question, db, complete, **options)

    def _sql_options(
        self,
        db: DB,
        *,
        dialect: str | None,
        tables: list[str] | None,
        max_retries: int | None,
        allow_write: bool,
        dry_run: bool,
        explain: bool,
        max_rows: int | None,
    ) -> dict[str, Any]:
        sql, schema = self.config.sql, capture_schema(db)
        remember_schema(self.shell, db.label or db.kind, schema)  # for the editor's completions
        return dict(
            dialect=dialect,
            schema=schema,
            tables=tables,
            max_retries=sql.max_retries if max_retries is None else max_retries,
            allow_write=allow_write,
            dry_run=dry_run,
            explain=explain,
            max_rows=max_rows or sql.max_rows,
            timeout_s=sql.timeout or None,
            budget_chars=sql.schema_chars,
            policy=self.config.sql_policy(),
        )
