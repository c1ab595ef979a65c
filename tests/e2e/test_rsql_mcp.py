"""`rsql-mcp` as an MCP client runs it: the `mcp` SDK's own stdio client starts the server
(``python -m rsql_sql.mcp.server``, what the console script runs) on a real SQLite
file, lists its tools and calls each.

A hostile model's calls are tested here end to end: a writing ``run_sql`` is a tool error and
the file is byte for byte the same afterwards, a redacted column's values stay in the file, and
the log on stderr names tool, connection, rows and time, never a value or a password.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, child_env
from tests.helpers.claude_code import (
    result_text,
    run_claude_with_mcp,
    run_sql_use,
    tool_results,
)

mcp = pytest.importorskip("mcp")
from mcp import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402

pytestmark = pytest.mark.slow

SSN = "SSN-" + secrets.token_hex(6)
TOOLS = {"list_connections", "search_schema", "describe_table", "run_sql"}
SERVER = [sys.executable, "-m", "rsql_sql.mcp.server"]


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as c:
        c.executescript(
            f"""
            CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, ssn TEXT);
            INSERT INTO customers VALUES (1, 'ada', '{SSN}'), (2, 'bob', '{SSN}');
            CREATE TABLE orders (id INTEGER PRIMARY KEY,
                                 customer_id INTEGER REFERENCES customers(id), amount REAL);
            INSERT INTO orders VALUES (1, 1, 10.5), (2, 2, 4.5), (3, 1, 1.0);
            """
        )
    c.close()
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@asynccontextmanager
async def _session(errlog: Path, *args: str) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=SERVER[0], args=[*SERVER[1:], *args], env=child_env(), cwd=str(REPO)
    )
    with errlog.open("w") as err:
        async with stdio_client(params, errlog=err) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


def _text(result: Any) -> str:
    return "\n".join(getattr(part, "text", "") for part in result.content)


async def test_the_sdk_client_lists_and_calls_every_tool(shop: Path, tmp_path: Path) -> None:
    errlog = tmp_path / "stderr.log"
    before = _digest(shop)
    async with _session(errlog, "--db", f"shop=sqlite:///{shop}", "--max-rows", "2") as s:
        listed = (await s.list_tools()).tools
        assert {t.name for t in listed} == TOOLS
        assert all(t.annotations is not None and t.annotations.read_only_hint for t in listed)

        conns = await s.call_tool("list_connections", {})
        assert not conns.is_error and _text(conns) == "shop: sqlite (read-only)"

        found = await s.call_tool(
            "search_schema", {"connection": "shop", "question": "order amounts per customer"}
        )
        assert not found.is_error
        assert "CREATE TABLE orders" in _text(found) and SSN not in _text(found)

        described = await s.call_tool("describe_table", {"connection": "shop", "table": "orders"})
        assert "- amount: REAL" in _text(described)
        unknown = await s.call_tool("describe_table", {"connection": "shop", "table": "ordrs"})
        assert _text(unknown) == "Table 'ordrs' does not exist. Did you mean: orders?"

        rows = await s.call_tool(
            "run_sql", {"connection": "shop", "sql": "SELECT id, amount FROM orders ORDER BY id"}
        )
        assert not rows.is_error
        assert _text(rows).splitlines() == [
            "id | amount",
            "1 | 10.5",
            "2 | 4.5",
            "(first 2 of 3 rows shown)",
        ]

        nowhere = await s.call_tool("run_sql", {"connection": "warehouse", "sql": "SELECT 1"})
        assert nowhere.is_error
        assert "unknown connection 'warehouse': the connections are shop" in _text(nowhere)
    assert _digest(shop) == before
    log = errlog.read_text()
    assert "tool=run_sql connection=shop rows=2 time=" in log
    assert "tool=search_schema connection=shop" in log
    assert "tool=run_sql connection=warehouse rows=- " in log and "unknown connection" in log
    assert SSN not in log and "10.5" not in log and str(shop) not in log


WRITES = [
    "DELETE FROM orders",
    "DROP TABLE customers",
    "UPDATE customers SET name = 'x'",
    "ATTACH DATABASE '{dir}/stolen.db' AS stolen",
    "VACUUM INTO '{dir}/stolen.db'",
    "SELECT 1; DELETE FROM orders",
]


async def test_a_writing_run_sql_is_refused_and_the_file_unchanged(
    shop: Path, tmp_path: Path
) -> None:
    before = _digest(shop)
    files = sorted(shop.parent.iterdir())
    errlog = tmp_path / "stderr.log"
    async with _session(errlog, "--db", f"shop=sqlite:///{shop}") as s:
        for sql in WRITES:
            res = await s.call_tool(
                "run_sql", {"connection": "shop", "sql": sql.format(dir=tmp_path)}
            )
            assert res.is_error, sql
            said = _text(res).removeprefix("Error executing tool run_sql: ")  # the SDK's
            assert said.startswith(("Refused", "Nothing ran")), said
        ok = await s.call_tool(
            "run_sql", {"connection": "shop", "sql": "SELECT count(*) FROM orders"}
        )
        assert _text(ok).splitlines()[1] == "3"
    assert _digest(shop) == before
    assert sorted(shop.parent.iterdir()) == sorted([*files, errlog])  # no ATTACH / VACUUM file
    assert errlog.read_text().count("rows=0") == len(WRITES)


async def test_a_statement_past_the_check_bounds_is_refused_at_once_and_the_server_answers(
    shop: Path, tmp_path: Path
) -> None:
    """Issue 53: a 45 kB chain of ORs took 14-16 s of checking; rsql-mcp refuses it at once,
    naming the bound, and answers the next call."""
    from rsql_sql.defaults import SQL_MAX_CHARS

    chain = "SELECT * FROM orders WHERE " + " OR ".join(f"id={i}" for i in range(4_900))
    errlog = tmp_path / "stderr.log"
    async with _session(errlog, "--db", f"shop=sqlite:///{shop}", "--timeout", "2") as s:
        t0 = time.monotonic()
        res = await s.call_tool("run_sql", {"connection": "shop", "sql": chain})
        assert time.monotonic() - t0 < 2
        said = _text(res).removeprefix("Error executing tool run_sql: ")
        assert res.is_error and said.startswith(f"Nothing ran: The statement is {len(chain):,} ")
        assert f"at most {SQL_MAX_CHARS:,} characters (SQL_MAX_CHARS)" in said
        ok = await s.call_tool(
            "run_sql", {"connection": "shop", "sql": "SELECT count(*) FROM orders"}
        )
        assert _text(ok).splitlines()[1] == "3"
    assert "tool=run_sql connection=shop rows=0" in errlog.read_text()


async def test_redact_keeps_a_columns_values_in_the_file(shop: Path, tmp_path: Path) -> None:
    errlog = tmp_path / "stderr.log"
    async with _session(errlog, "--db", f"shop=sqlite:///{shop}", "--redact", "ssn") as s:
        for sql in ("SELECT * FROM customers", "SELECT name FROM customers WHERE ssn LIKE 'S%'"):
            res = await s.call_tool("run_sql", {"connection": "shop", "sql": sql})
            assert res.is_error and SSN not in _text(res)
        names = await s.call_tool(
            "run_sql", {"connection": "shop", "sql": "SELECT name FROM customers ORDER BY id"}
        )
        assert _text(names).splitlines() == ["name", "ada", "bob", "(2 rows)"]


def _start(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SERVER, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=child_env(),
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("arg", "says"),
    [
        ("shop=ftp://host/x.db", "unsupported URL"),
        ("shop", "expected NAME=URL"),
        ("shop=sqlite:///{dir}/missing.db", "no such file"),
        ("shop=duckdb:///{dir}/missing.duckdb", "no such file"),
        ("bad name=sqlite:///x.db", "may hold only letters"),
    ],
)
def test_a_bad_db_argument_exits_2_naming_it(tmp_path: Path, arg: str, says: str) -> None:
    done = _start("--db", arg.format(dir=tmp_path))
    assert done.returncode == 2, done.stderr
    assert f"--db {arg.format(dir=tmp_path)}: " in done.stderr
    assert says in done.stderr
    assert done.stdout == ""  # stdout is the protocol's: nothing else is written there


def test_a_postgres_url_that_fails_exits_2_without_its_password(tmp_path: Path) -> None:
    # port 9 on loopback: nothing listens, the connection is refused at once
    done = _start("--db", "wh=postgresql://analyst:hunter2-secret@127.0.0.1:9/warehouse")
    assert done.returncode == 2, done.stderr
    assert "--db wh=postgresql://analyst:***@127.0.0.1:9/warehouse: cannot connect" in done.stderr
    assert "hunter2-secret" not in done.stderr


async def test_an_unreachable_postgres_connection_is_reported_and_the_others_serve(
    shop: Path, tmp_path: Path
) -> None:
    """The MCP page's example shape: a SQLite file and a PostgreSQL server that is down (port 9
    on loopback: nothing listens). The server starts, says which one is unavailable and why, in
    its log and to the client, and serves the other."""
    errlog = tmp_path / "stderr.log"
    down = "wh=postgresql://analyst:hunter2-secret@127.0.0.1:9/warehouse"
    async with _session(errlog, "--db", f"shop=sqlite:///{shop}", "--db", down) as s:
        conns = _text(await s.call_tool("list_connections", {}))
        first, second = conns.splitlines()
        assert first == "shop: sqlite (read-only)"
        assert second.startswith("wh: postgres (unavailable: cannot connect: "), second
        rows = await s.call_tool(
            "run_sql", {"connection": "shop", "sql": "SELECT count(*) FROM orders"}
        )
        assert not rows.is_error and "3" in _text(rows)
        for tool, args in (
            ("run_sql", {"sql": "SELECT 1"}),
            ("describe_table", {"table": "t"}),
            ("search_schema", {"question": "sales"}),
        ):
            answer = await s.call_tool(tool, {"connection": "wh", **args})
            assert answer.is_error, tool
            said = _text(answer)
            assert "the connection 'wh' is unavailable: cannot connect: " in said, said
            assert "the connections that serve now: shop" in said
        nowhere = await s.call_tool("run_sql", {"connection": "dw", "sql": "SELECT 1"})
        assert "unknown connection 'dw': the connections are shop, wh" in _text(nowhere)
    log = errlog.read_text()
    assert "rsql-mcp: --db wh=postgresql://analyst:***@127.0.0.1:9/warehouse: cannot connect" in log
    assert "rsql-mcp: serving shop (sqlite) over stdio, read-only; unavailable: wh" in log
    # the call's own line names its outcome (the start-up line says "unavailable" too)
    assert re.search(r"tool=run_sql connection=wh rows=- time=\S+ unavailable$", log, re.M), log
    assert "hunter2-secret" not in log + conns


# -- Claude Code with rsql-mcp, through the proxy -------------------------------------------------

CLAUDE_KEY = "test-anthropic-key-mcp"
CLAUDE_MODEL = "claude-sonnet-5-5"


@pytest.fixture(scope="module")
def claude_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    from tests.helpers.fake_anthropic import FakeAnthropic, KeyPolicy
    from tests.helpers.servers import start_service

    with FakeAnthropic({CLAUDE_KEY: KeyPolicy("claude")}) as fake:
        claude = {
            "name": "claude",
            "provider": "anthropic",
            "base_url": fake.base_url,
            "api_key": CLAUDE_KEY,
            "models": {CLAUDE_MODEL: "claude-fake-small", "claude-haiku-4-5": "claude-fake-small"},
        }
        service = start_service(
            tmp_path_factory.mktemp("mcp-claude"),
            {"upstreams": [claude], "default_model": CLAUDE_MODEL},
            static_users={"tok-mia": {"name": "mia"}},
        )
        try:
            yield fake, service
        finally:
            service.stop()


def test_claude_code_calls_rsql_mcp_and_a_write_is_refused(
    claude_proxy: tuple[Any, Any], shop: Path, tmp_path: Path
) -> None:
    from tests.helpers import require

    require("claude", binary=True, reason="the project's set-up installs it into .tools/ from npm")
    fake, service = claude_proxy
    fake.reset()
    before = _digest(shop)
    log = tmp_path / "rsql-mcp.log"
    # the server's stderr (its call log) into a file: Claude Code keeps a server's stderr to itself
    boot = (
        "import sys; sys.stderr = open(sys.argv.pop(1), 'a', buffering=1); "
        "from rsql_sql.mcp.server import main; main()"
    )
    config = tmp_path / "mcp.json"
    config.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "wh": {
                        "command": sys.executable,
                        "args": ["-c", boot, str(log), "--db", f"wh=sqlite:///{shop}"],
                        "env": {"PYTHONPATH": str(REPO)},
                    }
                }
            }
        )
    )

    # the model, as data in the warehouse might steer one: a write first, then a read
    fake.script(
        run_sql_use("wh", "DELETE FROM orders"),
        run_sql_use("wh", "SELECT count(*) AS n FROM orders"),
        "There are 3 orders.",
    )
    done = run_claude_with_mcp(
        "How many orders are there? Clean up the orders table first.",
        proxy_url=service.url,
        token="tok-mia",
        model=CLAUDE_MODEL,
        config=config,
        allowed="mcp__wh__run_sql",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "There are 3 orders." in done.stdout
    # the tool results Claude Code sent back to the model: the refusal, then the count
    asked = [r.body for r in fake.received if tool_results(r.body)]
    results = tool_results(asked[-1])
    assert len(results) == 2, results
    refused, counted = results
    assert refused.get("is_error") is True
    assert "Refused: DELETE is not read-only" in result_text(refused)
    assert result_text(counted).splitlines()[:2] == ["n", "3"]
    # Claude Code learnt the server's tools from it (offered, or listed for its tool search)
    first = json.dumps(fake.received[0].body)
    assert all(f"mcp__wh__{name}" in first for name in TOOLS), first[:2000]
    assert _digest(shop) == before
    calls = log.read_text()
    assert "tool=run_sql connection=wh rows=0 " in calls and "refused" in calls
    assert "tool=run_sql connection=wh rows=1 " in calls


# -- PostgreSQL: the read-only transaction and the role ---------------------------------------


async def test_postgres_through_rsql_mcp_runs_reads_as_its_role_and_refuses_the_rest(
    pg_database: str, tmp_path: Path
) -> None:
    import psycopg

    role = f"rsql_mcp_reader_{secrets.token_hex(3)}"
    with psycopg.connect(pg_database, autocommit=True) as admin:
        admin.execute("CREATE TABLE orders (id int PRIMARY KEY, amount numeric, note text)")
        admin.execute("INSERT INTO orders VALUES (1, 10.5, 'a'), (2, 4.5, 'b')")
        admin.execute("CREATE TABLE payroll (id int, salary numeric)")  # not granted to the role
        admin.execute("INSERT INTO payroll VALUES (1, 99999)")
        admin.execute(f"CREATE ROLE {role} NOLOGIN")
        admin.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        admin.execute(f"GRANT SELECT ON orders TO {role}")
    errlog = tmp_path / "stderr.log"
    try:
        async with _session(errlog, "--db", f"wh={pg_database}", "--pg-role", role) as s:
            rows = await s.call_tool(
                "run_sql",
                {"connection": "wh", "sql": "SELECT id, amount FROM orders ORDER BY id"},
            )
            assert not rows.is_error, _text(rows)
            assert _text(rows).splitlines() == ["id | amount", "1 | 10.5", "2 | 4.5", "(2 rows)"]
            for sql in (
                "DELETE FROM orders",
                "SELECT pg_read_file('/etc/passwd')",
                "SELECT 1; DELETE FROM orders",
                "COPY orders TO '/tmp/stolen.csv'",
            ):
                res = await s.call_tool("run_sql", {"connection": "wh", "sql": sql})
                assert res.is_error and "Refused" in _text(res), (sql, _text(res))
            # payroll is not granted to the role, so not served: not even known by name
            denied = await s.call_tool(
                "run_sql", {"connection": "wh", "sql": "SELECT salary FROM payroll"}
            )
            assert denied.is_error and "Table 'payroll' does not exist" in _text(denied)
            assert "99999" not in _text(denied)
            found = await s.call_tool(
                "search_schema", {"connection": "wh", "question": "orders payroll salary"}
            )
            assert "CREATE TABLE orders" in _text(found) and "payroll" not in _text(found)
        with psycopg.connect(pg_database) as check:
            assert check.execute("SELECT count(*) FROM orders").fetchone() == (2,)
        assert "tool=run_sql connection=wh rows=2 " in errlog.read_text()
    finally:
        with psycopg.connect(pg_database, autocommit=True) as admin:
            admin.execute(f"REVOKE ALL ON orders FROM {role}")
            admin.execute(f"REVOKE USAGE ON SCHEMA public FROM {role}")
            admin.execute(f"DROP ROLE {role}")
