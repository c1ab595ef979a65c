"""Helpers for the kernel side of "the admin decides" (issue 26): notebook files on disk with
cell ids, a Jupyter server's runtime file, a kernel started the way JupyterLab starts one (a
session for a notebook path, execute requests that carry the cell's id), and the usage rows
the proxy wrote."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import nbformat

from tests.helpers.kernel_driver import execute_content
from tests.helpers.kernels import make_notebook


def write_notebook(path: Path, cells: list[str]) -> tuple[Any, list[str]]:
    """A notebook of code `cells` written to `path` (nbformat 4.5, so its cells have ids);
    returns it and its cells' ids."""
    nb = make_notebook(cells)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return nb, [c["id"] for c in nb.cells]


def jpserver_file(runtime: Path, pid: int, root: Path, url: str = "http://127.0.0.1:9/") -> Path:
    """The ``jpserver-<pid>.json`` a Jupyter server writes for its kernels to find it, in a
    runtime folder only this user can write (as Jupyter makes it)."""
    runtime.mkdir(parents=True, exist_ok=True)
    runtime.chmod(0o700)
    path = runtime / f"jpserver-{pid}.json"
    path.write_text(json.dumps({"url": url, "token": "t", "root_dir": str(root), "pid": pid}))
    path.chmod(0o600)
    return path


def shown_markdown(outputs: list[Any]) -> str:
    """The Markdown (else plain text) of what IPython's capture_output caught."""
    return "\n".join(o.data.get("text/markdown") or o.data.get("text/plain", "") for o in outputs)


def usage_rows(db: Path, want: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    """The usage rows in the SQLite store `db`, once there are `want` chat rows (the proxy writes
    them through its journal, a moment after it answers)."""
    deadline = time.monotonic() + timeout
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        if db.exists():
            with sqlite3.connect(db) as conn:
                conn.row_factory = sqlite3.Row
                try:
                    rows = [
                        dict(r)
                        for r in conn.execute(
                            "SELECT user, client, model, status, notebook, cell FROM usage ORDER BY ts"
                        )
                    ]
                except sqlite3.OperationalError:  # the table is being made
                    rows = []
            if len(rows) >= want:
                return rows
        time.sleep(0.2)
    return rows


def start_session_kernel(server_url: str, token: str, path: str) -> tuple[str, str]:
    """A kernel for the notebook at `path` (relative to the server's root), started as
    JupyterLab starts one: ``POST api/sessions``. Returns (session id, kernel id)."""
    body = {
        "path": path,
        "name": os.path.basename(path),
        "type": "notebook",
        "kernel": {"name": "python3"},
    }
    req = urllib.request.Request(
        server_url + "api/sessions",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        model = json.loads(resp.read())
    return model["id"], model["kernel"]["id"]


def delete_session(server_url: str, token: str, session_id: str) -> None:
    req = urllib.request.Request(
        server_url + f"api/sessions/{session_id}",
        method="DELETE",
        headers={"Authorization": f"token {token}"},
    )
    urllib.request.urlopen(req, timeout=60).close()


def run_in_lab_kernel(
    server_url: str,
    token: str,
    kernel_id: str,
    cells: list[tuple[str, str | None]],
    timeout: float = 90,
) -> list[dict[str, Any]]:
    """Run `cells` ((code, cell id)) in the kernel as JupyterLab does: ``allow_stdin`` true and
    the cell's id in the request's metadata. Each result: the reply's status, what it showed."""
    return asyncio.run(_drive(server_url, token, kernel_id, cells, timeout))


async def _drive(
    server_url: str, token: str, kernel_id: str, cells: list[tuple[str, str | None]], timeout: float
) -> list[dict[str, Any]]:
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    auth = {"Authorization": f"token {token}"}
    ws_url = server_url.replace("http", "ws", 1) + f"api/kernels/{kernel_id}/channels"
    ws = await websocket_connect(HTTPRequest(ws_url, headers=auth, connect_timeout=30))
    session = uuid.uuid4().hex
    results = []
    try:
        for code, cell_id in cells:
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
                            "date": "",
                        },
                        "parent_header": {},
                        "channel": "shell",
                        "buffers": [],
                        "metadata": {"cellId": cell_id} if cell_id else {},
                        "content": execute_content(code),
                    }
                )
            )
            reply: dict[str, Any] | None = None
            shown: list[str] = []
            idle = False
            while reply is None or not idle:
                raw = await asyncio.wait_for(ws.read_message(), timeout)
                if raw is None:
                    raise RuntimeError("kernel websocket closed")
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if msg["channel"] == "shell" and kind == "execute_reply":
                    reply = content
                elif kind == "stream":
                    shown.append(content["text"])
                elif kind in ("display_data", "execute_result", "update_display_data"):
                    data = content["data"]
                    shown.append(data.get("text/markdown") or data.get("text/plain", ""))
                elif kind == "error":
                    shown.append(f"{content['ename']}: {content['evalue']}")
                elif kind == "status" and content["execution_state"] == "idle":
                    idle = True
            results.append({"status": reply["status"], "shown": "\n".join(shown)})
    finally:
        ws.close()
    return results


def rendered(md: str) -> tuple[set[str], list[str]]:
    """`md` rendered by a real Markdown parser with raw HTML on and no sanitizer after it: the
    tags it made, and the links' targets (what a browser would run or follow)."""
    from html.parser import HTMLParser

    import markdown

    tags: set[str] = set()
    hrefs: list[str] = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            tags.add(tag)
            hrefs.extend(v or "" for k, v in attrs if k == "href")
            tags.update(f"{tag}[{k}]" for k, _ in attrs if k.startswith("on") or k == "src")

    Collect().feed(markdown.markdown(md, extensions=["fenced_code", "tables"]))
    return tags, hrefs
