"""The warehouse connections the MCP servers hold, opened read-only, and one tool call on one.

Both MCP servers use these: ``rsql-mcp`` (stdio, a user's own ``--db NAME=URL``) and the proxy's
``{proxy}mcp`` endpoint (the connections an admin configures). A connection is opened read-only
as well as guarded: SQLite with ``mode=ro``, DuckDB with ``read_only`` and external access off,
PostgreSQL through SQLAlchemy (as a URL in a cell is), each statement in a read-only
transaction, as the ``SqlPolicy``'s role when one is given. :func:`call_tool` runs one of the
warehouse tools (:mod:`rsql_magic.agent.warehouse`) and says what came of it, so both servers
log and refuse alike.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rsql_magic.errors import BadConnection
from rsql_magic.privacy import ContextPolicy
from rsql_magic.sql.connections import DB, DuckDB, SQLiteDB, resolve
from rsql_magic.sql.policy import SqlPolicy
from rsql_magic.terminal import shown

from . import warehouse

__all__ = [
    "TOOLS",
    "Connection",
    "Options",
    "ToolAnswer",
    "call_tool",
    "open_connection",
    "parse_db_arg",
    "shown_url",
]

SCHEMES = "sqlite:///PATH, duckdb:///PATH, postgresql://..."
# DuckDB: no files but the database, no network, no extensions, and no way to change that from
# SQL (a wall behind the parser check, as for %%sql_ai's DataFrames)
_DUCKDB_CONFIG: dict[str, Any] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,
}


@dataclass
class Connection:
    name: str
    kind: str  # "sqlite", "duckdb", "postgres"
    db: DB
    # sqlite3 and DuckDB connections are not for concurrent use, and both servers run tools in
    # worker threads
    lock: threading.Lock = field(default_factory=threading.Lock)


def parse_db_arg(arg: str) -> tuple[str, str]:
    """``NAME=URL`` -> ``(name, url)``; raises :class:`BadConnection`."""
    name, sep, url = arg.partition("=")
    name = name.strip()
    if not sep or not name or not url.strip():
        raise BadConnection("expected NAME=URL, e.g. sales=sqlite:///sales.db")
    if not name.replace("_", "").replace("-", "").isalnum():
        raise BadConnection(f"the name {name!r} may hold only letters, digits, '_' and '-'")
    return name, url.strip()


def shown_url(url: str) -> str:
    """`url` as it may be printed: the password replaced."""
    try:
        from sqlalchemy.engine import make_url

        return str(make_url(url).render_as_string(hide_password=True))
    except Exception:
        head, at, tail = url.rpartition("@")
        return f"{head.split(':', 1)[0]}:***@{tail}" if at else url


def _file_path(url: str, scheme: str) -> Path:
    # SQLAlchemy's convention: sqlite:///relative.db, sqlite:////absolute/path.db
    rest = url[len(scheme) + len(":///") :]
    if not url.lower().startswith(f"{scheme}:///") or not rest:
        raise BadConnection(f"expected {scheme}:///PATH")
    path = Path(rest).expanduser()
    if not path.is_file():
        raise BadConnection(f"no such file: {path}")
    return path


def open_connection(name: str, url: str) -> Connection:
    """Open `url` read-only; raises :class:`BadConnection`."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "sqlite":
        path = _file_path(url, "sqlite")
        try:
            # mode=ro: SQLite itself opens the file read-only, behind query_only and the
            # authorizer that every statement meets
            conn = sqlite3.connect(
                f"file:{quote(str(path.resolve()))}?mode=ro", uri=True, check_same_thread=False
            )
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as e:
            raise BadConnection(f"cannot open {path} as SQLite: {e}") from None
        return Connection(name, "sqlite", SQLiteDB(conn, label=f"SQLite {name}"))
    if scheme == "duckdb":
        path = _file_path(url, "duckdb")
        try:
            import duckdb
        except ImportError:
            raise BadConnection("DuckDB is not installed: pip install duckdb") from None
        try:
            dconn = duckdb.connect(str(path), read_only=True, config=_DUCKDB_CONFIG)
        except Exception as e:
            raise BadConnection(f"cannot open {path} as DuckDB: {e}") from None
        return Connection(name, "duckdb", DuckDB(dconn, label=f"DuckDB {name}"))
    if scheme.startswith(("postgresql", "postgres")):
        if scheme.startswith("postgres") and not scheme.startswith("postgresql"):
            url = "postgresql" + url[len("postgres") :]
        try:
            db = resolve(url)  # a SQLAlchemy engine, as a URL named in a %%sql_ai cell
            db.rows("SELECT 1", timeout_s=10.0)
        except Exception as e:
            raise BadConnection(
                f"cannot connect: {type(e).__name__}: {shown(str(e)).splitlines()[0][:300]}"
            ) from None
        if db.dialect != "postgres":
            raise BadConnection(f"{scheme} is not PostgreSQL")
        db.label = f"PostgreSQL {name}"
        return Connection(name, "postgres", db)
    raise BadConnection(f"unsupported URL (expected {SCHEMES})")


@dataclass
class Options:
    """How the tools run on a server's connections."""

    max_rows: int = 20
    timeout_s: float = 10.0
    sql_policy: SqlPolicy = field(default_factory=SqlPolicy)
    # values steer schema search (never shown); redact_columns withholds columns from every tool
    policy: ContextPolicy = field(default_factory=ContextPolicy)


# the warehouse tools and the arguments each takes (every one a string, the connection first)
TOOLS: dict[str, tuple[str, ...]] = {
    "search_schema": ("connection", "question"),
    "describe_table": ("connection", "table"),
    "run_sql": ("connection", "sql"),
}


@dataclass(frozen=True)
class ToolAnswer:
    """What one call gave: the text for the model, the rows returned (run_sql) and the outcome
    a log line names: "ok", "refused" (the guard or the policy), "error" (the database said
    no, or the time ran out) or "failed (ExceptionType)"."""

    text: str
    rows: int | None = None
    outcome: str = "ok"

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


def call_tool(conn: Connection, tool: str, args: Mapping[str, str], options: Options) -> ToolAnswer:
    """Run warehouse tool `tool` on `conn` (blocking: call it from a worker thread). Never
    raises for what the database or the model did; a failure's text names only its type (a
    database's message may quote values)."""
    # sqlite3 and DuckDB connections take one statement at a time; a PostgreSQL engine has a
    # pool, so only schema search (it updates the cached schema's value hints) goes one by one
    serial = conn.kind != "postgres" or tool == "search_schema"
    with conn.lock if serial else contextlib.nullcontext():
        try:
            if tool == "search_schema":
                text = warehouse.search_schema(
                    conn.db,
                    args.get("question", ""),
                    policy=options.policy,
                    sql_policy=options.sql_policy,
                )
                return ToolAnswer(text)
            if tool == "describe_table":
                text = warehouse.describe_table(
                    conn.db, args.get("table", ""), policy=options.policy
                )
                return ToolAnswer(text)
            if tool == "run_sql":
                res = warehouse.run_sql(
                    conn.db,
                    args.get("sql", ""),
                    sql_policy=options.sql_policy,
                    policy=options.policy,
                    max_rows=options.max_rows,
                    timeout_s=options.timeout_s,
                )
                if res.refused:
                    return ToolAnswer(res.text, 0, "refused")
                if res.error:
                    return ToolAnswer(res.text, 0, "error")
                return ToolAnswer(res.text, len(res.rows))
        except Exception as e:  # a catalog the database would not read, a lost server
            kind = type(e).__name__
            return ToolAnswer(f"{tool} failed on {conn.name}: {kind}", None, f"failed ({kind})")
    raise ValueError(f"unknown warehouse tool {tool!r}")
