"""Cost per notebook and cell, and policy windows, from real kernels through a real proxy (a
`jupyter server` with the rsql extension in front of the fake provider):

- two notebooks run headless by nbclient: each request's usage row names its own notebook and
  cell, and %ask_cost in one shows only that notebook's spend;
- nbconvert and papermill runs of two notebooks whose cells are the same: the notebook named
  on the runner's command line is the one billed;
- a kernel started as JupyterLab starts one (a session for a notebook path, the cell's id with
  each execute request): billed to that path, relative to the server's root, and that cell;
- inside an ``off`` window an interactive kernel shows the admin's message and end time and
  the cell does not fail; a batch run fails with the same message.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient.exceptions import CellExecutionError

from tests.helpers import require, upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.kernel_policy import (
    delete_session,
    run_in_lab_kernel,
    start_session_kernel,
    usage_rows,
    write_notebook,
)
from tests.helpers.kernels import kernel_env, outputs_text, run_notebook

pytestmark = pytest.mark.slow

PRICED = {"prices": {"fake-small": {"input": 1000.0, "output": 1000.0}}}  # $0.001 a token


def proxy_config(fp: FakeProvider, db: Path, **extra: Any) -> dict[str, Any]:
    return {
        "upstreams": upstreams_for(fp, a1=PRICED, a2=PRICED, b1=PRICED),
        "default_model": "fake-small",
        "notebook_names": True,
        "database_url": f"sqlite:///{db}",
        **extra,
    }


def billed(rows: list[dict[str, Any]]) -> list[tuple[str | None, str | None]]:
    """(notebook, cell) of each chat request the proxy logged, in order."""
    return [(r["notebook"], r["cell"]) for r in rows if r["client"] in ("magic", "sql", "chat")]


def test_two_notebooks_run_by_nbclient_are_each_billed_for_their_own_cells(
    jupyter_server_factory: Any, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    db = tmp_path / "usage.sqlite"
    server = jupyter_server_factory(proxy_config(fresh_provider, db))
    project = tmp_path / "home" / "project"
    _, joins = write_notebook(
        project / "joins.ipynb",
        [
            "%load_ext rsql_magic",
            "%%ask --no-data\nWhat is a left join?",
            "%%ask --no-data\nAnd a right join?",
        ],
    )
    _, sales = write_notebook(
        project / "sales.ipynb",
        ["%load_ext rsql_magic", "%%ask --no-data\nWhich regions sold most?", "%ask_cost"],
    )
    # HOME is the folder above the project: the notebooks are named as a Jupyter server started
    # in the home folder names them
    env = kernel_env(server.proxy_url, server.token, HOME=str(tmp_path / "home"))
    ran = {}
    for name in ("joins.ipynb", "sales.ipynb"):  # nbclient, in the notebook's folder (as nbconvert)
        ran[name] = run_notebook(nbformat.read(project / name, as_version=4), env, project)

    rows = usage_rows(db, 3)
    assert billed(rows) == [
        ("project/joins.ipynb", joins[1]),
        ("project/joins.ipynb", joins[2]),
        ("project/sales.ipynb", sales[1]),
    ], rows
    cost = outputs_text(ran["sales.ipynb"].cells[2])
    assert "**Spend in this notebook**: project/sales.ipynb" in cost
    # its one %%ask cell, not the two requests of joins.ipynb
    assert "| today (since 00:00 UTC) | 1 |" in cost, cost
    assert f"| {sales[1]} | %%ask --no-data | 1 |" in cost
    assert joins[1] not in cost and joins[2] not in cost


def test_nbconvert_and_papermill_bill_the_notebook_named_on_their_command_line(
    jupyter_server_factory: Any, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    db = tmp_path / "usage.sqlite"
    server = jupyter_server_factory(proxy_config(fresh_provider, db))
    project = tmp_path / "home" / "reports"
    # both alike, cell by cell
    same = [
        "%load_ext rsql_magic",
        "%%ask --no-data\nSummarize the week",
    ]
    _, monday = write_notebook(project / "monday.ipynb", same)
    _, friday = write_notebook(project / "friday.ipynb", same)
    # replay off: the second run's question, the same as the first's, must reach the proxy
    env = kernel_env(server.proxy_url, server.token, HOME=str(tmp_path / "home"), RSQL_REPLAY="off")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter",
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "friday.ipynb",
            "--output",
            "friday.out.ipynb",
        ],
        env=env,
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert billed(usage_rows(db, 1)) == [("reports/friday.ipynb", friday[1])]
    require("papermill", reason="papermill runs parameterized notebooks")
    # papermill writes its output as it goes, with the same cells: the input is the one billed
    run = subprocess.run(
        [sys.executable, "-m", "papermill", "monday.ipynb", "monday.out.ipynb", "-k", "python3"],
        env=env,
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert billed(usage_rows(db, 2))[1] == ("reports/monday.ipynb", monday[1])


def test_a_kernel_started_like_jupyterlab_bills_the_sessions_path_and_the_cells_id(
    jupyter_server_factory: Any, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    db = tmp_path / "usage.sqlite"
    server = jupyter_server_factory(proxy_config(fresh_provider, db))
    cells = ["%load_ext rsql_magic", "%%ask --no-data\nWhat is a join?", "%ask_cost", "%ask_status"]
    _, ids = write_notebook(server.root / "course" / "week 1.ipynb", cells)
    session, kernel = start_session_kernel(server.url, server.token, "course/week 1.ipynb")
    try:
        res = run_in_lab_kernel(
            server.url, server.token, kernel, list(zip(cells, ids, strict=True))
        )
    finally:
        delete_session(server.url, server.token, session)
    assert [r["status"] for r in res] == ["ok"] * 4, res
    assert billed(usage_rows(db, 1)) == [("course/week 1.ipynb", ids[1])]
    assert "**Spend in this notebook**: course/week 1.ipynb" in res[2]["shown"]
    assert f"| {ids[1]} | %%ask --no-data | 1 |" in res[2]["shown"]
    assert (
        f"- **notebook**: course/week 1.ipynb (this cell: {ids[3]}; the Jupyter server's session"
        in res[3]["shown"]
    )


def test_inside_an_off_window_a_person_reads_the_note_and_a_batch_run_fails(
    jupyter_server_factory: Any, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    end = now + dt.timedelta(hours=2)
    window = {
        "name": "final exam",
        "groups": ["*"],
        "mode": "off",
        "start": (now - dt.timedelta(minutes=5)).isoformat(),
        "end": end.isoformat(),
        "message": "No assistant during the final exam.",
    }
    server = jupyter_server_factory(
        proxy_config(
            fresh_provider,
            tmp_path / "usage.sqlite",
            policy_windows=[window],
            admin_timezone="Europe/Berlin",
        )
    )
    cells = ["%load_ext rsql_magic", "%%ask --no-data\nWhat is a join?"]
    _, ids = write_notebook(server.root / "exam.ipynb", cells)
    session, kernel = start_session_kernel(server.url, server.token, "exam.ipynb")
    try:
        res = run_in_lab_kernel(
            server.url, server.token, kernel, list(zip(cells, ids, strict=True))
        )
    finally:
        delete_session(server.url, server.token, session)
    assert [r["status"] for r in res] == ["ok", "ok"], res  # a note, not a traceback
    local = end.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Berlin")).strftime(
        "%Y-%m-%d %H:%M %Z"
    )
    note = res[1]["shown"]
    assert (
        "**The assistant is not available now**: policy window final exam (off: no assistant)"
        in note
    )
    assert "> No assistant during the final exam." in note
    assert f"It ends {end.strftime('%Y-%m-%d %H:%M UTC')} ({local})." in note
    assert fresh_provider.received == []

    nb = nbformat.read(server.root / "exam.ipynb", as_version=4)
    with pytest.raises(CellExecutionError) as failed:  # nbconvert's run fails, as it must
        run_notebook(nb, kernel_env(server.proxy_url, server.token), server.root)
    assert "No assistant during the final exam." in str(failed.value)
    assert "No assistant during the final exam." in outputs_text(nb.cells[1])
    assert fresh_provider.received == []


def test_the_in_process_engine_bills_the_notebook_too(
    fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    """No proxy, the user's own keys (nbconvert on a laptop): the engine in the kernel keeps the
    usage log, and %ask_cost reads this notebook's spend from it."""
    home = tmp_path / "home"
    project = home / "laptop"
    _, ids = write_notebook(
        project / "local.ipynb",
        ["%load_ext rsql_magic", "%%ask --no-data\nWhat is a join?", "%ask_cost"],
    )
    env = kernel_env(
        None,
        RSQL_UPSTREAMS=json.dumps(upstreams_for(fresh_provider, a1=PRICED, a2=PRICED, b1=PRICED)),
        RSQL_MODEL="fake-small",
        HOME=str(home),
    )
    nb = run_notebook(nbformat.read(project / "local.ipynb", as_version=4), env, project)
    cost = outputs_text(nb.cells[2])
    assert "**Spend in this notebook**: laptop/local.ipynb" in cost, cost
    assert (
        "| today (since 00:00 UTC) | 1 |" in cost and f"| {ids[1]} | %%ask --no-data | 1 |" in cost
    )
    # no names opted into: the log keeps a keyed hash of the path, the one %ask_cost looked up
    ((stored, cell),) = billed(usage_rows(home / ".rsql" / "usage.sqlite", 1))
    assert (
        cell == ids[1] and stored.startswith("nb-") and f"(the proxy keeps it as {stored})" in cost
    )
