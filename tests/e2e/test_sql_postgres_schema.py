"""Schema capture from a real PostgreSQL server (a database of this module's own): schemas
other than the default, composite primary and foreign keys, views, and the tables ranked by the
question; the same compact DDL through an engine, a URL and a raw psycopg connection.

The same from SQLite and DuckDB: tests/unit/test_sql_schema.py.
"""

from __future__ import annotations

from rsql_sql.schema import capture_schema, describe_connection
from tests.helpers.services import pg_engine


def test_postgres_capture_schemas_composite_keys(pg_url: str) -> None:
    eng = pg_engine(pg_url)
    with eng.begin() as c:
        c.exec_driver_sql(
            "CREATE SCHEMA sales;"
            'CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, "Region" varchar(20));'
            "CREATE TABLE sales.orders (id bigint PRIMARY KEY, customer_id int REFERENCES customers(id),"
            " amount numeric(10,2), created timestamptz);"
            "CREATE TABLE t2 (a int, b int, c int, PRIMARY KEY (a, b));"
            "CREATE TABLE t3 (x int, y int, FOREIGN KEY (x, y) REFERENCES t2 (a, b));"
            "CREATE VIEW v AS SELECT a FROM t2;"
        )
    s = capture_schema(eng)
    assert s.dialect == "postgres" and s.default_db == "public"
    assert s.table("orders").db == "sales"  # unique unqualified name outside the default schema
    assert s.table("t2").primary_key == ("a", "b")
    fk = s.table("t3").foreign_keys[0]
    assert (fk.columns, fk.ref_table, fk.ref_columns) == (("x", "y"), "t2", ("a", "b"))
    ddl = describe_connection(eng, "orders by region")
    lines = ddl.splitlines()
    assert lines[0] == "-- postgres schema: 5 tables"
    # the question ranks the tables: orders and customers first
    assert lines[1].startswith(
        "CREATE TABLE sales.orders (id BIGINT PRIMARY KEY, customer_id INT REFERENCES customers(id)"
    )
    assert (
        lines[2]
        == 'CREATE TABLE customers (id INT PRIMARY KEY, name TEXT NOT NULL, "Region" VARCHAR(20));'
    )
    assert "FOREIGN KEY (x, y) REFERENCES t2(a, b)" in ddl
    assert "CREATE TABLE v (a INT);  -- a view" in ddl
    # the same through a URL string and a raw psycopg connection
    assert describe_connection(pg_url, "orders by region") == ddl
    import psycopg

    raw = psycopg.connect(pg_url.replace("postgresql+psycopg", "postgresql"))
    try:
        assert describe_connection(raw, "orders by region") == ddl
    finally:
        raw.close()
