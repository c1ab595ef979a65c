"""Reproducible notebooks in real kernels: nbconvert records through the real proxy, papermill
replays with the proxy unreachable and RSQL_REPLAY=only, a changed column makes ``auto`` ask
again and ``only`` fail naming the cell. The fingerprint and the store: tests/unit/test_replay.py.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from rsql_magic.replay import ReplayStore
from tests.helpers import free_port
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.kernels import kernel_env, make_notebook, outputs_text
from tests.helpers.servers import JupyterServer
from tests.helpers.shop import GOOD, SHOP

ASK_REPLY = "Group and sum:\n\n```python\nsales.groupby('region')['amount'].sum()\n```\n"
BAD_SQL = (
    "```sql\nSELECT c.region, SUM(o.price) AS total FROM orders o JOIN customers c "
    "ON c.id = o.customer_id GROUP BY c.region\n```"
)


def notebook(db: Path, extra_column: bool = False, flags: str = "") -> nbformat.NotebookNode:
    cols = "'region': ['north', 'south', 'north'], 'amount': [1.5, 2.0, 3.25]"
    if extra_column:
        cols += ", 'discount': [0.0, 0.1, 0.0]"
    return make_notebook(
        [
            "%load_ext rsql_magic\n%config RSQLMagic.model = 'fake-small'",
            f"import pandas as pd, sqlite3\nsales = pd.DataFrame({{{cols}}})\nconn = sqlite3.connect({str(db)!r})",
            f"%%ask --insert -o ans{flags}\nWhat is the total amount per region in sales?",
            "print(ans.splitlines()[0])",
            f"%%sql_ai conn -o totals{flags}\nTotal order amount per region",
            "print(dict(zip(totals.region, totals.total)))",
        ]
    )


def shown(nb_path: Path) -> list[str]:
    """What each code cell showed, with the footer lines (model · tokens · ...) taken out."""
    nb = nbformat.read(nb_path, as_version=4)
    out = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            text = outputs_text(cell)
            out.append("\n".join(ln for ln in text.splitlines() if "fake-small ·" not in ln))
    return out


def footers(nb_path: Path) -> list[str]:
    text = "\n".join(outputs_text(c) for c in nbformat.read(nb_path, as_version=4).cells)
    return re.findall(r".*fake-small ·.*", text)


def nbconvert(nb_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter",
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            nb_path.name,
            "--output",
            nb_path.stem + ".out.ipynb",
        ],
        env=env,
        cwd=nb_path.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )


def papermill(nb_path: Path, out: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            nb_path.name,
            out.name,
            "--cwd",
            str(nb_path.parent),
            "-k",
            "python3",
        ],
        env=env,
        cwd=nb_path.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_record_then_replay_offline_then_new_data_asks_again(
    jupyter_proxy: JupyterServer, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as c:
        c.executescript(SHOP)
    nb_path = tmp_path / "report.ipynb"
    nbformat.write(notebook(db), nb_path)
    online = kernel_env(jupyter_proxy.proxy_url, jupyter_proxy.token)
    dead = f"http://127.0.0.1:{free_port()}/rsql/"  # nothing listens there

    # 1. nbconvert through the real proxy: a batch run, so replay is "auto" and records
    fresh_provider.script(ASK_REPLY, BAD_SQL, GOOD)
    run = nbconvert(nb_path, online)
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(fresh_provider.received) == 3  # %%ask, then %%sql_ai's SQL and its retry
    store = ReplayStore(tmp_path / ".rsql-replay.jsonl")
    # the SQL that worked is recorded for its retry and again for the cell's first request
    assert [e.kind for e in store.entries()] == ["ask", "sql", "sql", "sql"]
    assert [e.failed for e in store.latest().values()] == ["", "", ""]
    raw = store.path.read_text()
    assert jupyter_proxy.token not in raw and "127.0.0.1" not in raw
    first = shown(tmp_path / "report.out.ipynb")
    assert "Group and sum:" in first[2] and "Code for the next cell" in first[2]
    assert "{'north': 130.5, 'south': 7.25}" in first[5]
    assert not any("replayed" in f for f in footers(tmp_path / "report.out.ipynb"))

    # 2. papermill, proxy unreachable, RSQL_REPLAY=only: the same outputs, no request
    run = papermill(
        nb_path, tmp_path / "replayed.ipynb", kernel_env(dead, "wrong-token", RSQL_REPLAY="only")
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(fresh_provider.received) == 3
    again = shown(tmp_path / "replayed.ipynb")
    for i in (2, 4):  # each replayed answer says so first, and that the proxy does not answer
        notice, again[i] = again[i].split("\n", 1)
        assert notice.startswith("> **Replayed answer from .rsql-replay.jsonl, recorded ")
        assert "no request was sent. Proxy answers now: no: cannot reach the proxy" in notice
        again[i] = again[i].lstrip("\n")
    assert again[:4] + again[5:] == first[:4] + first[5:]  # the answers and results
    # %%sql_ai: the same SQL, the same frame; the failed first attempt is not replayed
    assert "2 attempts" in first[4] and "attempts" not in again[4]
    assert again[4].split("```")[1] == first[4].split("```")[1]
    feet = footers(tmp_path / "replayed.ipynb")
    assert len(feet) == 2 and all(
        re.search(r"replayed \(recorded 20\d\d-\d\d-\d\d \d\d:\d\d UTC\) · no request sent", f)
        for f in feet
    )
    assert "1 call(s)" in feet[1]  # straight to the SQL that worked

    # 3. a new column, only, no proxy: the run fails naming the cell and what changed
    nbformat.write(notebook(db, extra_column=True), nb_path)
    run = nbconvert(nb_path, kernel_env(dead, None, RSQL_REPLAY="only"))
    assert run.returncode != 0
    assert "no recorded answer for cell In [3] `%%ask --insert -o ans`" in run.stderr
    assert "DataFrame `sales` (pandas): N rows x N columns / columns" in run.stderr
    assert len(fresh_provider.received) == 3

    # 4. the same change under auto (the batch default): %%ask asks again, %%sql_ai replays
    fresh_provider.script(ASK_REPLY.replace("Group", "Now group"))
    run = nbconvert(nb_path, online)
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(fresh_provider.received) == 4
    assert "discount" in fresh_provider.received[3].body["messages"][-1]["content"]
    now = shown(tmp_path / "report.out.ipynb")
    assert "Now group and sum:" in now[2] and "{'north': 130.5, 'south': 7.25}" in now[5]
    assert len(store.latest()) == 4


@pytest.mark.slow
def test_refresh_asks_again_and_off_records_nothing(
    jupyter_proxy: JupyterServer, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as c:
        c.executescript(SHOP)
    nb_path = tmp_path / "report.ipynb"
    # --no-cache: the proxy's own cache must not hide whether a request was made
    nbformat.write(notebook(db, flags=" --no-cache"), nb_path)
    replay_file = tmp_path / "elsewhere" / "answers.jsonl"
    env = kernel_env(
        jupyter_proxy.proxy_url, jupyter_proxy.token, RSQL_REPLAY_FILE=str(replay_file)
    )
    fresh_provider.script(ASK_REPLY, GOOD, ASK_REPLY.replace("Group", "Fresh"), GOOD)
    assert nbconvert(nb_path, env).returncode == 0
    assert nbconvert(nb_path, {**env, "RSQL_REPLAY": "refresh"}).returncode == 0
    assert len(fresh_provider.received) == 4
    store = ReplayStore(replay_file)
    assert len(store.entries()) == 4 and len(store.latest()) == 2
    assert any(e.text.startswith("Fresh") for e in store.latest().values())
    assert not (tmp_path / ".rsql-replay.jsonl").exists()
    fresh_provider.script(ASK_REPLY, GOOD)
    assert nbconvert(nb_path, {**env, "RSQL_REPLAY": "off"}).returncode == 0
    assert len(fresh_provider.received) == 6 and len(store.entries()) == 4
