"""`{proxy}mcp` against users who try things (issue 53): statements built to stall the checks,
one user's calls filling the worker threads, calls that skip the limits, the catalogs of a
served PostgreSQL database, and SQL that reshapes a value past the redaction patterns.

A real `rsql-proxy` (the hub service host) with two worker threads serves a SQLite file and a
PostgreSQL database read as a role that may read one table; the `mcp` SDK's own HTTP client
calls the tools as each user.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import ProxyService, start_service

mcp = pytest.importorskip("mcp")
httpx2 = pytest.importorskip("httpx2")
from mcp import ClientSession  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

pytestmark = pytest.mark.slow

LIMIT = 25  # tool calls per minute per user
TIMEOUT_S = 2  # the connections' timeout_seconds, as in the finding
EMAIL = f"ada.{secrets.token_hex(4)}@example.org"
FUNCTION_SECRET = f"api-key-{secrets.token_hex(6)}"
USERS: dict[str, dict[str, Any]] = {
    f"tok-{name}": {"name": name}
    for name in ("alice", "carol", "bob", "frank", "lena", "pat", "rita")
}
USERS["tok-root"] = {"name": "root", "admin": True}
# the finding's statement: a 45 kB chain of ORs
OR_CHAIN_45K = "SELECT * FROM people WHERE " + " OR ".join(f"id={i}" for i in range(4_900))
# reads nothing and counts for longer than the connection's time limit
SLOW = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50000000) "
    "SELECT count(*) AS n FROM c"
)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mcp-abuse") / "shop.db"
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, email TEXT, note TEXT)")
        c.execute(
            "INSERT INTO people VALUES (1, 'ada', ?, ?), (2, 'bob', 'bob@example.org', 'hi')",
            (EMAIL, f"write to {EMAIL} on Mondays"),
        )
    c.close()
    return path


@pytest.fixture(scope="module")
def warehouse_role(pg_url: str) -> Iterator[str]:
    import psycopg

    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    role = f"rsql_mcp_abuse_{secrets.token_hex(3)}"
    with psycopg.connect(plain, autocommit=True) as admin:
        admin.execute("CREATE TABLE sales (id int PRIMARY KEY, region text, amount numeric)")
        admin.execute("INSERT INTO sales VALUES (1, 'north', 10.5), (2, 'south', 20)")
        admin.execute("CREATE TABLE payroll (id int, salary numeric)")  # not granted
        admin.execute("CREATE TABLE bonus (id int, amount numeric)")  # one column granted
        admin.execute("INSERT INTO bonus VALUES (1, 777)")
        admin.execute("CREATE SCHEMA hr")
        admin.execute("CREATE TABLE hr.reviews (id int, verdict text)")  # not served either
        admin.execute(
            "CREATE FUNCTION billing_key() RETURNS text LANGUAGE sql "
            f"AS $$ SELECT '{FUNCTION_SECRET}' $$"
        )
        admin.execute(f"CREATE ROLE {role} NOLOGIN")
        admin.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        admin.execute(f"GRANT SELECT ON sales TO {role}")
        admin.execute(f"GRANT SELECT (id) ON bonus TO {role}")
    yield role
    with psycopg.connect(plain, autocommit=True) as admin:
        admin.execute(f"DROP OWNED BY {role}")
        admin.execute(f"DROP ROLE {role}")


@pytest.fixture(scope="module")
def service(
    provider: FakeProvider,
    shop: Path,
    pg_url: str,
    warehouse_role: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ProxyService]:
    svc = start_service(
        tmp_path_factory.mktemp("mcp-abuse-service"),
        {
            "upstreams": upstreams_for(provider),
            "default_model": "fake-small",
            "mcp_connections": {
                "shop": {
                    "url": f"sqlite:///{shop}",
                    "redact_columns": ["email"],
                    "timeout_seconds": TIMEOUT_S,
                },
                "dw": {"url": pg_url, "role": warehouse_role, "timeout_seconds": TIMEOUT_S},
            },
            "mcp_user_limits": [f"{LIMIT}/minute"],
            "mcp_workers": 2,  # mcp_user_concurrency stays 2: as many as the workers
            "redact_patterns": ["email"],
        },
        static_users=USERS,
    )
    yield svc
    svc.stop()


@asynccontextmanager
async def _session(svc: ProxyService, token: str) -> AsyncIterator[ClientSession]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=120)
    async with http, streamable_http_client(svc.url + "mcp", http_client=http) as streams:
        async with ClientSession(streams[0], streams[1]) as session:
            await session.initialize()
            yield session


def _text(result: Any) -> str:
    return "\n".join(getattr(part, "text", "") for part in result.content)


async def _call(
    svc: ProxyService, token: str, tool: str, args: dict[str, str]
) -> tuple[bool, str, float]:
    """(is_error, text, when it was answered) for one call in a session of its own."""
    async with _session(svc, token) as s:
        res = await s.call_tool(tool, args)
        return res.is_error, _text(res), time.monotonic()


def _activity(svc: ProxyService, user: str, rows: int) -> list[dict[str, Any]]:
    """`user`'s MCP rows in the usage log, once at least `rows` are written (batched)."""
    deadline = time.monotonic() + 15
    while True:
        code, _, body = svc.request("GET", f"admin/users/{user}/activity", token="tok-root")
        assert code == 200, body
        found = [r for r in json.loads(body)["activity"] if r["api"] == "mcp"]
        if len(found) >= rows or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


# -- finding 3: checks that stall the workers ------------------------------------------------


async def test_chains_of_ors_from_two_users_neither_stall_the_workers_nor_another_user(
    service: ProxyService,
) -> None:
    """The finding's attack: two users, two 45 kB chains of ORs each, on a proxy of two worker
    threads; each is refused at once, naming the bound, and a third user is answered."""
    t0 = time.monotonic()
    attack = {"connection": "shop", "sql": OR_CHAIN_45K}

    async def bob_meanwhile() -> tuple[bool, str, float]:
        await asyncio.sleep(0.3)
        return await _call(
            service,
            "tok-bob",
            "run_sql",
            {"connection": "shop", "sql": "SELECT count(*) AS n FROM people"},
        )

    *attacks, bobs = await asyncio.gather(
        *(
            _call(service, tok, "run_sql", attack)
            for tok in ("tok-alice", "tok-alice", "tok-carol", "tok-carol")
        ),
        bob_meanwhile(),
    )
    for is_error, text, done in attacks:
        assert is_error, text
        assert "SQL_MAX_CHARS" in text or "reached for" in text, text
        assert done - t0 < TIMEOUT_S, (done - t0, text[:300])
    assert any("SQL_MAX_CHARS" in text for _, text, _ in attacks)
    assert not bobs[0] and bobs[1].splitlines()[:2] == ["n", "2"], bobs
    assert bobs[2] - t0 < TIMEOUT_S
    rows = [r for r in _activity(service, "alice", rows=2) if r["model"] == "mcp:run_sql"]
    assert rows and all(r["status"] in (400, 429) for r in rows)


async def test_one_users_calls_never_hold_every_worker(service: ProxyService) -> None:
    """frank starts two slow statements at once on a proxy of two workers: one runs (until the
    connection's time limit), the other is refused at once naming the limit, and bob's quick
    call is answered while frank's runs."""
    t0 = time.monotonic()
    slow = {"connection": "shop", "sql": SLOW}

    async def bob_after_frank_started() -> tuple[bool, str, float]:
        await asyncio.sleep(0.5)
        return await _call(
            service,
            "tok-bob",
            "run_sql",
            {"connection": "shop", "sql": "SELECT count(*) AS n FROM people"},
        )

    *franks, bobs = await asyncio.gather(
        _call(service, "tok-frank", "run_sql", slow),
        _call(service, "tok-frank", "run_sql", slow),
        bob_after_frank_started(),
    )
    refused = [f for f in franks if "reached for 'frank'" in f[1]]
    ran = [f for f in franks if "reached for 'frank'" not in f[1]]
    assert len(refused) == 1, franks
    assert (
        "MCP tool calls at once in one proxy process 1 (of its 2 workers, mcp_workers)"
        in (refused[0][1])
    )
    assert refused[0][2] - t0 < 1.5
    assert len(ran) == 1 and "cancelled after 2 s" in ran[0][1], ran
    assert not bobs[0] and bobs[1].splitlines()[:2] == ["n", "2"], bobs
    assert bobs[2] < ran[0][2], (bobs, ran)
    statuses = [r["status"] for r in _activity(service, "frank", rows=2)]
    assert 429 in statuses


async def test_hanging_up_does_not_free_a_worker_that_still_runs_the_call(
    service: ProxyService,
) -> None:
    """frank starts a slow statement and hangs up, twice: his first statement still runs on its
    thread, so the second is refused, and bob is answered by the thread left free. Over HTTP a
    hang-up does not cancel the call (the MCP endpoint answers it to its end); what a cancelled
    call would do, keep its slot until its thread ends (``ToolCalls._run``), is
    tests/unit/test_mcp_workers.py's."""
    slow = {"connection": "shop", "sql": SLOW}

    async def hang_up() -> None:
        call = asyncio.ensure_future(_call(service, "tok-frank", "run_sql", slow))
        await asyncio.sleep(0.5)
        call.cancel()
        with contextlib.suppress(BaseException):
            await call

    t0 = time.monotonic()
    await hang_up()
    second = await _call(service, "tok-frank", "run_sql", slow)
    assert second[0] and "reached for 'frank'" in second[1], second
    bob = await _call(
        service,
        "tok-bob",
        "run_sql",
        {"connection": "shop", "sql": "SELECT count(*) AS n FROM people"},
    )
    assert not bob[0] and bob[1].splitlines()[:2] == ["n", "2"], bob
    assert bob[2] - t0 < TIMEOUT_S, bob[2] - t0  # before frank's first statement ends


# -- finding 8: every tool call is admitted --------------------------------------------------


async def test_list_connections_is_admitted_under_the_tool_call_limits(
    service: ProxyService,
) -> None:
    async with _session(service, "tok-lena") as s:
        answers = [await s.call_tool("list_connections", {}) for _ in range(LIMIT + 1)]
    assert all(not a.is_error for a in answers[:LIMIT]), [_text(a) for a in answers]
    assert answers[LIMIT].is_error
    assert f"MCP tool calls {LIMIT}/minute reached for 'lena'; retry in" in _text(answers[LIMIT])
    rows = _activity(service, "lena", rows=LIMIT + 1)
    assert [r["error"] for r in rows].count("rate_limited") == 1


# -- suspected: the catalogs of a served PostgreSQL database ---------------------------------

CATALOG_READS = [
    "SELECT relname FROM pg_class WHERE relkind = 'r'",
    "SELECT rolname, rolsuper FROM pg_roles",
    "SELECT usename FROM pg_user",
    "SELECT rolname, rolpassword FROM pg_authid",
    "SELECT usename, passwd FROM pg_shadow",
    "SELECT usename, query FROM pg_stat_activity",
    "SELECT prosrc FROM pg_proc WHERE proname = 'billing_key'",
    "SELECT name, setting FROM pg_settings",
    "SELECT datname FROM pg_database",
    "SELECT schemaname, tablename FROM pg_catalog.pg_tables",
    "SELECT table_schema, table_name FROM information_schema.tables",
    "SELECT column_name FROM information_schema.columns WHERE table_name = 'payroll'",
    "SHOW ALL",
    "SHOW port",
    "EXPLAIN SELECT relname FROM pg_class",
]


async def test_the_served_roles_catalogs_are_not_read_through_run_sql(
    service: ProxyService, warehouse_role: str
) -> None:
    """run_sql reads the tables served and nothing else of the server: no catalog table or
    view (other tables, roles, sessions, functions' source, settings, databases), no SHOW. What
    is served is what the role may read: the tools do not know a table it may not read, even
    by name, and the role's grants stand behind the checks for a column it may not read."""
    async with _session(service, "tok-pat") as s:
        for sql in CATALOG_READS:
            res = await s.call_tool("run_sql", {"connection": "dw", "sql": sql})
            text = _text(res)
            assert res.is_error and "Refused" in text and "search_schema" in text, (sql, text)
            assert FUNCTION_SECRET not in text and warehouse_role not in text, (sql, text)
        # what the role may not read is not served: not known by name, not in the schema
        for sql in ("SELECT * FROM hr.reviews", "SELECT salary FROM payroll"):
            res = await s.call_tool("run_sql", {"connection": "dw", "sql": sql})
            assert res.is_error and "does not exist" in _text(res), (sql, _text(res))
            assert "Known tables: bonus, sales." in _text(res)
        found = await s.call_tool(
            "search_schema", {"connection": "dw", "question": "payroll salary reviews verdict"}
        )
        assert "payroll" not in _text(found) and "reviews" not in _text(found), _text(found)
        # a column the role has no grant on: the role's wall stands behind the checks
        denied = await s.call_tool(
            "run_sql", {"connection": "dw", "sql": "SELECT amount FROM bonus"}
        )
        assert denied.is_error and "permission denied" in _text(denied)
        assert "777" not in _text(denied)
        served = await s.call_tool(
            "run_sql", {"connection": "dw", "sql": "SELECT region FROM sales ORDER BY id"}
        )
        assert not served.is_error, _text(served)
        assert _text(served).splitlines()[:3] == ["region", "north", "south"]


# -- suspected: what redaction patterns can promise ------------------------------------------


async def test_patterns_mask_what_still_looks_personal_and_only_columns_hold_whatever_sql_does(
    service: ProxyService,
) -> None:
    """As the agents page says: `redact_patterns` mask text that still has the shape of personal
    data (an address in free text), which SQL can reshape (`replace(note, '@', ' at ')`);
    `redact_columns` withhold a column whatever a statement does with it."""
    reshaped = EMAIL.replace("@", " at ")
    async with _session(service, "tok-rita") as s:
        plain = await s.call_tool(
            "run_sql", {"connection": "shop", "sql": "SELECT note FROM people WHERE id = 1"}
        )
        assert not plain.is_error and EMAIL not in _text(plain)
        undone = await s.call_tool(
            "run_sql",
            {
                "connection": "shop",
                "sql": "SELECT replace(note, '@', ' at ') AS note FROM people WHERE id = 1",
            },
        )
        assert not undone.is_error and reshaped in _text(undone)  # what patterns cannot promise
        for sql in (
            "SELECT replace(email, '@', ' at ') AS e FROM people",
            "SELECT substr(email, 1, 5) || '...' AS e FROM people",
            "SELECT name FROM people WHERE email LIKE 'ada%'",
        ):
            res = await s.call_tool("run_sql", {"connection": "shop", "sql": sql})
            assert res.is_error and "withholds" in _text(res), (sql, _text(res))
            assert reshaped not in _text(res) and EMAIL not in _text(res)
