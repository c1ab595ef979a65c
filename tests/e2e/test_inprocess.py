"""A headless run with no proxy at all: the engine runs inside the kernel with the user's keys."""

from __future__ import annotations

import json
import os

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tests.helpers import upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.kernels import kernel_sockets

pytestmark = pytest.mark.slow


def run(cells: list[str], env: dict[str, str], tmp_path) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    keep = {
        k: v for k, v in os.environ.items() if not k.startswith(("RSQL_", "JUPYTERHUB_", "JPY_"))
    }
    with kernel_sockets() as config:
        client = NotebookClient(
            nb,
            config=config,
            timeout=120,
            kernel_name="python3",
            resources={"metadata": {"path": str(tmp_path)}},
        )
        client.km = client.create_kernel_manager()
        # a kernel outside any Jupyter server, with only what a laptop user would have set
        client.start_new_kernel(env={**keep, "HOME": str(tmp_path), **env})
        client.execute(cleanup_kc=True)
    return nb


def test_ask_runs_the_engine_in_the_kernel(fresh_provider: FakeProvider, tmp_path) -> None:
    ups = upstreams_for(fresh_provider)
    nb = run(
        ["%load_ext rsql_magic", "%ask_status", "%%ask --no-data\nWhat is a left join?"],
        {"RSQL_UPSTREAMS": json.dumps(ups), "RSQL_MODEL": "fake-small"},
        tmp_path,
    )
    status_text = json.dumps(nb.cells[1].outputs)
    assert "in-process" in status_text
    answer = json.dumps(nb.cells[2].outputs)
    assert "Fake answer to:" in answer
    (req,) = [r for r in fresh_provider.received if "left join" in json.dumps(r.body)]
    assert req.alias in {"a1", "a2", "b1"}
    # the usage log is the user's own, next to their home
    assert (tmp_path / ".rsql" / "usage.sqlite").exists()


def test_no_proxy_and_no_keys_fails_the_run_with_help(tmp_path) -> None:
    """With the local model turned off too (without it: test_local_model's try-it test)."""
    with pytest.raises(CellExecutionError) as err:
        run(["%load_ext rsql_magic", "%%ask\nhello?"], {"RSQL_LOCAL_MODEL": "off"}, tmp_path)
    for hint in ("RSQL_PROXY_URL", "RSQL_UPSTREAMS", "OPENAI_BASE_URL", "RSQL_LOCAL_MODEL"):
        assert hint in str(err.value)
