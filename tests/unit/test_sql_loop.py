"""The %%sql_ai loop against real SQLite and DuckDB, with a scripted model (against
PostgreSQL, whose server it needs: tests/e2e/test_sql_postgres_loop.py).

The "model" is the loopback fake provider reached over real HTTP by the real proxy client;
it is scripted to answer badly first (an unknown column, another dialect's syntax, a DROP
TABLE, two statements), and its ``received`` bodies show what was fed back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import duckdb
import pytest
import sqlalchemy as sa

from rsql_magic.errors import QueryTimeout, SqlAIError
from rsql_sql.connections import DB, resolve
from rsql_sql.loop import run_question
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.shop import GOOD, SHOP
from tests.helpers.sql_fixtures import (
    EXPECTED,
    check_statement_timeout,
    fed_back,
    shop_sqlite,
    totals,
)


@pytest.fixture
def sqlite_db() -> Iterator[sqlite3.Connection]:
    with shop_sqlite() as conn:
        yield conn


@pytest.fixture
def duck_db() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    for stmt in SHOP.split(";"):
        if stmt.strip():
            con.execute(stmt)
    yield con
    con.close()


def test_sqlite_unknown_column_is_fed_back_and_retried(
    fresh_provider: FakeProvider, complete, sqlite_db
) -> None:
    fresh_provider.script(
        "```sql\nSELECT c.region, SUM(o.total) AS total FROM orders o JOIN customers c "
        "ON c.id = o.customer_id GROUP BY c.region\n```",
        GOOD,
    )
    res = run_question("Total order amount per region", resolve(sqlite_db), complete)
    assert [a.stage for a in res.attempts] == ["schema", "ok"]
    err = res.attempts[0].error
    assert err.startswith("Unknown column: total. Line: 1, Col: 28\n")
    assert "Did you mean: orders has" not in err  # no close name: the columns are listed
    assert "orders(id, customer_id, amount)" in err
    # the exact error went back as the next user message, after the bad answer
    assert len(fresh_provider.received) == 2
    msgs = fresh_provider.received[1].body["messages"]
    assert msgs[-2]["role"] == "assistant" and "SUM(o.total)" in msgs[-2]["content"]
    assert err in fed_back(fresh_provider, 1)
    assert fresh_provider.received[1].body["temperature"] == 0
    # the schema went in the system prompt, as SQLite DDL
    system = fresh_provider.received[0].body["messages"][0]["content"]
    assert (
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id)"
        in system
    )
    assert "one SQLite SQL statement" in system
    assert totals(res.frame) == EXPECTED
    assert res.row_count == 2


def test_duckdb_two_statements_are_refused(fresh_provider: FakeProvider, complete, duck_db) -> None:
    fresh_provider.script(
        "```sql\nSELECT * FROM orders; DELETE FROM orders WHERE amount > 50;\n```", GOOD
    )
    res = run_question("Totals per region", resolve(duck_db), complete)
    assert res.attempts[0].stage == "refused"
    assert res.attempts[0].error.startswith(
        "Refused: the answer holds 2 statements (SELECT, DELETE); %%sql_ai runs exactly one "
        "statement per cell, so nothing ran."
    )
    assert res.attempts[0].error in fed_back(fresh_provider, 1)
    assert duck_db.execute("SELECT count(*) FROM orders").fetchone()[0] == 4
    assert totals(res.frame) == EXPECTED


def test_refused_twice_stops_early(fresh_provider: FakeProvider, complete, sqlite_db) -> None:
    fresh_provider.script("DELETE FROM orders", "DELETE FROM orders WHERE 1 = 1", GOOD)
    with pytest.raises(SqlAIError) as ei:
        run_question("Delete all orders", resolve(sqlite_db), complete, max_retries=3)
    assert ei.value.stage == "refused"
    assert ei.value.sql == "DELETE FROM orders WHERE 1 = 1"
    assert len(fresh_provider.received) == 2  # the question wants a write: stop asking
    # the error says once what was refused and why, then what to do
    first, *rest = ei.value.message.splitlines()
    assert first.startswith("Refused: DELETE is not read-only") and "last error" not in first
    assert first.lower().count("refused") == 1
    assert rest[-1].startswith("What to do: rephrase the question")
    assert sqlite_db.execute("SELECT count(*) FROM orders").fetchone()[0] == 4


def test_retries_exhausted_fail_with_last_sql_and_error(
    fresh_provider: FakeProvider, complete, duck_db
) -> None:
    fresh_provider.script("SELECT nope FROM orders", "SELECT still_nope FROM orders", GOOD)
    with pytest.raises(SqlAIError) as ei:
        run_question("x", resolve(duck_db), complete, max_retries=1)
    e = ei.value
    assert len(fresh_provider.received) == 2
    assert e.sql == "SELECT still_nope FROM orders"
    assert e.stage == "schema"
    assert e.message.startswith("no acceptable SQL after 2 attempts; last error (schema):\n")
    assert "Column 'still_nope' could not be resolved. Line: 1, Col: 17" in e.message
    tb = "\n".join(e._render_traceback_())
    assert "Last SQL:\n    SELECT still_nope FROM orders" in tb


def test_dry_run_and_explanation_from_the_same_answer(
    fresh_provider: FakeProvider, complete, sqlite_db
) -> None:
    fresh_provider.script(GOOD + "\n\nThis adds up order amounts for each region.")
    res = run_question("Totals", resolve(sqlite_db), complete, dry_run=True, explain=True)
    assert res.frame is None and res.dry_run
    assert res.explanation == "This adds up order amounts for each region."
    assert len(fresh_provider.received) == 1
    assert (
        "explain in 2-4 plain-language sentences"
        in fresh_provider.received[0].body["messages"][0]["content"]
    )


def test_explanation_by_a_second_call(fresh_provider: FakeProvider, complete, sqlite_db) -> None:
    fresh_provider.script(GOOD, "It sums the amounts per region.")
    res = run_question("Totals", resolve(sqlite_db), complete, explain=True)
    assert res.explanation == "It sums the amounts per region."
    assert "SUM(o.amount)" in fed_back(fresh_provider, 1)


def test_pinned_tables_must_exist(complete, sqlite_db) -> None:
    with pytest.raises(SqlAIError, match="--tables names unknown table") as ei:
        run_question("x", resolve(sqlite_db), complete, tables=["orders", "nosuch"])
    assert ei.value.stage == "usage"  # the user's mistake: an escalation chain stops there too


def test_row_cap(fresh_provider: FakeProvider, complete, duck_db) -> None:
    fresh_provider.script("SELECT * FROM range(1000) AS t(i)")
    res = run_question("numbers", resolve(duck_db), complete, max_rows=10)
    assert res.row_count == 10 and res.more


# -- second walls and time bounds, below the guard ----------------------------------------


# the postgres case: tests/e2e/test_sql_postgres_loop.py
@pytest.mark.parametrize("kind", ["sqlite", "duckdb"])
def test_statement_timeout(kind: str, request) -> None:
    if kind == "sqlite":
        db: DB = resolve(request.getfixturevalue("sqlite_db"))
        slow = (
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
        )
    else:
        db = resolve(request.getfixturevalue("duck_db"))
        slow = "SELECT count(*) FROM range(1000000000) a, range(1000000) b WHERE a.range + b.range = -1"
    check_statement_timeout(db, slow)


@pytest.mark.parametrize("url", ["duckdb:///:memory:", "sqlite://"])
def test_sqlalchemy_connection_left_in_a_transaction(url: str) -> None:
    # JupySQL keeps its SQLAlchemy connection inside an open transaction; DuckDB has no
    # savepoints, so we run inside it, and a failed statement must not poison it.
    eng = sa.create_engine(url)
    c = eng.connect()
    try:
        c.exec_driver_sql("CREATE TABLE t (a INT)")
        c.exec_driver_sql("INSERT INTO t VALUES (1)")
        c.commit()
        c.exec_driver_sql("SELECT 1")
        assert c.in_transaction()
        db = resolve(c)
        assert db.query("SELECT a FROM t").rows == [(1,)]
        with pytest.raises(Exception, match="nope"):  # the driver's own error class
            db.query("SELECT nope FROM t")
        assert db.query("SELECT a + 1 FROM t").rows == [(2,)]
        with pytest.raises(QueryTimeout):
            slow = (
                "SELECT count(*) FROM range(1000000000) a, range(1000000) b WHERE a.range + b.range = -1"
                if url.startswith("duckdb")
                else "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
            )
            db.query(slow, timeout_s=0.3)
        assert db.query("SELECT a FROM t").rows == [(1,)]
    finally:
        c.close()
        eng.dispose()
