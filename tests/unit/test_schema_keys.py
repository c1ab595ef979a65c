"""Keys first and date ranges, through describe_connection on real SQLite and DuckDB databases
(issue 56): a wide table keeps the column another shown table joins it by, wherever the cut
falls; a value's table brings the table the question also names; every date and year column
shown carries its range, text dates of small tables too, far down the list too."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from rsql_magic.privacy import ContextPolicy
from rsql_sql.schema import describe_connection

duckdb = pytest.importorskip("duckdb")

OPEN = ContextPolicy()


def shown(text: str) -> list[str]:
    return [m.replace('"', "").lower() for m in re.findall(r"^CREATE TABLE (\S+) \(", text, re.M)]


def line_of(text: str, table: str) -> str:
    return next(x for x in text.splitlines() if x.startswith(f"CREATE TABLE {table} ("))


def shown_columns(line: str) -> set[str]:
    body = re.sub(r"/\*.*?\*/", "", line.split("(", 1)[1])
    return {part.split()[0] for part in body.split(",") if part.strip() and part.split()}


@pytest.fixture
def cards(tmp_path: Path) -> sqlite3.Connection:
    """A card game: ``sets`` (40 columns, its ``code`` far down) joined to ``cards`` (50
    columns) by ``cards.setCode`` ~ ``sets.code``, no foreign key declared; other tables that fill the budget."""
    conn = sqlite3.connect(tmp_path / "cards.sqlite")
    set_cols = [f"attr_{k:02d} TEXT" for k in range(40)]
    set_cols[3] = "name TEXT"
    set_cols[5] = "totalSetSize INTEGER"
    set_cols[32] = "code TEXT"
    card_cols = [f"prop_{k:02d} TEXT" for k in range(50)]
    card_cols[2] = "name TEXT"
    card_cols[40] = "setCode TEXT"
    conn.executescript(
        f"CREATE TABLE sets (id INTEGER PRIMARY KEY, {', '.join(set_cols)});"
        f"CREATE TABLE cards (id INTEGER PRIMARY KEY, {', '.join(card_cols)});"
        + "".join(
            f"CREATE TABLE ledger_{i:02d} (id INTEGER PRIMARY KEY, memo TEXT, amount REAL, "
            f"status TEXT);"
            for i in range(40)
        )
    )
    conn.executemany(
        "INSERT INTO sets (id, name, code, totalSetSize) VALUES (?, ?, ?, ?)",
        [(1, "Coldsnap", "CSP", 155), (2, "Alliances", "ALL", 199), (3, "Mirage", "MIR", 350)],
    )
    conn.executemany(
        "INSERT INTO cards (id, name, setCode) VALUES (?, ?, ?)",
        [(i, f"Card {i}", ("CSP", "ALL", "MIR")[i % 3]) for i in range(60)],
    )
    conn.commit()
    yield conn
    conn.close()


@pytest.mark.parametrize("policy", [OPEN, None], ids=["values", "schema only"])
def test_a_wide_table_keeps_the_key_another_shown_table_joins_it_by(cards, policy) -> None:
    text = describe_connection(
        cards, "How many cards are in the set Coldsnap?", budget_chars=1800, policy=policy
    )
    assert {"sets", "cards"} <= set(shown(text)), text
    sets_line, cards_line = line_of(text, "sets"), line_of(text, "cards")
    assert "more columns" in sets_line and "more columns" in cards_line  # both are cut
    # the join, whichever way it is read: cards.setCode = sets.code
    assert "code" in shown_columns(sets_line), text
    assert "setCode" in shown_columns(cards_line), text
    assert "id" in shown_columns(sets_line)  # its own key
    if policy is OPEN:  # and the column holding the value
        assert "name TEXT /* e.g. 'Coldsnap' */" in sets_line
    assert len(text) <= 1800


def test_a_value_s_table_brings_the_table_the_question_also_names(tmp_path: Path) -> None:
    # "Todd Casey" is a value of tvshow.cartoon; "countries ... on TV" names tvshow.tv_channel,
    # which other namespaces' look-alikes (matching more of the question's words) outrank
    con = duckdb.connect(str(tmp_path / "tv.duckdb"))
    con.execute("CREATE SCHEMA tvshow")
    con.execute(
        "CREATE TABLE tvshow.tv_channel (id VARCHAR PRIMARY KEY, series_name VARCHAR, "
        "country VARCHAR, language VARCHAR)"
    )
    con.execute(
        "CREATE TABLE tvshow.cartoon (id INTEGER PRIMARY KEY, title VARCHAR, "
        "written_by VARCHAR, channel VARCHAR)"
    )
    con.execute(
        "INSERT INTO tvshow.cartoon VALUES (1, 'The Rise of the Blue Beetle!', 'Todd Casey', "
        "'700'), (2, 'Terror on Dinosaur Island!', 'Steven Melching', '701')"
    )
    con.execute("INSERT INTO tvshow.tv_channel VALUES ('700', 'Sky Radio', 'Italy', 'Italian')")
    for i in range(40):
        con.execute(f"CREATE SCHEMA net_{i:02d}")
        con.execute(
            f"CREATE TABLE net_{i:02d}.tv_cartoon_country (id INTEGER, title VARCHAR, "
            "country VARCHAR)"
        )
    question = "What are the countries that have cartoons on TV that were written by Todd Casey?"
    text = describe_connection(con, question, budget_chars=1500, policy=OPEN)
    names = shown(text)
    assert "tvshow.cartoon" in names, text
    assert "tvshow.tv_channel" in names, text
    assert re.search(r"written_by \w+ /\* e\.g\. 'Todd Casey' \*/", line_of(text, "tvshow.cartoon"))


@pytest.fixture
def matches(tmp_path: Path) -> sqlite3.Connection:
    """A small table of matches whose dates are TEXT, ranked after a dozen others."""
    conn = sqlite3.connect(tmp_path / "league.sqlite")
    conn.executescript(
        "CREATE TABLE matches (match_id INTEGER PRIMARY KEY, played_on TEXT, season TEXT, "
        "home_goals INTEGER);"
        + "".join(
            f"CREATE TABLE team_stats_{i:02d} (team_id INTEGER PRIMARY KEY, team_name TEXT, "
            f"stat_value REAL, season_year INTEGER);"
            for i in range(12)
        )
    )
    conn.executemany(
        "INSERT INTO matches VALUES (?, ?, ?, ?)",
        [(i, f"{2010 + i % 7}-{1 + i % 12:02d}-{1 + i % 28:02d}", "S", i % 5) for i in range(30)],
    )
    conn.execute("UPDATE matches SET played_on = '2009-08-15' WHERE match_id = 29")
    for i in range(12):
        conn.executemany(
            f"INSERT INTO team_stats_{i:02d} VALUES (?, ?, ?, ?)",
            [(k, f"Team {k}", 1.0, 1995 + k) for k in range(10)],
        )
    conn.commit()
    yield conn
    conn.close()


def test_a_small_table_s_text_dates_show_their_range(matches) -> None:
    text = describe_connection(matches, "How many goals were scored in matches?", policy=OPEN)
    assert "played_on TEXT /* 2009-08-15 .. 2016-09-21 */" in line_of(text, "matches"), text


def test_every_date_and_year_column_shown_has_its_range_far_down_the_list(matches) -> None:
    text = describe_connection(matches, "team stats in 2012", policy=OPEN)
    names = shown(text)
    assert names.index("matches") >= 8, text  # past the first eight tables shown
    assert "played_on TEXT /* 2009-08-15 .. 2016-09-21 */" in line_of(text, "matches"), text
    for i in range(12):  # a year column, whether or not it holds the question's year
        assert "season_year INTEGER /* 1995 .. 2004 */" in line_of(text, f"team_stats_{i:02d}")


def test_no_range_is_read_or_shown_without_value_statistics(matches) -> None:
    ran: list[str] = []
    matches.set_trace_callback(ran.append)  # every statement the connection runs
    try:
        text = describe_connection(
            matches, "team stats in 2012", policy=ContextPolicy(value_stats=False)
        )
    finally:
        matches.set_trace_callback(None)
    assert "/*" not in text and "2009" not in text
    # read: the catalog only, never a row (with value statistics, min/max and distinct values)
    assert ran and not [sql for sql in ran if "PRAGMA" not in sql and "matches" in sql], ran
