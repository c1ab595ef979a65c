"""%%sql_ai's connections and schemas for one shell: :class:`SqlRunner`.

What a connection name means in the notebook, and the one capture of a connection's schema on
the kernel's SQL path (kept for the editor's completions). The SQL question itself, the loop's
options from ``SqlAIMagics``' settings, model calls and all, is the operation
:mod:`rsql_magic.operations.sql_question`, which %%sql_ai, the chat panel's Run SQL button and
rsql-eval share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rsql_sql.catalog import Schema
from rsql_sql.connections import DB, FramesDB, is_frame, jupysql_current, resolve
from rsql_sql.schema import capture_schema

from ..context import reason_text
from ..context.inline import remember_schema
from ..context.named import (
    LISTED,
    NOTHING_SENT,
    a_type,
    close_match,
    connection_variables,
    connections_text,
    database_file_problem,
    listing,
    shown_name,
    unknown_tables,
)
from ..errors import SqlAIError
from .config import SessionConfig

__all__ = ["DEFAULT_ORDER", "ConnectionChoice", "SqlRunner"]


@dataclass(frozen=True)
class ConnectionChoice:
    """The connection a SQL question runs on, and how the cell names it (issue 77).

    ``db``: the connection; ``conn_expr``: how an emitted cell names it; ``source``: what the
    output says it ran on (``conn``, ``your DataFrames (sales, orders)``, ``JupySQL's active
    connection``); ``why``: with no CONN given and other candidates in the notebook, why this
    one was used and how to pick another (None: nothing to explain).
    """

    db: DB
    conn_expr: str
    source: str
    why: str | None = None


# what %%sql_ai uses when no CONN is given, in this order (docs/users/sql-ai.md says it too)
DEFAULT_ORDER = "JupySQL's active connection, then the notebook's DataFrames"
_FRAMES_WORDS = ("frames", "pandas", "dataframes")


def _code(name: str) -> str:
    """A name as Markdown code: a variable name's underscores must not turn into emphasis."""
    return f"`{shown_name(name).replace('`', '')}`"


def _frames_text(frames: dict[str, Any]) -> str:
    """```sales`, `orders``` (the first dozen, then how many more): a notebook may hold many."""
    names = list(frames)
    head = ", ".join(_code(f) for f in names[:LISTED])
    return head + (f" and {len(names) - LISTED} more" if len(names) > LISTED else "")


class SqlRunner:
    """%%sql_ai's connections and loop for one shell (see the module docstring)."""

    def __init__(self, shell: Any, config: SessionConfig) -> None:
        self.shell = shell
        self.config = config

    def resolve_connection(self, name: str | None) -> tuple[DB, str]:
        """:meth:`choose_connection`'s connection and how an emitted cell names it."""
        choice = self.choose_connection(name)
        return choice.db, choice.conn_expr

    def choose_connection(self, name: str | None) -> ConnectionChoice:
        """The connection ``name`` means (a variable, URL, JupySQL alias, DataFrame or
        'frames'; None: JupySQL's active one, else the notebook's DataFrames, the choice
        explained when the notebook holds other candidates). Raises :class:`SqlAIError`
        (stage "connection") for a name that is nothing, with the candidates there are."""
        ns = self.shell.user_ns
        if name:
            return self._named(name, ns)
        conns = connection_variables(ns)
        frames = self._frames()
        cur = jupysql_current()
        if cur is not None:
            db = resolve(cur)
            others = [f"{_code(n)} ({d})" for n, d in conns]
            if frames:
                others.append(f"your DataFrames ({_frames_text(frames)})")
            return ConnectionChoice(
                db,
                "",
                f"JupySQL's active connection ({db.label})",
                self._why("JupySQL's active connection was used", others, conns, frames),
            )
        if frames:
            names = _frames_text(frames)
            why = (
                self._why(
                    f"JupySQL has no active connection, so your DataFrames ({names}) were "
                    "queried through DuckDB",
                    [f"{_code(n)} ({d})" for n, d in conns],
                    conns,
                    {},
                )
                if conns
                else None
            )
            return ConnectionChoice(FramesDB(frames), "frames", f"your DataFrames ({names})", why)
        raise SqlAIError(
            "no connection: name one (%%sql_ai conn), open one with JupySQL (%sql URL), or "
            "define pandas DataFrames to query them through DuckDB. "
            + connections_text(ns)
            + (f" (to query it: %%sql_ai {shown_name(conns[0][0])})" if conns else "")
            + f". {NOTHING_SENT}",
            attempts=[],
            sql="",
            stage="connection",
        )

    @staticmethod
    def _why(
        used: str, others: list[str], conns: list[tuple[str, str]], frames: dict[str, Any]
    ) -> str | None:
        """Why the default was used, and how to name another (None: it was the only one)."""
        if not others:
            return None
        how = [f"%%sql_ai {n}" for n, _ in conns[:3]] + (["%%sql_ai frames"] if frames else [])
        return (
            f"No CONN given: {used} (the order: {DEFAULT_ORDER}). Also in this notebook: "
            f"{', '.join(others)}; name one to query it ({', '.join(f'`{h}`' for h in how)})."
        )

    def _named(self, name: str, ns: dict[str, Any]) -> ConnectionChoice:
        """The connection a CONN names; SqlAIError (stage "connection") when it names nothing."""
        if name in ns:
            obj = ns[name]
            if is_frame(obj):
                return ConnectionChoice(FramesDB({name: obj}), "frames", f"the DataFrame {name}")
            problem = database_file_problem(obj) if isinstance(obj, str) else None
            if problem is not None:
                raise self._no_connection(f"CONN {shown_name(name)}: {problem}")
            try:
                return ConnectionChoice(resolve(obj), name, name)
            except TypeError:
                raise self._no_connection(
                    f"CONN {shown_name(name)}: {shown_name(name)} is {a_type(obj)}, "
                    f"not a connection. {self._candidates(ns)}"
                ) from None
        if "://" in name:
            problem = database_file_problem(name)
            if problem is not None:
                raise self._no_connection(f"CONN {shown_name(name)}: {problem}")
            db = resolve(name)
            return ConnectionChoice(db, repr(name), db.label)
        if name in _FRAMES_WORDS:
            frames = self._frames()
            if not frames:
                raise self._no_connection(
                    f"CONN {name}: there are no DataFrames in this notebook. {self._candidates(ns)}"
                )
            return ConnectionChoice(
                FramesDB(frames), "frames", f"your DataFrames ({_frames_text(frames)})"
            )
        try:  # a JupySQL alias (%sql sqlite:// --alias mydb)
            from sql.connection import ConnectionManager

            conn = ConnectionManager.connections.get(name)
            if conn is not None:
                if conn is ConnectionManager.current:
                    return ConnectionChoice(resolve(conn), "", f"JupySQL's connection {name}")
                url = getattr(conn, "url", None)
                return ConnectionChoice(
                    resolve(conn), repr(str(url)) if url else "", f"JupySQL's connection {name}"
                )
            aliases = [str(a) for a in ConnectionManager.connections]
        except ImportError:
            aliases = []
        known = [n for n, _ in connection_variables(ns)] + aliases + list(self._frames())
        guess = close_match(name, [*known, "frames"])
        raise self._no_connection(
            f"CONN {shown_name(name)}: no such variable"
            + (f" (did you mean {shown_name(guess)}?)" if guess else "")
            + "; expected a sqlite3 / DuckDB connection, a SQLAlchemy engine, a database URL, "
            f"a JupySQL alias, a DataFrame, or 'frames'. {self._candidates(ns)}"
        )

    def _candidates(self, ns: dict[str, Any]) -> str:
        frames = list(self._frames())
        return f"{connections_text(ns)}; DataFrames: {listing(frames) if frames else 'none'}"

    @staticmethod
    def _no_connection(message: str) -> SqlAIError:
        return SqlAIError(
            f"{message.rstrip('.')}. {NOTHING_SENT}", attempts=[], sql="", stage="connection"
        )

    def _frames(self) -> dict[str, Any]:
        return {
            k: v for k, v in self.shell.user_ns.items() if not k.startswith("_") and is_frame(v)
        }

    def check_tables(self, tables: Sequence[str], schema: Schema) -> None:
        """SqlAIError (stage "usage") when ``--tables`` names a table `schema` lacks, before
        any request: each with a "did you mean", and the tables there are."""
        missing = [t for t in tables if schema.table(*reversed(t.split(".", 1))) is None]
        if not missing:
            return
        names = [
            t.name if not t.db or t.db == schema.default_db else f"{t.db}.{t.name}"
            for t in schema.tables
        ]
        raise SqlAIError(unknown_tables(tables, missing, names), attempts=[], sql="", stage="usage")

    def capture(self, db: DB) -> Schema:
        """`db`'s schema, read now (bounded, read-only): the one capture of the kernel's SQL
        path, whose table and column names the editor's completions then offer. SqlAIError
        (stage "connection") when it cannot be read (a closed connection): before any request."""
        try:
            schema = capture_schema(db)
        except SqlAIError:
            raise
        except Exception as e:  # the driver's own error, said as the connection's, in one line
            raise self._no_connection(
                f"the schema of {shown_name(db.label or db.kind)} could not be read: "
                f"{reason_text(e)}"
            ) from None
        remember_schema(self.shell, db.label or db.kind, schema)
        return schema

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
