"""%%sql_ai when the model is hostile: every attack seen against the guard, on real databases.

Two walls, each tested on its own: the guard (an allowlist of read-only node kinds and pure
functions, per dialect) refuses before anything runs; the database's own walls (SQLite
query_only and an authorizer, DuckDB's own parser, a read-only transaction and a DataFrames
connection without file access) stop the same attacks when the guard is bypassed (``run_query``
is the executor of checked statements). Errors sent back to the model carry no data.
PostgreSQL's walls (a READ ONLY transaction and a role) need its server:
tests/e2e/test_sql_postgres_security.py.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from rsql_magic.errors import Refused, SqlAIError
from rsql_sql.checks.guard import check_statements
from rsql_sql.checks.validate import check_sql
from rsql_sql.connections import FramesDB, resolve
from rsql_sql.execute import WITHHELD, sanitize_error
from rsql_sql.parse import parse_statements
from rsql_sql.policy import SqlPolicy
from tests.helpers import require
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.sql_fixtures import (
    GOOD,
    SECRET,
    U_KILL,
    U_READ,
    cell,
    check_errors_sent_back_carry_no_data,
    everything_sent,
    magic_shell,
    run,
)

# SQLite's authorizer refusals: at prepare time ("not authorized") or at run time
DENIED = "not authorized|authorization denied"


def guard(sql: str, dialect: str, extra: frozenset[str] = frozenset()) -> None:
    check_statements(parse_statements(sql, dialect), dialect, allowed_functions=extra, sql=sql)


def refusal(sql: str, dialect: str, extra: frozenset[str] = frozenset()) -> str:
    with pytest.raises(Refused) as ei:
        guard(sql, dialect, extra)
    msg = ei.value.message
    assert msg.startswith("Refused: ") and "nothing ran" in msg
    return msg


# -- the guard: an allowlist --------------------------------------------------------------


@pytest.mark.parametrize(
    "sql,dialect,says,col,token",
    [
        (U_READ, "postgres", 'U&"..." Unicode escapes hide a call of pg_read_file()', 8, "U&"),
        (
            U_KILL,
            "postgres",
            'U&"..." Unicode escapes hide a call of pg_terminate_backend()',
            8,
            "U&",
        ),
        (
            "SELECT U&'\\0041' AS a",
            "postgres",
            "U&'...' Unicode escapes are not accepted",
            16,
            "U&'",
        ),
        (
            "SELECT query_to_xml('select pg_read_file(''/etc/passwd'')', true, true, '')",
            "postgres",
            "query_to_xml() runs SQL from a string",
            19,
            "query_to_xml",
        ),
        ("SELECT nextval('s')", "postgres", "nextval() has side effects", 14, "nextval"),
        ("SELECT setval('s', 5)", "postgres", "setval() has side effects", 13, "setval"),
        (
            "SELECT pg_try_advisory_lock(1)",
            "postgres",
            "pg_try_advisory_lock() has side effects",
            27,
            "pg_try_advisory_lock",
        ),
        (
            "SELECT pg_stat_reset()",
            "postgres",
            "pg_stat_reset() has side effects",
            20,
            "pg_stat_reset",
        ),
        (
            "SELECT pg_read_file('/etc/passwd')",
            "postgres",
            "pg_read_file() reads or writes files",
            19,
            "pg_read_file",
        ),
        (
            "SELECT pg_catalog.lower('A')",
            "postgres",
            "a schema-qualified function call",
            23,
            "lower",
        ),
        (
            "SELECT frobnicate(1)",
            "postgres",
            "frobnicate() is not a known read-only function",
            17,
            "frobnicate",
        ),
        (
            "SELECT * FROM read_text('/etc/passwd')",
            "duckdb",
            "read_text() reads or writes files",
            23,
            "read_text",
        ),
        ("SELECT content FROM read_text('/etc/passwd')", "duckdb", "read_text()", 29, "read_text"),
        (
            "SELECT * FROM read_csv('/etc/passwd')",
            "duckdb",
            "read_csv() reads or writes files",
            22,
            "read_csv",
        ),
        (
            "SELECT * FROM read_blob('/etc/passwd')",
            "duckdb",
            "read_blob() reads or writes files",
            23,
            "read_blob",
        ),
        ("SELECT * FROM glob('~/.*')", "duckdb", "glob() reads or writes files", 18, "glob"),
        (
            "SELECT * FROM query('SELECT 42')",
            "duckdb",
            "query() runs SQL from a string",
            19,
            "query",
        ),
        ("SELECT * FROM '/etc/passwd'", "duckdb", "looks like a file path", 27, "'/etc/passwd'"),
        (
            "SELECT readfile('/etc/passwd')",
            "sqlite",
            "readfile() reads or writes files",
            15,
            "readfile",
        ),
        (
            "SELECT load_extension('x')",
            "sqlite",
            "load_extension() reads or writes files",
            21,
            "load_extension",
        ),
    ],
)
def test_guard_refuses_every_attack_naming_the_token(
    sql: str, dialect: str, says: str, col: int, token: str
) -> None:
    msg = refusal(sql, dialect)
    assert says in msg
    head, src, marks = msg.split("\n")
    assert head.endswith(f"Line: 1, Col: {col}")
    # the caret line sits under the offending token of the statement
    assert src == f"  {sql}"
    start = marks.index("^") - 2
    assert sql[start : start + len(marks.strip())].startswith(token)


@pytest.mark.parametrize(
    "sql,says",
    [
        ("SELECT * FROM t FOR UPDATE", "FOR UPDATE / FOR SHARE (row locks)"),
        ("SELECT a FROM t WHERE b = $1", "Parameter (`$1`) is not one of the read-only constructs"),
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "the statement holds a DELETE"),
        ("SHOW search_path; SELECT 1", "the answer holds 2 statements"),
    ],
)
def test_guard_refuses_nodes_outside_the_allowlist(sql: str, says: str) -> None:
    assert says in refusal(sql, "postgres")


@pytest.mark.parametrize(
    "dialect,sql",
    [
        (
            "postgres",
            "SELECT date_trunc('month', created_at) AS m, extract(year FROM now()) AS y, "
            "to_char(now(), 'YYYY'), string_agg(name, ', ' ORDER BY name), count(*), "
            "round(avg(amount)::numeric, 2), coalesce(max(amount), 0), min(amount), sum(amount) "
            "FROM t GROUP BY 1, 2",
        ),
        (
            "postgres",
            "SELECT row_number() OVER w, rank() OVER w, dense_rank() OVER w, lag(a) OVER w, "
            "lead(a, 1) OVER w, count(*) FILTER (WHERE a > 1) OVER (PARTITION BY b) "
            "FROM t WINDOW w AS (ORDER BY a)",
        ),
        (
            "postgres",
            "SELECT CASE WHEN a > 1 THEN lower(s) ELSE upper(s) END, substr(s, 1, 2), length(s), "
            "a::int, CAST(b AS numeric(10, 2)), x ->> 'k', date_part('dow', d), age(d), "
            "now() - interval '7 days', a BETWEEN 1 AND 2, s ILIKE 'x%', a IS DISTINCT FROM b "
            "FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.id = t.id) AND a IN (1, 2)",
        ),
        ("postgres", "SELECT g FROM generate_series(1, 10) AS g"),
        ("postgres", "EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) FROM t"),
        ("postgres", "SHOW search_path"),
        (
            "sqlite",
            "SELECT strftime('%Y-%m', d), date(d, '+1 day'), julianday(d), group_concat(s, ','), "
            "substr(s, 1, 3), ifnull(a, 0), iif(a > 1, 'x', 'y'), instr(s, 'x'), total(a), "
            "printf('%.2f', a), round(a, 1), typeof(a) FROM t GROUP BY 1, 2, 3, 5, 6, 7, 8, 10, 11, 12",
        ),
        (
            "sqlite",
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT n FROM r",
        ),
        ("sqlite", "SELECT j.value FROM t, json_each(t.tags) AS j"),
        (
            "duckdb",
            "SELECT date_trunc('month', d), strftime(d, '%Y'), epoch(d), median(a), "
            "string_agg(s, ','), list_transform([1, 2], x -> x + 1), {'k': 1}, regexp_matches(s, 'a') "
            "FROM t GROUP BY ALL",
        ),
        ("duckdb", "SELECT range AS i FROM range(10)"),
        ("duckdb", "SELECT * EXCLUDE (a) FROM t USING SAMPLE 10%"),
        ("duckdb", "DESCRIBE t"),
        ("duckdb", "SHOW TABLES"),
    ],
)
def test_analytic_sql_passes(dialect: str, sql: str) -> None:
    guard(sql, dialect)


def test_allowed_functions_extend_the_allowlist_per_dialect() -> None:
    sql = "SELECT my_udf(a) FROM t"
    assert "my_udf() is not a known read-only function for duckdb" in refusal(sql, "duckdb")
    guard(sql, "duckdb", SqlPolicy.make(["duckdb:MY_UDF"]).allowed_functions)
    assert "my_udf()" in refusal(
        sql, "postgres", SqlPolicy.make(["duckdb:my_udf"]).allowed_functions
    )
    guard(sql, "postgres", SqlPolicy.make([" my_udf "]).allowed_functions)
    # a typed function sqlglot knows (read_csv) can be allowed by the name a user writes
    guard(
        "SELECT * FROM read_csv('x.csv')",
        "duckdb",
        SqlPolicy.make(["read_csv"]).allowed_functions,
    )


def test_check_sql_passes_the_extension_through() -> None:
    with pytest.raises(Refused):
        check_sql("SELECT my_udf(1)", None, "sqlite")
    assert check_sql("SELECT my_udf(1)", None, "sqlite", allowed_functions=frozenset({"my_udf"}))


# -- SQLite: the second wall ---------------------------------------------------------------


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(tmp_path / "shop.db")
    conn.executescript(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, secret TEXT);"
        f"INSERT INTO t VALUES (1, '{SECRET}'), (2, 'b');"
    )
    conn.commit()
    yield conn
    conn.close()


def test_sqlite_second_wall_stops_files_pragmas_and_writes(
    sqlite_file: sqlite3.Connection, tmp_path: Path
) -> None:
    db = resolve(sqlite_file)
    attached, vacuumed = tmp_path / "attached.db", tmp_path / "vacuumed.db"
    for sql in (
        f"ATTACH '{attached}' AS x",
        f"VACUUM INTO '{vacuumed}'",
        "PRAGMA writable_schema = 1",
        "DELETE FROM t",
        "DETACH main",
    ):
        with pytest.raises(sqlite3.DatabaseError, match=DENIED):
            run(db, sql)
    assert not attached.exists() and not vacuumed.exists()
    assert sqlite_file.execute("PRAGMA writable_schema").fetchone()[0] == 0
    assert sqlite_file.execute("SELECT count(*) FROM t").fetchone()[0] == 2
    # reads and allowlisted functions still work, json_each included
    assert run(db, "SELECT upper(secret) FROM t WHERE id = 2").frame.iloc[0, 0] == "B"
    assert run(db, "SELECT count(*) FROM json_each('[1, 2, 3]')").frame.iloc[0, 0] == 3
    # the walls are gone afterwards: the user's own connection is as it was
    assert sqlite_file.execute("PRAGMA query_only").fetchone()[0] == 0
    sqlite_file.execute(f"ATTACH '{attached}' AS mine")
    assert attached.exists()


def test_sqlite_authorizer_refuses_functions_off_the_allowlist(
    sqlite_file: sqlite3.Connection,
) -> None:
    calls: list[int] = []
    sqlite_file.create_function("side_effect", 1, lambda x: calls.append(x) or x)
    db = resolve(sqlite_file)
    with pytest.raises(sqlite3.DatabaseError, match=DENIED):
        run(db, "SELECT side_effect(id) FROM t")
    assert calls == []
    policy = SqlPolicy.make(["sqlite:side_effect"])
    assert run(db, "SELECT side_effect(id) AS v FROM t ORDER BY id", policy).frame[
        "v"
    ].tolist() == [1, 2]
    assert calls == [1, 2]


def test_sqlite_inside_the_users_open_transaction(sqlite_file: sqlite3.Connection) -> None:
    sqlite_file.execute("INSERT INTO t VALUES (3, 'pending')")
    assert sqlite_file.in_transaction
    db = resolve(sqlite_file)
    with pytest.raises(sqlite3.DatabaseError):
        run(db, "DELETE FROM t")
    with pytest.raises(sqlite3.DatabaseError, match=DENIED):
        run(db, "PRAGMA writable_schema = 1")
    # the user's transaction is untouched: still open, the pending row is there and commits
    assert sqlite_file.in_transaction
    assert run(db, "SELECT count(*) FROM t").frame.iloc[0, 0] == 3
    sqlite_file.commit()
    assert sqlite_file.execute("SELECT count(*) FROM t").fetchone()[0] == 3


def test_sqlite_through_a_sqlalchemy_url(tmp_path: Path) -> None:
    path = tmp_path / "u.db"
    sqlite3.connect(path).executescript("CREATE TABLE t (id INT); INSERT INTO t VALUES (1);")
    db = resolve(f"sqlite:///{path}")
    out = tmp_path / "copy.db"
    with pytest.raises(Exception, match=DENIED):
        run(db, f"VACUUM INTO '{out}'")
    assert not out.exists()
    assert run(db, "SELECT id FROM t").frame["id"].tolist() == [1]


# -- DuckDB: the second wall ---------------------------------------------------------------


@pytest.fixture
def duck(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(str(tmp_path / "shop.duckdb"))
    con.execute(
        f"CREATE TABLE t (id INTEGER, secret VARCHAR); INSERT INTO t VALUES (1, '{SECRET}'), (2, 'b')"
    )
    yield con
    con.close()


def duck_attacks(tmp_path: Path) -> list[tuple[str, str]]:
    return [
        ("DELETE FROM t", "Only SELECT statements"),
        (f"COPY t TO '{tmp_path / 'out.csv'}'", "Only SELECT statements"),
        (f"ATTACH '{tmp_path / 'x.duckdb'}' AS x", "Only SELECT statements"),
        ("SELECT * FROM read_text('/etc/passwd')", "table function read_text() is not allowed"),
        ("SELECT read_text('/etc/passwd')", "read_text() is not on the allowlist"),
        ("SELECT * FROM read_csv('/etc/passwd')", "table function read_csv() is not allowed"),
        ("SELECT * FROM read_blob('/etc/passwd')", "table function read_blob() is not allowed"),
        ("SELECT * FROM glob('/etc/*')", "table function glob() is not allowed"),
        ("SELECT * FROM '/etc/passwd'", "looks like a file"),
        ("SELECT getenv('HOME')", "getenv() is not on the allowlist"),
        ("SELECT 1; DELETE FROM t", "Only SELECT statements"),
    ]


def test_duckdb_users_connection_second_wall(
    duck: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    db = resolve(duck)
    for sql, says in duck_attacks(tmp_path):
        with pytest.raises(Refused) as ei:
            run(db, sql)
        assert ei.value.message.startswith("Refused by DuckDB's own parser: ")
        assert says in ei.value.message, sql
    assert duck.execute("SELECT count(*) FROM t").fetchone()[0] == 2
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "x.duckdb").exists()
    # analytic SQL still runs, and the read-only transaction is gone afterwards
    res = run(
        db, "SELECT id, upper(secret) AS s, row_number() OVER (ORDER BY id) AS n FROM t ORDER BY id"
    )
    assert res.frame["n"].tolist() == [1, 2]
    assert run(db, "SELECT i FROM range(3) AS r(i)").frame["i"].tolist() == [0, 1, 2]
    duck.execute("INSERT INTO t VALUES (3, 'c')")  # the user's connection still writes
    assert duck.execute("SELECT count(*) FROM t").fetchone()[0] == 3


def test_duckdb_read_only_transaction_holds_what_the_parser_check_lets_through(
    duck: duckdb.DuckDBPyConnection,
) -> None:
    """The third wall on its own: a function the admin allowed (``duckdb:nextval``) passes
    DuckDB's parser check, and the sequence it would advance is a write the read-only
    transaction refuses."""
    duck.execute("CREATE SEQUENCE s")
    db = resolve(duck)
    with pytest.raises(Refused, match="nextval\\(\\) is not on the allowlist"):
        run(db, "SELECT nextval('s') AS n")  # the parser check, as a control
    with pytest.raises(duckdb.TransactionException, match="read-only"):
        run(db, "SELECT nextval('s') AS n", SqlPolicy.make(["duckdb:nextval"]))
    assert duck.execute("SELECT nextval('s')").fetchone() == (1,)  # never advanced


def test_duckdb_inside_the_users_open_transaction(duck: duckdb.DuckDBPyConnection) -> None:
    duck.execute("BEGIN TRANSACTION")
    duck.execute("INSERT INTO t VALUES (3, 'pending')")
    db = resolve(duck)
    with pytest.raises(Refused):
        run(db, "DELETE FROM t")
    assert run(db, "SELECT count(*) AS n FROM t").frame["n"].tolist() == [3]
    duck.execute("COMMIT")  # the user's transaction was left to the user
    assert duck.execute("SELECT count(*) FROM t").fetchone()[0] == 3


def test_duckdb_through_sqlalchemy(tmp_path: Path) -> None:
    import sqlalchemy as sa

    eng = sa.create_engine(f"duckdb:///{tmp_path / 'sa.duckdb'}")
    try:
        with eng.begin() as c:
            c.exec_driver_sql("CREATE TABLE t (id INTEGER)")
            c.exec_driver_sql("INSERT INTO t VALUES (1), (2)")
        db = resolve(eng)
        for sql in ("DELETE FROM t", "SELECT * FROM read_text('/etc/passwd')"):
            with pytest.raises(Refused):
                run(db, sql)
        assert run(db, "SELECT count(*) AS n FROM t").frame["n"].tolist() == [2]
    finally:
        eng.dispose()


@pytest.mark.parametrize("url", ["duckdb:///{dir}/j.duckdb", "sqlite:///{dir}/j.db"])
def test_jupysql_connection_meets_the_same_walls(url: str, tmp_path: Path) -> None:
    require("sql", reason="JupySQL: pip install jupysql")
    import sqlalchemy as sa
    from sql.connection import ConnectionManager, SQLAlchemyConnection

    eng = sa.create_engine(url.format(dir=tmp_path))
    with eng.begin() as c:
        c.exec_driver_sql("CREATE TABLE t (id INTEGER)")
        c.exec_driver_sql("INSERT INTO t VALUES (1), (2)")
    before = ConnectionManager.current
    alias = f"sec_{secrets.token_hex(3)}"
    conn = SQLAlchemyConnection(eng, alias=alias)  # as `%sql URL --alias` makes it
    try:
        db = resolve(conn)
        out = tmp_path / "out.db"
        for sql in ("DELETE FROM t", f"VACUUM INTO '{out}'", f"ATTACH '{out}' AS x"):
            with pytest.raises((Refused, sqlite3.DatabaseError)):
                run(db, sql)
        assert not out.exists()
        assert run(db, "SELECT count(*) AS n FROM t").frame["n"].tolist() == [2]
    finally:
        ConnectionManager.connections.pop(alias, None)
        ConnectionManager.current = before
        conn.close()
        eng.dispose()


def test_dataframes_connection_cannot_reach_files_or_unlock_itself(tmp_path: Path) -> None:
    db = FramesDB({"sales": pd.DataFrame({"region": ["n", "s"], "amount": [1.0, 2.0]})})
    out = tmp_path / "leak.csv"
    # even the raw connection, past every check of ours, cannot touch files
    for sql in (
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM glob('/etc/*')",
        f"COPY (SELECT 1) TO '{out}'",
        f"ATTACH '{tmp_path / 'x.duckdb'}' AS x",
    ):
        with pytest.raises(duckdb.PermissionException):
            db.raw.execute(sql)
    with pytest.raises(duckdb.InvalidInputException, match="locked"):
        db.raw.execute("SET enable_external_access = true")
    assert not out.exists()
    # the catalog path (our own queries, no policy) is held by the same connection settings
    with pytest.raises(duckdb.PermissionException):
        db.query("SELECT * FROM read_text('/etc/passwd')")
    with pytest.raises(Refused):
        run(db, "DELETE FROM sales")
    assert run(db, "SELECT sum(amount) AS s FROM sales").frame["s"].tolist() == [3.0]


# -- the loop: attacks end refused, and no data reaches the model --------------------------


# the postgres case: tests/e2e/test_sql_postgres_security.py
@pytest.mark.parametrize("kind", ["duckdb"])
def test_database_errors_sent_back_carry_no_data(
    kind: str, fresh_provider: FakeProvider, complete, tmp_path
) -> None:
    # The model makes the database quote a value in its error: CAST(secret AS int).
    fresh_provider.script("```sql\nSELECT CAST(secret AS int) AS n FROM t\n```", GOOD)
    conn = duckdb.connect(str(tmp_path / "e.duckdb"))
    conn.execute(
        f"CREATE TABLE t (id INTEGER, secret VARCHAR); INSERT INTO t VALUES (1, '{SECRET}'), (2, 'b')"
    )
    check_errors_sent_back_carry_no_data(kind, conn, fresh_provider, complete)


def test_sanitize_error_keeps_what_the_model_wrote() -> None:
    sql = "SELECT amount * 1000 FROM orders WHERE region = 'north'"
    msg = (
        'InvalidTextRepresentation: invalid input syntax for type integer: "s3cr3t 4242"\n'
        "LINE 1: SELECT amount * 1000 FROM orders WHERE region = 'north'\n"
        "               ^\n"
        "DETAIL:  Failing row contains (7, s3cr3t, 4242).\n"
        "HINT:  value 'north' at position 12, and 31337 or 'other'"
    )
    out = sanitize_error(msg, sql)
    assert "s3cr3t" not in out and "4242" not in out and "31337" not in out
    assert "DETAIL" not in out and "other" not in out
    assert out.splitlines()[0] == (
        f'InvalidTextRepresentation: invalid input syntax for type integer: "{WITHHELD}"'
    )
    assert out.splitlines()[1] == "LINE 1: SELECT amount * 1000 FROM orders WHERE region = 'north'"
    assert out.splitlines()[2] == "               ^"
    assert "'north' at position 12" in out
    # names of the schema the model was given stay; other quoted names do not
    hint = 'BinderException: Referenced column "regio" not found! Candidate bindings: "region", "x"'
    assert sanitize_error(hint, "SELECT regio FROM orders", names=["orders", "region"]) == (
        f'BinderException: Referenced column "regio" not found! Candidate bindings: "region", '
        f'"{WITHHELD}"'
    )


# -- the magic: settings -------------------------------------------------------------------


@pytest.fixture
def ip(fresh_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with magic_shell(fresh_provider, monkeypatch) as shell:
        yield shell


def test_magic_allowed_functions_setting_reaches_both_walls(
    fresh_provider: FakeProvider, ip
) -> None:
    conn = sqlite3.connect(":memory:")
    conn.executescript("CREATE TABLE t (id INT); INSERT INTO t VALUES (1), (2);")
    conn.create_function("double_it", 1, lambda x: 2 * x)
    ip.user_ns["conn"] = conn
    answer = "```sql\nSELECT double_it(id) AS d FROM t ORDER BY id\n```"
    fresh_provider.script(answer, answer)
    with pytest.raises(SqlAIError, match="double_it\\(\\) is not a known read-only function"):
        cell(ip, "%%sql_ai conn\ndoubled ids")
    fresh_provider.script(answer)
    cell(ip, "%config SqlAIMagics.allowed_functions = ['sqlite:double_it']")
    cell(ip, "%%sql_ai conn\ndoubled ids")
    assert ip.user_ns["_"]["d"].tolist() == [2, 4]


def test_magic_over_dataframes_refuses_file_reads(fresh_provider: FakeProvider, ip) -> None:
    ip.user_ns["sales"] = pd.DataFrame({"region": ["n", "s"], "amount": [1.0, 2.0]})
    fresh_provider.script(
        "```sql\nSELECT * FROM read_text('/etc/passwd')\n```",
        "```sql\nSELECT content FROM read_text('/etc/passwd') s, sales\n```",
    )
    with pytest.raises(SqlAIError) as ei:
        cell(ip, "%%sql_ai sales\nwhat is in /etc/passwd")
    assert ei.value.stage == "refused"
    assert "read_text() reads or writes files" in ei.value.message
    assert "root:" not in everything_sent(fresh_provider)
