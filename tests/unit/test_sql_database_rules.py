"""SQL the database would run is not refused: the check reads names as the target database does.

Against real SQLite and DuckDB (PostgreSQL, whose server it needs:
tests/e2e/test_sql_postgres_database_rules.py), with the model scripted through the fake provider:
each answer below is what models write and the database runs (or runs once respelled), and each
must come back as rows after one model call, with the footer note saying what was rewritten.
What is really wrong still goes back to the model, and the guard stays as strict.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import duckdb
import pytest

from rsql_magic.errors import SqlAIError
from rsql_sql.connections import resolve
from rsql_sql.loop import run_chain, run_question
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.sql_fixtures import (
    AIRLINES,
    check_limit_offset_comma_is_respelled,
    fed_back,
    sql,
)


@pytest.fixture
def sqlite_db() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:")
    conn.executescript(AIRLINES)
    yield conn
    conn.close()


@pytest.fixture
def duck_db() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    for stmt in AIRLINES.split(";"):
        if stmt.strip():
            con.execute(stmt)
    yield con
    con.close()


# -- SQLite: a double-quoted token that names no column is a string -------------------------


def test_sqlite_double_quoted_string_runs_as_sqlite_reads_it(
    fresh_provider: FakeProvider, complete, sqlite_db
) -> None:
    fresh_provider.script(sql('SELECT count(*) AS n FROM airlines WHERE Country = "USA"'))
    res = run_question("How many airlines are in the USA?", resolve(sqlite_db), complete)
    assert [a.stage for a in res.attempts] == ["ok"] and len(fresh_provider.received) == 1
    assert res.frame["n"].tolist() == [2]
    assert res.sql == "SELECT count(*) AS n FROM airlines WHERE Country = 'USA'"
    assert res.notes == ['read "USA" as a string, as SQLite does']


def test_sqlite_double_quoted_columns_stay_columns(
    fresh_provider: FakeProvider, complete, sqlite_db
) -> None:
    # "Airline" and "Country" name columns; "Delta" and "USA" name none
    fresh_provider.script(
        sql('SELECT "Airline" FROM airlines WHERE "Country" = "USA" AND "Airline" <> "Delta"')
    )
    res = run_question("US airlines other than Delta", resolve(sqlite_db), complete)
    assert res.frame["Airline"].tolist() == ["United"]
    assert (
        res.sql
        == 'SELECT "Airline" FROM airlines WHERE "Country" = \'USA\' AND "Airline" <> \'Delta\''
    )
    assert res.notes == ['read "USA", "Delta" as strings, as SQLite does']


def test_sqlite_a_quoted_name_of_another_table_is_still_fed_back(
    fresh_provider: FakeProvider, complete, sqlite_db
) -> None:
    # a table-qualified quoted name is a column reference, never a string: a real mistake
    fresh_provider.script(
        sql('SELECT a."Nation" FROM airlines a'), sql('SELECT a."Country" FROM airlines a')
    )
    res = run_question("Countries of airlines", resolve(sqlite_db), complete)
    assert [a.stage for a in res.attempts] == ["schema", "ok"]
    assert "Nation" in res.attempts[0].error
    # and the model was told: the error is what the second request says
    assert res.attempts[0].error in fed_back(fresh_provider, 1)


def test_the_rewritten_statement_is_guarded_again(
    fresh_provider: FakeProvider, complete, sqlite_db, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a string literal cannot smuggle anything: the guard still refuses a write around it
    fresh_provider.script(*[sql('DELETE FROM airlines WHERE Country = "USA"')] * 2)
    with pytest.raises(SqlAIError) as err:
        run_question("delete US airlines", resolve(sqlite_db), complete)
    assert err.value.stage == "refused"
    assert sqlite_db.execute("SELECT count(*) FROM airlines").fetchone() == (3,)
    # what runs is guarded, not what was written: a rewrite that went wrong (here, made to
    # turn a read the guard passed into a write) is refused in its turn, and nothing runs
    from rsql_sql.databases.sqlite import SQLiteDatabase

    def gone_wrong(self, sql_text, stmt, schema, errors):  # type: ignore[no-untyped-def]
        return "DELETE FROM airlines", "read as SQLite reads it"

    monkeypatch.setattr(SQLiteDatabase, "as_the_database_reads", gone_wrong)
    fresh_provider.script(*[sql('SELECT "Airline" FROM airlines WHERE "Country" = "USA"')] * 2)
    with pytest.raises(SqlAIError) as err:
        run_question("US airlines", resolve(sqlite_db), complete)
    assert err.value.stage == "refused" and "DELETE is not read-only" in str(err.value), err.value
    assert sqlite_db.execute("SELECT count(*) FROM airlines").fetchone() == (3,)


def test_a_double_quoted_string_holding_quotes_stays_one_literal(
    fresh_provider: FakeProvider, complete, sqlite_db
) -> None:
    # the token's text becomes one literal, its single quotes doubled: it cannot end the string
    fresh_provider.script(
        sql(
            "SELECT count(*) AS n FROM airlines WHERE Country = \"x' OR '1'='1\" OR Country = \"it's\""
        )
    )
    res = run_question("airlines of a strange country", resolve(sqlite_db), complete)
    assert res.frame["n"].tolist() == [0]
    assert res.sql.endswith("WHERE Country = 'x'' OR ''1''=''1' OR Country = 'it''s'")


def test_only_the_token_sqlite_reads_as_a_string_is_rewritten(
    fresh_provider: FakeProvider, complete, sqlite_db
) -> None:
    # "Airline" in the subquery names a column there; the outer one names none of pets
    sqlite_db.executescript(
        "CREATE TABLE pets (id INTEGER, kind TEXT); INSERT INTO pets VALUES (1, 'Delta');"
    )
    fresh_provider.script(
        sql(
            'SELECT kind FROM pets WHERE "Airline" IN (SELECT "Airline" FROM airlines WHERE uid = 1)'
        )
    )
    res = run_question("pets", resolve(sqlite_db), complete)
    assert res.sql == (
        "SELECT kind FROM pets WHERE 'Airline' IN (SELECT \"Airline\" FROM airlines WHERE uid = 1)"
    )
    # as SQLite runs the original: the string 'Airline' is no airline's name
    assert res.frame["kind"].tolist() == []


def test_duckdb_double_quotes_are_identifiers_and_the_error_goes_back(
    fresh_provider: FakeProvider, complete, duck_db
) -> None:
    # DuckDB never reads "USA" as a string: that is the model's mistake to fix
    fresh_provider.script(
        sql('SELECT count(*) AS n FROM airlines WHERE Country = "USA"'),
        sql("SELECT count(*) AS n FROM airlines WHERE Country = 'USA'"),
    )
    res = run_question("How many airlines are in the USA?", resolve(duck_db), complete)
    assert [a.stage for a in res.attempts] == ["schema", "ok"]
    assert res.frame["n"].tolist() == [2]
    # and the model was told: the error naming "USA" is what the second request says
    assert "USA" in res.attempts[0].error
    assert res.attempts[0].error in fed_back(fresh_provider, 1)


# -- syntax of another dialect, respelled after the database rejects it ------------------------


# the postgres case: tests/e2e/test_sql_postgres_database_rules.py
@pytest.mark.parametrize("database", ["duckdb"])
def test_limit_offset_comma_is_respelled_for_postgres_and_duckdb(
    database: str, fresh_provider: FakeProvider, complete, duck_db
) -> None:
    check_limit_offset_comma_is_respelled(duck_db, fresh_provider, complete)


def test_ilike_on_sqlite_is_respelled(fresh_provider: FakeProvider, complete, sqlite_db) -> None:
    fresh_provider.script(sql("SELECT Airline FROM airlines WHERE Airline ILIKE '%UNITED%'"))
    res = run_question("airlines named like united", resolve(sqlite_db), complete)
    assert len(fresh_provider.received) == 1
    assert res.frame["Airline"].tolist() == ["United"]
    assert "ILIKE" not in res.sql.upper()


# -- escalation: the next model only when the first one's SQL still fails --------------------


def test_a_chain_escalates_only_after_the_first_model_fails_its_retries(
    fresh_provider: FakeProvider, complete, sqlite_db
) -> None:
    fresh_provider.script(
        sql("SELECT nation FROM airlines"),
        sql("SELECT nation FROM airlines"),  # cheap: wrong twice
        sql("SELECT Country FROM airlines ORDER BY uid"),  # strong: right
    )
    res = run_chain(
        "countries", resolve(sqlite_db), [("cheap", complete), ("strong", complete)], max_retries=1
    )
    assert res.model == "strong"
    assert [(e.model, e.stage) for e in res.escalations] == [("cheap", "schema")]
    assert [a.stage for a in res.attempts] == ["schema", "schema", "ok"]
    assert res.frame["Country"].tolist() == ["USA", "Germany", "USA"]

    # a right first answer never reaches the second model
    fresh_provider.script(sql("SELECT uid FROM airlines"))
    before = len(fresh_provider.received)
    res = run_chain("ids", resolve(sqlite_db), [("cheap", complete), ("strong", complete)])
    assert (
        res.model == "cheap"
        and res.escalations == []
        and len(fresh_provider.received) == before + 1
    )
