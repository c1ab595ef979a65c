"""The SQL check errors keep where they point as data, and their stage is one of a fixed set."""

from __future__ import annotations

import sqlite3

import pytest

from rsql_common.stages import STAGES
from rsql_magic.errors import Refused, RSQLError, SqlAIError, SqlCheckError
from rsql_sql.checks.guard import check_statements
from rsql_sql.connections import resolve
from rsql_sql.loop import run_question
from rsql_sql.parse import parse_statements


def test_parse_error_keeps_line_column_and_offsets() -> None:
    sql = "SELECT 1 +\nFROM t"
    with pytest.raises(SqlCheckError) as ei:
        parse_statements(sql, "sqlite")
    e = ei.value
    assert isinstance(e, RSQLError)
    assert e.stage == "parse"
    assert (e.line, e.column, e.start, e.end) == (2, 4, 11, 14)
    assert sql[e.start : e.end + 1] == "FROM"
    assert "Line 2, Col: 4." in e.message  # the message says the same as the data


def test_error_without_a_known_position_has_none() -> None:
    with pytest.raises(SqlCheckError) as ei:
        parse_statements("SELECT 'abc", "sqlite")  # a tokenizer error: sqlglot gives no place
    assert (ei.value.line, ei.value.column, ei.value.start, ei.value.end) == (None,) * 4


def test_refusal_points_at_the_refused_function() -> None:
    sql = "SELECT id,\n  load_extension(name) FROM t"
    with pytest.raises(Refused) as ei:
        check_statements(parse_statements(sql, "sqlite"), "sqlite", sql=sql)
    e = ei.value
    assert e.stage == "refused"
    assert (e.line, e.column) == (2, 16)
    assert sql[e.start : e.end + 1] == "load_extension"
    assert "Line: 2, Col: 16" in e.message


def test_refusal_of_the_whole_answer_has_no_position() -> None:
    sql = "SELECT * FROM t; DELETE FROM t"
    with pytest.raises(Refused) as ei:
        check_statements(parse_statements(sql, "sqlite"), "sqlite", sql=sql)
    assert ei.value.position is None and ei.value.line is None


def test_sql_ai_error_carries_the_last_position() -> None:
    db = resolve(sqlite3.connect(":memory:"))
    with pytest.raises(SqlAIError) as ei:
        run_question("one", db, lambda _messages: "```sql\nSELECT (1\n```", max_retries=0)
    e = ei.value
    assert e.stage == "parse"
    assert (e.line, e.column, e.start, e.end) == (1, 9, 8, 8)


def test_unknown_stage_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="unknown stage 'parsing'"):
        SqlCheckError("x", stage="parsing")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown stage"):
        SqlAIError("x", attempts=[], sql="", stage="oops")  # type: ignore[arg-type]
    # a check error's stage is where a statement failed, never the magic's own "usage"
    with pytest.raises(ValueError):
        SqlCheckError("x", stage="usage")  # type: ignore[arg-type]
    assert {"extract", "parse", "schema", "refused", "database", "timeout"} <= STAGES
