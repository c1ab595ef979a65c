"""The kernel side's modules one ``%%sql_ai`` cell runs code in: the kernel's walk of
docs/architecture.md ("One request's way", steps 1 and 2), counted rather than written down.

    python scripts/kernel_walk.py

It loads ``rsql_magic`` into an IPython shell in this process, gives it a SQLite database and a
proxy on 127.0.0.1 that answers every chat completion with one SQL query (a stand-in that
speaks the proxy's API: ``GET me``, ``POST v1/chat/completions``), runs one ``%%sql_ai`` cell
to warm it, then profiles a second one and lists every module of ``rsql_magic``, ``rsql_sql``
and ``rsql_common`` a function of which was called on the shell's thread.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
PACKAGES = tuple(str(REPO / name) for name in ("rsql_magic", "rsql_sql", "rsql_common"))
SQL = "```sql\nSELECT region, SUM(amount) AS total FROM sales GROUP BY region ORDER BY region\n```"


class Proxy(BaseHTTPRequestHandler):
    """The proxy's API as far as one %%sql_ai cell asks it: who I am, and a chat completion."""

    def _send(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self._send({"user": "walker", "models": ["m"], "default_model": "m"})

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        message = {"role": "assistant", "content": SQL}
        usage = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        self._send(
            {
                "id": "c",
                "object": "chat.completion",
                "model": "m",
                "choices": [choice],
                "usage": usage,
            }
        )

    def log_message(self, format: str, *args: Any) -> None:
        pass


def walk() -> list[str]:
    """The modules of the kernel's packages the second of two ``%%sql_ai`` cells runs code in."""
    import os

    from IPython.core.interactiveshell import InteractiveShell

    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    saved_env = dict(os.environ)  # given back at the end, as the shell's namespace is
    os.environ.update(
        RSQL_PROXY_URL=f"http://127.0.0.1:{server.server_address[1]}/",
        RSQL_PROXY_TOKEN="walk",
        RSQL_MODEL="m",
        RSQL_BATCH="0",  # as in JupyterLab: answers asked, not replayed from a file
    )
    os.environ.pop("RSQL_REPLAY", None)
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "rsql_magic")
    db = sqlite3.connect(":memory:")
    db.executescript(
        "CREATE TABLE sales (region TEXT, amount REAL);"
        "INSERT INTO sales VALUES ('north', 10), ('south', 20), ('north', 5);"
    )
    shell.user_ns["db"] = db
    seen: set[str] = set()

    def called(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_filename.startswith(PACKAGES):
            seen.add(str(Path(frame.f_code.co_filename).relative_to(REPO)))

    def cell(question: str) -> None:
        result = shell.run_cell(f"%%sql_ai db -o totals\n{question}")
        if not result.success:
            raise SystemExit(f"%%sql_ai failed: {result.error_in_exec or result.error_before_exec}")

    try:
        cell("total per region")  # the first cell builds what later ones reuse
        sys.setprofile(called)
        cell("the total of each region")
    finally:
        sys.setprofile(None)
        server.shutdown()
        server.server_close()
        os.environ.clear()
        os.environ.update(saved_env)
        for name in ("db", "totals", "_"):
            shell.user_ns.pop(name, None)
    return sorted(seen)


def main() -> int:
    modules = walk()
    print(f"{len(modules)} modules of the kernel's packages run one %%sql_ai cell:")
    for module in modules:
        print(f"  {module}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
