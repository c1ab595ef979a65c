"""The agent's kernel tools (rsql_magic/agent/tools.py, issue #37 item 1): what a model can do
with them, and what it cannot, however it asks: write to a database, read a redacted column's
values, get markup shown as HTML, run a cell it proposed, run R code through a "name", or
break a call with bad input. In-process: an IPython shell with rsql_magic loaded, a SQLite
database in memory, and R through rpy2 where R is installed (as tests/unit/test_context_r.py).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from rsql_magic.agent import proposal as proposal_mod
from rsql_magic.agent import tools as tools_mod
from rsql_magic.agent.tools import KernelTools, ToolResult, result_html
from rsql_magic.session import Session
from tests.helpers.kernels import import_rpy2, require_r

MARKUP = "<img src=x onerror=alert(1)>"
EMAILS = ("ann@example.com", "bob@example.com", "eve@example.com")
SHOP = f"""
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, email TEXT, region TEXT);
INSERT INTO customers VALUES (1, 'Ann', '{EMAILS[0]}', 'north'), (2, 'Bob', '{EMAILS[1]}',
  'south'), (3, '{MARKUP}', '{EMAILS[2]}', 'north');
"""


class _Engine:
    """The in-process engine's ``me``: its context policy is the admin's here."""

    def __init__(self, policy: dict[str, Any]) -> None:
        self.policy = policy

    def me(self) -> dict[str, Any]:
        return {"context_policy": self.policy}


class _Client:
    """A proxy client whose admin withholds `policy` (read as ``GET me`` would be)."""

    unavailable = None
    base_url = None
    token = None

    def __init__(self, policy: dict[str, Any]) -> None:
        self.engine = _Engine(policy)


@pytest.fixture
def shell(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setenv("RSQL_BATCH", "0")
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "rsql_magic")
    conn = sqlite3.connect(":memory:")
    conn.executescript(SHOP)
    people = pd.DataFrame(
        {"name": ["Ann", MARKUP, "Bob"], "email": list(EMAILS), "score": [1.5, 2.5, 3.5]}
    )
    ip.user_ns.update(conn=conn, people=people, db_url="sqlite:///nowhere.db")
    session = Session.of(ip)
    try:
        yield ip
    finally:
        session.config.ask.context_policy = {}
        session.cells.errors.clear()
        for k in ("conn", "people", "db_url", "wide", "slow"):
            ip.user_ns.pop(k, None)
        conn.close()


def _tools(ip: Any, **kw: Any) -> KernelTools:
    return KernelTools(Session.of(ip), **kw)


# -- the interface and bad calls ----------------------------------------------------------


def test_the_model_is_offered_the_seven_tools_with_their_arguments(shell: Any) -> None:
    specs = {s["function"]["name"]: s["function"] for s in _tools(shell).specs()}
    assert set(specs) == {
        "list_variables",
        "describe_frame",
        "r_describe",
        "search_schema",
        "run_sql",
        "last_error",
        "propose_cell",
    }
    assert all(s["type"] == "function" for s in _tools(shell).specs())
    assert specs["run_sql"]["parameters"]["required"] == ["connection", "sql"]
    assert specs["propose_cell"]["parameters"]["properties"]["language"]["enum"] == [
        "python",
        "sql",
        "r",
    ]
    assert specs["list_variables"]["parameters"]["properties"] == {}


@pytest.mark.parametrize(
    ("name", "arguments", "says"),
    [
        ("drop_table", {}, "unknown tool"),
        ("describe_frame", '{"name": "people"', "not valid JSON"),
        ("describe_frame", "[1, 2]", "must be a JSON object"),
        ("describe_frame", {}, "missing argument(s): name"),
        ("describe_frame", {"name": "people", "exec": "1"}, "unknown argument(s) exec"),
        ("describe_frame", {"name": 7}, "must be a string"),
        ("describe_frame", {"name": "nobody"}, "no DataFrame named 'nobody'"),
        ("describe_frame", {"name": "__import__('os').system('id')"}, "no DataFrame named"),
        ("run_sql", {"connection": "people_db", "sql": "SELECT 1"}, "people_db"),
        ("propose_cell", {"code": "1", "language": "bash"}, "language must be one of"),
    ],
)
def test_a_bad_call_is_an_error_result_naming_the_problem(
    shell: Any, name: str, arguments: Any, says: str
) -> None:
    res = _tools(shell).call(name, arguments)
    assert isinstance(res, ToolResult) and res.error
    assert says in res.text, res.text
    assert "\n" not in res.summary and len(res.summary) <= 120


# -- list_variables, describe_frame, last_error --------------------------------------------


def test_list_variables_names_frames_and_connections_with_shapes_and_no_values(
    shell: Any,
) -> None:
    res = _tools(shell).call("list_variables", "{}")
    assert not res.error
    assert "- people: pandas, 3 rows x 3 columns" in res.text
    assert "- conn: sqlite" in res.text
    assert "- frames:" in res.text
    assert "db_url" not in res.text  # a string is not a connection, even one holding a URL
    assert not any(e in res.text for e in EMAILS)


def test_describe_frame_describes_and_its_markup_is_text_never_live_html(shell: Any) -> None:
    res = _tools(shell).call("describe_frame", {"name": "people"})
    assert not res.error and res.summary == "3 rows × 3 columns"
    assert "3 rows x 3 columns" in res.text and "score: float64" in res.text
    assert MARKUP in res.text  # the data, as text, for the model
    shown = result_html(res)
    assert "<img" not in shown and "onerror=alert(1)&gt;" in shown


def test_describe_frame_never_returns_a_redacted_columns_values(shell: Any) -> None:
    admin = _Client({"redact_columns": ["*mail*"]})
    res = _tools(shell, client=admin).call("describe_frame", {"name": "people"})
    assert not res.error and "email" in res.text and "withheld" in res.text
    assert not any(e in res.text for e in EMAILS), res.text
    # the user's own policy binds too
    Session.of(shell).config.ask.context_policy = {"redact_columns": ["email"]}
    res = _tools(shell).call("describe_frame", {"name": "people"})
    assert not any(e in res.text for e in EMAILS), res.text


def test_describe_frame_past_its_time_limit_is_an_error_not_a_hang(shell: Any) -> None:
    class Slow:
        def __hash__(self) -> int:
            time.sleep(0.4)
            return 1

        def __repr__(self) -> str:
            time.sleep(0.4)
            return "slow"

    shell.user_ns["slow"] = pd.DataFrame({"x": [Slow(), Slow(), Slow()]})
    tools = _tools(shell, time_limit_s=0.3)
    t0 = time.monotonic()
    res = tools.call("describe_frame", {"name": "slow"})
    assert time.monotonic() - t0 < 1.0
    assert res.error and "longer than its 0.3 s limit" in res.text
    # while the abandoned work runs on, no second one piles up
    again = tools.call("describe_frame", {"name": "people"})
    assert again.error and "still running" in again.text


def test_every_result_is_bounded_and_cut_at_a_line_end(shell: Any) -> None:
    shell.user_ns["wide"] = pd.DataFrame({f"column_{i:03d}": [i] for i in range(200)})
    res = _tools(shell, max_chars=800).call("describe_frame", {"name": "wide"})
    assert not res.error and len(res.text) <= 800
    assert "200 columns" in res.text  # the width is said, though 60 are described


def test_last_error_is_the_failed_cells_traceback(shell: Any) -> None:
    tools = _tools(shell)
    assert tools.call("last_error", {}).text.startswith("No cell has failed")
    shell.run_cell("1 / 0")
    res = tools.call("last_error", {})
    assert not res.error and res.summary == "ZeroDivisionError"
    assert "1 / 0" in res.text and "ZeroDivisionError" in res.text


# -- the warehouse: search_schema and run_sql ----------------------------------------------


def test_search_schema_and_a_read_only_query(shell: Any) -> None:
    tools = _tools(shell)
    schema = tools.call("search_schema", {"connection": "conn", "question": "customers by region"})
    assert not schema.error and "customers" in schema.text and "region" in schema.text
    res = tools.call(
        "run_sql",
        {"connection": "conn", "sql": "SELECT region, count(*) AS n FROM customers GROUP BY 1"},
    )
    assert not res.error, res.text
    assert res.summary == "2 rows × 2 columns" and "north | 2" in res.text


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM customers",
        "DROP TABLE customers",
        "INSERT INTO customers VALUES (9, 'x', 'x@example.com', 'west')",
        "UPDATE customers SET email = 'x'",
        "SELECT 1; DROP TABLE customers",
        "WITH x AS (DELETE FROM customers RETURNING *) SELECT * FROM x",
    ],
)
def test_a_run_sql_that_writes_is_refused_and_the_table_is_unchanged(shell: Any, sql: str) -> None:
    conn: sqlite3.Connection = shell.user_ns["conn"]
    before = conn.execute("SELECT * FROM customers ORDER BY id").fetchall()
    res = _tools(shell).call("run_sql", {"connection": "conn", "sql": sql})
    assert res.error and res.summary.startswith("refused"), res.text
    assert conn.execute("SELECT * FROM customers ORDER BY id").fetchall() == before


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT email FROM customers",
        "SELECT upper(email) AS shout FROM customers",
        "SELECT * FROM customers",
        "SELECT c.* FROM customers AS c",
        "SELECT name FROM customers WHERE email LIKE 'ann%'",
        "SELECT e FROM (SELECT email AS e FROM customers) AS t",
    ],
)
def test_a_run_sql_never_returns_a_redacted_columns_values(shell: Any, sql: str) -> None:
    admin = _Client({"redact_columns": ["email"]})
    res = _tools(shell, client=admin).call("run_sql", {"connection": "conn", "sql": sql})
    assert not any(e in res.text or e.upper() in res.text for e in EMAILS), res.text
    if "WHERE" in sql:  # reading it to filter answers questions about its values: refused
        assert res.error and "email" in res.text


def test_a_run_sql_result_carrying_markup_is_text_and_shown_escaped(shell: Any) -> None:
    res = _tools(shell).call(
        "run_sql", {"connection": "conn", "sql": "SELECT name FROM customers WHERE id = 3"}
    )
    assert not res.error and MARKUP in res.text
    assert "<img" not in result_html(res) and "&lt;img" in result_html(res)


def test_a_connection_is_a_name_never_a_url(shell: Any, tmp_path: Path) -> None:
    # a database file that exists and would answer: only the rule that a connection is a
    # variable's name (never a URL or an expression) keeps the tool from opening it
    target = tmp_path / "there.db"
    made = sqlite3.connect(target)
    made.execute("CREATE TABLE t (x INTEGER)")
    made.commit()
    made.close()
    res = _tools(shell).call("run_sql", {"connection": f"sqlite:///{target}", "sql": "SELECT 1"})
    assert res.error and res.summary == "refused: not a connection name", res
    assert "URLs and expressions are not accepted" in res.text
    res = _tools(shell).call("run_sql", {"connection": "db_url", "sql": "SELECT 1"})
    assert res.error and "not a connection" in res.text, res.text


# -- propose_cell --------------------------------------------------------------------------


@pytest.fixture
def inserted(shell: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    cells: list[str] = []
    monkeypatch.setattr(shell, "set_next_input", lambda code, replace=False: cells.append(code))
    monkeypatch.setattr(tools_mod, "display", lambda *a, **k: None)
    return cells


def test_a_proposed_cell_never_runs_with_or_without_accept(
    shell: Any, inserted: list[str], tmp_path: Path
) -> None:
    target = tmp_path / "pwned"
    code = f"open({str(target)!r}, 'w').write('x')"
    tools = _tools(shell)
    res = tools.call("propose_cell", {"code": code, "language": "python"})
    assert not res.error and not target.exists() and inserted == []
    assert tools.proposals[0].code == code and not tools.proposals[0].accepted
    tools.views[0].accept_btn.click()
    assert inserted == [code] and tools.proposals[0].accepted  # put below, for the user
    assert not target.exists()  # and not run
    tools.views[0].accept_btn.click()
    assert inserted == [code]  # one decision per proposal


def test_a_rejected_proposal_inserts_nothing_and_its_code_is_shown_as_text(
    shell: Any, inserted: list[str]
) -> None:
    tools = _tools(shell)
    tools.call("propose_cell", {"code": f"x = '{MARKUP}'", "language": "python"})
    view = tools.views[0]
    assert "<img" not in view.code.value and "&lt;img" in view.code.value
    view.reject_btn.click()
    view.accept_btn.click()  # too late: rejected
    assert inserted == [] and not tools.proposals[0].accepted


def test_accept_from_a_click_outside_a_cell_offers_the_code_to_copy(
    shell: Any, inserted: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A click is no execute request: ipykernel would deliver the new cell with the next
    cell's reply, in the wrong place. The code is offered to copy, and a running cell can
    insert it later."""
    monkeypatch.setattr(proposal_mod, "in_execute_request", lambda _shell: False)
    tools = _tools(shell)
    tools.call("propose_cell", {"code": "df.head()", "language": "python"})
    assert tools.views[0].accept() is False
    assert inserted == [] and tools.views[0].copy_area.value == "df.head()"
    monkeypatch.setattr(proposal_mod, "in_execute_request", lambda _shell: True)
    assert tools.insert_accepted() == 1 and inserted == ["df.head()"]


def test_a_batch_run_shows_a_proposed_cell_and_never_inserts_it(
    shell: Any, inserted: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rsql_magic.session import cells as cells_mod

    shown: list[dict[str, Any]] = []
    monkeypatch.setattr(cells_mod, "display", lambda bundle, **k: shown.append(bundle))
    monkeypatch.setenv("RSQL_BATCH", "1")
    tools = _tools(shell)
    res = tools.call("propose_cell", {"code": "SELECT 1", "language": "sql"})
    assert not res.error and "batch" in res.summary
    assert inserted == [] and tools.views == []
    assert "```sql\nSELECT 1\n```" in shown[0]["text/markdown"]


# -- r_describe ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["system('touch /tmp/x')", "x; y", "get('x')", "if", "`x`", "1x", "a b"]
)
def test_r_describe_takes_a_name_never_code(shell: Any, name: str) -> None:
    res = _tools(shell).call("r_describe", json.dumps({"name": name}))
    assert res.error and "not an R variable name" in res.text, res.text


@pytest.fixture(scope="module")
def r_started() -> None:
    # module scope: R starts (rpy2 asks `R RHOME`) before the unit tests' process ban applies
    require_r()
    import_rpy2()


@pytest.fixture
def r_objects(shell: Any, r_started: None) -> Iterator[Any]:
    import rpy2.robjects as ro

    ro.r(
        f"""
        people <- data.frame(name = c("Ann", "{MARKUP}"), email = c("{EMAILS[0]}",
                             "{EMAILS[1]}"), age = c(30L, 41L))
        slow <- structure(list(), class = "slowthing")
        summary.slowthing <- function(object, ...) {{
          t <- Sys.time(); while (Sys.time() - t < 20) NULL; "done" }}
        """
    )
    yield ro
    ro.r("rm(list = c('people', 'slow', 'summary.slowthing'), envir = globalenv())")


def test_r_describe_shows_str_and_summary_as_the_policy_allows(
    shell: Any, r_objects: Any, tmp_path: Path
) -> None:
    tools = _tools(shell, client=_Client({"redact_columns": ["email"]}))
    res = tools.call("r_describe", {"name": "people"})
    assert not res.error, res.text
    assert "str():" in res.text and "summary():" in res.text and "age" in res.text
    assert "41" in res.text and MARKUP in res.text
    assert not any(e in res.text for e in EMAILS), res.text
    assert "<img" not in result_html(res)
    assert "people" in tools.call("list_variables", {}).text
    target = tmp_path / "x"
    res = tools.call("r_describe", {"name": f"system('touch {target}')"})
    assert res.error and not target.exists()
    assert "no R variable named nobody" in tools.call("r_describe", {"name": "nobody"}).text
    strict = _tools(shell, client=_Client({"value_stats": False}))
    res = strict.call("r_describe", {"name": "people"})
    assert "41" not in res.text and "(summary withheld by policy)" in res.text


def test_r_describe_past_its_time_limit_is_an_error_not_a_hang(shell: Any, r_objects: Any) -> None:
    t0 = time.monotonic()
    res = _tools(shell, time_limit_s=0.5).call("r_describe", {"name": "slow"})
    assert time.monotonic() - t0 < 3.0
    assert res.error and "longer than its 0.5 s limit" in res.text, res.text


def test_the_last_wall_cuts_a_result_at_a_line_end_never_inside_a_value() -> None:
    """``calls.fit``, which every tool result passes last (each tool bounds its own first, by
    rows or lines): a value cut in two could slip past the proxy's pattern redaction."""
    from rsql_magic.agent.calls import fit

    lines = [f"person.{i:03d}.{'x' * 40}@example.org" for i in range(60)]
    text = "\n".join(lines)
    cut = fit(text, 800)
    kept, _, said = cut.rpartition("\n")
    assert len(cut) <= 800 and said == f"... (cut: {len(text) - len(kept):,} more characters)"
    assert kept.splitlines() == lines[: len(kept.splitlines())] and kept  # whole lines only
    assert fit("short", 800) == "short"
