"""The names a user gives context (rsql_magic/context/named.py): what is close to what, the
database file a URL names, and what a message shows of names that come from the user's data.
The magics that stop on them, in real kernels: tests/e2e/test_named_context.py."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from rsql_magic.context.named import (
    LISTED,
    close_match,
    database_file_problem,
    listing,
    named_connection,
    named_frames,
    unknown_tables,
)
from rsql_magic.errors import UsageError


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("salez", "sales"), ("Sales", "sales"), ("conx", "conn"), ("ordrs", "orders")],
)
def test_a_typo_or_another_case_finds_the_name_meant(typed: str, meant: str) -> None:
    assert close_match(typed, ["sales", "orders", "conn", "customers"]) == meant


def test_a_name_far_from_every_candidate_is_offered_nothing() -> None:
    assert close_match("weather", ["sales", "orders"]) is None
    assert close_match("x", []) is None


def test_a_frame_and_an_r_data_frame_are_both_what_df_names() -> None:
    ns = {"sales": pd.DataFrame({"a": [1]}), "total": 5}
    found = named_frames("--df", ["sales", "penguins"], ns, ["penguins"])
    assert found.python == ("sales",) and found.r == ("penguins",)
    with pytest.raises(UsageError) as err:
        named_frames("--df", ["total", "penguinz"], ns, ["penguins"])
    text = str(err.value)
    assert "total is an int, not a DataFrame" in text
    assert "no DataFrame named penguinz (did you mean penguins?)" in text
    assert text.endswith(
        "DataFrames in this notebook: sales; R data frames: penguins. Nothing was sent."
    )


def test_a_missing_database_file_is_said_with_the_files_beside_it(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "shop.db").close()
    (tmp_path / "notes.txt").write_text("not a database")
    missing = tmp_path / "shpo.db"
    problem = database_file_problem(f"sqlite:///{missing}")
    assert problem is not None
    assert problem.startswith(f"no such database file {missing} (did you mean shop.db?)")
    assert problem.endswith(f"database files in {tmp_path}: shop.db")
    assert not missing.exists()  # looking never creates it
    # what names no file, or one that is there: nothing to say
    for url in (
        f"sqlite:///{tmp_path / 'shop.db'}",
        "sqlite://",
        "sqlite:///:memory:",
        "duckdb:///:memory:",
        "postgresql://u@h/db",
    ):
        assert database_file_problem(url) is None, url


def test_a_connection_variable_a_url_or_a_value_that_is_none(tmp_path: Path) -> None:
    conn = sqlite3.connect(":memory:")
    ns = {"conn": conn, "rows": [1, 2]}
    assert named_connection("--sql", "conn", ns) == ("conn", conn)
    with pytest.raises(UsageError, match=r"--sql rows: rows is a list, not a connection"):
        named_connection("--sql", "rows", ns)
    with pytest.raises(UsageError, match=r"no such variable \(did you mean conn\?\)"):
        named_connection("--sql", "con", ns)
    with pytest.raises(UsageError, match="no such database file"):
        named_connection("--sql", f"sqlite:///{tmp_path / 'nope.db'}", ns)


def test_names_from_the_users_data_are_shown_as_text_and_bounded() -> None:
    """A frame named with terminal controls, or an R object's name: shown escaped, never
    obeyed; a warehouse of 900 tables is counted, not printed."""
    hostile = "sales\x1b]52;c;aGk=\x07\u202e"
    ns = {hostile: pd.DataFrame({"a": [1]})}
    with pytest.raises(UsageError) as err:
        named_frames("--df", ["salez"], ns)
    text = str(err.value)
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "\\x1b" in text
    tables = [f"t{i:03d}" for i in range(900)]
    shown = listing(tables)
    assert shown.endswith(f"and {900 - LISTED} more") and shown.count(",") == LISTED - 1
    message = unknown_tables(["t1000"], ["t1000"], tables)
    assert message.startswith("--tables names unknown table(s): t1000 (did you mean t100?)")
    assert len(message) < 400
