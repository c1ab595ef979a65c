"""Kernels for the tests: notebooks in real kernels (nbclient), code in a Jupyter server's kernel
over its websocket as a browser runs it, R in this process, and the chat panel in-process."""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect
from traitlets.config import Config

from tests.helpers import FAKE_KEY, IN_CI, REPO, require
from tests.helpers.fake_provider import FakeProvider


def require_or_skip(module: str, reason: str = "", *, binary: bool = False) -> None:
    """Skip when ``module`` (or a binary) is missing; in CI (``CI=true``) fail instead."""
    require(module, binary=binary, reason=reason)


def require_r() -> None:
    require_or_skip("R", "R context tests need R (apt r-base-core)", binary=True)
    require_or_skip("rpy2", "R context tests need rpy2 3.5.x (pip install rsql-assistant[r])")
    try:
        import_rpy2()  # R must also load: rpy2 3.6 fails on R 4.2
    except Exception as e:  # pragma: no cover - environment problem
        if IN_CI:
            pytest.fail(f"rpy2 cannot start R: {e}")
        pytest.skip(f"rpy2 cannot start R: {e}")


def import_rpy2() -> None:
    """Start R in this process without leaking R's LD_LIBRARY_PATH to later servers and kernels."""
    from rsql_magic.context.rsession import import_robjects

    import_robjects()


def kernel_env(proxy_url: str | None, token: str | None = None, **extra: str) -> dict[str, str]:
    """Environment for a test kernel: the repo importable, discovery pinned to ``proxy_url``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RSQL_", "JUPYTERHUB_"))}
    env.pop("JPY_PARENT_PID", None)
    # keep provider keys out, so a missing proxy is "no proxy found", not the in-process engine
    for k in list(env):
        if k.endswith("_API_KEY"):
            env.pop(k)
    env["RSQL_LOCAL_MODEL"] = "off"  # nor the local model a kernel with no key falls back on
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    if proxy_url:
        env["RSQL_PROXY_URL"] = proxy_url
    if token:
        env["RSQL_PROXY_TOKEN"] = token
    env.update(extra)
    return env


def make_notebook(cells: list[str], raises: tuple[int, ...] = ()) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    for i in raises:
        nb.cells[i].metadata["tags"] = ["raises-exception"]
    return nb


# Unix socket paths are short (107 bytes on Linux, 103 on macOS, whose temp dir is long)
_SHORT_TMP = "/tmp" if os.path.isdir("/tmp") else None


@contextmanager
def kernel_sockets() -> Iterator[Config]:
    """Config for a kernel manager (nbclient's, or :func:`socket_kernel`) whose kernel listens
    on Unix sockets in a folder of its own, removed on leaving.

    Why not TCP, as nbconvert uses: jupyter_client finds five free ports, closes them, and the
    kernel binds them a moment later. With two workers starting servers and connections, another
    process once took one in between (CI: "Address already in use", then "Kernel died before
    replying to kernel_info"). A socket path in our own folder cannot be taken."""
    folder = tempfile.mkdtemp(prefix="rsql-kernel-", dir=_SHORT_TMP)
    try:
        yield Config(
            KernelManager={
                "transport": "ipc",
                "ip": os.path.join(folder, "k"),
                "connection_file": os.path.join(folder, "kernel.json"),
            }
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def socket_kernel(kernel_name: str = "python3", **kwargs: Any) -> Iterator[KernelManager]:
    """A kernel manager as :func:`kernel_sockets` configures one; its kernel, if started, is
    shut down on leaving."""
    with kernel_sockets() as config:
        km = KernelManager(kernel_name=kernel_name, config=config, **kwargs)
        try:
            yield km
        finally:
            if km.has_kernel:
                km.shutdown_kernel(now=True)


# A Jupyter server's kernels on Unix sockets too (``kernel_sockets`` says why): a line of its
# config, with a runtime folder from ``short_runtime_dir``.
KERNELS_ON_SOCKETS = "c.KernelManager.transport = 'ipc'"
_RUNTIME_DIRS: list[str] = []


def short_runtime_dir() -> str:
    """A Jupyter server's runtime folder (``JUPYTER_RUNTIME_DIR``), removed when this process
    ends. Each kernel's sockets sit beside its connection file there, so the folder's path is
    short, not a test's ``tmp_path``."""
    _RUNTIME_DIRS.append(tempfile.mkdtemp(prefix="rsql-rt-", dir=_SHORT_TMP))
    return _RUNTIME_DIRS[-1]


@atexit.register
def _remove_runtime_dirs() -> None:
    for folder in _RUNTIME_DIRS:
        shutil.rmtree(folder, ignore_errors=True)


def run_notebook(nb: Any, env: dict[str, str], cwd: Path, timeout: int = 120) -> Any:
    """Execute ``nb`` in a fresh ipykernel through nbclient (as nbconvert / papermill do)."""
    from nbclient import NotebookClient

    # nbclient waits 4 s after a cell's reply for its output, then drops what comes later with
    # a log line alone. A loaded 2-core runner twice lost a print in test_abuse_sql (never
    # reproduced); late output is one way that happens. Up to 30 s is waited for, then an error.
    with kernel_sockets() as config:
        client = NotebookClient(
            nb,
            config=config,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(cwd)}},
            iopub_timeout=30,
            raise_on_iopub_timeout=True,
        )
        client.execute(env=env, cwd=str(cwd))
    return nb


def outputs_text(cell: Any) -> str:
    """All text a cell showed: streams, markdown / plain display data, errors."""

    def text(v: Any) -> str:  # on disk, multi-line strings are lists of lines
        return "".join(v) if isinstance(v, list) else str(v or "")

    parts: list[str] = []
    for out in cell.get("outputs", []):
        kind = out.get("output_type")
        if kind == "stream":
            parts.append(text(out.get("text", "")))
        elif kind in ("display_data", "execute_result"):
            data = out.get("data", {})
            parts.append(text(data.get("text/markdown") or data.get("text/plain")))
        elif kind == "error":
            parts.append(f"{out.get('ename')}: {out.get('evalue')}")
    return "\n".join(parts)


def user_prompts(received: list[Any]) -> list[str]:
    """The user message of each request the upstream received."""
    out = []
    for r in received:
        msgs = r.body.get("messages", [])
        out.append("\n".join(str(m.get("content", "")) for m in msgs if m.get("role") == "user"))
    return out


async def run_cells(
    server_url: str, token: str, cells: list[str], timeout: float = 120
) -> list[dict[str, Any]]:
    """Start a kernel in the server at `server_url` (ending in /), run `cells`, shut it down.

    Each result: {"outputs": [text of stream / display / result], "error": ename or None}.
    """
    http = AsyncHTTPClient()
    headers = {"Authorization": f"token {token}"}
    resp = await http.fetch(
        HTTPRequest(
            server_url + "api/kernels",
            method="POST",
            body="{}",
            headers=headers,
            request_timeout=60,
        )
    )
    kernel_id = json.loads(resp.body)["id"]
    ws_url = server_url.replace("http", "ws", 1) + f"api/kernels/{kernel_id}/channels"
    conn = await websocket_connect(HTTPRequest(ws_url, headers=headers, connect_timeout=30))
    session = uuid.uuid4().hex
    results = []
    try:
        for code in cells:
            msg_id = uuid.uuid4().hex
            conn.write_message(
                json.dumps(
                    {
                        "header": {
                            "msg_id": msg_id,
                            "msg_type": "execute_request",
                            "session": session,
                            "username": "test",
                            "version": "5.3",
                            "date": "",
                        },
                        "parent_header": {},
                        "metadata": {},
                        "channel": "shell",
                        "buffers": [],
                        "content": {
                            "code": code,
                            "silent": False,
                            "store_history": True,
                            "user_expressions": {},
                            "allow_stdin": False,
                            "stop_on_error": True,
                        },
                    }
                )
            )
            outputs: list[str] = []
            error = None
            while True:
                raw = await asyncio.wait_for(conn.read_message(), timeout)
                if raw is None:
                    raise RuntimeError("kernel websocket closed")
                msg = json.loads(raw)
                if (
                    msg.get("parent_header", {}).get("msg_id") != msg_id
                    or msg.get("channel") != "iopub"
                ):
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "stream":
                    outputs.append(content["text"])
                elif kind in ("display_data", "execute_result", "update_display_data"):
                    outputs.append(
                        content["data"].get("text/plain", "")
                        + content["data"].get("text/markdown", "")
                    )
                elif kind == "error":
                    error = content["ename"]
                    outputs.append("\n".join(content["traceback"]))
                elif kind == "status" and content["execution_state"] == "idle":
                    break
            results.append({"outputs": outputs, "error": error})
    finally:
        conn.close()
        await http.fetch(
            HTTPRequest(server_url + f"api/kernels/{kernel_id}", method="DELETE", headers=headers),
            raise_error=False,
        )
    return results


def chat_panel_for(shell: Any, fp: FakeProvider, **kw: Any) -> Any:
    """A chat panel talking to the fake provider directly (it speaks the proxy's API)."""
    require("ipywidgets", reason="the chat panel is ipywidgets")
    from rsql_magic.chat.panel import ChatPanel
    from rsql_magic.client import ProxyClient

    kw.setdefault("model", "fake-small")
    client = ProxyClient(f"http://127.0.0.1:{fp.port}/", FAKE_KEY)
    return ChatPanel(shell, client=client, refresh_usage=False, **kw)
