"""check_sql against schemas captured from real databases: exact errors, transpiling."""

from __future__ import annotations

import sqlite3

import duckdb
import pytest

from rsql_magic.errors import Refused, SqlCheckError
from rsql_sql.checks.validate import check_sql, detect_dialect, transpile_functions
from rsql_sql.parse import parse_statements
from rsql_sql.schema import capture_schema
from rsql_sql.token_pointers import caret

DDL = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, region TEXT);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id),
                     amount REAL, created_at TIMESTAMP);
"""


@pytest.fixture
def sqlite_schema():
    conn = sqlite3.connect(":memory:")
    conn.executescript(DDL)
    yield capture_schema(conn)
    conn.close()


def err(sql: str, schema, dialect: str = "sqlite") -> SqlCheckError:
    with pytest.raises(SqlCheckError) as ei:
        check_sql(sql, schema, dialect)
    return ei.value


def test_unknown_column_names_the_token(sqlite_schema) -> None:
    e = err("SELECT nope FROM orders", sqlite_schema)
    assert e.stage == "schema"
    assert e.message == (
        "Column 'nope' could not be resolved. Line: 1, Col: 11\n"
        "  SELECT nope FROM orders\n"
        "         ^^^^\n"
        "Columns available: orders(id, customer_id, amount, created_at)."
    )


def test_unknown_qualified_column_gets_position_and_suggestion(sqlite_schema) -> None:
    sql = "SELECT o.amount, c.nam\nFROM orders o JOIN customers c ON c.id = o.customer_id"
    e = err(sql, sqlite_schema)
    assert e.message == (
        "Unknown column: nam. Line: 1, Col: 22\n"
        "  SELECT o.amount, c.nam\n"
        "                     ^^^\n"
        "Did you mean: customers has name?"
    )


def test_ambiguous_column_says_where_it_is(sqlite_schema) -> None:
    e = err("SELECT id FROM orders JOIN customers ON 1 = 1", sqlite_schema)
    assert "Column 'id' could not be resolved" in e.message
    assert "'id' is in orders, customers: qualify it" in e.message


def test_unknown_table(sqlite_schema) -> None:
    e = err("SELECT * FROM order_items", sqlite_schema)
    assert e.message.startswith("Table 'order_items' does not exist. Line: 1, Col: 25\n")
    assert "  SELECT * FROM order_items\n                ^^^^^^^^^^^" in e.message
    e = err("SELECT * FROM customer", sqlite_schema)
    assert e.message.endswith("Did you mean: customers?")


def test_ctes_aliases_subqueries_and_catalog_tables_pass(sqlite_schema) -> None:
    ok = [
        "WITH t AS (SELECT customer_id, SUM(amount) AS total FROM orders GROUP BY 1) "
        "SELECT c.name, t.total FROM t JOIN customers c ON c.id = t.customer_id ORDER BY total",
        "SELECT name FROM customers WHERE id IN (SELECT customer_id FROM orders)",
        "SELECT COUNT(*) AS n FROM orders HAVING COUNT(*) > 0",
        "SELECT name FROM sqlite_master",
        "SELECT CUSTOMERS.NAME FROM Customers",  # SQLite ignores case; so does the check
    ]
    for sql in ok:
        assert check_sql(sql, sqlite_schema, "sqlite").sql == sql


def test_parse_error_points_at_the_token(sqlite_schema) -> None:
    e = err("SELECT amount FROM orders\nWHERE amount >> > 3", sqlite_schema)
    assert e.stage == "parse"
    first, src, marks = e.message.split("\n")
    assert first.endswith("Line 2, Col: 17.")
    assert src == "  WHERE amount >> > 3"
    assert marks == "                  ^"


def test_tsql_top_is_transpiled_for_sqlite(sqlite_schema) -> None:
    checked = check_sql("SELECT TOP 5 name FROM customers ORDER BY name", sqlite_schema, "sqlite")
    assert checked.transpiled_from == "tsql"
    assert " ".join(checked.sql.split()) == "SELECT name FROM customers ORDER BY name LIMIT 5"
    assert checked.note == "transpiled from tsql to sqlite with sqlglot"


def test_mysql_backticks_are_transpiled_for_postgres(sqlite_schema) -> None:
    sql, src = "SELECT `name` FROM `customers`", None
    found = detect_dialect(sql, "postgres")
    assert found is not None
    src, text = found
    assert src == "mysql"
    assert " ".join(text.split()) == 'SELECT "name" FROM "customers"'


def test_transpiled_sql_is_still_qualified(sqlite_schema) -> None:
    e = err("SELECT TOP 5 nope FROM customers", sqlite_schema)
    assert e.stage == "schema" and "Column 'nope' could not be resolved" in e.message


def test_garbage_that_no_dialect_parses_keeps_the_target_error(sqlite_schema) -> None:
    e = err("SELECT FROM WHERE (", sqlite_schema)
    assert e.stage == "parse"


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        # T-SQL's SELECT ... INTO is a write dressed as a read: only its transpiled form says so
        ("SELECT TOP 5 * INTO backup FROM orders", "CREATE TABLE"),
        ("DELETE FROM orders OUTPUT deleted.id", "DELETE"),
    ],
)
def test_guard_runs_on_transpiled_statements(sqlite_schema, sql: str, kind: str) -> None:
    # neither parses as SQLite; each is read as T-SQL and guarded as what it became
    with pytest.raises(SqlCheckError):
        parse_statements(sql, "sqlite")
    found = detect_dialect(sql, "sqlite")
    assert found is not None and found[0] == "tsql", found
    with pytest.raises(Refused) as refused:
        check_sql(sql, sqlite_schema, "sqlite")
    assert f"{kind} is not read-only" in str(refused.value)
    # the refusal shows the statement as it was guarded: the transpiled one
    assert refused.value.sql.split() == found[1].split()


def test_no_sql() -> None:
    with pytest.raises(SqlCheckError) as ei:
        check_sql("  ", None, "sqlite")
    assert ei.value.stage == "extract"


def test_functions_of_another_dialect() -> None:
    # what the database rejected decides which names to translate
    assert transpile_functions("SELECT LEN(name) FROM t", "postgres", {"LEN"}) == (
        "tsql",
        "SELECT LENGTH(CAST(name AS TEXT)) FROM t",
    )
    found = transpile_functions("SELECT GETDATE()", "duckdb", {"GETDATE"})
    assert found is not None and found[1] == "SELECT CURRENT_TIMESTAMP"
    # a name the target spells the same way is left alone
    assert transpile_functions("SELECT LENGTH(name) FROM t", "postgres", {"LENGTH"}) is None


def test_duckdb_schema_and_case(tmp_path) -> None:
    con = duckdb.connect()
    con.execute('CREATE TABLE "Sales" (id INT PRIMARY KEY, "Amount" DOUBLE)')
    schema = capture_schema(con)
    assert check_sql("SELECT amount FROM sales", schema, "duckdb").sql
    e = err("SELECT amountt FROM sales", schema, "duckdb")
    assert "Did you mean: Sales has Amount?" in e.message


def test_caret_on_long_lines_shows_a_window() -> None:
    sql = "SELECT " + ", ".join(f"c{i}" for i in range(100)) + " FROM t"
    start = sql.index("c50")
    out = caret(sql, start, start + 2)
    src, marks = out.split("\n")
    assert len(src) < 140
    assert src[marks.index("^") : marks.index("^") + 3] == "c50"


@pytest.mark.parametrize("engine", ["sqlite", "duckdb"])
def test_a_column_named_with_spaces_around_it_resolves_by_its_name(engine: str) -> None:
    """A header read from a CSV often keeps its spaces (" Salary "): the check read the
    captured name as SQL, lost the spaces and refused the column's own name as unknown."""
    conn = sqlite3.connect(":memory:") if engine == "sqlite" else duckdb.connect()
    conn.execute('CREATE TABLE pay (dept TEXT, " Salary " REAL)')
    schema = capture_schema(conn)
    checked = check_sql('SELECT dept, " Salary " FROM pay', schema, engine)
    assert conn.execute(checked.sql).fetchall() == []
    # and a name without the spaces is another name: refused, named
    assert "salary" in str(err("SELECT Salary FROM pay", schema, engine)).lower()
    conn.close()
