"""A kernel driven as a browser drives it (jupyter_client): cells run as JupyterLab runs them
(``allow_stdin=True``), widget events as the real ``comm_msg`` messages @jupyter-widgets
sends, and what the kernel sent on IOPub kept for the test to read."""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from pathlib import Path
from queue import Empty
from typing import Any

from tests.helpers.kernels import socket_kernel


def execute_content(code: str) -> dict[str, Any]:
    """An execute request's content as JupyterLab sends it: an interactive frontend
    (``allow_stdin=True``)."""
    return {
        "code": code,
        "silent": False,
        "store_history": True,
        "user_expressions": {},
        "allow_stdin": True,
        "stop_on_error": True,
    }


class KernelDriver:
    """A kernel plus a frontend's view of it: execute cells, send widget events, read IOPub."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        with ExitStack() as starting:  # a kernel that never gets ready is shut down at once
            self.km = starting.enter_context(socket_kernel())
            self.km.start_kernel(env=env, cwd=str(cwd))
            self.kc = self.km.client()
            self.kc.start_channels()
            starting.callback(self.kc.stop_channels)
            self.kc.wait_for_ready(timeout=60)
            self._open = starting.pop_all()
        self.iopub: list[dict] = []

    def close(self) -> None:
        self._open.close()  # channels stopped, then the kernel shut down and its folder gone

    def _until_idle(self, msg_id: str, timeout: float) -> list[dict]:
        mine: list[dict] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                m = self.kc.get_iopub_msg(timeout=0.2)
            except Empty:
                continue
            self.iopub.append(m)
            if m["parent_header"].get("msg_id") != msg_id:
                continue
            mine.append(m)
            if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                return mine
        raise TimeoutError(f"kernel did not go idle within {timeout}s")

    def run(
        self, code: str, timeout: float = 60, cell_id: str | None = None
    ) -> tuple[dict, list[dict]]:
        """Execute a cell as JupyterLab does (allow_stdin=True; `cell_id`: the notebook cell's
        id, which JupyterLab sends in the request's metadata)."""
        if cell_id is None:
            msg_id = self.kc.execute(code, allow_stdin=True)
        else:
            content = execute_content(code)
            msg = self.kc.session.msg("execute_request", content, metadata={"cellId": cell_id})
            self.kc.shell_channel.send(msg)
            msg_id = msg["header"]["msg_id"]
        reply = self.kc.get_shell_msg(timeout=timeout)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.kc.get_shell_msg(timeout=timeout)
        msgs = self._until_idle(msg_id, timeout)
        errors = [m["content"] for m in msgs if m["msg_type"] == "error"]
        assert reply["content"]["status"] == "ok", (reply["content"], errors)
        return reply["content"], msgs

    def value(self, expr: str) -> Any:
        """The JSON value of ``expr`` in the kernel."""
        _, msgs = self.run(f"print(json.dumps({expr}, default=str))")
        out = "".join(
            m["content"]["text"]
            for m in msgs
            if m["msg_type"] == "stream" and m["content"]["name"] == "stdout"
        )
        return json.loads(out)

    def comm(self, model_id: str, data: dict, timeout: float = 60) -> list[dict]:
        """Send what the widget's view sends from the browser; wait until it was handled."""
        msg = self.kc.session.msg("comm_msg", {"comm_id": model_id, "data": data})
        self.kc.shell_channel.send(msg)
        return self._until_idle(msg["header"]["msg_id"], timeout)

    def click(self, model_id: str) -> list[dict]:
        return self.comm(model_id, {"method": "custom", "content": {"event": "click"}})

    def update(self, model_id: str, **state: Any) -> list[dict]:
        return self.comm(model_id, {"method": "update", "state": state, "buffer_paths": []})

    def submit(self, model_id: str) -> list[dict]:
        return self.comm(model_id, {"method": "custom", "content": {"event": "submit"}})

    def ids(self) -> dict[str, str]:
        return self.value(
            "{k: getattr(p, k).model_id for k in ('input', 'send_btn', 'stop_btn', 'new_btn', "
            "'frames', 'sql', 'r_box', 'refresh_btn', 'usage', 'status')}"
        )

    def wait_answer(self, timeout: float = 60) -> dict:
        self.run(f"assert p.wait({timeout})", timeout=timeout + 10)
        return self.last_turn()

    def last_turn(self) -> dict:
        return self.value(
            "{'state': p.turns[-1].state, 'answer': p.turns[-1].answer, "
            "'html': p.turns[-1].answer_html.value, 'footer': p.turns[-1].footer.value, "
            "'n': len(p.turns), 'status': p.status.value, 'usage': p.usage.value, "
            "'input': p.input.value, 'input_disabled': p.input.disabled, 'busy': p.busy, "
            "'stop_display': p.stop_btn.layout.display, "
            "'buttons': {k: b.model_id for k, b in p.turns[-1].buttons.items()}}"
        )

    def updates_of(self, model_id: str) -> list[dict]:
        """State updates the kernel sent to the frontend for one widget."""
        out = []
        for m in self.iopub:
            if m["msg_type"] == "comm_msg" and m["content"].get("comm_id") == model_id:
                data = m["content"]["data"]
                if data.get("method") in ("update", "echo_update"):
                    out.append(data["state"])
        return out

    def drain(self, seconds: float = 0.3) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                self.iopub.append(self.kc.get_iopub_msg(timeout=0.05))
            except Empty:
                pass
