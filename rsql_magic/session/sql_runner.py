"""%%sql_ai's connections and schemas for one shell: :class:`SqlRunner`.

What a connection name means in the notebook, the one capture of a connection's schema on the
kernel's SQL path (kept for the editor's completions), and the SQL loop's options as
``SqlAIMagics``' settings give them (:mod:`rsql_sql.loop`: capture the schema, ask, parse,
validate, guard, run). The SQL question itself, model calls and all, is the operation
:mod:`rsql_magic.operations.sql_question`, which %%sql_ai, the chat panel's Run SQL button and
rsql-eval share.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rsql_sql.catalog import Schema
from rsql_sql.connections import DB, FramesDB, is_frame, jupysql_current, resolve
from rsql_sql.loop import SqlAIResult, run_question
from rsql_sql.schema import capture_schema

from ..context.inline import remember_schema
from ..errors import SqlAIError
from .config import SessionConfig

__all__ = ["SqlRunner"]


class SqlRunner:
    """%%sql_ai's connections and loop for one shell (see the module docstring)."""

    def __init__(self, shell: Any, config: SessionConfig) -> None:
        self.shell = shell
        self.config = config

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

    def capture(self, db: DB) -> Schema:
        """`db`'s schema, read now (bounded, read-only): the one capture of the kernel's SQL
        path, whose table and column names the editor's completions then offer."""
        schema = capture_schema(db)
        remember_schema(self.shell, db.label or db.kind, schema)
        return schema

    def loop_options(self, db: DB, schema: Schema | None = None) -> dict[str, Any]:
        """:func:`~rsql_sql.loop.run_question`'s options from ``SqlAIMagics``' settings: the
        schema (`schema`, else :meth:`capture`), the retries, row, time and schema-text bounds,
        the SQL policy and the wait for the value index."""
        sql = self.config.sql
        return dict(
            schema=self.capture(db) if schema is None else schema,
            max_retries=sql.max_retries,
            max_rows=sql.max_rows,
            timeout_s=sql.timeout or None,
            budget_chars=sql.schema_chars,
            policy=self.config.sql_policy(),
            values_wait_s=sql.values_wait,
        )

    def emitted_code(self, sql: str, conn_expr: str, out: str | None) -> str:
        """A cell that runs `sql` without us (``%%sql_ai --emit``, the chat's query cell):
        JupySQL ``%%sql`` on its active connection when loaded, else Python reading it into a
        DataFrame (``out``, else ``df``) through `conn_expr` (:meth:`resolve_connection`'s)."""
        loaded: set[str] = getattr(getattr(self.shell, "extension_manager", None), "loaded", set())
        var = out or "df"
        if "sql" in loaded and conn_expr == "":
            # JupySQL's active connection: its own cell magic (`<<` stores a ResultSet;
            # `.DataFrame()` on it gives pandas)
            head = f"%%sql {out} <<" if out else "%%sql"
            return f"{head}\n{sql}"
        multiline = "\n" in sql and '"""' not in sql and "\\" not in sql
        sql_lit = f'"""\n{sql}\n"""' if multiline else repr(sql)
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

    def run_sql(
        self, question: str, db: DB, complete: Callable[[list[dict[str, str]]], str]
    ) -> SqlAIResult:
        """The SQL loop on `db` with ``SqlAIMagics``' settings alone and `complete` as the model
        call (a cell's options, the route and the chain are the SQL operation's,
        :class:`rsql_magic.operations.SqlOperation`). Raises SqlAIError."""
        return run_question(question, db, complete, **self.loop_options(db))
