"""%%sql_ai in real kernels (ipykernel via nbclient, as nbconvert / papermill run notebooks),
once per database kind: SQLite, DuckDB (a connection, and DataFrames), PostgreSQL via JupySQL."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest
from nbclient.exceptions import CellExecutionError

from tests.helpers import FAKE_KEY as KEY
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.kernels import (
    kernel_env,
    make_notebook,
    outputs_text,
    require_or_skip,
    run_notebook,
)
from tests.helpers.services import pg_engine
from tests.helpers.shop import GOOD, SHOP

pytestmark = pytest.mark.slow

SETUP = "%load_ext rsql_magic\n%config RSQLMagic.model = 'fake-small'"


def env_for(fp: FakeProvider) -> dict[str, str]:
    # JupySQL's telemetry would try the network from the kernel
    return kernel_env(f"http://127.0.0.1:{fp.port}/", KEY, PLOOMBER_STATS_ENABLED="false")


def via_proxy(server) -> dict[str, str]:
    """A kernel's environment that reaches the real proxy of a Jupyter server."""
    return kernel_env(server.proxy_url, server.token, PLOOMBER_STATS_ENABLED="false")


def markdown(cell) -> list[str]:
    return [
        o["data"]["text/markdown"] for o in cell.outputs if "text/markdown" in o.get("data", {})
    ]


def test_sqlite_retry_guard_emit_in_a_kernel(fresh_provider: FakeProvider, tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as c:
        c.executescript(SHOP)
    fresh_provider.script(
        "```sql\nSELECT c.region, SUM(o.price) AS total FROM orders o JOIN customers c "
        "ON c.id = o.customer_id GROUP BY c.region\n```",
        GOOD,
        "```sql\nDROP TABLE orders\n```",
        "```sql\nSELECT 1; DROP TABLE orders\n```",
    )
    nb = make_notebook(
        [
            SETUP,
            f"import sqlite3\nconn = sqlite3.connect({str(db)!r})",
            "%%sql_ai conn -o totals --emit\nTotal order amount per region",
            "assert totals is _\nprint(dict(zip(totals.region, totals.total)))",
            "%%sql_ai conn\nDelete the orders table",
            "print('orders left:', conn.execute('SELECT count(*) FROM orders').fetchone()[0])",
        ],
        raises=(4,),
    )
    run_notebook(nb, env_for(fresh_provider), tmp_path)

    assert len(fresh_provider.received) == 4
    fed = fresh_provider.received[1].body["messages"][-1]["content"]
    assert "Unknown column: price. Line: 1, Col: 28\n" in fed
    assert fresh_provider.received[0].body["model"] == "fake-small"
    # the result: SQL that ran, row count, the frame, stored in -o and _
    md = markdown(nb.cells[2])
    assert md[0].startswith("```sql\nSELECT c.region, SUM(o.amount) AS total\n")
    assert "SQLite on conn · 2 attempts; fixed: schema · 2 rows × 2 columns" in md[0]
    assert "*fake-small · 2 call(s) · " in md[0]
    html = [o["data"].get("text/html", "") for o in nb.cells[2].outputs if "data" in o]
    assert any("130.5" in h and "north" in h for h in html)
    # --emit in a batch run: the ready-to-run cell is in the output
    assert md[1].startswith("**Next cell** (batch run: not inserted):")
    assert "pd.read_sql_query(" in md[1] and ", conn)" in md[1]
    assert "{'north': 130.5, 'south': 7.25}" in outputs_text(nb.cells[3])
    # the guard: refused twice, the cell failed, nothing ran
    err = [o for o in nb.cells[4].outputs if o["output_type"] == "error"][0]
    assert err["ename"] == "SqlAIError"
    text = "\n".join(err["traceback"])
    assert "Refused: the answer holds 2 statements (SELECT, DROP TABLE)" in text
    assert "Last SQL:" in text
    assert "orders left: 4" in outputs_text(nb.cells[5])
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM orders").fetchone()[0] == 4


def test_duckdb_frames_and_connection_in_a_kernel(
    fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    fresh_provider.script(
        # DataFrames via DuckDB: a T-SQL answer is transpiled
        "SELECT TOP 1 region, SUM(amount) AS total FROM sales GROUP BY region ORDER BY total DESC",
        # a DuckDB connection: two statements, then a good answer
        "```sql\nSELECT 1; DELETE FROM orders\n```",
        GOOD,
    )
    nb = make_notebook(
        [
            SETUP,
            "import pandas as pd, duckdb\n"
            "sales = pd.DataFrame({'region': ['n', 's', 'n'], 'amount': [1.5, 2.0, 3.25]})",
            "%%sql_ai -o best\nWhich region sells most?",
            "print(best.to_dict('list'))",
            "con = duckdb.connect()\n"
            f"for s in {SHOP!r}.split(';'):\n"
            "    if s.strip(): con.execute(s)",
            "%%sql_ai con --dry-run\nTotals per region",
            "print(type(_).__name__, 'DELETE' in _, con.execute('SELECT count(*) FROM orders').fetchone())",
        ]
    )
    run_notebook(nb, env_for(fresh_provider), tmp_path)
    md = markdown(nb.cells[2])[0]
    assert "DuckDB on your DataFrames (`sales`) · transpiled from tsql to duckdb" in md
    assert "{'region': ['n'], 'total': [4.75]}" in outputs_text(nb.cells[3])
    # the frame's schema went to the model
    system = fresh_provider.received[0].body["messages"][0]["content"]
    assert "CREATE TABLE sales (region TEXT, amount DOUBLE);  -- a pandas DataFrame" in system
    md = markdown(nb.cells[5])[0]
    assert "2 attempts; fixed: refused" in md and "dry run: nothing ran" in md
    assert "str False (4,)" in outputs_text(nb.cells[6])


def test_postgres_through_jupysql_in_a_kernel(
    fresh_provider: FakeProvider,
    tmp_path: Path,
    pg_url: str,  # noqa: F811
) -> None:
    require_or_skip("sql", "JupySQL (pip install jupysql)")
    eng = pg_engine(pg_url)
    with eng.begin() as c:
        for s in SHOP.split(";"):
            if s.strip():
                c.exec_driver_sql(s)
    fresh_provider.script(
        # MySQL backticks for PostgreSQL: transpiled
        "SELECT `region`, COUNT(*) AS n FROM `customers` GROUP BY `region` ORDER BY `region`",
        # a database error is fed back, then a good answer
        "SELECT name + 1 FROM customers",
        GOOD + "\n\nThis sums order amounts per customer region.",
    )
    nb = make_notebook(
        [
            SETUP,
            f"%load_ext sql\n%sql {pg_url}",
            "%%sql_ai -o per_region --emit\nHow many customers per region?",
            "print(per_region.to_dict('list'))",
            "%%sql_ai --explain --max-retries 1\nTotal order amount per region",
            "print({r: float(t) for r, t in zip(_.region, _.total)})",
        ]
    )
    run_notebook(nb, env_for(fresh_provider), tmp_path)
    md = markdown(nb.cells[2])
    assert (
        "PostgreSQL on JupySQL's active connection (SQLAlchemy postgresql) · transpiled from "
        "mysql to postgres" in md[0]
    )
    assert '"region"' in md[0]
    assert "%%sql per_region <<" in md[1]  # JupySQL is loaded: the emitted cell is %%sql
    assert "{'region': ['north', 'south'], 'n': [2, 1]}" in outputs_text(nb.cells[3])
    fed = fresh_provider.received[2].body["messages"][-1]["content"]
    assert "UndefinedFunction: operator does not exist: text + integer" in fed
    md = markdown(nb.cells[4])[0]
    assert "This sums order amounts per customer region." in md
    assert "{'north': 130.5, 'south': 7.25}" in outputs_text(nb.cells[5])


def test_failure_fails_the_batch_run(fresh_provider: FakeProvider, tmp_path: Path) -> None:
    fresh_provider.script("SELECT nope FROM t", "SELECT nope2 FROM t")
    nb = make_notebook(
        [
            SETUP,
            "import sqlite3\nconn = sqlite3.connect(':memory:')\nconn.execute('CREATE TABLE t (a INT)')",
            "%%sql_ai conn --max-retries 1\nshow a",
            "print('not reached')",
        ]
    )
    with pytest.raises(CellExecutionError) as ei:
        run_notebook(nb, env_for(fresh_provider), tmp_path)
    assert "SqlAIError" in str(ei.value)
    assert "Column 'nope2' could not be resolved" in str(ei.value)
    # the failing cell shows its error where the user reads it (the run stops there)
    assert [o["ename"] for o in nb.cells[2].outputs if o["output_type"] == "error"] == [
        "SqlAIError"
    ]


def test_sqlite_through_the_real_proxy(
    jupyter_proxy, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    """The kernel -> Jupyter server proxy -> provider path, with the proxy's default model."""
    fresh_provider.script("SELECT nope FROM orders", GOOD)
    nb = make_notebook(
        [
            "%load_ext rsql_magic",
            f"import sqlite3\nconn = sqlite3.connect(':memory:')\nconn.executescript({SHOP!r})",
            "%%sql_ai conn -o totals --no-cache\nTotal per region",
            "print({r: float(t) for r, t in zip(totals.region, totals.total)})",
        ]
    )
    run_notebook(nb, via_proxy(jupyter_proxy), tmp_path)
    assert [r.status for r in fresh_provider.received] == [200, 200]
    assert fresh_provider.received[0].body["model"] == "fake-small"  # the proxy's default
    fed = fresh_provider.received[1].body["messages"][-1]["content"]
    assert "Column 'nope' could not be resolved. Line: 1, Col: 11" in fed
    assert "{'north': 130.5, 'south': 7.25}" in outputs_text(nb.cells[3])
    md = markdown(nb.cells[2])[0]
    assert "*fake-small · 2 call(s) · " in md


def test_an_escalation_chain_says_which_model_answered_and_why(
    jupyter_proxy, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    """SqlAIMagics.models: the cheap model first; the strong one only once the cheap one's SQL
    failed after its retries. The footer and the proxy's usage log say which answered, and why."""
    wrong = (
        "```sql\nSELECT c.region, SUM(o.price) AS total FROM orders o "
        "JOIN customers c ON c.id = o.customer_id GROUP BY c.region\n```"
    )
    fresh_provider.script(wrong, wrong, GOOD)
    nb = make_notebook(
        [
            "%load_ext rsql_magic\n%config SqlAIMagics.models = ['fake-small', 'fake-large']\n"
            "%config SqlAIMagics.max_retries = 1",
            f"import sqlite3\nconn = sqlite3.connect(':memory:')\nconn.executescript({SHOP!r})",
            "%%sql_ai conn -o totals --no-cache\nTotal per region",
            "print({r: float(t) for r, t in zip(totals.region, totals.total)})",
        ]
    )
    run_notebook(nb, via_proxy(jupyter_proxy), tmp_path)
    assert [r.body["model"] for r in fresh_provider.received] == [
        "fake-small",
        "fake-small",
        "fake-large",
    ]
    assert "{'north': 130.5, 'south': 7.25}" in outputs_text(nb.cells[3])
    md = markdown(nb.cells[2])[0]
    assert "*escalated: fake-small failed at schema · fake-large · 3 call(s) · " in md
    # the usage log: the strong model's row says the chain moved to it after a schema failure
    status, _, raw = jupyter_proxy.request("GET", "me")
    user = json.loads(raw)["user"]
    deadline = time.monotonic() + 10
    while True:
        status, _, raw = jupyter_proxy.request("GET", f"admin/users/{user}/activity?limit=3")
        assert status == 200, raw
        rows = json.loads(raw)["activity"]
        if len(rows) == 3 and rows[0]["model"] == "fake-large" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [(r["model"], r["escalation"]) for r in rows] == [
        ("fake-large", "schema"),
        ("fake-small", None),
        ("fake-small", None),
    ]


def test_values_steer_which_tables_sql_ai_shows_only_as_the_policy_allows(
    jupyter_proxy, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    """A question that names a table only through one of its values ("dogs": a value of
    pets.kind) gets that table into the schema text when the context policy allows value
    statistics, and not when it withholds them; the value itself is never sent."""
    db = tmp_path / "zoo.db"
    with sqlite3.connect(db) as c:
        # more tables than SqlAIMagics.schema_chars can show, none of them about pets by name
        for i in range(150):
            c.execute(f"CREATE TABLE log_{i:03d} (id INTEGER PRIMARY KEY, note TEXT, amount REAL)")
        c.execute("CREATE TABLE pets (id INTEGER PRIMARY KEY, kind TEXT, weight REAL)")
        c.executemany(
            "INSERT INTO pets (kind, weight) VALUES (?, ?)",
            [("dog", 20.0), ("cat", 4.0), ("dog", 30.0), ("hamster", 0.1)],
        )
    answer = "```sql\nSELECT count(*) AS n FROM pets WHERE kind = 'dog'\n```"
    fresh_provider.script(answer, answer)
    nb = make_notebook(
        [
            "%load_ext rsql_magic\n%config SqlAIMagics.schema_chars = 1000",
            f"import sqlite3\nconn = sqlite3.connect({str(db)!r})",
            "%%sql_ai conn --no-cache\nHow many dogs are there?",
            "%config RSQLMagic.context_policy = {'value_stats': False}",
            "%%sql_ai conn --no-cache\nHow many dogs are there?",
        ]
    )
    run_notebook(nb, via_proxy(jupyter_proxy), tmp_path)
    allowed, withheld = (r.body["messages"][0]["content"] for r in fresh_provider.received)
    assert "CREATE TABLE pets" in allowed
    assert "CREATE TABLE pets" not in withheld
    assert "hamster" not in allowed and "'dog'" not in allowed  # values steer; they are not sent


def test_sqlite_double_quoted_string_runs_and_the_footer_says_so(
    fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    """SQL that SQLite runs is not sent back: "north" names no column, so SQLite reads it as a
    string; the magic runs it as 'north' in one call and says what it rewrote."""
    fresh_provider.script(
        '```sql\nSELECT name FROM customers WHERE region = "north" ORDER BY name\n```',
        # the token is model text and comes back in the note: markup in it stays text
        '```sql\nSELECT name FROM customers WHERE region = "<img src=x onerror=alert(1)>"\n```',
    )
    nb = make_notebook(
        [
            SETUP,
            f"import sqlite3\nconn = sqlite3.connect(':memory:')\nconn.executescript({SHOP!r})",
            "%%sql_ai conn -o north\nCustomers in the north",
            "print(list(north.name))",
            "%%sql_ai conn\nCustomers in a strange region",
        ]
    )
    run_notebook(nb, env_for(fresh_provider), tmp_path)
    assert len(fresh_provider.received) == 2
    hostile = markdown(nb.cells[4])[0]
    # in the SQL block it is code, shown verbatim; in the note it is escaped text
    note = hostile.split("```", 2)[2]
    assert 'read "&lt;img src=x onerror=alert(1)>" as a string, as SQLite does' in note
    assert "<img" not in note
    md = markdown(nb.cells[2])[0]
    assert "WHERE region = 'north'" in md
    assert 'read "north" as a string, as SQLite does' in md
    assert "['Ada', 'Cy']" in outputs_text(nb.cells[3])


def test_a_newcomers_first_cells_get_messages_of_ours_in_a_kernel(
    fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    """Issue 55: an empty %%ask cell, a trailing comment after the model's `;`, a refusal's
    error line, and the agent's footer, as a newcomer meets them in a kernel."""
    from tests.helpers.tool_calls import tool_call

    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as c:
        c.executescript(SHOP)
    fresh_provider.script(
        "```sql\nSELECT c.name, SUM(o.amount) AS total FROM orders o JOIN customers c "
        "ON c.id = o.customer_id GROUP BY c.name ORDER BY total DESC LIMIT 1; -- top customer\n```",
        "```sql\nSELECT 1; -- just a note\nDROP TABLE orders\n```",
        "```sql\nDROP TABLE orders; -- as asked\n```",
        tool_call("run_sql", {"connection": "conn", "sql": "SELECT COUNT(*) AS n FROM orders"}),
        "There are 4 orders.",
        "Hello.",
    )
    nb = make_notebook(
        [
            SETUP,
            f"import sqlite3\nconn = sqlite3.connect({str(db)!r})",
            "%%ask",
            "%%sql_ai conn -o top\nThe top customer",
            "%%sql_ai conn\nDrop the orders table",
            "%%ask --agent\nHow many orders are there?",
            "%%ask --agent\nSay hello",
            "print('orders left:', conn.execute('SELECT count(*) FROM orders').fetchone()[0])",
        ],
        raises=(2, 4),
    )
    run_notebook(nb, env_for(fresh_provider), tmp_path)

    # an empty %%ask: what to write and an example, not IPython's words on cell magics
    err = [o for o in nb.cells[2].outputs if o["output_type"] == "error"][0]
    said = err["evalue"]
    assert err["ename"] == "UsageError" and said.startswith("%%ask needs a question"), said
    assert "for example" in said and "%%ask --df sales" in said
    assert "cell body is empty" not in said and "line magic" not in said
    # a comment after the statement's `;` is not a second statement
    assert "'Cy'" in outputs_text(nb.cells[3]) or "Cy" in outputs_text(nb.cells[3])
    assert markdown(nb.cells[3])[0].startswith("```sql\nSELECT c.name, SUM(o.amount) AS total")
    # a comment cannot hide a second statement; the error line says once what and why
    err = [o for o in nb.cells[4].outputs if o["output_type"] == "error"][0]
    first = err["evalue"].splitlines()[0]
    assert err["ename"] == "SqlAIError" and first.startswith("Refused: DROP TABLE is not read-only")
    assert first.lower().count("refused") == 1, first
    assert "last error" not in err["evalue"] and "What to do:" in err["evalue"]
    # the agent's footer counts in words
    assert "*1 tool call, 2 requests*" in outputs_text(nb.cells[5])
    assert "*no tool calls, 1 request*" in outputs_text(nb.cells[6])
    assert "(s)" not in outputs_text(nb.cells[5]) + outputs_text(nb.cells[6])
    assert "orders left: 4" in outputs_text(nb.cells[7])
