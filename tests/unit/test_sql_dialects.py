"""Dialect names as sqlglot spells them, and telling a DataFrame from a connection."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest

from rsql_sql.connections import is_frame
from rsql_sql.dialects import sqlglot_dialect


@pytest.mark.parametrize(
    ("name", "dialect"),
    [
        ("postgresql", "postgres"),
        ("pg", "postgres"),
        (" MSSQL ", "tsql"),
        ("sqlserver", "tsql"),
        ("mariadb", "mysql"),
        ("awsathena", "athena"),
        ("duckdb", "duckdb"),
        ("tsql", "tsql"),
    ],
)
def test_sqlalchemy_and_user_names_map_to_sqlglot(name: str, dialect: str) -> None:
    assert sqlglot_dialect(name) == dialect


def test_unknown_dialect_is_refused_unless_unchecked() -> None:
    with pytest.raises(ValueError, match="Unknown dialect"):
        sqlglot_dialect("nosuchsql")
    assert sqlglot_dialect("nosuchsql", check=False) == "nosuchsql"


def test_is_frame() -> None:
    assert is_frame(pd.DataFrame({"a": [1]}))
    assert not is_frame({"a": [1]})
    assert not is_frame(sqlite3.connect(":memory:"))
