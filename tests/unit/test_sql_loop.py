"""The %%sql_ai loop against real SQLite, DuckDB and PostgreSQL, with a scripted model.

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
from rsql_magic.sql.connections import DB, resolve
from rsql_magic.sql.loop import run_question
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.services import pg_engine
from tests.helpers.shop import GOOD, SHOP


@pytest.fixture
def sqlite_db() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:")
    conn.executescript(SHOP)
    yield conn
    conn.close()


@pytest.fixture
def duck_db() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    for stmt in SHOP.split(";"):
        if stmt.strip():
            con.execute(stmt)
    yield con
    con.close()


@pytest.fixture(scope="module")
def pg_shop(pg_url: str) -> sa.Engine:  # noqa: F811
    eng = pg_engine(pg_url)
    with eng.begin() as c:
        for stmt in SHOP.split(";"):
            if stmt.strip():
                c.exec_driver_sql(stmt)
    return eng


def fed_back(fp: FakeProvider, i: int) -> str:
    """The last user message of request `i`: what the model was told."""
    return fp.received[i].body["messages"][-1]["content"]


def totals(df) -> dict[str, float]:
    return {r: float(t) for r, t in zip(df["region"], df["total"], strict=True)}


EXPECTED = {"north": 130.5, "south": 7.25}


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


def test_postgres_tsql_top_is_transpiled_without_a_retry(
    fresh_provider: FakeProvider, complete, pg_shop
) -> None:
    fresh_provider.script(
        "```sql\nSELECT TOP 2 name, region FROM customers ORDER BY name DESC\n```"
    )
    res = run_question("Last two customers by name", resolve(pg_shop), complete)
    assert len(fresh_provider.received) == 1  # sqlglot fixed it: no second model call
    assert res.transpiled_from == "tsql"
    assert (
        " ".join(res.sql.split())
        == "SELECT name, region FROM customers ORDER BY name DESC NULLS LAST LIMIT 2"
    )
    assert res.notes == ["transpiled from tsql to postgres with sqlglot"]
    assert res.frame.to_dict("list") == {"name": ["Cy", "Bob"], "region": ["north", "south"]}


def test_postgres_mysql_backticks_are_transpiled(
    fresh_provider: FakeProvider, complete, pg_shop
) -> None:
    fresh_provider.script(
        "SELECT `region`, COUNT(*) AS n FROM `customers` GROUP BY `region` ORDER BY 1"
    )
    res = run_question("Customers per region", resolve(pg_shop), complete)
    assert res.transpiled_from == "mysql"
    assert '"region"' in res.sql and "`" not in res.sql
    assert res.frame.to_dict("list") == {"region": ["north", "south"], "n": [2, 1]}


def test_postgres_drop_table_is_refused_and_table_survives(
    fresh_provider: FakeProvider, complete, pg_shop
) -> None:
    fresh_provider.script("```sql\nDROP TABLE orders;\n```", GOOD)
    res = run_question("Clean up and show totals per region", resolve(pg_shop), complete)
    assert [a.stage for a in res.attempts] == ["refused", "ok"]
    refusal = res.attempts[0].error
    assert refusal == (
        "Refused: DROP TABLE is not read-only (`DROP TABLE orders`). %%sql_ai runs only "
        "SELECT, WITH ... SELECT, EXPLAIN, SHOW and DESCRIBE unless --allow-write is given; "
        "nothing ran."
    )
    assert refusal in fed_back(fresh_provider, 1)
    with pg_shop.connect() as c:
        assert c.exec_driver_sql("SELECT count(*) FROM orders").scalar() == 4
    assert totals(res.frame) == EXPECTED


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
    assert sqlite_db.execute("SELECT count(*) FROM orders").fetchone()[0] == 4


def test_postgres_database_error_is_fed_back(
    fresh_provider: FakeProvider, complete, pg_shop
) -> None:
    # passes the schema check, fails in the database: text + integer
    fresh_provider.script("SELECT name + 1 AS x FROM customers", GOOD)
    res = run_question("Totals per region", resolve(pg_shop), complete)
    assert [a.stage for a in res.attempts] == ["database", "ok"]
    err = res.attempts[0].error
    assert err.startswith(
        "UndefinedFunction: operator does not exist: text + integer\nLINE 1: SELECT name + 1"
    )
    assert err in fed_back(fresh_provider, 1)
    assert "the database raised an error" in fed_back(fresh_provider, 1)
    assert totals(res.frame) == EXPECTED


def test_postgres_foreign_function_is_transpiled_after_the_database_rejects_it(
    fresh_provider: FakeProvider, complete, pg_shop
) -> None:
    fresh_provider.script("SELECT name, LEN(name) AS n FROM customers ORDER BY id")
    res = run_question("Name lengths", resolve(pg_shop), complete)
    assert len(fresh_provider.received) == 1
    assert res.transpiled_from == "tsql"
    assert "LENGTH(" in res.sql
    assert "transpiled LEN from tsql to postgres" in res.notes[0]
    assert res.frame["n"].tolist() == [3, 3, 2]


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


def test_allow_write_runs_and_commits(fresh_provider: FakeProvider, complete, pg_url) -> None:  # noqa: F811
    eng = pg_engine(pg_url)
    with eng.begin() as c:
        c.exec_driver_sql(
            "CREATE TABLE scratch (id int PRIMARY KEY); INSERT INTO scratch VALUES (1), (2)"
        )
    fresh_provider.script("DELETE FROM scratch WHERE id = 2")
    res = run_question("delete row 2", resolve(eng), complete, allow_write=True)
    assert res.attempts[-1].stage == "ok"
    with eng.connect() as c:
        assert c.exec_driver_sql("SELECT array_agg(id) FROM scratch").scalar() == [1]


def test_pinned_tables_must_exist(complete, sqlite_db) -> None:
    with pytest.raises(SqlAIError, match="--tables names unknown table") as ei:
        run_question("x", resolve(sqlite_db), complete, tables=["orders", "nosuch"])
    assert ei.value.stage == "usage"  # the user's mistake: an escalation chain stops there too


def test_row_cap(fresh_provider: FakeProvider, complete, duck_db) -> None:
    fresh_provider.script("SELECT * FROM range(1000) AS t(i)")
    res = run_question("numbers", resolve(duck_db), complete, max_rows=10)
    assert res.row_count == 10 and res.more


# -- second walls and time bounds, below the guard ----------------------------------------


def test_read_only_transaction_and_query_only(pg_shop, sqlite_db) -> None:
    # Even a statement that slipped past the guard cannot write: the drivers refuse it.
    with pytest.raises(Exception, match="read-only transaction"):
        resolve(pg_shop).query("DELETE FROM orders", read_only=True)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        resolve(sqlite_db).query("DELETE FROM orders", read_only=True)
    assert sqlite_db.execute("SELECT count(*) FROM orders").fetchone()[0] == 4
    sqlite_db.execute("DELETE FROM orders WHERE id = 4")  # and query_only was switched back off


@pytest.mark.parametrize("kind", ["sqlite", "duckdb", "postgres"])
def test_statement_timeout(kind: str, request) -> None:
    if kind == "sqlite":
        db: DB = resolve(request.getfixturevalue("sqlite_db"))
        slow = (
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
        )
    elif kind == "duckdb":
        db = resolve(request.getfixturevalue("duck_db"))
        slow = "SELECT count(*) FROM range(1000000000) a, range(1000000) b WHERE a.range + b.range = -1"
    else:
        db = resolve(request.getfixturevalue("pg_shop"))
        slow = "SELECT pg_sleep(30)"
    import time

    t0 = time.perf_counter()
    with pytest.raises(QueryTimeout, match="statement cancelled after 0.5 s"):
        db.query(slow, timeout_s=0.5)
    assert time.perf_counter() - t0 < 5
    # the connection is usable afterwards
    assert db.query("SELECT 1 AS one").rows == [(1,)]


def test_timeout_is_fed_back(fresh_provider: FakeProvider, complete, pg_shop) -> None:
    # pg_sleep is off the allowlist (it only holds the connection): a query that really works
    fresh_provider.script("SELECT count(*) AS n FROM generate_series(1, 1000000000) AS g", GOOD)
    res = run_question("x", resolve(pg_shop), complete, timeout_s=0.5)
    assert res.attempts[0].stage == "timeout"
    assert "statement cancelled after 0.5 s. Make the query cheaper" in fed_back(fresh_provider, 1)
    assert totals(res.frame) == EXPECTED


@pytest.mark.parametrize("mode", ["autocommit", "implicit", "user_transaction"])
def test_raw_psycopg_connection_in_every_transaction_state(mode: str, pg_shop, pg_url) -> None:  # noqa: F811
    import psycopg

    conn = psycopg.connect(pg_url.replace("postgresql+psycopg", "postgresql"))
    try:
        conn.autocommit = mode == "autocommit"
        if mode == "user_transaction":
            conn.execute("SELECT 1")  # the user's own transaction is open
        db = resolve(conn)
        assert db.query("SELECT count(*) FROM orders").rows == [(4,)]
        if mode != "user_transaction":  # READ ONLY cannot be set inside an open transaction
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                db.query("DELETE FROM orders")
        with pytest.raises(QueryTimeout):
            db.query("SELECT pg_sleep(10)", timeout_s=0.3)
        assert db.query("SELECT 2").rows == [(2,)]  # still usable after the error
        status = conn.info.transaction_status
        if mode == "user_transaction":
            assert status == psycopg.pq.TransactionStatus.INTRANS  # the user's tx, left open
            conn.rollback()
        else:
            assert status == psycopg.pq.TransactionStatus.IDLE  # nothing left open
        # the timeout did not outlive the call
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "0"
    finally:
        conn.close()
    with pg_shop.connect() as c:
        assert c.exec_driver_sql("SELECT count(*) FROM orders").scalar() == 4


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
