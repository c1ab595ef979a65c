"""Schema capture from real SQLite and DuckDB; compact DDL within a budget. The same from
PostgreSQL, whose server it needs: tests/e2e/test_sql_postgres_schema.py."""

from __future__ import annotations

import re
import sqlite3
import time

import duckdb
import pandas as pd
import pytest
import sqlalchemy as sa

from rsql_sql.schema import (
    capture_schema,
    describe_connection,
    infer_dialect,
    rank_tables,
)
from tests.helpers import missing

SQLITE_DDL = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "order" TEXT);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers,
                     amount REAL, created_at TIMESTAMP);
CREATE TABLE items (order_id INT, sku TEXT, qty INT, PRIMARY KEY (order_id, sku),
                    FOREIGN KEY (order_id) REFERENCES orders(id));
CREATE VIEW big_orders AS SELECT * FROM orders WHERE amount > 100;
"""


def test_sqlite_capture_keys_views_and_ddl() -> None:
    conn = sqlite3.connect(":memory:")
    conn.executescript(SQLITE_DDL)
    s = capture_schema(conn)
    assert [t.name for t in s.tables] == ["big_orders", "customers", "items", "orders"]
    items = s.table("items")
    assert items.primary_key == ("order_id", "sku")
    orders = s.table("orders")
    fk = orders.foreign_keys[0]
    # a FK without columns points at the target's primary key
    assert (fk.columns, fk.ref_table, fk.ref_columns) == (("customer_id",), "customers", ("id",))
    assert s.table("big_orders").kind == "view"
    ddl = describe_connection(conn)
    assert ddl.splitlines() == [
        "-- sqlite schema: 4 tables",
        "CREATE TABLE big_orders (id INTEGER, customer_id INTEGER, amount REAL, created_at TIMESTAMP);  -- a view",
        'CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "order" TEXT);',
        "CREATE TABLE items (order_id INTEGER NOT NULL REFERENCES orders(id), sku TEXT NOT NULL, "
        "qty INTEGER, PRIMARY KEY (order_id, sku));",
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id), "
        "amount REAL, created_at TIMESTAMP);",
    ]
    assert infer_dialect(conn) == "sqlite"
    # the same schema written for another dialect
    pg = describe_connection(conn, dialect="postgres")
    assert "CREATE TABLE customers (id INT PRIMARY KEY, name TEXT NOT NULL" in pg


def test_duckdb_capture_and_frames() -> None:
    con = duckdb.connect()
    con.execute(
        "CREATE SCHEMA stage; CREATE TABLE p (id INTEGER PRIMARY KEY, n VARCHAR);"
        "CREATE TABLE q (id INTEGER PRIMARY KEY, pid INTEGER REFERENCES p(id), v DECIMAL(10,2));"
        "CREATE TABLE stage.raw (line VARCHAR)"
    )
    s = capture_schema(con)
    assert s.default_db == "main"
    assert s.mapping() == {
        "main": {
            "p": {"id": "INTEGER", "n": "VARCHAR"},
            "q": {"id": "INTEGER", "pid": "INTEGER", "v": "DECIMAL(10,2)"},
        },
        "stage": {"raw": {"line": "VARCHAR"}},
    }
    ddl = describe_connection(con)
    assert "CREATE TABLE q (id INT PRIMARY KEY, pid INT REFERENCES p(id), v DECIMAL(10, 2));" in ddl
    assert "CREATE TABLE stage.raw (line TEXT);" in ddl
    assert infer_dialect(con) == "duckdb"

    frames = {
        "sales": pd.DataFrame(
            {"region": ["n", "s"], "when": pd.to_datetime(["2024-01-01", "2024-02-01"])}
        )
    }
    fddl = describe_connection(frames)
    assert 'CREATE TABLE sales (region TEXT, "when" TIMESTAMP);  -- a pandas DataFrame' in fddl


def test_jupysql_current_connection() -> None:
    try:
        from sql.connection import ConnectionManager, DBAPIConnection, SQLAlchemyConnection
    except ImportError:
        missing("jupysql is not installed")
    try:
        conn = sqlite3.connect(":memory:")
        conn.executescript(SQLITE_DDL)
        wrapped = DBAPIConnection(conn, alias="t_dbapi")
        assert "CREATE TABLE orders" in describe_connection(wrapped)
        eng = sa.create_engine("duckdb:///:memory:")
        with eng.begin() as c:
            c.exec_driver_sql("CREATE TABLE z (a INT PRIMARY KEY, b TEXT)")
        wrapped2 = SQLAlchemyConnection(eng, alias="t_sa")
        ddl = "-- duckdb schema: 1 table\nCREATE TABLE z (a INT PRIMARY KEY, b TEXT);"
        assert describe_connection(wrapped2) == ddl
        # None means "JupySQL's active connection" (the last one opened)
        assert describe_connection(None) == ddl
    finally:
        ConnectionManager.close_all()  # JupySQL's registry is process-wide


def many_tables(n: int) -> list[str]:
    stmts = []
    for i in range(n):
        ref = f", parent_id INTEGER REFERENCES t{i - 1:03d}(id)" if i else ""
        stmts.append(
            f"CREATE TABLE t{i:03d} (id INTEGER PRIMARY KEY, name TEXT, value REAL, "
            f"created_at TIMESTAMP, note TEXT{ref})"
        )
    return stmts


def test_500_tables_cut_to_budget_and_ranked() -> None:
    conn = sqlite3.connect(":memory:")
    conn.executescript(";\n".join(many_tables(500)) + ";")
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, customer TEXT, total REAL)")
    t0 = time.perf_counter()
    s = capture_schema(conn)
    elapsed = time.perf_counter() - t0
    assert len(s.tables) == 501
    assert elapsed < 2.0, elapsed  # measured ~0.03 s; see bench/bench_schema.py
    ddl = describe_connection(conn, "total of unpaid invoices", budget_chars=2000)
    assert len(ddl) <= 2000
    lines = ddl.splitlines()
    assert lines[0].startswith("-- sqlite schema: 501 tables, ")
    assert lines[1].startswith("CREATE TABLE invoices ")  # the relevant table first
    assert lines[-1].startswith("-- other tables: ") and lines[-1].endswith("more)")
    # --tables pins: only those
    pinned = describe_connection(conn, "anything", tables=["t250", "t007"], budget_chars=2000)
    assert [x.split(" (")[0] for x in pinned.splitlines()[1:]] == [
        "CREATE TABLE t250",
        "CREATE TABLE t007",
    ]


def test_rank_follows_foreign_keys() -> None:
    conn = sqlite3.connect(":memory:")
    conn.executescript(
        "CREATE TABLE zebra (id INTEGER PRIMARY KEY);"
        "CREATE TABLE region (id INTEGER PRIMARY KEY, label TEXT);"
        "CREATE TABLE shop (id INTEGER PRIMARY KEY, region_id INT REFERENCES region(id));"
        "CREATE TABLE sale (id INTEGER PRIMARY KEY, shop_id INT REFERENCES shop(id), amount REAL);"
    )
    order = [t.name for t in rank_tables(capture_schema(conn), "sales amount per shop")]
    assert order[:2] == ["sale", "shop"] and order[-1] == "zebra"


def test_capture_is_bounded_in_time() -> None:
    # a catalog query that cannot finish is cancelled by the time bound
    from rsql_magic.errors import QueryTimeout
    from rsql_sql.connections import resolve

    db = resolve(sqlite3.connect(":memory:"))
    slow = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
    t0 = time.perf_counter()
    with pytest.raises(QueryTimeout):
        db.rows(slow, timeout_s=0.3)
    assert time.perf_counter() - t0 < 3


def test_inspector_path_matches_native_capture(tmp_path) -> None:
    # dialects without a catalog query of ours go through SQLAlchemy's bulk inspector
    from rsql_sql.connections import resolve

    path = tmp_path / "x.db"
    with sqlite3.connect(path) as c:
        c.executescript(SQLITE_DDL)
    eng = sa.create_engine(f"sqlite:///{path}")
    try:
        native = capture_schema(eng)
        generic = resolve(eng).read_catalog_generically()
        generic.tables.sort(key=lambda t: t.name)
        assert [(t.name, t.kind, t.primary_key) for t in generic.tables] == [
            (t.name, t.kind, t.primary_key) for t in native.tables
        ]
        assert [[c.name for c in t.columns] for t in generic.tables] == [
            [c.name for c in t.columns] for t in native.tables
        ]
        fks = {
            t.name: [(f.columns, f.ref_table, f.ref_columns) for f in t.foreign_keys]
            for t in generic.tables
        }
        assert fks["items"] == [(("order_id",), "orders", ("id",))]
    finally:
        eng.dispose()


def test_budget_holds_for_one_very_wide_table() -> None:
    conn = sqlite3.connect(":memory:")
    cols = ", ".join(f"column_number_{i} INTEGER" for i in range(300))
    conn.execute(f"CREATE TABLE wide ({cols}, PRIMARY KEY (column_number_0))")
    conn.execute("CREATE TABLE small (a INT)")
    out = describe_connection(conn, "wide", budget_chars=600)
    assert len(out) <= 600
    lines = out.splitlines()
    assert lines[1].startswith("CREATE TABLE wide (column_number_0 INTEGER PRIMARY KEY, ")
    assert lines[1].endswith(" more columns */);")
    # the narrowed table leaves room for the small one, and names columns it left out
    assert lines[2] == "CREATE TABLE small (a INTEGER);"
    assert re.fullmatch(r"-- more columns of wide: column_number_\d+.* \(\+\d+\)", lines[3])
