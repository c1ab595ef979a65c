"""The guard and SQLite's walls against generated SQL that reads two ways or grows without
bound (issue 24): refused before anything runs, and bounded by the database when the guard is
bypassed (``run_query`` is the executor of checked statements)."""

from __future__ import annotations

import sqlite3

import pytest

from rsql_magic.errors import Refused
from rsql_sql.checks.guard import check_statements
from rsql_sql.connections import resolve
from rsql_sql.execute import run_query
from rsql_sql.parse import parse_statements
from rsql_sql.policy import SqlPolicy


def refusal(sql: str, dialect: str) -> str:
    with pytest.raises(Refused) as ei:
        check_statements(parse_statements(sql, dialect), dialect, sql=sql)
    assert "nothing ran" in ei.value.message
    return ei.value.message


def passes(sql: str, dialect: str) -> None:
    check_statements(parse_statements(sql, dialect), dialect, sql=sql)


@pytest.mark.parametrize("dialect", ["postgres", "mysql"])
def test_a_string_that_reads_two_ways_is_refused(dialect: str) -> None:
    sql = "SELECT '\\' AS q, '; COMMIT; CREATE TABLE pwned AS SELECT 1 AS x; -- ' AS z FROM t"
    if dialect == "mysql":  # MySQL reads escapes unless NO_BACKSLASH_ESCAPES: the mirror case
        sql = "SELECT 'a\\' ; DROP TABLE t; -- ' AS z FROM t"
    assert "backslash" in refusal(sql, dialect)


def test_backslashes_that_read_one_way_still_pass() -> None:
    passes("SELECT regexp_replace(name, '\\d+', '') FROM t", "postgres")
    passes("SELECT E'it\\'s' AS q FROM t", "postgres")
    passes("SELECT replace(path, '\\', '/') FROM t", "sqlite")  # SQLite never reads escapes


@pytest.mark.parametrize(
    "dialect,sql,says",
    [
        ("sqlite", "SELECT zeroblob(400000000)", "zeroblob() builds a value of any size"),
        ("sqlite", "SELECT printf('%400000000d', 1)", "printf()'s format asks for a width"),
        ("sqlite", "SELECT printf('%.*c', 9, 'x')", "takes a width from an argument"),
        ("postgres", "SELECT repeat(name, 30000000) FROM t", "repeat() builds a value as long"),
        ("postgres", "SELECT lpad(name, n) FROM t", "lpad() builds a value as long"),
        ("postgres", "SELECT format('%900000000s', name) FROM t", "format()'s format asks"),
        ("postgres", "SELECT pg_sleep(30)", "pg_sleep() only waits"),
        ("duckdb", "SELECT format('{:>2000000000}', 1)", "format()'s format asks"),
        ("duckdb", "SELECT len(range(300000000))", "as a value builds a list of 300,000,000"),
        ("duckdb", "SELECT unnest(generate_series(1, n)) FROM t", "as a value builds the whole"),
        # each width within bounds, their product not
        (
            "postgres",
            "SELECT repeat(repeat('x', 10000), 10000)",
            "repeat() inside repeat() builds a value of more",
        ),
        ("duckdb", "SELECT repeat(repeat('x', 10000), 10000)", "nested widths multiply"),
        ("sqlite", "SELECT printf('%9000s', printf('%9000s', 'x'))", "printf() inside printf()"),
        ("duckdb", "SELECT list_transform(range(10000), x -> range(10000))", "inside a lambda"),
    ],
)
def test_values_that_grow_in_one_step_are_refused(dialect: str, sql: str, says: str) -> None:
    assert says in refusal(sql, dialect)


def test_bounded_widths_pass() -> None:
    passes(
        "SELECT lpad(code, 6, '0'), repeat('#', least(n, 50)), printf('%.2f', a) FROM t", "sqlite"
    )
    passes("SELECT format('%-10s|', name), rpad(name, 20) FROM t", "postgres")
    passes("SELECT range(10), unnest(range(1, 5)) FROM range(1000000000000)", "duckdb")
    passes("SELECT repeat(repeat('ab', 10), 100), upper(printf('%d', n)) FROM t", "duckdb")
    passes("SELECT list_transform(range(10), x -> x * 2)", "duckdb")


def test_sqlite_caps_value_length_and_result_bytes_when_the_guard_is_bypassed() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO docs VALUES (?, ?)", [(i, "x" * 100_000) for i in range(100)])
    db = resolve(conn)
    # zeroblob allowed by the user: SQLite's own length limit still refuses 400 MB
    loose = SqlPolicy.make(["sqlite:zeroblob"], max_result_bytes=2_000_000)
    with pytest.raises(sqlite3.DataError, match="too big"):
        run_query(
            db, "SELECT length(zeroblob(400000000)) AS n", max_rows=10, timeout_s=5, policy=loose
        )
    result = run_query(db, "SELECT id, body FROM docs", max_rows=1000, timeout_s=5, policy=loose)
    assert result.capped_bytes == 2_000_000 and result.more
    assert 0 < len(result.frame) < 20
    # the connection's own limit is back afterwards
    assert conn.execute("SELECT length(zeroblob(5000000))").fetchone() == (5000000,)


def test_nested_values_count_in_full_against_the_byte_bound() -> None:
    import duckdb

    db = resolve(duckdb.connect())
    policy = SqlPolicy.make(max_result_bytes=1_000_000)
    # 10 kB a row, nested four lists deep: about 30 MB in all
    result = run_query(
        db,
        "SELECT [[[[repeat('x', 10000)]]]] AS v FROM range(3000)",
        max_rows=10_000,
        timeout_s=20,
        policy=policy,
    )
    assert result.capped_bytes == 1_000_000 and result.more
    assert 0 < len(result.frame) < 110
