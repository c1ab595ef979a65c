"""Instructions per proxied request, counted by callgrind: a figure the machine's other work does
not move (#58).

    .venv/bin/python bench/count_proxy.py [--requests 200] [--baseline REV] [--stream]
    needs: valgrind (apt install valgrind)

Why: the CPU seconds of one request on a shared 2-core VM vary by a fifth between runs of the
same code (bench/profile_proxy.py --baseline: 851 to 1,270 µs), so a change of a few percent
cannot be told from noise in any run of reasonable length. valgrind's callgrind counts the
instructions the service executes instead, the same for the same code and requests.

rsql-proxy (memory state, SQLite usage log, health checks off) runs under callgrind with its
instrumentation off, in front of bench/upstream.py (answering at once: its time is not what is
counted). After 50 sequential chat completions to warm it, the count is switched on
(``callgrind_control -i on``), `--requests` more are sent one after another over one
keep-alive connection, and the count is read back (``callgrind_control -d``). Requests go one
at a time so that each takes the same way through the event loop. The same code counts within
about 1.5% from run to run (timers: the usage log's flushes, the garbage collector), so
`--rounds` counts are taken and their median shown. With ``--baseline``, a commit's tree is
counted the same way, interleaved in the same run; with ``--forwarder``, bench/forwarder.py too,
for the ratio #58 sets a goal for. Prints the instructions per request; keeps nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_forwarder import start_forwarder  # noqa: E402
from common import (  # noqa: E402
    Procs,
    chat_body,
    commit_id,
    log,
    start_service,
    start_upstream,
    upstream_configs,
    workdir,
    worktree,
)

REPO = Path(__file__).resolve().parent.parent
WARM = 50
_TOTAL = re.compile(r"^(?:summary|totals):\s*(\d+)", re.M)


def send(url: str, auth: str, n: int, stream: bool) -> None:
    """`n` chat completions one after another on one keep-alive connection, each read to its end."""
    u = urlsplit(url)
    assert u.hostname is not None
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    body = chat_body(stream=stream).encode()
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    for _ in range(n):
        conn.request("POST", u.path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"the proxy answered {resp.status}")
    conn.close()


def count(
    requests: int,
    stream: bool,
    code: Path | None = None,
    forwarder: bool = False,
    host: Sequence[str] = (),
) -> float:
    """Instructions the service executed per request, `code`: a tree to run instead of this one;
    `forwarder`: bench/forwarder.py instead of rsql-proxy; `host`: a command the server runs
    under inside valgrind (bench/lean_host.py: the same handlers on another HTTP host)."""
    with workdir("count") as work, Procs(work) as procs:
        up = start_upstream(procs, latency=0.0)
        out = work / "callgrind.out"
        wrap = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            *host,
        ]
        if forwarder:
            url, auth, _ = start_forwarder(procs, up, wrap=wrap, wait_seconds=600)
        else:
            cfg = {
                "upstreams": upstream_configs(up),
                "default_model": "fake-small",
                "health_check_seconds": 0.0,
            }
            env = {"PYTHONPATH": str(code)} if code is not None else None
            url, auth = start_service(procs, cfg, wrap=wrap, env=env, wait_seconds=600)
        pid = procs.items[-1][1].pid
        send(url, auth, WARM, stream)
        subprocess.run(["callgrind_control", "-i", "on", str(pid)], check=True, capture_output=True)
        send(url, auth, requests, stream)
        subprocess.run(
            ["callgrind_control", "-i", "off", str(pid)], check=True, capture_output=True
        )
        done = subprocess.run(
            ["callgrind_control", "-d", str(pid)], check=True, capture_output=True, text=True
        )
        time.sleep(1)  # the dump is written by the service's own thread
        files = sorted(work.glob("callgrind.out*"), key=lambda p: p.stat().st_mtime)
        total = sum(
            int(m.group(1)) for f in files for m in _TOTAL.finditer(f.read_text(errors="replace"))
        )
        if not total:
            raise RuntimeError(f"no count in the dump: {done.stdout}")
        return total / requests


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3, help="counts of each, interleaved")
    ap.add_argument("--stream", action="store_true", help="streamed answers")
    ap.add_argument("--baseline", default="", help="count this commit's tree in the same run")
    ap.add_argument(
        "--forwarder", action="store_true", help="count bench/forwarder.py too: #58's CPU ratio"
    )
    a = ap.parse_args()
    trees: dict[str, Path | None] = {"this checkout": None}
    rev = commit_id(a.baseline) if a.baseline else ""
    with worktree(rev) if rev else contextlib.nullcontext() as tree:
        if rev:
            trees[rev] = tree
        names = [*trees, *(["bare forwarder"] if a.forwarder else [])]
        counts: dict[str, list[float]] = {name: [] for name in names}
        for n in range(a.rounds):
            for name in names if n % 2 == 0 else reversed(names):
                fwd = name == "bare forwarder"
                code = None if fwd else trees[name]
                counts[name].append(count(a.requests, a.stream, code, forwarder=fwd))
                log(f"  {name}: {counts[name][-1]:,.0f}")
    medians = {name: statistics.median(c) for name, c in counts.items()}
    for name, m in medians.items():
        spread = f"{min(counts[name]):,.0f} to {max(counts[name]):,.0f}"
        log(f"{name}: {m:,.0f} instructions a request (median of {a.rounds}: {spread})")
    if a.baseline:
        head, base = medians["this checkout"], medians[rev]
        log(f"difference: {head - base:+,.0f} instructions a request ({head / base - 1:+.2%})")
    if a.forwarder:
        ratio = medians["this checkout"] / medians["bare forwarder"]
        log(f"rsql-proxy / the bare forwarder: {ratio:.2f}x the instructions (#58's goal: 1.3x)")


if __name__ == "__main__":
    main()
