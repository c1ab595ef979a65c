"""Headless runs with no proxy: the kernel runs the engine in-process with the user's own keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nbclient.exceptions import CellExecutionError

from tests.helpers import upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.kernels import (
    kernel_env,
    make_notebook,
    outputs_text,
    run_notebook,
    user_prompts,
)

pytestmark = pytest.mark.slow


def inprocess_env(fp: FakeProvider, home: Path) -> dict[str, str]:
    # no RSQL_PROXY_URL, no Jupyter server: only upstreams of the user's own in the environment
    # (RSQL_UPSTREAMS here; GROQ_API_KEY / OPENAI_API_KEY for real users). HOME is the test's,
    # since the in-process engine keeps its usage log under ~/.rsql.
    return kernel_env(
        None, RSQL_UPSTREAMS=json.dumps(upstreams_for(fp)), RSQL_MODEL="fake-small", HOME=str(home)
    )


def test_inprocess_engine(fresh_provider: FakeProvider, tmp_path: Path) -> None:
    fresh_provider.script("in-process answer")
    nb = make_notebook(
        [
            "%load_ext rsql_magic",
            "%ask_status",
            "import pandas as pd\nlocal_df = pd.DataFrame({'k': ['a', 'b'], 'v': [1.0, 2.0]})",
            "%%ask -o ans\nSum v by k in local_df?",
            "print(ans)",
        ]
    )
    run_notebook(nb, inprocess_env(fresh_provider, tmp_path), tmp_path)
    status = outputs_text(nb.cells[1])
    assert "**proxy**: in-process engine" in status and "**you**: " in status
    assert (
        "### DataFrame `local_df` (pandas): 2 rows x 2 columns"
        in user_prompts(fresh_provider.received)[0]
    )
    assert fresh_provider.received[0].body["model"] == "fake-small"
    shown = outputs_text(nb.cells[3])
    assert "in-process answer\n\n---\n*fake-small · " in shown and "via a" in shown
    assert outputs_text(nb.cells[4]).strip() == "in-process answer"
    assert (tmp_path / ".rsql" / "usage.sqlite").exists()  # usage is logged locally


def test_inprocess_failure_fails_the_run(fresh_provider: FakeProvider, tmp_path: Path) -> None:
    for alias in ("a1", "a2", "b1"):
        fresh_provider.set_fault(alias, "status", status=500)
    nb = make_notebook(["%load_ext rsql_magic", "%%ask\nanything?", "print('not reached')"])
    with pytest.raises(CellExecutionError) as ei:
        run_notebook(nb, inprocess_env(fresh_provider, tmp_path), tmp_path)
    assert "ProxyError" in str(ei.value)
    # the failing cell shows its error where the user reads it (the run stops there)
    assert [o["ename"] for o in nb.cells[1].outputs if o["output_type"] == "error"] == [
        "ProxyError"
    ]
