"""SQL the database would run is not refused on PostgreSQL: unquoted names fold to lower case, so
mixed-case names the model left unquoted are quoted as the catalog spells them (but not names
the statement itself defines), and another dialect's `LIMIT 1, 2` is respelled after the server
rejects it; each after one model call, with the footer note saying what was rewritten. Against
a real PostgreSQL server (a database of this module's own).

The same rules on SQLite and DuckDB: tests/unit/test_sql_database_rules.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from rsql_sql.connections import resolve
from rsql_sql.loop import run_question
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.services import pg_engine
from tests.helpers.sql_fixtures import AIRLINES, check_limit_offset_comma_is_respelled, sql


@pytest.fixture(scope="module")
def pg_airlines(pg_url: str) -> Iterator[sa.Engine]:
    eng = pg_engine(pg_url)
    with eng.begin() as c:
        c.exec_driver_sql("DROP TABLE IF EXISTS airlines")
        for stmt in AIRLINES.split(";"):
            if stmt.strip():
                c.exec_driver_sql(stmt)
    yield eng
    with eng.begin() as c:
        c.exec_driver_sql("DROP TABLE IF EXISTS airlines")


# -- syntax of another dialect, respelled after the database rejects it ------------------------


# the duckdb case: tests/unit/test_sql_database_rules.py
@pytest.mark.parametrize("database", ["postgres"])
def test_limit_offset_comma_is_respelled_for_postgres_and_duckdb(
    database: str, fresh_provider: FakeProvider, complete, pg_airlines
) -> None:
    check_limit_offset_comma_is_respelled(pg_airlines, fresh_provider, complete)


# -- PostgreSQL: unquoted names fold to lower case ------------------------------------------


def test_postgres_mixed_case_names_are_quoted_as_the_catalog_spells_them(
    fresh_provider: FakeProvider, complete, pg_airlines
) -> None:
    fresh_provider.script(
        sql("SELECT Airline FROM airlines WHERE Country = 'USA' ORDER BY Airline")
    )
    res = run_question("US airlines", resolve(pg_airlines), complete)
    assert len(fresh_provider.received) == 1
    assert res.frame.iloc[:, 0].tolist() == ["Delta", "United"]
    assert res.sql == 'SELECT "Airline" FROM airlines WHERE "Country" = \'USA\' ORDER BY "Airline"'
    assert (
        res.notes
        and '"Airline", "Country"' in res.notes[0]
        and "folds unquoted names" in res.notes[0]
    )


def test_postgres_leaves_names_the_statement_defines(
    fresh_provider: FakeProvider, complete, pg_airlines
) -> None:
    # a CTE and an alias that fold the same way where defined and used: nothing to quote,
    # while the table qualifier of a rewritten column name is a plain table name
    fresh_provider.script(
        sql(
            "WITH Usa AS (SELECT airlines.Airline AS Name FROM airlines WHERE airlines.Country = 'USA') "
            "SELECT Name FROM Usa ORDER BY Name"
        )
    )
    res = run_question("US airlines", resolve(pg_airlines), complete)
    assert len(fresh_provider.received) == 1
    assert res.frame.iloc[:, 0].tolist() == ["Delta", "United"]
    assert 'airlines."Airline" AS Name' in res.sql and "FROM Usa ORDER BY Name" in res.sql
