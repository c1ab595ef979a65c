"""One module per SQL database, registered by name: each connection finds its database, every
database-specific fact comes from the database object, and no other module compares database names."""

from __future__ import annotations

import ast
import sqlite3
import warnings

import duckdb
import pandas as pd
import pytest
import sqlalchemy as sa

from rsql_magic.errors import BadConnection, Refused
from rsql_sql.checks.guard import check_statements
from rsql_sql.connections import resolve
from rsql_sql.databases import Database, database_for, database_for_url, databases
from rsql_sql.loop import dialect_label
from rsql_sql.parse import parse_statements
from rsql_sql.policy import SqlPolicy
from rsql_sql.schema import capture_schema
from tests.helpers import REPO


def test_each_connection_is_wrapped_by_its_database(tmp_path) -> None:
    path = tmp_path / "e.db"
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE t (a INTEGER PRIMARY KEY)")
    wrapped = {
        "sqlite3": resolve(sqlite3.connect(path)),
        "duckdb": resolve(duckdb.connect()),
        "sqlalchemy sqlite": resolve(f"sqlite:///{path}"),
        "sqlalchemy duckdb": resolve(sa.create_engine(f"duckdb:///{tmp_path / 'e.duckdb'}")),
        "frames": resolve({"df": pd.DataFrame({"a": [1]})}),
    }
    assert {k: db.database for k, db in wrapped.items()} == {
        "sqlite3": database_for("sqlite"),
        "duckdb": database_for("duckdb"),
        "sqlalchemy sqlite": database_for("sqlite"),
        "sqlalchemy duckdb": database_for("duckdb"),
        "frames": database_for("duckdb"),
    }
    assert [e.name for e in databases()] == ["sqlite", "duckdb", "postgres"]
    # DataFrames are tables of kind "dataframe" to the schema text
    assert [t.kind for t in capture_schema(wrapped["frames"]).tables] == ["dataframe"]
    assert [t.name for t in capture_schema(wrapped["sqlalchemy sqlite"]).tables] == ["t"]


def test_a_database_without_a_module_is_known_by_name_and_title() -> None:
    assert dialect_label("postgres") == "PostgreSQL"
    assert dialect_label("tsql") == "T-SQL (SQL Server)"
    assert dialect_label("snowflake") == "Snowflake"
    unknown = database_for("somedb")
    assert isinstance(unknown, Database) and unknown.title == "somedb"
    assert database_for("somedb") is unknown  # one object per name
    # the guard alone: the common pure functions, nothing database-specific
    check_statements(parse_statements("SELECT abs(-1)", "mysql"), "mysql", sql="SELECT abs(-1)")
    with pytest.raises(Refused, match="not a known read-only function for mysql"):
        check_statements(
            parse_statements("SELECT json_each('x')", "mysql"), "mysql", sql="SELECT json_each('x')"
        )


def test_the_database_decides_what_its_sql_may_call() -> None:
    # range() as a value builds its list at once only in DuckDB; the guard asks the database
    sql = "SELECT range(100000000)"
    with pytest.raises(Refused, match="as a value builds a list of 100,000,000"):
        check_statements(parse_statements(sql, "duckdb"), "duckdb", sql=sql)
    # SQLite's own functions are SQLite's: strftime runs there, not on PostgreSQL
    ok = "SELECT strftime('%Y', 'now')"
    check_statements(parse_statements(ok, "sqlite"), "sqlite", sql=ok)
    with pytest.raises(Refused):
        check_statements(parse_statements(ok, "postgres"), "postgres", sql=ok)


def test_the_sqlite_walls_hold_on_a_sqlalchemy_connection_too(tmp_path) -> None:
    db = resolve(f"sqlite:///{tmp_path / 'w.db'}")
    with pytest.raises(Exception, match="not authorized|prohibited"):
        db.query("SELECT load_extension('x')", policy=SqlPolicy())
    with pytest.raises(Exception, match="not authorized|readonly|read-only"):
        db.query("ATTACH 'x.db' AS x", policy=SqlPolicy())


def test_urls_open_read_only_as_their_database(tmp_path) -> None:
    assert database_for_url("sqlite:///x.db") is database_for("sqlite")
    assert database_for_url("DuckDB:///x.duckdb") is database_for("duckdb")
    assert database_for_url("postgres+psycopg://u@h/db") is database_for("postgres")
    assert database_for_url("mysql://u@h/db") is None
    assert database_for_url("no scheme") is None
    path = tmp_path / "ro.db"
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE t (a INTEGER)")
    db = database_for("sqlite").open_read_only(f"sqlite:///{path}", "SQLite ro")
    assert db.label == "SQLite ro" and db.rows("SELECT count(*) FROM t") == [(0,)]
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        db.query("INSERT INTO t VALUES (1)", read_only=False)
    with pytest.raises(BadConnection, match="no such file"):
        database_for("duckdb").open_read_only(f"duckdb:///{tmp_path / 'missing.duckdb'}", "x")
    with pytest.raises(BadConnection, match="not opened by URL"):
        database_for("mysql").open_read_only("mysql://u@h/db", "x")


_DATABASE_NAMES = {"sqlite", "duckdb", "postgres", "postgresql"}


def _name_comparisons(tree: ast.AST) -> list[int]:
    """Lines comparing something to a database's name (``== "duckdb"``, ``in ("sqlite", ...)``)."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        for right in node.comparators:
            values = right.elts if isinstance(right, ast.Tuple | ast.Set | ast.List) else [right]
            if any(isinstance(v, ast.Constant) and v.value in _DATABASE_NAMES for v in values):
                lines.append(node.lineno)
    return lines


def test_no_module_outside_the_databases_branches_on_a_database_name() -> None:
    # the databases' own modules may say their names; everyone else asks the database object
    found = {}
    for path in sorted((REPO / "rsql_magic").rglob("*.py")):
        if "databases" in path.relative_to(REPO).parts:
            continue
        lines = _name_comparisons(ast.parse(path.read_text()))
        if lines:
            found[str(path.relative_to(REPO))] = lines
    assert found == {}
    # and the check sees one
    assert _name_comparisons(ast.parse('if db.dialect == "duckdb":\n    pass\n')) == [1]


def test_a_database_file_is_told_by_its_first_bytes(tmp_path) -> None:
    """rsql-eval's --db FILE: the database whose files begin that way opens it, read-only."""
    from rsql_sql.databases import database_for_file, file_kinds

    lite, duck, text = tmp_path / "a.db", tmp_path / "a.duckdb", tmp_path / "a.txt"
    with sqlite3.connect(lite) as c:
        c.execute("CREATE TABLE t (a INTEGER)")
    duckdb.connect(str(duck)).close()
    text.write_text("SQLite format 3 is not this file")
    heads = {p.name: p.read_bytes()[:16] for p in (lite, duck, text)}
    assert database_for_file(heads["a.db"]) is database_for("sqlite")
    assert database_for_file(heads["a.duckdb"]) is database_for("duckdb")
    assert database_for_file(heads["a.txt"]) is None
    assert file_kinds() == "SQLite or DuckDB"


def test_a_superuser_connection_at_a_gone_ones_address_is_warned_of_too() -> None:
    """Generated SQL run as a PostgreSQL superuser warns once per connection; a new connection
    that CPython puts at the address of one that is gone is another connection (remembering
    id()s took it for the old one and never warned: a flaky end-to-end test)."""
    from rsql_sql.databases.postgres import postgres_walls
    from rsql_sql.errors import SuperuserWarning

    class Conn:
        pass

    def run(sql: str) -> list[tuple[object, ...]]:
        return [(True, "postgres")] if "rolsuper" in sql else []

    first = Conn()
    with pytest.warns(SuperuserWarning):
        postgres_walls(run, SqlPolicy(), first, "psycopg")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        postgres_walls(run, SqlPolicy(), first, "psycopg")  # once per connection
    del first
    for _ in range(50):  # CPython hands a freed object's block to the next object of its size
        gone = Conn()
        with pytest.warns(SuperuserWarning):
            postgres_walls(run, SqlPolicy(), gone, "psycopg")
        address = id(gone)
        del gone  # the last block freed: the next Conn() takes it
        new = Conn()
        if id(new) == address:
            break
    else:
        pytest.fail("no new object took a freed one's address in 50 tries")
    with pytest.warns(SuperuserWarning):
        postgres_walls(run, SqlPolicy(), new, "psycopg")
