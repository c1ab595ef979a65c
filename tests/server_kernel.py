"""Run code in a kernel that a (single-user) Jupyter server starts, over its REST and websocket
API, as a browser would; returns what each cell displayed."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect


async def run_cells(server_url: str, token: str, cells: list[str], timeout: float = 120) -> list[dict[str, Any]]:
    """Start a kernel in the server at `server_url` (ending in /), run `cells`, shut it down.

    Each result: {"outputs": [text of stream / display / result], "error": ename or None}.
    """
    http = AsyncHTTPClient()
    headers = {"Authorization": f"token {token}"}
    resp = await http.fetch(HTTPRequest(server_url + "api/kernels", method="POST", body="{}", headers=headers,
                                        request_timeout=60))
    kernel_id = json.loads(resp.body)["id"]
    ws_url = server_url.replace("http", "ws", 1) + f"api/kernels/{kernel_id}/channels"
    conn = await websocket_connect(HTTPRequest(ws_url, headers=headers, connect_timeout=30))
    session = uuid.uuid4().hex
    results = []
    try:
        for code in cells:
            msg_id = uuid.uuid4().hex
            conn.write_message(json.dumps({
                "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": session,
                           "username": "test", "version": "5.3", "date": ""},
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                            "allow_stdin": False, "stop_on_error": True},
            }))
            outputs: list[str] = []
            error = None
            while True:
                raw = await asyncio.wait_for(conn.read_message(), timeout)
                if raw is None:
                    raise RuntimeError("kernel websocket closed")
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") != msg_id or msg.get("channel") != "iopub":
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "stream":
                    outputs.append(content["text"])
                elif kind in ("display_data", "execute_result", "update_display_data"):
                    outputs.append(content["data"].get("text/plain", "") + content["data"].get("text/markdown", ""))
                elif kind == "error":
                    error = content["ename"]
                    outputs.append("\n".join(content["traceback"]))
                elif kind == "status" and content["execution_state"] == "idle":
                    break
            results.append({"outputs": outputs, "error": error})
    finally:
        conn.close()
        await http.fetch(HTTPRequest(server_url + f"api/kernels/{kernel_id}", method="DELETE", headers=headers),
                         raise_error=False)
    return results
