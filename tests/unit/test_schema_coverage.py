"""What a schema text shows against what a query needs (rsql_sql.schema.coverage), on
texts describe_schema writes for real SQLite and DuckDB databases: aliases, CTEs, subqueries,
USING joins, quoted names, a schema outside the default one, a view, wide tables cut to their
first columns, and a text cut mid-line at its budget."""

from __future__ import annotations

import sqlite3

import pytest

from rsql_sql.schema import (
    Column,
    Schema,
    Table,
    capture_schema,
    describe_schema,
    render_ddl,
)
from rsql_sql.schema.coverage import coverage, needed_columns, shown_columns

duckdb = pytest.importorskip("duckdb")

SHOP = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, region TEXT);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id),
                     amount NUMERIC(10, 2), placed TEXT);
CREATE VIEW north_orders AS
    SELECT o.id, o.amount FROM orders o JOIN customers c ON c.id = o.customer_id
    WHERE c.region = 'north';
"""


@pytest.fixture
def shop() -> Schema:
    con = sqlite3.connect(":memory:")
    con.executescript(SHOP)
    schema = capture_schema(con)
    con.close()
    return schema


def text_of(schema: Schema, question: str | None = None, budget: int = 6000) -> str:
    return describe_schema(schema, question, None, budget, schema.dialect)


def seen(schema: Schema, text: str) -> dict[str, set[str]]:
    return shown_columns(text, schema.dialect, schema.default_db)


def test_the_whole_text_shows_every_table_and_column(shop: Schema) -> None:
    text = text_of(shop)
    assert seen(shop, text) == {
        "main.customers": {"id", "name", "region"},
        "main.orders": {"id", "customer_id", "amount", "placed"},
        "main.north_orders": {"id", "amount"},  # a view: its line ends "-- a view"
    }
    assert "-- a view" in text


def test_aliases_resolve_to_their_tables(shop: Schema) -> None:
    sql = (
        "SELECT c.region, SUM(o.amount) AS total FROM orders AS o "
        "JOIN customers c ON c.id = o.customer_id GROUP BY c.region ORDER BY total DESC"
    )
    assert needed_columns(sql, shop, "sqlite") == {
        "main.orders": {"amount", "customer_id"},
        "main.customers": {"id", "region"},
    }


def test_a_cte_is_not_a_table_its_body_reads_the_real_ones(shop: Schema) -> None:
    sql = (
        "WITH big AS (SELECT customer_id, amount FROM orders WHERE amount > 10) "
        "SELECT name, (SELECT COUNT(*) FROM big WHERE big.customer_id = customers.id) AS n "
        "FROM customers"
    )
    assert needed_columns(sql, shop, "sqlite") == {
        "main.orders": {"customer_id", "amount"},
        "main.customers": {"name", "id"},
    }


def test_subqueries_derived_and_correlated(shop: Schema) -> None:
    derived = "SELECT s.name FROM (SELECT name, region FROM customers) AS s WHERE s.region = 'x'"
    assert needed_columns(derived, shop, "sqlite") == {"main.customers": {"name", "region"}}
    correlated = (
        "SELECT name FROM customers c WHERE EXISTS "
        "(SELECT 1 FROM orders o WHERE o.customer_id = c.id AND o.placed > '2024')"
    )
    assert needed_columns(correlated, shop, "sqlite") == {
        "main.customers": {"name", "id"},
        "main.orders": {"customer_id", "placed"},
    }


def test_join_using_reads_the_column_of_both_tables(shop: Schema) -> None:
    sql = "SELECT name, amount FROM customers JOIN orders USING (id)"
    assert needed_columns(sql, shop, "sqlite") == {
        "main.customers": {"id", "name"},
        "main.orders": {"id", "amount"},
    }


def test_select_star_and_count_star_need_the_table_not_a_column(shop: Schema) -> None:
    assert needed_columns("SELECT * FROM customers", shop, "sqlite") == {"main.customers": set()}
    assert needed_columns("SELECT COUNT(*) FROM orders", shop, "sqlite") == {"main.orders": set()}


def test_a_view_is_read_as_the_view(shop: Schema) -> None:
    needed = needed_columns("SELECT SUM(amount) FROM north_orders", shop, "sqlite")
    assert needed == {"main.north_orders": {"amount"}}
    assert coverage(needed, seen(shop, text_of(shop))).columns_ok


def test_sql_that_does_not_parse_or_resolve_is_a_value_error(shop: Schema) -> None:
    for sql in ("SELEC name FROM", "SELECT nope FROM customers", "SELECT 1; SELECT 2"):
        with pytest.raises(ValueError):
            needed_columns(sql, shop, "sqlite")
    with pytest.raises(ValueError, match="not in the schema"):
        needed_columns("SELECT * FROM missing_table", shop, "sqlite")


def test_a_text_cut_anywhere_never_raises_and_shows_only_whole_lines(shop: Schema) -> None:
    text = text_of(shop)
    full = seen(shop, text)
    last = text.rindex("CREATE TABLE")
    for cut in range(len(text) + 1):
        got = seen(shop, text[:cut])
        for table, cols in got.items():
            assert cols == full[table], (cut, text[:cut])
    # cut inside the last line (as the budget cuts it): that table is not shown at all
    last_table = next(iter(seen(shop, text[last:])))
    assert set(seen(shop, text[: last + 30])) == set(full) - {last_table}


def test_quoted_names_and_another_schema_on_duckdb() -> None:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA sales")
    con.execute('CREATE TABLE "Order Lines" ("Unit Price" DOUBLE, "select" INTEGER, qty INTEGER)')
    con.execute("CREATE TABLE sales.orders (id INTEGER, total DOUBLE)")
    con.execute("CREATE TABLE orders (id INTEGER, note VARCHAR)")
    schema = capture_schema(con)
    text = text_of(schema)
    assert '"Order Lines"' in text and "sales.orders" in text
    shown = seen(schema, text)
    assert shown["main.order lines"] == {"unit price", "select", "qty"}
    assert shown["sales.orders"] == {"id", "total"} and shown["main.orders"] == {"id", "note"}

    sql = 'SELECT SUM(l."Unit Price" * l.qty) FROM "Order Lines" l, sales.orders o WHERE o.id = 1'
    needed = needed_columns(sql, schema, "duckdb")
    assert needed == {"main.order lines": {"unit price", "qty"}, "sales.orders": {"id"}}
    assert coverage(needed, shown).columns_ok
    # the same name in the default schema is another table: showing it shows nothing of sales'
    only_main = {k: v for k, v in shown.items() if k != "sales.orders"}
    assert coverage(needed, only_main).missing_tables == ("sales.orders",)


def test_postgres_quoted_case_is_compared_in_lower_case() -> None:
    schema = Schema(
        "postgres",
        "public",
        [
            Table("Region", "public", [Column("Name", "text"), Column("code", "text")]),
            Table("sales", "archive", [Column("id", "integer"), Column("Amount", "numeric")]),
        ],
    )
    text = text_of(schema)
    assert 'CREATE TABLE "Region" ("Name" TEXT' in text and "archive.sales (id INT" in text
    shown = seen(schema, text)
    assert shown == {"public.region": {"name", "code"}, "archive.sales": {"id", "amount"}}
    sql = 'SELECT r."Name", s."Amount" FROM "Region" r CROSS JOIN archive.sales s'
    needed = needed_columns(sql, schema, "postgres")
    assert needed == {"public.region": {"name"}, "archive.sales": {"amount"}}
    assert coverage(needed, shown).columns_ok


def wide_schema(columns: int) -> Schema:
    con = sqlite3.connect(":memory:")
    cols = ", ".join(f"sensor_reading_number_{i:03d} REAL" for i in range(columns))
    con.executescript(
        f"CREATE TABLE probes (id INTEGER PRIMARY KEY, site TEXT, {cols});"
        f"CREATE TABLE gauges (id INTEGER PRIMARY KEY, site TEXT, {cols});"
    )
    schema = capture_schema(con)
    con.close()
    return schema


def test_an_elided_column_of_a_wide_table_is_missing() -> None:
    schema = wide_schema(290)
    text = text_of(schema, "the site of each gauge")
    assert "more columns */" in text
    shown = seen(schema, text)
    assert {"main.gauges"} <= set(shown)
    assert "site" in shown["main.gauges"]  # the matched column is kept, and read as such
    late = "sensor_reading_number_280"
    assert late not in shown["main.gauges"]
    needed = needed_columns(f"SELECT site FROM gauges ORDER BY {late} DESC", schema, "sqlite")
    found = coverage(needed, shown)
    assert found.tables_ok and not found.columns_ok
    assert found.missing_columns == (f"main.gauges.{late}",) and found.missing_tables == ()
    # a name listed on a "-- more columns of ..." line is not shown: its line is not DDL
    assert seen(schema, f"-- more columns of gauges: {late}, sensor_reading_number_281") == {}


def test_partial_reads_the_whole_columns_of_a_cut_line(shop: Schema) -> None:
    line = "CREATE TABLE orders (id INTEGER PRIMARY KEY, amount NUMERIC(10, 2), placed TE"
    assert seen(shop, line) == {}  # cut: shows nothing, unless partial
    got = shown_columns(line, "sqlite", "main", partial=True)
    assert got == {"main.orders": {"id", "amount"}}
    cut_early = "CREATE TABLE orders (id INTEG"
    assert shown_columns(cut_early, "sqlite", "main", partial=True) == {"main.orders": set()}
    assert shown_columns("CREATE TABLE ord", "sqlite", "main", partial=True) == {}
    text = text_of(shop)
    for cut in range(len(text) + 1):  # never more than the whole text shows, never raises
        for table, cols in shown_columns(text[:cut], "sqlite", "main", partial=True).items():
            assert cols <= seen(shop, text)[table]


def test_a_table_with_every_column_elided_is_shown_with_none() -> None:
    schema = wide_schema(290)
    # what describe_schema writes for one table too wide for any of its columns to fit
    probes = schema.table("probes")
    assert probes is not None
    line = render_ddl(Table("probes", "main", [], columns_truncated=len(probes.columns)), schema)
    assert line == "CREATE TABLE probes (/* 292 more columns */);"
    shown = seen(schema, f"-- sqlite schema: 2 tables, 1 shown\n{line}\n-- other tables: gauges")
    assert shown["main.probes"] == set()
    found = coverage({"main.probes": set()}, shown)
    assert found.tables_ok and found.columns_ok  # SELECT COUNT(*) FROM probes needs no column
    found = coverage({"main.probes": {"site"}, "main.gauges": set()}, shown)
    assert not found.tables_ok and not found.columns_ok
    assert found.missing_tables == ("main.gauges",)
    assert found.missing_columns == ("main.probes.site",)


def test_lines_that_are_not_ddl_show_nothing(shop: Schema) -> None:
    text = (
        "-- sqlite schema: 9 tables, 1 shown\n"
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);\n"
        "-- other tables: orders, north_orders (+6 more)\n"
        "Columns:\n- region: TEXT\n"
        "create table orders (id int, amount real);"
    )
    assert seen(shop, text) == {"main.customers": {"id", "name"}, "main.orders": {"id", "amount"}}
