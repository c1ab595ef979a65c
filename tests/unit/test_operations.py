"""The kernel's operations (rsql_magic.operations) as their callers use them: one request
object each, against the fake provider (which speaks the proxy's API) over HTTP."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from rsql_magic.agent.eval_tools import WarehouseTools
from rsql_magic.agent.loop import Turn
from rsql_magic.client import ProxyClient
from rsql_magic.errors import SqlAIError
from rsql_magic.operations import (
    AgentOperation,
    AgentRequest,
    Route,
    SqlOperation,
    SqlRequest,
)
from rsql_magic.prompt import AGENT
from rsql_magic.session import Session
from rsql_sql.connections import resolve
from rsql_sql.schema import capture_schema
from tests.helpers import FAKE_KEY
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.tool_calls import tool_call


@pytest.fixture
def route(fresh_provider: FakeProvider) -> Route:
    return Route(ProxyClient(f"http://127.0.0.1:{fresh_provider.port}/", FAKE_KEY))


def shop() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.executescript(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL);"
        "INSERT INTO orders VALUES (1, 2.5), (2, 4.0);"
    )
    return conn


def catalog_reads(conn: sqlite3.Connection, run: Any) -> int:
    """How many statements reading the catalog `run()` sent on `conn` (the read-only wall's
    PRAGMAs around every statement are not counted)."""
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    try:
        run()
    finally:
        conn.set_trace_callback(None)
    return sum("sqlite_master" in s.lower() for s in seen)


def test_a_chain_reads_the_schema_once_and_the_next_model_answers(
    shell: Any, fresh_provider: FakeProvider, route: Route
) -> None:
    """An escalation chain is one question: its schema is read once for both models (as one
    capture reads it), the second model is asked once the first one's SQL failed, and the
    result says which model answered."""
    conn = shop()
    one_capture = catalog_reads(conn, lambda: capture_schema(conn))
    assert one_capture > 0
    fresh_provider.script(
        "```sql\nSELECT total FROM no_such_table\n```",  # fake-small: the schema stage
        "```sql\nSELECT count(*) AS n FROM orders\n```",  # fake-large
    )
    request = SqlRequest(
        "How many orders?",
        resolve(conn),
        chain=("fake-small", "fake-large"),
        max_retries=0,
        route=route,
    )
    operation = SqlOperation(Session.of(shell))
    box: list[Any] = []
    reads = catalog_reads(conn, lambda: box.append(operation.ask(request)))
    result = box[0]
    assert reads == one_capture
    assert result.model == "fake-large" and result.frame["n"].tolist() == [2]
    assert [e.stage for e in result.escalations] == ["schema"]
    assert [b.body["model"] for b in fresh_provider.received] == ["fake-small", "fake-large"]
    assert len(operation.calls) == 2  # the footer counts both models' answers


def test_run_sql_starts_from_the_answer_at_hand_and_asks_only_for_a_fix(
    shell: Any, fresh_provider: FakeProvider, route: Route
) -> None:
    """The chat's Run SQL: the answer shown is the first attempt (nothing is asked for it);
    its failure goes back to the model once, within the retries."""
    fresh_provider.script("```sql\nSELECT sum(total) AS s FROM orders\n```")
    request = SqlRequest(
        "Total?",
        resolve(shop()),
        model="fake-small",
        route=route,
        first_answer="```sql\nSELECT sum(amount) AS s FROM orders\n```",
        context_values=False,
    )
    operation = SqlOperation(Session.of(shell))
    result = operation.ask(request)
    assert result.frame["s"].tolist() == [6.5]
    assert [a.stage for a in result.attempts] == ["schema", "ok"]
    assert len(fresh_provider.received) == 1 and len(operation.calls) == 1


def test_a_bad_tables_option_fails_before_the_model_is_asked(
    shell: Any, fresh_provider: FakeProvider, route: Route
) -> None:
    request = SqlRequest("x", resolve(shop()), tables=("nope",), route=route)
    with pytest.raises(SqlAIError) as e:
        SqlOperation(Session.of(shell)).ask(request)
    assert e.value.stage == "usage" and fresh_provider.received == []


def test_an_agent_turn_sends_the_kernel_rules_after_the_context_and_keeps_given_rules(
    shell: Any, fresh_provider: FakeProvider, route: Route
) -> None:
    """The kernel's agent rules follow the context's system message (%%ask --agent, the
    panel); rsql-eval's turn sends its own messages as they are."""
    db = resolve(shop())
    tools = WarehouseTools(db)
    first = ({"role": "system", "content": "context"}, {"role": "user", "content": "Total?"})
    for kernel_rules, want in (
        (True, ["context", AGENT, "Total?"]),
        (False, ["context", "Total?"]),
    ):
        fresh_provider.reset()
        fresh_provider.script("All done.")
        request = AgentRequest(first, route, model="fake-small", kernel_rules=kernel_rules)
        turn = AgentOperation(Session.of(shell), request).run(tools, Turn())
        assert turn.answer == "All done." and turn.ended == ""
        sent = fresh_provider.received[0].body
        assert [m["content"] for m in sent["messages"]] == want
        assert sent["tools"] and sent["temperature"] == 0


def test_an_agent_turn_its_step_limit_ended_says_so_in_its_answer(
    shell: Any, fresh_provider: FakeProvider, route: Route
) -> None:
    fresh_provider.script(tool_call("search_schema", {"query": "orders"}))
    first = ({"role": "system", "content": "context"}, {"role": "user", "content": "Total?"})
    operation = AgentOperation(
        Session.of(shell), AgentRequest(first, route, model="fake-small", max_steps=1)
    )
    turn = operation.run(WarehouseTools(resolve(shop())), Turn())
    assert turn.ended == "steps" and turn.answer == "" and len(turn.requests) == 1
    operation.no_answer(turn)
    assert "step limit `RSQLMagic.agent_max_steps`" in turn.answer
    assert "after 1 requests" in turn.answer
