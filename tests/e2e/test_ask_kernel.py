"""%%ask in real kernels (ipykernel via nbclient, as nbconvert / papermill run notebooks).

Context tests go through the real proxy (``jupyter_proxy``: a Jupyter server with the rsql
extension in front of the fake provider). Tests of the kernel's own error handling (a 500,
429 + Retry-After waits) point RSQL_PROXY_URL straight at the fake provider, which serves
``/v1/chat/completions`` with exactly the status and headers the test needs. We assert on what
the upstream received (the context really reached it) and on what the cells displayed.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from nbclient.exceptions import CellExecutionError

from tests.helpers.fake_provider import FakeProvider
from tests.helpers.kernels import (
    kernel_env,
    make_notebook,
    outputs_text,
    require_or_skip,
    require_r,
    run_notebook,
    user_prompts,
)
from tests.helpers.servers import JupyterServer

pytestmark = pytest.mark.slow

KEY = "sk-test-a1-fake0123456789"
SETUP = "%load_ext rsql_magic\n%config RSQLMagic.model = 'fake-small'"


def env_for(fp: FakeProvider, **extra: str) -> dict[str, str]:
    """Kernel talks to the fake provider directly (for status / header-exact tests)."""
    return kernel_env(f"http://127.0.0.1:{fp.port}/", KEY, **extra)


def via_proxy(server: JupyterServer) -> dict[str, str]:
    return kernel_env(server.proxy_url, server.token)


def test_pandas_context_render_out_and_insert(
    jupyter_proxy: JupyterServer, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    fresh_provider.script(
        "Group and sum:\n\n```python\nsales.groupby('region')['amount'].sum()\n```\n"
    )
    nb = make_notebook(
        [
            SETUP,
            "import pandas as pd\n"
            "sales = pd.DataFrame({'region': ['north', 'south', 'north'], 'amount': [1.5, 2.0, 3.25]})\n"
            "unrelated = pd.DataFrame({'zzz_col': [1]})",
            "%%ask --insert -o ans\nWhat is the total amount per region in sales?",
            "assert ans.startswith('Group and sum'), ans\nprint('stored', len(ans))",
        ]
    )
    run_notebook(nb, via_proxy(jupyter_proxy), tmp_path)

    assert len(fresh_provider.received) == 1
    body = fresh_provider.received[0].body
    assert body["model"] == "fake-small"
    assert "stream" not in body  # batch run: no streaming
    prompt = user_prompts(fresh_provider.received)[0]
    assert "### DataFrame `sales` (pandas): 3 rows x 2 columns" in prompt
    assert "- region: " in prompt and "- amount: float64, nulls 0, range 1.5..3.25" in prompt
    assert "north" in prompt  # sample rows
    assert "zzz_col" not in prompt  # a frame named in the question: only that one
    assert prompt.rstrip().endswith("What is the total amount per region in sales?")

    ask_cell = nb.cells[2]
    md = [
        o["data"]["text/markdown"] for o in ask_cell.outputs if "text/markdown" in o.get("data", {})
    ]
    assert md[0].startswith("Group and sum:")
    assert "*fake-small · " in md[0] and "tokens" in md[0] and "cache miss" in md[0]
    plain = [
        o["data"]["text/plain"] for o in ask_cell.outputs if o.get("output_type") == "display_data"
    ]
    assert "-- fake-small · " in plain[0]
    # --insert in a batch run: nbclient drops set_next_input, so the code is in the output
    assert "Code for the next cell" in md[1] and "sales.groupby('region')" in md[1]
    assert "stored" in outputs_text(nb.cells[3])


def test_error_context_and_references(
    jupyter_proxy: JupyterServer, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    nb = make_notebook(
        [
            SETUP,
            "threshold = 0.75\nd = {'a': 1}\nd['b']",
            "%%ask\nWhy does this fail? The threshold is {threshold}; see {In[2]}.\n"
            "In R I would write `f <- function(x) {x}` and\n```r\nlapply(l, function(i) {i})\n```\n"
            "glue('{threshold}') stays.",
            "%ask --show-context -o msgs about {Err[-1]}",
            "print(msgs[1]['content'].count('KeyError'))",
        ],
        raises=(1,),
    )
    run_notebook(nb, via_proxy(jupyter_proxy), tmp_path)
    prompt = user_prompts(fresh_provider.received)[0]
    # the last error's cell and traceback went along
    assert "## Last error" in prompt and "d['b']" in prompt and "KeyError: 'b'" in prompt
    assert "interactiveshell.py" not in prompt  # IPython's own frames are dropped
    # references filled, code braces untouched
    assert "The threshold is 0.75; see threshold = 0.75\nd = {'a': 1}\nd['b']." in prompt
    assert "`f <- function(x) {x}`" in prompt
    assert "lapply(l, function(i) {i})" in prompt
    assert "glue('{threshold}') stays." in prompt
    # --show-context: displayed, stored, nothing sent
    assert len(fresh_provider.received) == 1
    shown = outputs_text(nb.cells[3])
    assert "nothing sent (--show-context)" in shown and "----- user -----" in shown
    assert "KeyError: 'b'" in shown
    # {Err[-1]} is filled in the question and the last error is not sent twice
    assert outputs_text(nb.cells[4]).strip() == "1"


def test_sqlite_schema_context(
    jupyter_proxy: JupyterServer, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    nb = make_notebook(
        [
            SETUP,
            "import sqlite3\ncon = sqlite3.connect(':memory:')\n"
            "con.executescript('''CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL);\n"
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id),\n"
            " total REAL, placed_at TEXT);''')",
            "%%ask --sql con\nTop 5 customers by total order value?",
        ]
    )
    run_notebook(nb, via_proxy(jupyter_proxy), tmp_path)
    prompt = user_prompts(fresh_provider.received)[0]
    assert "## SQL schema" in prompt and "connection `con`" in prompt
    low = prompt.lower()
    assert "create table" in low and "customers" in low and "orders" in low
    assert "customer_id" in low and "placed_at" in low
    system = fresh_provider.received[0].body["messages"][0]["content"]
    assert "write code in SQL" in system  # --sql makes SQL the answer language


def test_r_session_context(
    jupyter_proxy: JupyterServer, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    require_r()
    nb = make_notebook(
        [
            SETUP,
            "%load_ext rpy2.ipython",
            "%%R\nscores <- data.frame(student = c('ann', 'bob', 'cy'), score = c(90.5, 80, 72),\n"
            "  grade = factor(c('A', 'B', 'C')), stringsAsFactors = FALSE)\n"
            "big <- data.frame(x = seq_len(2e6))",
            "%%ask --r\nHow do I plot score by grade for scores?",
            "import pandas as pd\npy_side = pd.DataFrame({'p': [1]})",
            "%%ask\nAnything else in my session?",  # rpy2 loaded, nothing picked: R comes along
            "%%ask --df py_side\nAnd here?",  # context picked explicitly: no R session
        ]
    )
    run_notebook(nb, via_proxy(jupyter_proxy), tmp_path, timeout=180)
    prompt = user_prompts(fresh_provider.received)[0]
    assert "## R session" in prompt and "R version 4." in prompt
    assert "### data.frame `scores`: 3 rows x 3 columns" in prompt
    assert "- student: character" in prompt and "- score: numeric" in prompt
    assert "- grade: factor, 3 levels: A, B, C" in prompt
    assert "### data.frame `big`: 2000000 rows x 1 columns" in prompt
    # scores is named in the question, so it is described first
    assert prompt.index("`scores`") < prompt.index("`big`")
    system = fresh_provider.received[0].body["messages"][0]["content"]
    assert "write code in R" in system
    auto, picked = user_prompts(fresh_provider.received)[1:]
    assert "## R session" in auto and "`scores`" in auto and "`py_side`" in auto
    assert "## R session" not in picked and "`py_side`" in picked


def test_failing_upstream_fails_the_run(fresh_provider: FakeProvider, tmp_path: Path) -> None:
    fresh_provider.set_fault("a1", "status", status=500)
    nb = make_notebook([SETUP, "%%ask\nanything?", "print('never reached')"])
    with pytest.raises(CellExecutionError) as ei:
        run_notebook(nb, env_for(fresh_provider), tmp_path)
    assert "ProxyError" in str(ei.value) and "500" in str(ei.value)
    # the failing cell shows its error where the user reads it (the run stops there)
    assert [o["ename"] for o in nb.cells[1].outputs if o["output_type"] == "error"] == [
        "ProxyError"
    ]


def test_no_proxy_found_fails_with_help(tmp_path: Path) -> None:
    nb = make_notebook([SETUP, "%ask_status", "%%ask\nanything?"])
    with pytest.raises(CellExecutionError) as ei:
        run_notebook(nb, kernel_env(None), tmp_path)
    assert "no proxy found" in str(ei.value)
    assert "no proxy found" in outputs_text(nb.cells[1])  # %ask_status explains, does not raise
    assert "RSQL_PROXY_URL" in outputs_text(nb.cells[2])


def test_batch_run_waits_out_429(fresh_provider: FakeProvider, tmp_path: Path) -> None:
    pol = fresh_provider.keys[KEY]
    pol.limit, pol.window = 1, 2.0
    nb = make_notebook([SETUP, "%ask first question", "%ask second question, or is it?"])
    t0 = time.monotonic()
    run_notebook(nb, env_for(fresh_provider), tmp_path)
    assert time.monotonic() - t0 >= 1.0
    assert fresh_provider.too_many == 1
    statuses = [r.status for r in fresh_provider.received]
    assert statuses == [200, 429, 200]
    text = outputs_text(nb.cells[2])
    assert "rate limited (429)" in text and "batch run: waiting" in text
    assert "Fake answer to:" in text and "second question, or is it?" in text  # not a help lookup


def test_batch_run_429_beyond_max_wait_raises(fresh_provider: FakeProvider, tmp_path: Path) -> None:
    pol = fresh_provider.keys[KEY]
    pol.limit, pol.window = 1, 60.0
    nb = make_notebook(
        [
            SETUP + "\n%config RSQLMagic.batch_max_wait = 1.0",
            "%ask first",
            "%ask second",
        ]
    )
    t0 = time.monotonic()
    with pytest.raises(CellExecutionError) as ei:
        run_notebook(nb, env_for(fresh_provider), tmp_path)
    assert time.monotonic() - t0 < 30  # did not sit out the 60 s window
    msg = str(ei.value)
    assert "rate limited (429)" in msg and "retry after" in msg and "batch_max_wait" in msg


def test_sql_connection_kinds(
    jupyter_proxy: JupyterServer, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    """DuckDB, a SQLAlchemy engine, and JupySQL's current connection (``--sql jupysql``)."""
    for mod in ("duckdb", "sqlalchemy", "sql"):
        require_or_skip(mod, "the [all] extra installs DuckDB, SQLAlchemy and JupySQL")
    db = tmp_path / "sa.db"
    nb = make_notebook(
        [
            SETUP,
            "import duckdb\nddb = duckdb.connect()\n"
            "ddb.execute('CREATE TABLE ducks (id INTEGER PRIMARY KEY, wingspan_cm DOUBLE)')",
            "%%ask --sql ddb\nLongest wingspan?",
            "import sqlalchemy as sa\n"
            f"eng = sa.create_engine('sqlite:///{db}')\n"
            "with eng.begin() as c:\n"
            "    c.exec_driver_sql('CREATE TABLE engines (serial TEXT PRIMARY KEY, horsepower INTEGER)')",
            "%%ask --sql eng\nMost powerful engine?",
            "%load_ext sql\n%config SqlMagic.displaylimit = 5",
            f"%sql sqlite:///{db}",
            "%%ask --sql jupysql\nHow many engines?",
        ]
    )
    run_notebook(nb, via_proxy(jupyter_proxy), tmp_path, timeout=180)
    duck, engine, jsql = (p.lower() for p in user_prompts(fresh_provider.received))
    assert "create table" in duck and "ducks" in duck and "wingspan_cm" in duck
    assert "connection `eng`" in engine and "engines" in engine and "horsepower" in engine
    assert "jupysql current connection" in jsql and "horsepower" in jsql


def test_cache_hit_and_no_cache(
    jupyter_proxy: JupyterServer, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    question = "%%ask\nWhich cache_probe_col values are in probe?"
    nb = make_notebook(
        [
            SETUP,
            "import pandas as pd\nprobe = pd.DataFrame({'cache_probe_col': range(50_000)})",
            question,
            question,  # same question, same (seeded-sample) context: answered from the proxy's cache
            question.replace("%%ask", "%%ask --no-cache"),
        ]
    )
    run_notebook(nb, via_proxy(jupyter_proxy), tmp_path)
    assert len(fresh_provider.received) == 2
    assert fresh_provider.received[0].body["temperature"] == 0
    feet = [outputs_text(nb.cells[i]).rsplit("*", 2)[-2] for i in (2, 3, 4)]
    assert "cache miss" in feet[0] and "cache hit" in feet[1] and "cache miss" in feet[2]
