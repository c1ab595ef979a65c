"""The read-only guard decides on the parsed statement, and SQL extraction from model answers."""

from __future__ import annotations

import pytest

from rsql_magic.errors import Refused
from rsql_sql.checks.guard import check_statements
from rsql_sql.checks.validate import check_sql, extract_sql
from rsql_sql.parse import parse_statements


def guard(sql: str, dialect: str = "postgres", *, allow_write: bool = False) -> str:
    stmt = check_statements(parse_statements(sql, dialect), dialect, allow_write=allow_write)
    return stmt.key


@pytest.mark.parametrize(
    "sql,dialect",
    [
        ("SELECT 1", "postgres"),
        ("select a from t where b = 'DROP TABLE t'", "postgres"),  # text inside a literal
        ("-- DELETE FROM t\nSELECT 1", "sqlite"),  # a comment is not a statement
        ("WITH x AS (SELECT 1 AS a) SELECT a FROM x", "duckdb"),
        ("SELECT 1 UNION ALL SELECT 2", "sqlite"),
        ("(SELECT 1)", "postgres"),
        ("EXPLAIN SELECT * FROM t", "postgres"),
        ("EXPLAIN ANALYZE SELECT * FROM t", "postgres"),
        ("EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM t", "postgres"),
        ("EXPLAIN QUERY PLAN SELECT * FROM t", "sqlite"),
        ("SHOW TABLES", "duckdb"),
        ("SHOW search_path", "postgres"),
        ("DESCRIBE t", "duckdb"),
        ("SELECT 1;", "sqlite"),  # a trailing semicolon is not a second statement
    ],
)
def test_read_only_statements_pass(sql: str, dialect: str) -> None:
    guard(sql, dialect)


@pytest.mark.parametrize(
    "sql,dialect,why",
    [
        ("DROP TABLE orders", "postgres", "DROP TABLE is not read-only"),
        ("DELETE FROM orders", "sqlite", "DELETE is not read-only"),
        ("UPDATE t SET a = 1", "duckdb", "UPDATE is not read-only"),
        ("INSERT INTO t VALUES (1)", "postgres", "INSERT is not read-only"),
        ("CREATE TABLE x AS SELECT 1", "postgres", "CREATE TABLE is not read-only"),
        ("TRUNCATE t", "postgres", "TRUNCATE TABLE is not read-only"),
        ("ALTER TABLE t ADD COLUMN b INT", "postgres", "ALTER"),
        # a data-modifying CTE hides a DELETE behind a SELECT: only the tree shows it
        (
            "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
            "postgres",
            "the statement holds a DELETE",
        ),
        ("SELECT * INTO backup FROM t", "postgres", "SELECT ... INTO creates a table"),
        ("EXPLAIN ANALYZE DELETE FROM t", "postgres", "DELETE is not read-only"),
        ("SELECT pg_terminate_backend(42)", "postgres", "pg_terminate_backend() has side effects"),
        ("SELECT setval('s', 1)", "postgres", "setval() has side effects"),
        ("PRAGMA writable_schema = 1", "sqlite", "PRAGMA is not read-only"),
        ("SET search_path = x", "postgres", "SET is not read-only"),
        ("COPY t TO '/tmp/x.csv'", "duckdb", "COPY is not read-only"),
        ("ATTACH 'x.db' AS x", "duckdb", "ATTACH"),
    ],
)
def test_writes_are_refused_with_a_reason(sql: str, dialect: str, why: str) -> None:
    with pytest.raises(Refused) as ei:
        guard(sql, dialect)
    msg = ei.value.message
    assert msg.startswith("Refused: ")
    assert why in msg
    assert "nothing ran" in msg
    assert "--allow-write" in msg


def test_allow_write_lets_one_write_through() -> None:
    assert guard("DELETE FROM t WHERE a = 1", "postgres", allow_write=True) == "delete"
    assert guard("DROP TABLE t", "sqlite", allow_write=True) == "drop"


@pytest.mark.parametrize("allow_write", [False, True])
def test_several_statements_are_refused_even_with_allow_write(allow_write: bool) -> None:
    with pytest.raises(Refused) as ei:
        guard("SELECT 1; DROP TABLE orders;", "postgres", allow_write=allow_write)
    assert ei.value.message.startswith(
        "Refused: the answer holds 2 statements (SELECT, DROP TABLE); %%sql_ai runs exactly one"
    )
    assert ei.value.stage == "refused"


@pytest.mark.parametrize("dialect", ["sqlite", "duckdb", "postgres"])
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1 -- top customers",
        "SELECT 1; -- top customers",
        "SELECT 1; /* note */",
        "SELECT 1 /* a */; -- b\n",
        "SELECT 1;;",
    ],
)
def test_a_trailing_comment_or_semicolon_is_not_a_statement(sql: str, dialect: str) -> None:
    assert guard(sql, dialect) == "select"
    # what runs ends at the statement: nothing after its `;` reaches the database
    ran = check_sql(sql, None, dialect).sql
    assert ran.startswith("SELECT 1") and ";" not in ran


@pytest.mark.parametrize("dialect", ["sqlite", "duckdb", "postgres"])
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1; -- note\nDROP TABLE orders",
        "SELECT 1 -- note\n; DROP TABLE orders",
        "SELECT 1; /* note */ DROP TABLE orders",
        "SELECT 1; /* note */ DROP TABLE orders; -- the end",
        "-- a comment first\nSELECT 1; DROP TABLE orders",
        "SELECT 1 /* ; */; DROP TABLE orders /* ; */",
    ],
)
def test_a_comment_cannot_hide_a_second_statement(sql: str, dialect: str) -> None:
    with pytest.raises(Refused, match=r"the answer holds 2 statements \(SELECT, DROP TABLE\)"):
        check_sql(sql, None, dialect, allow_write=True)


def test_a_tail_only_one_dialect_reads_as_a_comment_never_runs() -> None:
    # sqlglot nests /* */ for PostgreSQL and DuckDB (as they do), not for SQLite (as it does
    # not): in SQLite the DROP is a second statement; where it is a comment, it is not sent
    nested = "SELECT 1; /* /* */ DROP TABLE orders -- */"
    with pytest.raises(Refused, match="2 statements"):
        check_sql(nested, None, "sqlite")
    for dialect in ("postgres", "duckdb"):
        assert check_sql(nested, None, dialect).sql == "SELECT 1"


def test_empty_answer_is_refused() -> None:
    with pytest.raises(Refused, match="no SQL statement"):
        check_statements([], "postgres")


# -- extraction -------------------------------------------------------------------------


def test_extract_from_sql_fence_and_prose() -> None:
    answer = "Here you go:\n\n```sql\nSELECT a\nFROM t;\n```\n\nThis selects a from t."
    sql, rest = extract_sql(answer)
    assert sql == "SELECT a\nFROM t;"
    assert "This selects a from t." in rest and "Here you go:" in rest


def test_extract_prefers_the_sql_block_over_other_code() -> None:
    answer = "```python\nprint(1)\n```\n```postgresql\nSELECT 2\n```"
    assert extract_sql(answer)[0] == "SELECT 2"


def test_extract_plain_answer_and_trailing_prose() -> None:
    assert extract_sql("SELECT 1") == ("SELECT 1", "")
    sql, rest = extract_sql("Sure.\nWITH x AS (SELECT 1) SELECT * FROM x;\n\nIt returns 1.")
    assert sql == "WITH x AS (SELECT 1) SELECT * FROM x;"
    assert rest == "Sure.\nIt returns 1."


def test_extract_unterminated_fence() -> None:
    assert extract_sql("```sql\nSELECT 3")[0] == "SELECT 3"


def test_extract_no_sql() -> None:
    assert extract_sql("I cannot answer that.") == ("", "I cannot answer that.")
