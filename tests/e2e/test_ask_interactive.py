"""%%ask in an interactive kernel: what JupyterLab / Notebook 7 / VS Code see.

These frontends send ``allow_stdin=True``; the kernel then streams the answer into one display
(``display_data`` then ``update_display_data`` with the same display id) and ``--insert``
hands the code to the frontend as a ``set_next_input`` payload.
"""

from __future__ import annotations

from pathlib import Path
from queue import Empty
from typing import Any

import pytest

from tests.helpers.fake_provider import FakeProvider
from tests.helpers.kernel_driver import KernelDriver
from tests.helpers.kernels import kernel_env

pytestmark = pytest.mark.slow

KEY = "sk-test-a1-fake0123456789"


def execute(kc: Any, code: str, timeout: float = 60) -> tuple[dict, list[dict]]:
    """Run ``code`` as a frontend with stdin would; return (execute_reply, iopub messages)."""
    msg_id = kc.execute(code, allow_stdin=True)
    reply = kc.get_shell_msg(timeout=timeout)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=timeout)
    msgs: list[dict] = []
    while True:
        try:
            m = kc.get_iopub_msg(timeout=timeout)
        except Empty:
            break
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        msgs.append(m)
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            break
    return reply["content"], msgs


def test_streaming_display_and_insert(fresh_provider: FakeProvider, tmp_path: Path) -> None:
    words = " ".join(f"w{i}" for i in range(60))
    fresh_provider.script(f"{words}\n\n```python\nprint('hi')\n```")
    env = kernel_env(f"http://127.0.0.1:{fresh_provider.port}/", KEY)
    kernel = KernelDriver(env, tmp_path)
    kc = kernel.kc
    try:
        reply, _ = execute(kc, "%load_ext rsql_magic\n%config RSQLMagic.model = 'fake-small'")
        assert reply["status"] == "ok"
        reply, msgs = execute(kc, "%%ask --insert\nsay sixty words")
        assert reply["status"] == "ok", reply
        assert fresh_provider.received[-1].body.get("stream") is True
        first = [m for m in msgs if m["msg_type"] == "display_data"]
        updates = [m for m in msgs if m["msg_type"] == "update_display_data"]
        assert len(first) == 1 and len(updates) >= 2  # partial updates, then the final one
        did = first[0]["content"]["transient"]["display_id"]
        assert all(u["content"]["transient"]["display_id"] == did for u in updates)
        final = updates[-1]["content"]["data"]["text/markdown"]
        assert final.startswith(words) and "*fake-small · " in final
        partial = updates[0]["content"]["data"]["text/markdown"]
        assert "streaming" in partial and len(partial) < len(final)
        payload = reply.get("payload", [])
        nxt = [p for p in payload if p.get("source") == "set_next_input"]
        assert nxt and nxt[0]["text"] == "print('hi')"
        # interactive: no "Code for the next cell" fallback in the output
        assert not any("Code for the next cell" in str(m["content"]) for m in msgs)

        # an interactive failure is shown as one clean line, and the cell still errors
        fresh_provider.set_fault("a1", "status", status=503, count=1)
        reply, msgs = execute(kc, "%ask anything")
        assert reply["status"] == "error" and reply["ename"] == "ProxyError"
        err = [m for m in msgs if m["msg_type"] == "error"][0]["content"]
        assert err["traceback"] == ["ProxyError: proxy error 503: upstream fault injected"]
    finally:
        kernel.close()
