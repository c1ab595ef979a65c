"""Why a schema text left out what a query needs (rsql_sql.schema.misses.why_missing), on real
DuckDB databases where each reason happens: a wide table's line cut before the needed column,
a table ranked past the budget, a table the question matches nothing of, and a table whose
place went to tables a value of the question ranked up."""

from __future__ import annotations

import pytest

from rsql_magic.privacy import ContextPolicy
from rsql_sql.schema import capture_schema, capture_values, describe_schema
from rsql_sql.schema.coverage import needed_columns
from rsql_sql.schema.misses import Miss, why_missing

duckdb = pytest.importorskip("duckdb")

OPEN = ContextPolicy()


def fillers(n: int) -> list[str]:
    return [
        f"CREATE TABLE filler_{i:02d} (id INTEGER, note VARCHAR, amount DOUBLE)" for i in range(n)
    ]


def reasons(con, question: str, gold_sql: str, budget: int, policy=None) -> list[Miss]:
    """What describe_schema sends for `question` at `budget`, and why it misses what
    `gold_sql` reads (the same arguments for both)."""
    schema = capture_schema(con)
    capture_values(con, schema, policy=policy, question=question)
    text = describe_schema(schema, question, None, budget, "duckdb", policy=policy)
    needed = needed_columns(gold_sql, schema, "duckdb")
    return why_missing(needed, text, schema, question, None, policy, dialect="duckdb")


def test_a_column_in_the_cut_part_of_a_wide_table_is_cut_by_width() -> None:
    con = duckdb.connect()
    cols = ", ".join(f"attr_{k:03d} DOUBLE" for k in range(120))
    con.execute(f"CREATE TABLE crm_accounts (account_id INTEGER PRIMARY KEY, {cols})")
    for sql in fillers(5):
        con.execute(sql)
    got = reasons(
        con,
        "Which accounts have the highest score?",
        "SELECT account_id FROM crm_accounts ORDER BY attr_100 DESC",
        1500,
    )
    assert got == [Miss("main.crm_accounts.attr_100", "cut by width")]
    assert str(got[0]) == "main.crm_accounts.attr_100 (cut by width)"


@pytest.fixture
def clinic() -> duckdb.DuckDBPyConnection:
    """Twelve tables named for patients, a laboratory table (a longer line) that only has a
    patient_id, and 70 tables the question names nothing of (more than a namespace signal
    lifts)."""
    con = duckdb.connect()
    for k in range(12):
        con.execute(
            f"CREATE TABLE patient_record_{k:02d} (patient_id INTEGER, visit_date DATE, "
            "attending_physician VARCHAR, diagnosis_code VARCHAR, notes VARCHAR)"
        )
    con.execute(
        "CREATE TABLE laboratory (test_id INTEGER, patient_id INTEGER, specimen_collection_time "
        "TIMESTAMP, result_value DOUBLE, reference_range_description VARCHAR, "
        "performing_technician_name VARCHAR)"
    )
    for sql in fillers(70):
        con.execute(sql)
    yield con
    con.close()


def test_a_table_ranked_past_the_tables_shown_is_past_the_table_budget(clinic) -> None:
    got = reasons(
        clinic,
        "Which patient records have the most visits?",
        "SELECT l.result_value FROM laboratory l JOIN filler_07 f ON f.id = l.test_id",
        1200,
    )
    # laboratory ranks 13th (after the twelve patient tables), 9 tables fit; filler_07 scores 0
    assert [str(m) for m in got] == [
        "main.filler_07 (not matched by the question: 21st, 9 shown)",
        "main.laboratory (past the table budget: 13th, 9 shown)",
    ]


def test_a_table_ranked_among_the_shown_ones_that_did_not_fit_is_too_long(clinic) -> None:
    got = reasons(
        clinic,
        "Which patient records have the most visits?",
        "SELECT diagnosis_code FROM patient_record_08",
        1200,
    )
    # the ninth patient table did not fit in what was left; a shorter line after it did
    assert [str(m) for m in got] == [
        "main.patient_record_08 (past the table budget: 9th, 9 shown, too long for the space left)"
    ]


def test_nothing_missing_gives_no_reason(clinic) -> None:
    got = reasons(
        clinic, "patient record 03 diagnosis", "SELECT diagnosis_code FROM patient_record_03", 6000
    )
    assert got == []


@pytest.fixture
def regions() -> duckdb.DuckDBPyConnection:
    """Purchases (the question names their revenue column), and two region tables holding
    'Bretagne', a value the question names; 70 tables besides."""
    con = duckdb.connect()
    con.execute("CREATE TABLE purchases (purchase_id INTEGER, region_code VARCHAR, revenue DOUBLE)")
    for name in ("sales_territory", "delivery_zone"):
        con.execute(f"CREATE TABLE {name} (code VARCHAR, label VARCHAR)")
        con.execute(
            f"INSERT INTO {name} VALUES ('BR', 'Bretagne'), ('NO', 'Normandie'), ('AL', 'Alsace')"
        )
    for sql in fillers(70):
        con.execute(sql)
    yield con
    con.close()


def test_a_table_whose_place_went_to_value_matches_is_outranked_by_them(regions) -> None:
    question = "What is the revenue in Bretagne?"
    gold = "SELECT SUM(revenue) FROM purchases WHERE region_code = 'BR'"
    # the control: without values, purchases comes first and is shown
    assert reasons(regions, question, gold, 300) == []
    # with them, the two tables holding 'Bretagne' rank above it and fill the budget
    got = reasons(regions, question, gold, 300, OPEN)
    assert got == [
        Miss(
            "main.purchases",
            "outranked by a value match",
            "main.delivery_zone, main.sales_territory",
        )
    ]


def test_with_pinned_tables_another_table_is_not_among_them(regions) -> None:
    schema = capture_schema(regions)
    question = "What is the revenue in Bretagne?"
    text = describe_schema(schema, question, ["purchases"], 6000, "duckdb")
    needed = needed_columns(
        "SELECT SUM(revenue) FROM purchases JOIN delivery_zone ON code = region_code",
        schema,
        "duckdb",
    )
    got = why_missing(needed, text, schema, question, ["purchases"], dialect="duckdb")
    assert got == [Miss("main.delivery_zone", "not among the pinned tables")]


def test_a_column_absent_from_a_whole_line_is_left_out_of_a_shown_table(regions) -> None:
    # a text written before the column was renamed (a replayed run, say): the line is whole
    schema = capture_schema(regions)
    text = "CREATE TABLE purchases (purchase_id INT, region TEXT, revenue DOUBLE);"
    needed = needed_columns("SELECT region_code FROM purchases", schema, "duckdb")
    got = why_missing(needed, text, schema, "revenue per region", dialect="duckdb")
    assert got == [Miss("main.purchases.region_code", "left out of a shown table")]
