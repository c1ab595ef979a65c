"""%%ask end to end through the real proxy: a Jupyter server with the rsql extension in front of
the fake provider (``jupyter_proxy`` in conftest).

- a notebook run by nbclient (as nbconvert / papermill do), proxy found through RSQL_PROXY_URL;
- a kernel started BY the Jupyter server (as JupyterLab does) and driven over its websocket:
  the kernel finds the proxy on its own through JPY_PARENT_PID and jpserver-<pid>.json;
- ``jupyter nbconvert --execute`` exits non-zero when the upstream fails.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.kernel_driver import execute_content
from tests.helpers.kernels import (
    kernel_env,
    make_notebook,
    outputs_text,
    run_notebook,
    user_prompts,
)
from tests.helpers.servers import JupyterServer

pytestmark = pytest.mark.slow


def test_notebook_through_proxy(
    jupyter_proxy: JupyterServer, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    fresh_provider.script("Use `groupby`:\n\n```python\norders.groupby('city').qty.sum()\n```")
    nb = make_notebook(
        [
            "%load_ext rsql_magic",  # no model configured: the proxy's default model answers
            "import pandas as pd\norders = pd.DataFrame({'city': ['Oslo', 'Rome'], 'qty': [3, 4]})",
            "%%ask --no-cache\nHow many items per city in orders?",
            "import sqlite3\ncon = sqlite3.connect(':memory:')\n"
            "con.execute('CREATE TABLE shipments (id INTEGER PRIMARY KEY, city TEXT, weight_kg REAL)')",
            "%%ask --sql con\nAverage shipment weight per city?",
        ]
    )
    run_notebook(nb, kernel_env(jupyter_proxy.proxy_url, jupyter_proxy.token), tmp_path)

    assert [r.status for r in fresh_provider.received] == [200, 200]
    first, second = user_prompts(fresh_provider.received)
    assert fresh_provider.received[0].body["model"] == "fake-small"
    assert "### DataFrame `orders` (pandas): 2 rows x 2 columns" in first
    assert "- qty: int64, nulls 0, range 3..4" in first
    assert "create table shipments" in second.lower() and "weight_kg" in second
    md = [
        o["data"]["text/markdown"]
        for o in nb.cells[2].outputs
        if "text/markdown" in o.get("data", {})
    ]
    assert md[0].startswith("Use `groupby`:")
    assert "*fake-small · " in md[0] and "via " in md[0]  # X-RSQL-Upstream names the key alias


def _run_in_server_kernel(server: JupyterServer, codes: list[str]) -> list[dict[str, Any]]:
    """Start a kernel through the server's REST API and run ``codes`` over its websocket."""
    auth = {"Authorization": f"token {server.token}"}
    req = urllib.request.Request(
        server.url + "api/kernels",
        data=b"{}",
        method="POST",
        headers={**auth, "Content-Type": "application/json"},
    )
    kid = json.loads(urllib.request.urlopen(req, timeout=30).read())["id"]
    ws_url = server.url.replace("http://", "ws://") + f"api/kernels/{kid}/channels"
    try:
        return asyncio.run(_drive_kernel(ws_url, auth, codes))
    finally:
        req = urllib.request.Request(
            server.url + f"api/kernels/{kid}", method="DELETE", headers=auth
        )
        urllib.request.urlopen(req, timeout=30)


async def _drive_kernel(
    ws_url: str, auth: dict[str, str], codes: list[str]
) -> list[dict[str, Any]]:
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    ws = await websocket_connect(HTTPRequest(ws_url, headers=auth))
    session = uuid.uuid4().hex
    results = []
    try:
        for code in codes:
            msg_id = uuid.uuid4().hex
            await ws.write_message(
                json.dumps(
                    {
                        "header": {
                            "msg_id": msg_id,
                            "username": "t",
                            "session": session,
                            "msg_type": "execute_request",
                            "version": "5.3",
                        },
                        "parent_header": {},
                        "metadata": {},
                        "channel": "shell",
                        "buffers": [],
                        "content": execute_content(code),
                    }
                )
            )
            reply: dict[str, Any] | None = None
            iopub: list[dict[str, Any]] = []
            idle = False
            while reply is None or not idle:
                raw = await asyncio.wait_for(ws.read_message(), 60)
                assert raw is not None, "kernel websocket closed"
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                if msg["channel"] == "shell" and msg["msg_type"] == "execute_reply":
                    reply = msg["content"]
                elif msg["channel"] == "iopub":
                    iopub.append(msg)
                    if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                        idle = True
            results.append({"reply": reply, "iopub": iopub})
    finally:
        ws.close()
    return results


def _shown(res: dict[str, Any]) -> str:
    out = []
    for m in res["iopub"]:
        c = m["content"]
        if m["msg_type"] == "stream":
            out.append(c["text"])
        elif m["msg_type"] in ("display_data", "update_display_data", "execute_result"):
            out.append(c["data"].get("text/plain", ""))
        elif m["msg_type"] == "error":
            out.append("\n".join(c["traceback"]))
    return "\n".join(out)


def test_kernel_under_jupyter_server_discovers_it(
    jupyter_proxy: JupyterServer, fresh_provider: FakeProvider
) -> None:
    fresh_provider.script("streamed answer from the proxy")
    # the server's own environment carries no RSQL_* settings that could name a proxy (only the
    # suite's own cache folder): discovery must use jpserver-*.json
    assert not [k for k in jupyter_proxy.env if k.startswith("RSQL_") and k != "RSQL_CACHE_DIR"]
    res = _run_in_server_kernel(
        jupyter_proxy,
        [
            "%load_ext rsql_magic",
            "%ask_status",
            "import pandas as pd\nlab_frame = pd.DataFrame({'alpha': [1, 2]})",
            "%%ask\nWhat columns does lab_frame have?",
        ],
    )
    assert all(r["reply"]["status"] == "ok" for r in res), (
        [_shown(r) for r in res],
        jupyter_proxy.log()[-3000:],
    )
    status = _shown(res[1])
    assert "local Jupyter server " + jupyter_proxy.url in status and "jpserver-" in status
    assert "batch run: no" in status
    body = fresh_provider.received[-1].body
    assert body.get("stream") is True  # interactive: streamed
    assert "`lab_frame` (pandas): 2 rows x 1 columns" in user_prompts(fresh_provider.received)[-1]
    kinds = [m["msg_type"] for m in res[3]["iopub"]]
    assert "display_data" in kinds and "update_display_data" in kinds
    assert "streamed answer from the proxy" in _shown(res[3])


def test_nbconvert_fails_when_upstream_fails(
    jupyter_server_factory: Any, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    # its own server: the failures below must not leave cooldowns in the shared jupyter_proxy
    server = jupyter_server_factory(
        {
            "upstreams": upstreams_for(fresh_provider),
            "default_model": "fake-small",
            "max_wait_seconds": 2.0,
        }
    )
    for alias in ("a1", "a2", "b1"):
        fresh_provider.set_fault(alias, "status", status=500)
    nb = make_notebook(["%load_ext rsql_magic", "%%ask\nwill this work?", "print('not reached')"])
    path = tmp_path / "fails.ipynb"
    path.write_text(json.dumps(nb))
    env = kernel_env(server.proxy_url, server.token)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter",
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            str(path),
            "--output",
            "out.ipynb",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode != 0
    assert "ProxyError" in proc.stderr and "502" in proc.stderr
    # the proxy tried every key, each once, before giving up
    assert sorted(r.alias for r in fresh_provider.received) == ["a1", "a2", "b1"]

    # and the same notebook succeeds once the upstream is healthy again
    for alias in ("a1", "a2", "b1"):
        fresh_provider.set_fault(alias, None)
    server2 = jupyter_server_factory(
        {"upstreams": upstreams_for(fresh_provider), "default_model": "fake-small"}
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter",
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            str(path),
            "--output",
            "out.ipynb",
        ],
        env=kernel_env(server2.proxy_url, server2.token),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads((tmp_path / "out.ipynb").read_text())
    assert "not reached" in outputs_text(out["cells"][2])


def test_status_and_user_limit_through_proxy(
    jupyter_server_factory: Any, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    server = jupyter_server_factory(
        {
            "upstreams": upstreams_for(fresh_provider),
            "default_model": "fake-small",
            "user_limits": ["2/minute"],
        }
    )
    nb = make_notebook(
        [
            "%load_ext rsql_magic\n%config RSQLMagic.batch_max_wait = 2.0",
            "%ask_status",
            "%ask one",
            "%ask two",
            "%ask three",
        ],
        raises=(4,),
    )
    run_notebook(nb, kernel_env(server.proxy_url, server.token), tmp_path)
    status = outputs_text(nb.cells[1])
    assert f"RSQL_PROXY_URL {server.proxy_url}" in status
    assert "**you**: " in status
    assert "| 2/minute | 0 | 2 |" in status  # the limits table: limit, used, remaining, ...
    assert "via " in outputs_text(nb.cells[3])
    # the third question hits the per-user limit: the message names it and when it resets,
    # and the batch run did not sit out a 60 s window (batch_max_wait = 2 s)
    err = outputs_text(nb.cells[4])
    assert "rate limited (429)" in err and "2/minute" in err and "resets" in err
    assert "batch_max_wait" in err
    assert len(fresh_provider.received) == 2  # the refused request never reached the upstream
