"""rsql-eval tells retrieval misses from model misses: the `rsql-eval` command (its main, in
process) and rsql_magic.eval.evaluate on a real SQLite file, in front of the loopback provider
scripted as the model.

The database has a wide table (292 columns): the schema text %%sql_ai sends at its default
budget shows its first columns and says how many more there are. A question whose gold SQL
reads one of the columns left out, answered wrong, is a retrieval miss; a question whose every
table and column was shown, answered wrong, is a model miss.
"""

from __future__ import annotations

import json
import re
import sqlite3
import warnings
from pathlib import Path
from typing import Any

import pytest

from rsql_magic.client import ProxyClient
from rsql_magic.eval import evaluate, to_html, to_markdown
from rsql_magic.eval.cli import main
from rsql_magic.eval.questions import Question
from rsql_magic.session import SqlAISettings
from rsql_sql.schema import capture_schema, describe_schema
from tests.helpers import FAKE_KEY
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.tool_calls import tool_call

# wider than the default budget (6,000 characters) can show: the last columns are left out
READINGS = [f"sensor_reading_number_{i:03d}" for i in range(290)]
FIRST, LATE_COLUMN = READINGS[0], READINGS[280]
LATE = {
    "id": "late",
    "question": "Which site scored highest on the late metric?",
    "gold_sql": f"SELECT site FROM measurements ORDER BY {LATE_COLUMN} DESC LIMIT 1",
}
SITES = {
    "id": "sites",
    "question": "How many sites are measured?",
    "gold_sql": "SELECT COUNT(DISTINCT site) FROM measurements",
}
CITIES = {
    "id": "cities",
    "question": "Which city is each site in?",
    "gold_sql": "SELECT site, city FROM sites",
}
# no gold SQL: what it needs is not known, so its miss is neither kind
COUNT = {"id": "count", "question": "How many measurements are there?", "expected": [[3]]}


def fenced(sql: str) -> str:
    return f"```sql\n{sql}\n```"


# the model's answers to LATE, SITES, CITIES, COUNT: wrong, wrong, right, wrong
ANSWERS = [
    fenced(f"SELECT site FROM measurements ORDER BY {FIRST} DESC LIMIT 1"),
    fenced("SELECT COUNT(*) FROM measurements"),
    fenced("SELECT site, city FROM sites"),
    fenced("SELECT 2"),
]


@pytest.fixture
def wide(tmp_path: Path) -> Path:
    path = tmp_path / "probes.sqlite"
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE measurements (id INTEGER PRIMARY KEY, site TEXT, "
        + ", ".join(f"{c} REAL" for c in READINGS)
        + ")"
    )
    con.execute("CREATE TABLE sites (site TEXT PRIMARY KEY, city TEXT)")
    for id_, site, first, late in [(1, "alpha", 9, 1), (2, "beta", 1, 9), (3, "alpha", 5, 5)]:
        con.execute(
            f"INSERT INTO measurements (id, site, {FIRST}, {LATE_COLUMN}) VALUES (?, ?, ?, ?)",
            (id_, site, first, late),
        )
    con.executemany("INSERT INTO sites VALUES (?, ?)", [("alpha", "Lyon"), ("beta", "Oslo")])
    con.commit()
    con.close()
    return path


def test_the_report_tells_a_retrieval_miss_from_a_model_miss(
    fresh_provider: FakeProvider,
    wide: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps(q) + "\n" for q in (LATE, SITES, CITIES, COUNT)))
    monkeypatch.setenv("RSQL_PROXY_URL", f"http://127.0.0.1:{fresh_provider.port}/")
    monkeypatch.setenv("RSQL_PROXY_TOKEN", FAKE_KEY)
    fresh_provider.script(*ANSWERS)
    out_json, out_md = tmp_path / "results.json", tmp_path / "report.md"
    code = main(
        [
            str(questions),
            "--db",
            str(wide),
            "--model",
            "fake-small",
            "--max-retries",
            "0",
            "--json",
            str(out_json),
            "--report",
            str(out_md),
        ]
    )
    assert code == 0
    # what the model was sent for the first question: the late column left out of the DDL
    schema_text = fresh_provider.received[0].body["messages"][0]["content"]
    ddl = next(ln for ln in schema_text.splitlines() if ln.startswith("CREATE TABLE measurements"))
    assert "more columns */" in ddl and LATE_COLUMN not in ddl

    data = json.loads(out_json.read_text())
    got = {r["id"]: r for r in data["results"]}
    assert [got[k]["outcome"] for k in ("late", "sites", "cities", "count")] == [
        "wrong",
        "wrong",
        "correct",
        "wrong",
    ]
    late, sites = got["late"], got["sites"]
    assert late["retrieval"] == "miss"
    assert late["missing_columns"] == [f"main.measurements.{LATE_COLUMN}"]
    assert late["missing_tables"] == []
    # why: the table's line was cut to its first columns, the late one in the part left out
    assert late["miss_reasons"] == {f"main.measurements.{LATE_COLUMN}": "cut by width"}
    assert sites["miss_reasons"] == {}
    assert sites["retrieval"] == "ok" and sites["missing_columns"] == []
    assert got["cities"]["retrieval"] == "ok"
    assert (
        got["count"]["retrieval"] == "unknown" and "no gold SQL" in got["count"]["retrieval_note"]
    )

    summary = data["models"][0]
    assert (summary["retrieval_misses"], summary["model_misses"]) == (1, 1)
    assert summary["misses_unknown"] == 1
    assert summary["retrieval_miss_rate"] == summary["model_miss_rate"] == 0.25
    assert (summary["shown_all"], summary["shown_known"]) == (2, 3)
    assert summary["retrieval_miss_reasons"] == {"cut by width": 1}

    md = out_md.read_text()
    head = next(ln for ln in md.splitlines() if ln.startswith("| model |"))
    assert head.rstrip().endswith("| retrieval misses | model misses |")
    row = next(ln for ln in md.splitlines() if ln.startswith("| fake-small |"))
    assert row.rstrip().endswith("| 1 (25.0%) | 1 (25.0%) |")
    late_row = next(ln for ln in md.splitlines() if ln.startswith("| fake-small | late |"))
    assert (
        "miss: main.measurements." + LATE_COLUMN.replace("_", "\\_") + " (cut by width)" in late_row
    )
    assert "left out in its retrieval misses: 1 cut by width" in md
    sites_row = next(ln for ln in md.splitlines() if ln.startswith("| fake-small | sites |"))
    assert "| ok |" in sites_row
    assert "1 miss(es) with retrieval unknown" in md
    terminal = capsys.readouterr().out
    assert "retrieval misses" in terminal and "1 (25.0%)" in terminal


def test_a_refused_answer_is_told_apart_too(fresh_provider: FakeProvider, wide: Path) -> None:
    # the model guesses a column it was not shown: the schema check refuses it, no retry
    fresh_provider.script(fenced("SELECT site FROM measurements ORDER BY late_metric DESC"))
    client = ProxyClient(f"http://127.0.0.1:{fresh_provider.port}/", FAKE_KEY)
    report = evaluate([Question(**LATE)], str(wide), ["fake-small"], client=client, max_retries=0)
    r = report.results[0]
    assert r.outcome == "refused" and r.retrieval == "miss"
    assert r.missing_columns == [f"main.measurements.{LATE_COLUMN}"]
    assert report.models[0].retrieval_misses == 1 and report.models[0].model_misses == 0
    assert f"<td>miss: main.measurements.{LATE_COLUMN} (cut by width)</td>" in to_html(report)
    # a refusal returns no schema text: the runner builds it again as the loop did; it is the
    # text the model was sent
    con = sqlite3.connect(wide)
    again = describe_schema(
        capture_schema(con), LATE["question"], None, SqlAISettings().schema_chars, "sqlite"
    )
    con.close()
    assert fresh_provider.received[0].body["messages"][0]["content"].endswith("\n" + again)


def agent_answers() -> list[str | dict[str, Any]]:
    """In agent mode, for LATE, SITES and CITIES: the first turn describes the wide table (its
    text is cut at the tool's 6,000 characters, before the late column) and answers wrong; the
    second answers wrong without looking at the schema; the third describes the small table,
    sees all of it, and still answers wrong."""
    return [
        tool_call("describe_table", {"table": "measurements"}, "call_1"),
        ANSWERS[0],
        ANSWERS[1],
        tool_call("describe_table", {"table": "sites"}, "call_2"),
        fenced("SELECT site, 'Paris' FROM sites"),
    ]


def test_agent_mode_counts_what_its_schema_tools_returned(
    fresh_provider: FakeProvider, wide: Path
) -> None:
    fresh_provider.script(*agent_answers())
    client = ProxyClient(f"http://127.0.0.1:{fresh_provider.port}/", FAKE_KEY)
    questions = [Question(**LATE), Question(**SITES), Question(**CITIES)]
    report = evaluate(questions, str(wide), ["fake-small"], client=client, agent=True)
    late, sites, cities = report.results
    assert [r.outcome for r in report.results] == ["wrong"] * 3
    assert [r.steps for r in report.results] == [1, 0, 1]
    described = next(
        m["content"] for m in fresh_provider.received[1].body["messages"] if m.get("role") == "tool"
    )
    assert FIRST in described and LATE_COLUMN not in described  # cut at the tool's bound
    # the cut line still showed the table and its first columns, not the late one
    assert late.retrieval == "miss" and late.missing_tables == []
    assert late.missing_columns == [f"main.measurements.{LATE_COLUMN}"]
    assert sites.retrieval == "miss" and sites.missing_tables == ["main.measurements"]
    # the turn's tool cut the wide table's line; the second turn looked nothing up
    assert late.miss_reasons == {f"main.measurements.{LATE_COLUMN}": "cut by width"}
    assert sites.miss_reasons == {"main.measurements": "not looked up by the agent"}
    assert cities.retrieval == "ok"  # everything shown: the model missed
    summary = report.models[0]
    assert (summary.retrieval_misses, summary.model_misses) == (2, 1)
    assert "search\\_schema and describe\\_table calls returned" in to_markdown(report)


@pytest.fixture
def clinic(tmp_path: Path) -> Path:
    """Sixty tables named for patients fill the default budget before a laboratory table that
    the question names only through its patient_id column (61 tables: no namespace signal)."""
    path = tmp_path / "clinic.sqlite"
    con = sqlite3.connect(path)
    for k in range(60):
        con.execute(
            f"CREATE TABLE patient_record_{k:02d} (patient_id INTEGER, visit_date DATE, "
            "attending_physician TEXT, diagnosis_code TEXT, notes TEXT)"
        )
    con.execute(  # a longer line than theirs: it does not fit where theirs stopped fitting
        "CREATE TABLE laboratory (test_id INTEGER, patient_id INTEGER, result_value REAL, "
        "specimen_collection_time TEXT, reference_range_description TEXT, "
        "performing_technician_name TEXT)"
    )
    con.execute("INSERT INTO laboratory (test_id, patient_id, result_value) VALUES (1, 7, 4.5)")
    con.commit()
    con.close()
    return path


def test_the_report_says_a_table_was_past_the_table_budget(
    fresh_provider: FakeProvider, clinic: Path
) -> None:
    lab = {
        "id": "lab",
        "question": "Which patient records have the highest visits?",
        "gold_sql": "SELECT MAX(result_value) FROM laboratory",
    }
    fresh_provider.script(fenced("SELECT 1"))
    client = ProxyClient(f"http://127.0.0.1:{fresh_provider.port}/", FAKE_KEY)
    report = evaluate([Question(**lab)], str(clinic), ["fake-small"], client=client)
    r = report.results[0]
    assert r.outcome == "wrong" and r.missing_tables == ["main.laboratory"]
    # the header of the text the model was sent says how many tables it shows
    sent = fresh_provider.received[0].body["messages"][0]["content"]
    shown = int(re.search(r"61 tables, (\d+) shown", sent).group(1))
    assert 0 < shown < 60
    why = f"past the table budget: 61st, {shown} shown"
    assert r.miss_reasons == {"main.laboratory": why}
    assert report.models[0].retrieval_miss_reasons == {"past the table budget": 1}
    md = to_markdown(report)
    assert f"miss: main.laboratory ({why})" in md
    assert "left out in its retrieval misses: 1 past the table budget" in md


def test_a_warning_after_rsql_eval_ran_in_the_same_process_keeps_pythons_form(
    tmp_path: Path,
) -> None:
    """rsql-eval shows a warning as a line of its own ("rsql-eval: warning: ..."); called from
    Python (a notebook, a test), the caller's warnings afterwards are not dressed as its own."""
    db = tmp_path / "shop.sqlite"
    sqlite3.connect(db).close()
    assert main([str(tmp_path / "missing.jsonl"), "--db", str(db), "--model", "m"]) == 2
    shown = warnings.formatwarning(UserWarning("later"), UserWarning, "notebook.py", 3)
    assert "rsql-eval" not in shown and "notebook.py:3: UserWarning: later" in shown
