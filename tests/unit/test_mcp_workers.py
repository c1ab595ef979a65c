"""The proxy's MCP worker pool (``jupyter_server_ext/mcp/tool_calls.py``): a user's share of
its threads is held until the statement on it ends, not until the caller stops waiting, through
a real engine and a real SQLite database, in this process."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any

import pytest

from jupyter_server_ext.config.proxy import RSQLProxy
from jupyter_server_ext.engine import Caller
from jupyter_server_ext.mcp import build_mcp
from jupyter_server_ext.wiring import build_engine
from tests.helpers import require

UPSTREAMS = [{"name": "a", "base_url": "http://127.0.0.1:9/v1", "api_key": "k", "models": ["m"]}]


# counts for longer than the connection's time limit, reading nothing
SLOW = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50000000) "
    "SELECT count(*) AS n FROM c"
)


async def test_a_cancelled_call_keeps_its_worker_until_its_statement_ends(tmp_path: Any) -> None:
    """A call whose caller is gone (its task cancelled, as an in-process caller's may be) stops
    waiting, but its statement still runs on a worker thread: that thread stays the caller's
    until the statement ends, so the caller cannot start more than the pool allows."""
    require("mcp", reason="the MCP endpoint's SDK: pip install 'rsql-assistant[mcp]'")
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT)")
        c.execute("INSERT INTO people VALUES (1, 'ada')")
    c.close()
    proxy = RSQLProxy(
        upstreams=UPSTREAMS,
        mcp_connections={"shop": {"url": f"sqlite:///{db}", "timeout_seconds": 1.5}},
        mcp_workers=2,  # a user holds at most one of two
    )
    engine = build_engine(proxy, default_database=f"sqlite:///{tmp_path / 'usage.sqlite'}")
    endpoint = build_mcp(proxy, engine)
    calls = endpoint.calls
    frank = Caller("frank")
    try:
        slow = asyncio.ensure_future(
            calls.call(frank, "run_sql", {"connection": "shop", "sql": SLOW})
        )
        await asyncio.sleep(0.3)  # the statement is on its thread
        began = time.monotonic()
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        again = await calls.call(frank, "run_sql", {"connection": "shop", "sql": "SELECT 1 AS n"})
        assert not again.ok and "reached for 'frank'" in again.text, again
        # once the statement has ended (its 1.5 s limit), frank's thread is his again
        while time.monotonic() - began < 5:
            after = await calls.call(
                frank, "run_sql", {"connection": "shop", "sql": "SELECT 1 AS n"}
            )
            if after.ok:
                break
            await asyncio.sleep(0.1)
        assert after.ok, after
    finally:
        await calls.close()
        await engine.close()
