"""Simulated notebook editors asking ``{proxy}inline`` for completions; always its own process.

Each *editor* is one user (a token of their own) typing as fast as the editor's debounce lets
completions through (``frontend/src/completion/settings.ts``: ``debounceMs`` 250): a keystroke,
the debounce's wait, the completion streamed to its ``done`` event, shown, and the next
keystroke right then. A completion not done within ``--timeout`` (the completer's 10 s) is
given up. Each *pusher* is a user who set the debounce to 0 (the setting allows it) and types a
key every ``--push-interval`` seconds: each keystroke aborts the completion before it, as the
editor's superseder does, and asks again at once; they are there to show the per-user limits
(``completion_user_limits``, ``completion_user_concurrency``) holding while the class types.

Every completion asks with a prefix of its own (the cell changes with each keystroke), so the
proxy's cache never answers. Prints one line, ``LOADJSON {...}``: per completion
[user index, start, end, status, first event, Retry-After, RateLimit label] (seconds from the
test's start; status 200 only when the ``done`` event came; -1 timeout, -2 a connection error,
-3 a stream that ended without ``done``, -4 aborted by the next keystroke).

    python bench/editors.py --url http://127.0.0.1:P/inline --users users.json --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

TIMEOUT, INCOMPLETE, ABORTED = -1, -3, -4
CONTEXT = {  # what the kernel's context request answers for a small session (names only)
    "frames": [
        {
            "name": name,
            "kind": "DataFrame",
            "rows": 1000 * (i + 1),
            "columns": [f"{name}_{c}" for c in ("id", "date", "region", "amount", "qty", "note")],
            "dtypes": ["int64", "datetime64[ns]", "object", "float64", "int64", "object"],
        }
        for i, name in enumerate(("sales", "customers", "orders", "stores", "returns"))
    ],
    "variables": [{"name": n, "type": t} for n, t in (("n_rows", "int"), ("label", "str"))],
}
CELLS = ["import pandas as pd", "sales = pd.read_parquet('sales.parquet')"]


class Editor:
    def __init__(
        self, index: int, user: dict[str, str], sess: aiohttp.ClientSession, args: Any
    ) -> None:
        self.index, self.sess, self.args = index, sess, args
        self.headers = {
            "Authorization": f"Bearer {user['token']}",
            "Content-Type": "application/json",
        }
        # the user's name in a previous cell: bench/upstream.py --spans keeps their requests' spans
        self.cells = [f"# notebook of @user:{user['name']}@", *CELLS]
        self.seq = 0

    async def complete(self, t0: float, out: list[list[Any]]) -> None:
        """One completion, read to its done event; its record appended to `out`."""
        self.seq += 1
        body = json.dumps(
            {
                "prefix": f"total_{self.index}_{self.seq} = sales.groupby('sales_region').",
                "suffix": "",
                "language": "python",
                "cells": self.cells,
                "context": CONTEXT,
                "stream": True,
            }
        )
        start, first, status, retry, label = time.monotonic() - t0, -1.0, 0, "", ""
        try:
            url = self.args.url[self.index % len(self.args.url)]  # replicas: each editor its own
            async with self.sess.post(url, data=body, headers=self.headers) as resp:
                status, retry = resp.status, resp.headers.get("Retry-After", "")
                label = resp.headers.get("RateLimit", "").split(";", 1)[0].strip('"')
                if status != 200:
                    await resp.read()
                else:
                    status = INCOMPLETE
                    async for line in resp.content:
                        if first < 0 and line.startswith(b"data: "):
                            first = time.monotonic() - t0
                        if line.startswith(b'data: {"done": true'):
                            status = 200
        except asyncio.CancelledError:
            out.append([self.index, start, time.monotonic() - t0, ABORTED, first, "", ""])
            raise
        except asyncio.TimeoutError:
            status = TIMEOUT
        except aiohttp.ClientError:
            status = -2
        out.append([self.index, start, time.monotonic() - t0, status, first, retry, label])

    async def type_along(self, t0: float, deadline: float, out: list[list[Any]]) -> None:
        """Keystroke, debounce, completion shown, next keystroke: until the deadline."""
        await asyncio.sleep(random.uniform(0, self.args.debounce))  # not all in step
        while time.monotonic() + self.args.debounce < deadline:
            await asyncio.sleep(self.args.debounce)
            await self.complete(t0, out)

    async def push(self, t0: float, deadline: float, out: list[list[Any]]) -> None:
        """Debounce 0, a key every push-interval: each keystroke aborts the one before."""
        task: asyncio.Task | None = None
        while time.monotonic() < deadline:
            if task is not None and not task.done():
                task.cancel()
            task = asyncio.ensure_future(self.complete(t0, out))
            await asyncio.sleep(self.args.push_interval)
        if task is not None and not task.done():
            task.cancel()


async def run(args: argparse.Namespace, users: list[dict[str, str]]) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    out: list[list[Any]] = []
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as sess:
        t0 = time.monotonic()
        deadline = t0 + args.seconds
        editors = [Editor(i, u, sess, args) for i, u in enumerate(users)]
        jobs = [
            (e.push if u["kind"] == "pusher" else e.type_along)(t0, deadline, out)
            for e, u in zip(editors, users, strict=True)
        ]
        await asyncio.wait(
            [asyncio.ensure_future(j) for j in jobs], timeout=args.seconds + args.timeout + 5
        )
        await asyncio.sleep(0.1)  # the last aborted ones record themselves
    return {"seconds": args.seconds, "debounce": args.debounce, "results": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--url",
        required=True,
        action="append",
        help="the proxy's inline endpoint (repeat: replicas)",
    )
    ap.add_argument("--users", required=True, help="a JSON file: [{token, name, kind}]")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--debounce", type=float, default=0.25, help="the editor's debounceMs / 1000")
    ap.add_argument("--push-interval", type=float, default=0.05)
    ap.add_argument("--timeout", type=float, default=10.0, help="the completer's timeout")
    args = ap.parse_args()
    users = json.loads(Path(args.users).read_text())  # [{"token", "name", "kind"}]
    sys.stdout.write("LOADJSON " + json.dumps(asyncio.run(run(args, users))) + "\n")


if __name__ == "__main__":
    main()
