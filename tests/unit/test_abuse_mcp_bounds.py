"""Statements built to make the SQL checks themselves slow (issue 53, finding 3), and what the
warehouse tools read besides the served tables (the catalogs), on real SQLite and DuckDB.

sqlglot's qualification is quadratic in a statement's depth and in the columns its stars
expand to, and its parser recurses on parentheses: a 45 kB chain of ORs held an MCP worker for
14-16 s of CPU whatever the connection's `timeout_seconds`. Every caller of the checks
(`%%sql_ai`, the agent's tools, `rsql-mcp`, the proxy's MCP endpoint) passes through
``check_sql`` and ``parse_statements``: each statement's size, nesting, depth and parts are
bounded there before any check, a refusal names the bound, and the tools count the checks
against the call's time limit. What a statement may take within the bounds is measured here
too (the worst shapes found, at the bound).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

import duckdb
import pytest

from rsql_common.context_policy import ContextPolicy
from rsql_sql import defaults
from rsql_sql.checks.validate import check_sql
from rsql_sql.connections import DuckDB, SQLiteDB
from rsql_sql.errors import SqlAIError, SqlCheckError, SqlTooLarge
from rsql_sql.loop import run_question
from rsql_sql.parse import parse_statements
from rsql_sql.schema import capture_schema
from rsql_sql.warehouse import forget_schema, run_sql

# the finding's statement: a 45 kB chain of ORs
OR_CHAIN_45K = "SELECT * FROM t WHERE " + " OR ".join(f"a={i}" for i in range(4_900))
# under the size bound, but thousands of levels deep
OR_CHAIN_DEEP = "SELECT a FROM t WHERE " + " OR ".join("a=1" for _ in range(2_000))
# deeper than sqlglot's parser recurses (about 45 levels with Python's default limit)
PARENS_DEEP = "SELECT " + "(" * 60 + "a" + ")" * 60 + " FROM t"
# 80 stars over a table of 300 columns: 2 kB of text, 24,000 columns once expanded
STAR_CHAIN = (
    "WITH c0 AS (SELECT * FROM wide), "
    + ", ".join(f"c{i} AS (SELECT * FROM c{i - 1})" for i in range(1, 80))
    + " SELECT * FROM c79"
)
# a statement a busy check must not let start: it counts to ten million
SLOW_QUERY = (
    "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 10000000) "
    "SELECT count(*) AS n FROM s"
)


@pytest.fixture
def db() -> Iterator[SQLiteDB]:
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    conn.execute("CREATE TABLE t (a INTEGER, b TEXT, ssn TEXT)")
    conn.execute("CREATE TABLE u (a INTEGER, c TEXT)")
    conn.execute("CREATE TABLE wide (" + ", ".join(f"c{j} INTEGER" for j in range(300)) + ")")
    conn.execute("INSERT INTO t VALUES (1, 'x', 'SSN-1')")
    sqlite_db = SQLiteDB(conn)
    yield sqlite_db
    forget_schema(sqlite_db)
    conn.close()


def _timed_run(db: SQLiteDB, sql: str, **kw: Any) -> tuple[float, str, bool]:
    t0 = time.perf_counter()
    res = run_sql(db, sql, **kw)
    return time.perf_counter() - t0, res.text, bool(res.refused)


# -- the finding: refused at once, the bound named -------------------------------------------


def test_the_findings_45_kb_chain_of_ors_is_refused_at_once_naming_the_bound(db: SQLiteDB) -> None:
    took, text, refused = _timed_run(db, OR_CHAIN_45K, timeout_s=2)
    assert refused, text
    assert f"{len(OR_CHAIN_45K):,} characters" in text
    assert f"at most {defaults.SQL_MAX_CHARS:,}" in text and "nothing ran" in text.lower()
    assert took < 0.5, took


def test_a_chain_of_ors_under_the_size_bound_is_refused_for_its_depth(db: SQLiteDB) -> None:
    assert len(OR_CHAIN_DEEP) < defaults.SQL_MAX_CHARS
    took, text, refused = _timed_run(db, OR_CHAIN_DEEP, timeout_s=2)
    assert refused, text
    assert f"at most {defaults.SQL_MAX_DEPTH} levels" in text
    assert "^" in text  # pointing at where the statement passes the bound
    assert took < 1.5, took


def test_parentheses_deeper_than_the_parser_follows_are_a_clear_refusal_not_a_crash(
    db: SQLiteDB,
) -> None:
    took, text, refused = _timed_run(db, PARENS_DEEP)
    assert refused, text
    assert f"at most {defaults.SQL_MAX_NESTING} levels" in text and "^" in text
    assert took < 0.5, took


def test_stars_that_would_expand_past_the_bound_are_refused_before_they_expand(
    db: SQLiteDB,
) -> None:
    took, text, refused = _timed_run(db, STAR_CHAIN)
    assert refused, text
    assert f"at most {defaults.SQL_MAX_NODES:,}" in text and "name the columns" in text
    assert took < 0.5, took


def test_sql_ai_feeds_the_bound_back_to_the_model_and_runs_its_next_answer(
    db: SQLiteDB,
) -> None:
    answers = iter(
        [
            f"```sql\n{OR_CHAIN_45K}\n```",
            f"```sql\n{PARENS_DEEP}\n```",
            "```sql\nSELECT a FROM t WHERE a IN (1, 2)\n```",
        ]
    )
    asked: list[list[dict[str, str]]] = []

    def complete(messages: list[dict[str, str]]) -> str:
        asked.append(messages)
        return next(answers)

    t0 = time.perf_counter()
    res = run_question("rows with a in 1..4900", db, complete, max_retries=2)
    assert time.perf_counter() - t0 < 2
    assert res.frame is not None and res.frame["a"].tolist() == [1]
    assert [a.stage for a in res.attempts] == ["parse", "parse", "ok"]
    told = asked[1][-1]["content"]
    assert f"at most {defaults.SQL_MAX_CHARS:,} characters" in told
    assert f"at most {defaults.SQL_MAX_NESTING} levels" in asked[2][-1]["content"]


def test_sql_ai_never_crashes_on_a_statement_nested_past_the_parser() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a INTEGER)")
    with pytest.raises(SqlAIError) as ei:
        run_question("x", SQLiteDB(conn), lambda _m: f"```sql\n{PARENS_DEEP}\n```", max_retries=0)
    assert ei.value.stage == "parse" and "levels" in ei.value.message


# -- the whole call within its time limit ----------------------------------------------------


def test_the_check_counts_against_the_calls_time_limit(db: SQLiteDB) -> None:
    """A statement within the bounds that takes a while to check, then long to run: with a
    time limit shorter than the check, the statement never starts."""
    started: list[str] = []
    db.raw.set_trace_callback(started.append)
    wide = "SELECT " + ", ".join(f"a AS x{i}" for i in range(600)) + ", n FROM t, "
    sql = wide + f"({SLOW_QUERY}) AS slow"
    run_sql(db, "SELECT 1 AS warm")  # the schema is read once, outside the statement's time
    started.clear()
    t0 = time.perf_counter()
    res = run_sql(db, sql, timeout_s=0.02)
    took = time.perf_counter() - t0
    assert res.error and "time limit of 0.02 s" in res.text and "nothing ran" in res.text
    assert not any("RECURSIVE" in s for s in started), started
    assert took < 2, took


def test_a_slow_statement_is_cancelled_at_the_calls_time_limit(db: SQLiteDB) -> None:
    # the schema is read once, outside the statement's time: cold, beside another worker, its
    # 300-column table took 0.44 s of the 0.3 s, and the statement was refused unrun instead
    run_sql(db, "SELECT 1 AS warm")
    t0 = time.perf_counter()
    res = run_sql(db, SLOW_QUERY, timeout_s=0.3)
    assert res.error and "cancelled after 0.3 s" in res.text
    assert time.perf_counter() - t0 < 1.5


# -- the worst cases within the bounds -------------------------------------------------------


def _or_terms(n: int) -> str:
    return " OR ".join(f"a={i}" for i in range(n))


# The shapes found slowest per part of a statement (measured for issue 53), each as large as the
# bounds let it be: a deep chain then a wide list, a wide select list, a chain of CTEs, joins
# whose unqualified names are looked up in every source, a subquery per select item, names
# rewritten one by one, stars.
WORST_WITHIN_BOUNDS: dict[str, Callable[[int], str]] = {
    "deep then wide": lambda k: (
        f"SELECT a FROM t WHERE {_or_terms(80)} OR a IN (" + ", ".join(["a"] * k) + ")"
    ),
    "wide select": lambda k: "SELECT " + ", ".join(f"a AS x{i}" for i in range(k)) + " FROM t",
    "CTE chain": lambda k: (
        "WITH c0 AS (SELECT a FROM t), "
        + ", ".join(f"c{i} AS (SELECT a FROM c{i - 1})" for i in range(1, k))
        + f" SELECT a FROM c{k - 1}"
    ),
    "joins, names unqualified": lambda k: (
        "SELECT b FROM t "
        + " ".join(f"CROSS JOIN u AS u{i}" for i in range(k))
        + " WHERE "
        + " AND ".join(["b = 'x'"] * 80)
    ),
    "a subquery per item": lambda k: (
        "SELECT "
        + ", ".join(f"(SELECT max(a) FROM u WHERE u.a = t.a) AS s{i}" for i in range(k))
        + " FROM t"
    ),
    # SQLite reads a double-quoted name that resolves to nothing as a string: rewritten one at
    # a time, each rewrite qualifying the statement again
    "double-quoted strings to rewrite": lambda k: (
        "SELECT "
        + ", ".join(f"(SELECT max(a) FROM u WHERE u.a = t.a) AS s{i}" for i in range(k))
        + " FROM t WHERE "
        + " OR ".join(f'b = "v{i}"' for i in range(20))
    ),
    "stars at the bound": lambda k: (
        "WITH c0 AS (SELECT * FROM wide), "
        + ", ".join(f"c{i} AS (SELECT * FROM c{i - 1})" for i in range(1, k))
        + f" SELECT * FROM c{k - 1}"
    ),
}


def _largest_within_bounds(db: SQLiteDB, shape: Callable[[int], str]) -> str:
    """The largest `shape(k)` the bounds accept: a binary search on k, on the parse's bounds
    (milliseconds a try), then down to what the stars' bound accepts (refused at once)."""
    lo, hi, k_parsed = 1, 5_000, 0
    while lo <= hi:
        k = (lo + hi) // 2
        try:
            parse_statements(shape(k), "sqlite")
            k_parsed, lo = k, k + 1
        except SqlTooLarge:
            hi = k - 1
    schema = capture_schema(db)

    def within(k: int) -> bool:
        try:
            check_sql(shape(k), schema, "sqlite")
        except SqlTooLarge:
            return False
        except SqlCheckError:
            pass  # refused for what it reads, after every check ran
        return True

    if within(k_parsed):
        return shape(k_parsed)
    lo, hi, best = 1, k_parsed - 1, ""
    while lo <= hi:
        k = (lo + hi) // 2
        if within(k):
            best, lo = shape(k), k + 1
        else:
            hi = k - 1
    return best


@pytest.mark.parametrize("shape", list(WORST_WITHIN_BOUNDS))
def test_the_worst_statements_within_the_bounds_are_checked_in_about_a_second(
    db: SQLiteDB, shape: str
) -> None:
    sql = _largest_within_bounds(db, WORST_WITHIN_BOUNDS[shape])
    assert sql
    redacting = ContextPolicy(redact_columns=("ssn",))  # one more qualification of the statement
    took, text, _ = _timed_run(db, sql, timeout_s=30, policy=redacting)
    # about a second alone on one core (measured: 0.3-1.0 s; the finding's statement took 14-16
    # s): the margin is for a machine shared with other work
    assert took < 5, (shape, took, text[:200])


# -- what the tools read: the served tables, not the catalogs --------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT name, sql FROM sqlite_master",
        "SELECT name FROM sqlite_schema WHERE type = 'table'",
        "SELECT * FROM pragma_table_info('t')",
    ],
)
def test_sqlite_catalogs_are_not_read_by_the_tools(db: SQLiteDB, sql: str) -> None:
    res = run_sql(db, sql)
    assert res.refused and res.rows == [], res.text
    assert "search_schema" in res.text or "not a known read-only" in res.text


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT table_name FROM information_schema.tables",
        "SELECT * FROM duckdb_settings()",
        "SELECT database_name, path FROM duckdb_databases()",
        "SELECT name, value FROM pg_catalog.pg_settings",
        "SHOW TABLES",
        "SHOW ALL TABLES",
        "EXPLAIN SELECT table_name FROM information_schema.columns",
    ],
)
def test_duckdb_catalogs_and_settings_are_not_read_by_the_tools(sql: str) -> None:
    conn = duckdb.connect(":memory:")
    conn.execute("CREATE TABLE people (id INTEGER, name VARCHAR)")
    duck = DuckDB(conn)
    try:
        res = run_sql(duck, sql)
        assert res.refused and res.rows == [], res.text
        # by the rule for catalogs (or, for a table function, the guard's list), not because
        # the statement did not parse
        assert "search_schema" in res.text or "not a known read-only" in res.text, res.text
    finally:
        forget_schema(duck)
        conn.close()


def test_the_served_tables_still_run_and_describe(db: SQLiteDB) -> None:
    assert run_sql(db, "SELECT a, b FROM t").rows == [(1, "x")]
    assert not run_sql(db, "EXPLAIN SELECT a FROM t").refused
    assert run_sql(db, "SELECT count(*) AS n FROM t AS x JOIN u ON u.a = x.a").rows == [(0,)]


def test_the_kernel_agents_run_sql_refuses_a_deep_chain_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    from rsql_magic.agent.tools import KernelTools
    from rsql_magic.session import Session

    monkeypatch.setenv("RSQL_BATCH", "0")
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "rsql_magic")
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a INTEGER)")
    ip.user_ns["warehouse"] = conn
    try:
        # the work the refusal takes (this process's CPU), not the wall clock: parsing the chain
        # before refusing it is CPU, while a loaded machine stretches the wall clock of a quick
        # refusal past the bound (1.75 s once in a full run)
        t0 = time.process_time()
        res = KernelTools(Session.of(ip)).call(
            "run_sql", {"connection": "warehouse", "sql": OR_CHAIN_DEEP}
        )
        assert time.process_time() - t0 < 1.5
        assert res.error and f"at most {defaults.SQL_MAX_DEPTH} levels" in res.text
    finally:
        ip.user_ns.pop("warehouse", None)
        conn.close()
