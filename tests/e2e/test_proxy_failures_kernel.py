"""A proxy that cannot be used, as the magics say it in real kernels (issue 77, items 4 and 5).

An unreachable proxy and a refused token are a ``ProxyError`` from ``%%sql_ai`` as from
``%%ask`` (troubleshooting.md's name for them; ``SqlAIError`` is for SQL that failed), and a
refused token is said once, with no note about a context policy for a request never made.
With the proxy down, a batch run still passes on answers recorded earlier, as replay promises;
each replayed answer says so first, with whether the proxy answers now, and ``%ask_status``
asks the proxy itself, whatever replay does.

Notebooks run through nbclient as nbconvert runs them, against the real proxy
(``jupyter_proxy``) in front of the fake provider, or against a port where nothing listens.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import free_port
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.kernels import kernel_env, make_notebook, outputs_text, run_notebook
from tests.helpers.servers import JupyterServer

pytestmark = pytest.mark.slow

SETUP = "%load_ext rsql_magic\n%config RSQLMagic.model = 'fake-small'"
DATA = (
    "import sqlite3\nimport pandas as pd\n"
    "sales = pd.DataFrame({'region': ['north', 'south'], 'amount': [-1.5, 2.0]})\n"
    "conn = sqlite3.connect(':memory:')\n"
    "conn.execute('CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)')\n"
    "conn.commit()"
)
ASK = "%%ask --df sales\nWhy is one amount negative in the sales frame?"
SQL_AI = "%%sql_ai conn\nHow many customers are there?"


def error_of(cell: Any) -> tuple[str, str]:
    """The error a cell raised, as nbclient kept it: ``(ename, evalue)``."""
    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert errors, outputs_text(cell)
    return errors[-1]["ename"], errors[-1]["evalue"]


def test_an_unreachable_proxy_and_a_refused_token_are_proxy_errors_said_once(
    jupyter_proxy: JupyterServer, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/rsql/"
    nb = make_notebook(
        [
            SETUP,
            DATA,
            f"%config RSQLMagic.proxy_url = {dead!r}",
            SQL_AI,
            ASK,
            f"%config RSQLMagic.proxy_url = {jupyter_proxy.proxy_url!r}\n"
            "%config RSQLMagic.proxy_token = 'not-the-token'",
            SQL_AI,
            ASK,
        ],
        raises=(3, 4, 6, 7),
    )
    logged = len(jupyter_proxy.log())
    run_notebook(nb, kernel_env(None, RSQL_REPLAY="off"), tmp_path)
    # the refused token: GET me was asked (and refused), no model request was ever made
    access = jupyter_proxy.log()[logged:]
    assert re.search(r"401 GET /rsql/me\b", access), access
    assert "/rsql/v1/chat/completions" not in access, access

    for i in (3, 4):  # nothing listens
        ename, evalue = error_of(nb.cells[i])
        assert ename == "ProxyError" and evalue.startswith(f"cannot reach the proxy at {dead}")
    for i in (6, 7):  # the proxy answers, and refuses the token
        ename, evalue = error_of(nb.cells[i])
        assert ename == "ProxyError" and evalue.startswith("not authenticated (401)"), evalue
        shown = outputs_text(nb.cells[i])
        assert shown.count("not authenticated (401)") == 1, shown
        # no word of a context policy or "schemas only": nothing was sent to send them in
        assert "context policy" not in shown and "schemas only" not in shown, shown
    assert [r for r in fresh_provider.received if r.path == "chat/completions"] == []


def test_a_replayed_answer_and_ask_status_say_the_proxy_does_not_answer(
    jupyter_proxy: JupyterServer, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    fresh_provider.script(
        "One sale was refunded.", "```sql\nSELECT COUNT(*) AS n FROM customers\n```"
    )
    cells = [SETUP, DATA, ASK, SQL_AI, "%ask_status"]
    recorded = run_notebook(
        make_notebook(cells), kernel_env(jupyter_proxy.proxy_url, jupyter_proxy.token), tmp_path
    )
    live = outputs_text(recorded.cells[2])
    assert live.startswith("One sale was refunded.") and "Replayed" not in live
    assert "**proxy answers now**: yes" in outputs_text(recorded.cells[4])

    # the same notebook in the same folder, the proxy gone: the batch run passes on replay
    dead = f"http://127.0.0.1:{free_port()}/rsql/"
    rerun = run_notebook(make_notebook(cells), kernel_env(dead, "t"), tmp_path)
    for i in (2, 3):
        shown = outputs_text(rerun.cells[i])
        first = shown.splitlines()[0]
        # the first line says it: a recording, nothing sent, and the proxy's state now
        assert first.startswith("> **Replayed answer from .rsql-replay.jsonl, recorded "), shown
        assert "no request was sent. Proxy answers now: no: cannot reach the proxy at " in first
        assert dead in first
    assert "One sale was refunded." in outputs_text(rerun.cells[2])
    status = outputs_text(rerun.cells[4])
    assert f"**proxy answers now**: no: cannot reach the proxy at {dead}" in status, status
    assert "**replay**: auto (2 answer(s) in .rsql-replay.jsonl)" in status
    assert "the proxy not asked" in status
    assert len([r for r in fresh_provider.received if r.path == "chat/completions"]) == 2
