"""The warehouse connections the MCP servers hold, opened read-only, and one tool call on one.

Both MCP servers use these: ``rsql-mcp`` (stdio, a user's own ``--db NAME=URL``) and the proxy's
``{proxy}mcp`` endpoint (the connections an admin configures). A connection is opened read-only
as well as guarded: SQLite with ``mode=ro``, DuckDB with ``read_only`` and external access off,
PostgreSQL through SQLAlchemy (as a URL in a cell is), each statement in a read-only
transaction, as the ``SqlPolicy``'s role when one is given. :func:`call_tool` runs one of the
warehouse tools (:mod:`rsql_sql.warehouse`) and says what came of it, so both servers
log and refuse alike.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from rsql_sql.connections import DB
from rsql_sql.databases import database_for_url, url_examples
from rsql_sql.errors import BadConnection

from .. import warehouse

__all__ = [
    "TOOLS",
    "Connection",
    "ToolAnswer",
    "Unavailable",
    "call_tool",
    "open_connection",
    "parse_db_arg",
    "shown_url",
]

SCHEMES = url_examples()


@dataclass
class Connection:
    name: str
    kind: str  # its database's name: "sqlite", "duckdb", "postgres"
    db: DB
    # sqlite3 and DuckDB connections are not for concurrent use, and both servers run tools in
    # worker threads
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Unavailable:
    """A ``--db`` connection that would not open (a database server down or unreachable, a
    file not there): the server serves the others, names this one with its reason, and tries
    it again when a tool names it, at most every ``RETRY_S`` seconds."""

    name: str
    kind: str
    url: str
    reason: str  # BadConnection's message: it names no password
    tried_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    RETRY_S = 30.0

    def retry(self, now: float) -> Connection | None:
        """The connection if it opens now; None (its reason updated) if not, or if it was
        tried less than ``RETRY_S`` seconds ago."""
        with self.lock:
            if now - self.tried_at < self.RETRY_S:
                return None
            self.tried_at = now
            try:
                return open_connection(self.name, self.url)
            except BadConnection as e:
                self.reason = str(e)
                return None


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


def open_connection(name: str, url: str) -> Connection:
    """Open `url` read-only, as its database opens it; raises :class:`BadConnection`."""
    database = database_for_url(url)
    if database is None:
        raise BadConnection(f"unsupported URL (expected {SCHEMES})")
    return Connection(name, database.name, database.open_read_only(url, f"{database.title} {name}"))


# the warehouse tools and the arguments each takes (every one a string, the connection first):
# the catalogue's (rsql_sql.warehouse.CATALOGUE)
TOOLS: dict[str, tuple[str, ...]] = {
    name: ("connection", *(arg for arg, _ in tool.parameters))
    for name, tool in warehouse.CATALOGUE.items()
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


def call_tool(
    conn: Connection, tool: str, args: Mapping[str, str], bounds: warehouse.ToolBounds
) -> ToolAnswer:
    """Run warehouse tool `tool` on `conn` within `bounds` (blocking: call it from a worker
    thread). Never raises for what the database or the model did; a failure's text names only
    its type (a database's message may quote values)."""
    # sqlite3 and DuckDB connections take one statement at a time; a PostgreSQL connection
    # opened by URL has a pool, so only schema search (it updates the cached schema's value
    # hints) goes one by one
    serial = not conn.db.database.concurrent or tool == "search_schema"
    spec = warehouse.CATALOGUE.get(tool)
    if spec is None:
        raise ValueError(f"unknown warehouse tool {tool!r}")
    wanted = {arg: args.get(arg, "") for arg, _ in spec.parameters}
    with conn.lock if serial else contextlib.nullcontext():
        try:
            out = spec.run(conn.db, wanted, bounds)
        except Exception as e:  # a catalog the database would not read, a lost server
            kind = type(e).__name__
            return ToolAnswer(f"{tool} failed on {conn.name}: {kind}", None, f"failed ({kind})")
    if isinstance(out, str):
        return ToolAnswer(out)
    if out.refused:
        return ToolAnswer(out.text, 0, "refused")
    if out.error:
        return ToolAnswer(out.text, 0, "error")
    return ToolAnswer(out.text, len(out.rows))
