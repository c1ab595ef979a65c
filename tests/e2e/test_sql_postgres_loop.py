"""The %%sql_ai loop against a real PostgreSQL server (a database of this module's own), with
a scripted model: another dialect's syntax is transpiled, a DROP TABLE is refused and the table
survives, the database's errors and timeouts are fed back, --allow-write commits; below the
guard, a READ ONLY transaction and statement timeouts hold on SQLAlchemy engines and on raw
psycopg connections in every transaction state, which are left as the user had them.

The same loop on SQLite and DuckDB: tests/unit/test_sql_loop.py.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from rsql_magic.errors import QueryTimeout
from rsql_sql.connections import DB, resolve
from rsql_sql.loop import run_question
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.services import pg_engine
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


@pytest.fixture(scope="module")
def pg_shop(pg_url: str) -> sa.Engine:
    eng = pg_engine(pg_url)
    with eng.begin() as c:
        for stmt in SHOP.split(";"):
            if stmt.strip():
                c.exec_driver_sql(stmt)
    return eng


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


def test_allow_write_runs_and_commits(fresh_provider: FakeProvider, complete, pg_url) -> None:
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


# -- second walls and time bounds, below the guard ----------------------------------------


def test_read_only_transaction_and_query_only(pg_shop, sqlite_db) -> None:
    # Even a statement that slipped past the guard cannot write: the drivers refuse it.
    with pytest.raises(Exception, match="read-only transaction"):
        resolve(pg_shop).query("DELETE FROM orders", read_only=True)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        resolve(sqlite_db).query("DELETE FROM orders", read_only=True)
    assert sqlite_db.execute("SELECT count(*) FROM orders").fetchone()[0] == 4
    sqlite_db.execute("DELETE FROM orders WHERE id = 4")  # and query_only was switched back off


# the sqlite and duckdb cases: tests/unit/test_sql_loop.py
@pytest.mark.parametrize("kind", ["postgres"])
def test_statement_timeout(kind: str, pg_shop) -> None:
    db: DB = resolve(pg_shop)
    slow = "SELECT pg_sleep(30)"
    check_statement_timeout(db, slow)


def test_timeout_is_fed_back(fresh_provider: FakeProvider, complete, pg_shop) -> None:
    # pg_sleep is off the allowlist (it only holds the connection): a query that really works
    fresh_provider.script("SELECT count(*) AS n FROM generate_series(1, 1000000000) AS g", GOOD)
    res = run_question("x", resolve(pg_shop), complete, timeout_s=0.5)
    assert res.attempts[0].stage == "timeout"
    assert "statement cancelled after 0.5 s. Make the query cheaper" in fed_back(fresh_provider, 1)
    assert totals(res.frame) == EXPECTED


@pytest.mark.parametrize("mode", ["autocommit", "implicit", "user_transaction"])
def test_raw_psycopg_connection_in_every_transaction_state(mode: str, pg_shop, pg_url) -> None:
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
