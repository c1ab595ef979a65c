"""What a user names as context, in real kernels (issue 77, items 3 and 10).

A frame, an R data frame, a connection, a database file or a table the user named and that
cannot be read stops the cell before any request (nothing reaches the provider, nothing is
billed) and fails a batch run, saying the names that do exist and the one meant when one is
close; the chat panel's pickers and ``%ask_chat``'s options alike. ``%%sql_ai`` with no CONN
says in its output which source it ran on, and why, when the notebook holds other candidates.

Notebooks run through nbclient as nbconvert runs them (a batch run), against the real proxy
(``jupyter_proxy``) in front of the fake provider; the chat panel in a kernel driven as
JupyterLab drives it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from nbclient.exceptions import CellExecutionError

from tests.helpers import require
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.kernel_driver import KernelDriver
from tests.helpers.kernels import (
    kernel_env,
    make_notebook,
    outputs_text,
    require_r,
    run_notebook,
    user_prompts,
)
from tests.helpers.servers import JupyterServer

pytestmark = pytest.mark.slow

SETUP = "%load_ext rsql_magic\n%config RSQLMagic.model = 'fake-small'"
DATA = (
    "import json, sqlite3\nimport pandas as pd\n"
    "sales = pd.DataFrame({'region': ['north', 'south'], 'amount': [-1.5, 2.0]})\n"
    "orders = pd.DataFrame({'order_id': [1, 2], 'total': [3.0, 4.0]})\n"
    "total = 5\n"
    "conn = sqlite3.connect(':memory:')\n"
    "conn.execute('CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)')\n"
    "conn.execute('CREATE TABLE purchases (id INTEGER PRIMARY KEY, customer_id INTEGER, "
    "amount REAL)')\n"
    "conn.executemany('INSERT INTO customers VALUES (?, ?)', [(1, 'acme'), (2, 'globex')])\n"
    "conn.commit()"
)


# what %ask_chat says when it does not open a panel (run_line_magic raises its UsageError)
OPENED = """
def opened(line):
    try:
        get_ipython().run_line_magic('ask_chat', line)
    except Exception as e:
        return str(e)
    return 'opened'
"""


def chat_requests(fp: FakeProvider) -> list[Any]:
    """What reached the provider as a model request (the proxy's own checks aside)."""
    return [r for r in fp.received if r.path == "chat/completions"]


def error_of(cell: Any) -> str:
    """The error a cell raised, as nbclient kept it: ``UsageError: ...``."""
    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert errors, outputs_text(cell)
    return f"{errors[-1]['ename']}: {errors[-1]['evalue']}"


def test_a_name_that_is_nothing_stops_the_cell_before_any_request_and_fails_the_run(
    jupyter_proxy: JupyterServer, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    cells = [
        SETUP,
        DATA,
        "%%ask --df total\nWhy is the amount negative?",
        "%%ask --sql conx\nWhich customer bought most?",
        "%%ask --sql sqlite:///shop.db\nWhich customer bought most?",
        "%%ask --sql jupysql\nWhich customer bought most?",
        "%%sql_ai conx\nWhich customer bought most?",
        "%%sql_ai conn --tables purchase,customers\nWhich customer bought most?",
        "%%sql_ai sqlite:///shop.db\nWhich customer bought most?",
        "conn2 = sqlite3.connect(':memory:')\nconn2.close()",
        "%%ask --sql conn2\nWhich customer bought most?",
        "%%sql_ai conn2\nWhich customer bought most?",
        # the last one untagged: a batch run fails on it, as on any failed cell
        "%%ask --df salez\nWhy is the amount negative?",
    ]
    nb = make_notebook(cells, raises=tuple(range(2, len(cells) - 1)))
    with pytest.raises(CellExecutionError, match="no DataFrame named salez"):
        run_notebook(nb, kernel_env(jupyter_proxy.proxy_url, jupyter_proxy.token), tmp_path)
    errors = [error_of(c) for c in nb.cells[2:] if "%%" in c.source]

    assert errors[0].startswith("UsageError: --df total: total is an int, not a DataFrame.")
    assert "DataFrames in this notebook: sales, orders." in errors[0]
    assert errors[1].startswith("UsageError: --sql conx: no such variable (did you mean conn?)")
    assert "Connections in this notebook: conn (sqlite)" in errors[1]
    # a missing database file is said, not created empty and described as a database of nothing
    assert "--sql sqlite:///shop.db: no such database file shop.db" in errors[2]
    assert not (tmp_path / "shop.db").exists()
    assert "--sql jupysql: JupySQL has no active connection" in errors[3]
    assert errors[4].startswith("SqlAIError: CONN conx: no such variable (did you mean conn?)")
    assert "Connections in this notebook: conn (sqlite); DataFrames: sales, orders" in errors[4]
    assert errors[5].startswith("SqlAIError: --tables names unknown table(s): purchase (did ")
    assert "(did you mean purchases?)" in errors[5] and "tables: customers, purchases" in errors[5]
    assert "CONN sqlite:///shop.db: no such database file shop.db" in errors[6]
    # a connection that resolves and cannot be read: its schema would be missing from the question
    assert errors[7].startswith("UsageError: the schema of conn2 could not be read: ")
    assert "closed database" in errors[7]
    assert errors[8].startswith("SqlAIError: the schema of sqlite3 could not be read: ")
    assert "closed database" in errors[8]
    last = errors[9]
    assert last.startswith("UsageError: --df salez: no DataFrame named salez (did you mean sales?)")
    assert last.endswith("DataFrames in this notebook: sales, orders. Nothing was sent.")
    assert all(e.endswith("Nothing was sent.") for e in errors), errors
    assert chat_requests(fresh_provider) == []  # not one question reached a model


def test_an_r_data_frame_is_a_frame_that_df_names(
    jupyter_proxy: JupyterServer, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    require_r()
    fresh_provider.script("Gentoo is the heaviest.")
    nb = make_notebook(
        [
            SETUP,
            "%load_ext rpy2.ipython\nimport pandas as pd\nsales = pd.DataFrame({'a': [1]})",
            "%R penguins <- data.frame(species = c('Adelie', 'Gentoo'), mass_g = c(3700, 5000))",
            "%%ask --df penguinz\nWhich species is heaviest?",
            "%%ask --df penguins\nWhich species is heaviest?",
        ],
        raises=(3,),
    )
    run_notebook(nb, kernel_env(jupyter_proxy.proxy_url, jupyter_proxy.token), tmp_path)
    error = error_of(nb.cells[3])
    assert "--df penguinz: no DataFrame named penguinz (did you mean penguins?)" in error
    assert "DataFrames in this notebook: sales; R data frames: penguins" in error
    (asked,) = user_prompts(chat_requests(fresh_provider))
    # the R frame named went along with the R session; the pandas frame nobody named did not
    assert "data.frame `penguins`: 2 rows x 2 columns" in asked and "mass_g" in asked
    assert "DataFrame `sales`" not in asked
    assert "Gentoo is the heaviest." in outputs_text(nb.cells[4])


def test_sql_ai_without_conn_says_which_source_it_ran_on_and_why(
    jupyter_proxy: JupyterServer, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    fresh_provider.script(
        "```sql\nSELECT region, SUM(amount) AS amount FROM sales GROUP BY region\n```",
        "```sql\nSELECT name FROM customers ORDER BY id\n```",
        "```sql\nSELECT COUNT(*) AS n FROM orders\n```",
    )
    nb = make_notebook(
        [
            SETUP,
            DATA,
            "%%sql_ai\nTotal amount per sales region",
            "%%sql_ai conn\nCustomer names in id order",
            "del conn",
            "%%sql_ai\nHow many orders are there?",
        ]
    )
    run_notebook(nb, kernel_env(jupyter_proxy.proxy_url, jupyter_proxy.token), tmp_path)

    implicit = outputs_text(nb.cells[2])
    # first in the output, before the SQL: the source, why it, and the one not used
    assert implicit.startswith("**Ran on your DataFrames (`sales`, `orders`).** No CONN given:")
    assert "JupySQL has no active connection, so your DataFrames" in implicit
    assert "(the order: JupySQL's active connection, then the notebook's DataFrames" in implicit
    assert "Also in this notebook: `conn` (sqlite); name one to query it (`%%sql_ai conn`)" in (
        implicit
    )
    assert implicit.index("Ran on") < implicit.index("SELECT region")
    assert "DuckDB on your DataFrames (`sales`, `orders`)" in implicit

    named = outputs_text(nb.cells[3])
    assert "SQLite on conn" in named and "Ran on" not in named and "No CONN" not in named

    # no other candidate: the source is named, nothing to explain
    alone = outputs_text(nb.cells[5])
    assert "DuckDB on your DataFrames (`sales`, `orders`)" in alone and "No CONN" not in alone


def test_the_chat_panel_says_what_it_cannot_read_and_sends_nothing(
    jupyter_proxy: JupyterServer, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    require("ipywidgets", reason="the chat panel is ipywidgets")
    k = KernelDriver(kernel_env(jupyter_proxy.proxy_url, jupyter_proxy.token), tmp_path)
    try:
        k.run(DATA)
        k.run("%load_ext rsql_magic\n%config RSQLMagic.model = 'fake-small'")
        # %ask_chat's options name what the pickers offer, or the panel does not open
        k.run(OPENED)
        refused = k.value("[opened('--df salez'), opened('--sql conx'), opened('--r')]")
        assert "--df salez: no DataFrame named salez (did you mean sales?)" in refused[0]
        assert "--sql conx: no such variable (did you mean conn?)" in refused[1]
        assert "--r: there is no R session in this kernel" in refused[2]
        assert k.value("__import__('rsql_magic.chat', fromlist=['current']).current() is None")

        k.run("import rsql_magic\np = rsql_magic.chat()\ndisplay(p)")
        ids = k.ids()
        # a frame picked, then deleted by a cell: the question stays, nothing is sent
        k.update(ids["frames"], index=[1])
        assert k.value("list(p.frames.value)") == ["orders"]
        k.run("del orders")
        k.update(ids["input"], value="what is in orders?")
        k.click(ids["send_btn"])
        status = k.value("p.status.value")
        assert "Not sent: the context picked is gone from the notebook (DataFrame orders)" in (
            status
        )
        assert k.value("p.input.value") == "what is in orders?"
        assert k.value("list(p.frames.options)") == ["sales"]  # the pickers, up to date
        # a connection picked that cannot be read: said, nothing sent, the question kept
        k.update(ids["sql"], index=1)
        assert k.value("p.sql.value") == "conn"
        k.run("conn.close()")
        k.click(ids["send_btn"])
        status = k.value("p.status.value")
        assert "the schema of conn could not be read" in status and "Nothing was sent" in status
        assert k.value("p.input.value") == "what is in orders?"
        assert k.value("len(p.turns)") == 0
        assert chat_requests(fresh_provider) == []
    finally:
        k.close()
