"""rsql-mcp: the warehouse tools as an MCP server over stdio, for a user's own connections.

    rsql-mcp --db NAME=URL [--db NAME=URL ...] [--max-rows N] [--timeout S] [--redact GLOB ...]

An MCP client (Claude Code, jupyter-ai, any agent) starts it and calls four tools:
``list_connections``, ``search_schema(connection, question)``, ``describe_table(connection,
table)`` and ``run_sql(connection, sql)``. They are :mod:`rsql_sql.warehouse`'s, so a
statement meets exactly %%sql_ai's guard, database rules, database walls and result bound, and a
refusal comes back as a tool error the model can read. The connections are opened read-only
as well: SQLite with ``mode=ro``, DuckDB with ``read_only`` and external access off, and
PostgreSQL through SQLAlchemy (as a URL in a cell is) with each statement in a read-only
transaction, as ``--pg-role`` when given. Nothing here runs code a model wrote, other than the
checked SQL.

Each call is logged to stderr (stdout carries the protocol): the tool, the connection, the rows
returned and the time; never the data, the SQL or a URL (which may hold a password).

A ``--db`` that is wrong in itself exits 2. One that does not open (its server down) is logged,
listed by ``list_connections`` as unavailable with the reason, and tried again when a tool names
it; the others serve. Only when none opens does the server exit 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from rsql_common.context_policy import ContextPolicy
from rsql_common.terminal import shown
from rsql_sql.databases import database_for_url
from rsql_sql.errors import BadConnection
from rsql_sql.policy import SqlPolicy
from rsql_sql.warehouse import CATALOGUE, ToolBounds

from .connections import (
    SCHEMES,
    Connection,
    Unavailable,
    call_tool,
    open_connection,
    parse_db_arg,
    shown_url,
)

__all__ = ["Connection", "build_server", "main", "open_connection", "parse_db_arg"]


def log_call(tool: str, connection: str, rows: int | None, t0: float, outcome: str = "ok") -> None:
    # stdout is the protocol: the log goes to stderr, and never holds data, SQL or a URL
    conn = shown(connection)[:60]
    n = "-" if rows is None else str(rows)
    took = time.perf_counter() - t0
    print(
        f"rsql-mcp: tool={tool} connection={conn} rows={n} time={took:.3f}s {outcome}",
        file=sys.stderr,
        flush=True,
    )


def sdk() -> tuple[Any, type[Exception], Any]:
    """The SDK's server class, its ToolError and ToolAnnotations (``MCPServer`` from mcp 2,
    ``FastMCP`` before)."""
    try:
        from mcp.server.mcpserver import MCPServer as Server
        from mcp.server.mcpserver.exceptions import ToolError
    except ImportError:  # mcp 1.x: the same server under its old name
        from mcp.server.fastmcp import FastMCP as Server  # type: ignore[attr-defined,no-redef]  # mcp 1.x only
        from mcp.server.fastmcp.exceptions import ToolError  # type: ignore[no-redef]  # mcp 1.x only
    try:
        from mcp_types import ToolAnnotations
    except ImportError:  # mcp 1.x
        from mcp.types import ToolAnnotations
    return Server, ToolError, ToolAnnotations


INSTRUCTIONS = (
    "Read-only access to the user's databases. Call list_connections first, then "
    "search_schema to find tables, describe_table for one table's columns, and run_sql "
    "for one read-only SELECT. Writes, file access and settings are refused."
)
# what each tool tells the model it does (both MCP servers): the warehouse tools' words are the
# catalogue's (rsql_sql.warehouse.CATALOGUE), each on the `connection` list_connections names
DESCRIPTIONS = {
    "list_connections": "The database connections this server holds: name and kind (sqlite, "
    "duckdb, postgres). Every tool takes one of these names.",
    **{
        name: f"{tool.description} On `connection`, a name list_connections gives."
        for name, tool in CATALOGUE.items()
    },
}


def add_tools(server: Any, *tools: Callable[..., Any]) -> None:
    """Register `tools` on an SDK server under their functions' names, each marked read-only
    and described as :data:`DESCRIPTIONS` says (both MCP servers)."""
    _, _, ToolAnnotations = sdk()
    read_only = ToolAnnotations.model_validate(
        {"readOnlyHint": True, "destructiveHint": False, "idempotentHint": True}
    )
    for fn in tools:
        server.add_tool(
            fn,
            name=fn.__name__,
            description=DESCRIPTIONS[fn.__name__],
            annotations=read_only,
            structured_output=False,
        )


def build_server(
    connections: dict[str, Connection],
    bounds: ToolBounds,
    unavailable: dict[str, Unavailable] | None = None,
) -> Any:
    """The MCP server holding `connections` (the SDK's ``MCPServer``, ``FastMCP`` before 2).
    `unavailable`: the ``--db`` connections that would not open; each is listed with its reason
    and tried again when a tool names it, and the others serve meanwhile."""
    Server, ToolError, _ = sdk()
    server = Server("rsql-mcp", instructions=INSTRUCTIONS)
    down = unavailable if unavailable is not None else {}

    def connection(tool: str, name: str, t0: float) -> Connection:
        conn = connections.get(name)
        if conn is not None:
            return conn
        gone = down.get(name)
        if gone is None:
            log_call(tool, name, None, t0, "unknown connection")
            known = ", ".join(sorted([*connections, *down]))
            raise ToolError(f"unknown connection {shown(name)[:60]!r}: the connections are {known}")
        opened = gone.retry(time.monotonic())
        if opened is None:
            log_call(tool, name, None, t0, "unavailable")
            others = ", ".join(sorted(connections)) or "none"
            raise ToolError(
                f"the connection {name!r} is unavailable: {gone.reason}. It is tried again "
                f"at most every {gone.RETRY_S:g} s; the connections that serve now: {others}"
            )
        print(f"rsql-mcp: {name} ({opened.kind}) opened, serving", file=sys.stderr, flush=True)
        down.pop(name, None)
        connections[name] = opened
        return opened

    def call(tool: str, name: str, args: dict[str, str]) -> str:
        t0 = time.perf_counter()
        conn = connection(tool, name, t0)
        answer = call_tool(conn, tool, args, bounds)
        log_call(tool, name, answer.rows, t0, answer.outcome)
        if not answer.ok:
            raise ToolError(answer.text)
        return answer.text

    def list_connections() -> str:
        t0 = time.perf_counter()
        lines = [f"{c.name}: {c.kind} (read-only)" for c in connections.values()]
        lines += [f"{u.name}: {u.kind} (unavailable: {u.reason})" for u in down.values()]
        log_call("list_connections", "-", len(lines), t0)
        return "\n".join(lines)

    def search_schema(connection: str, question: str) -> str:
        return call("search_schema", connection, {"question": question})

    def describe_table(connection: str, table: str) -> str:
        return call("describe_table", connection, {"table": table})

    def run_sql(connection: str, sql: str) -> str:
        return call("run_sql", connection, {"sql": sql})

    add_tools(server, list_connections, search_schema, describe_table, run_sql)
    return server


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rsql-mcp",
        description="Read-only warehouse tools (search_schema, describe_table, run_sql) as an "
        "MCP server over stdio, through the same guard and walls as %%sql_ai.",
    )
    p.add_argument(
        "--db",
        action="append",
        required=True,
        metavar="NAME=URL",
        help=f"a connection, opened read-only ({SCHEMES}); repeat for more",
    )
    p.add_argument("--max-rows", type=int, default=20, help="rows run_sql returns (default 20)")
    p.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds a run_sql call may take, its checks and statement together (default 10)",
    )
    p.add_argument(
        "--pg-role",
        default=None,
        help="PostgreSQL: the role statements run as (SET LOCAL ROLE), without superuser rights",
    )
    p.add_argument(
        "--allow-function",
        action="append",
        default=[],
        metavar="NAME",
        help="a function added to the allowlist (NAME, or DIALECT:NAME); repeat for more",
    )
    p.add_argument(
        "--redact",
        action="append",
        default=[],
        metavar="GLOB",
        help="withhold the values of columns matching GLOB (statements naming them are refused)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> None:
    """The ``rsql-mcp`` command. Exits 2 on a bad argument, naming it."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.max_rows < 1 or args.max_rows > 10_000:
        parser.error("--max-rows must be between 1 and 10000")
    if not 0 < args.timeout <= 3600:
        parser.error("--timeout must be more than 0 and at most 3600 seconds")
    bounds = ToolBounds(
        max_rows=args.max_rows,
        timeout_s=args.timeout,
        sql_policy=SqlPolicy.make(args.allow_function, args.pg_role, role_setting="--pg-role ROLE"),
        policy=ContextPolicy(redact_columns=tuple(args.redact), source="rsql-mcp --redact"),
    )
    connections: dict[str, Connection] = {}
    unavailable: dict[str, Unavailable] = {}
    failures: list[str] = []
    for arg in args.db:
        shown_arg = arg
        try:
            name, url = parse_db_arg(arg)
            shown_arg = f"{name}={shown_url(url)}"
            database = database_for_url(url)
            if name in connections or name in unavailable:
                raise BadConnection(f"the name {name!r} is given twice")
            if database is None:
                raise BadConnection(f"unsupported URL (expected {SCHEMES})")
        except BadConnection as e:  # the argument itself is wrong: nothing is served
            parser.error(f"--db {shown(shown_arg)}: {e}")
        try:
            connections[name] = open_connection(name, url)
        except BadConnection as e:
            # a database down or unreachable: one connection, not the server's whole work
            failures.append(f"--db {shown(shown_arg)}: {e}")
            unavailable[name] = Unavailable(name, database.name, url, str(e), time.monotonic())
    if not connections:
        parser.error("; ".join(failures))
    for failure in failures:
        print(
            shown(
                f"rsql-mcp: {failure}; serving the other connections, this one is listed as "
                "unavailable and tried again when a tool names it"
            ),
            file=sys.stderr,
            flush=True,
        )
    kinds = ", ".join(f"{c.name} ({c.kind})" for c in connections.values())
    down = f"; unavailable: {', '.join(sorted(unavailable))}" if unavailable else ""
    print(f"rsql-mcp: serving {kinds} over stdio, read-only{down}", file=sys.stderr, flush=True)
    build_server(connections, bounds, unavailable).run("stdio")


if __name__ == "__main__":
    main()
