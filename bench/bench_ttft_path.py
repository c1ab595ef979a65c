"""Where a stream's time to first token goes: rsql-proxy beside the bare forwarder, mark by mark (#58).

    .venv/bin/python bench/bench_ttft_path.py [--rounds 4] [--streams 150] [--no-write]
        [--from-json FILE]

#58 sets rsql-proxy's added time to first token over the bare forwarder (``bench/forwarder.py``)
at 0.5 ms or less. This says where the difference goes. Both servers run under
``bench/ttft_probe.py``, which notes the time at each mark of a stream's way inside the server:
the request line parsed, the proxy's handler and engine taking the request, failover starting,
the request written to the upstream; then the upstream's first event read, the stream's reply
made, the event written to the client. `--rounds` rounds, the order turning, of `--streams`
sequential streams each (``bench/loadgen.py ttfb``, a 50 ms upstream); medians over all the
requests of a server, and the time to the first event as the client saw it. Sequential, so each
request's marks are its own and nothing else runs between them.

Keeps its results in bench/results/ttft_path.json and rewrites the ``bench_ttft_path`` section
of docs/benchmarks.md, unless ``--no-write``. Loopback only; every load bounded in count.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_forwarder import start_forwarder  # noqa: E402
from common import (  # noqa: E402
    PY,
    Procs,
    log,
    machine,
    replace_section,
    start_service,
    start_upstream,
    workdir,
)
from proxy_runs import proxy_config, ttfb  # noqa: E402

BENCH = Path(__file__).resolve().parent
DOC = BENCH.parent / "docs" / "benchmarks.md"
MARK = "<!-- bench_ttft_path -->"
RESULTS = BENCH / "results" / "ttft_path.json"
PROBE = (PY, str(BENCH / "ttft_probe.py"))
FWD, SVC = "bare forwarder", "rsql-proxy"

# (from, to, what happens between): the rows of the page's table, in the order of the way
STEPS = (
    (
        "line",
        "handler",
        "tornado: the head's headers, the handler made and prepared, the body read",
    ),
    ("handler", "engine", "the handler: the caller, the body decoded (strict JSON)"),
    ("engine", "forward", "the engine: policy window, checks, the parse, admission, key choice"),
    (
        "forward",
        "sent",
        "failover and the upstream client: the body translated, the request written",
    ),
    ("event", "head", "the upstream client: the read taken in, the task woken, the head parsed"),
    ("head", "reply", "the transport and failover: rate-limit headers, the key's window, metrics"),
    ("reply", "out", "the reply to the handler, the first event made public and written"),
)


def dump(pid: int, path: Path) -> list[dict[str, float]]:
    """The marks the probe in `pid` noted since its last dump: on SIGUSR1 it appends them to
    `path` as one line, which is waited for (10 s at most)."""
    lines = path.read_text().count("\n") if path.exists() else 0
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if text.count("\n") > lines:
            return list(json.loads(text.splitlines()[lines]))
        time.sleep(0.02)
    raise RuntimeError(f"the probe in process {pid} wrote no marks to {path}")


def run(rounds: int, streams: int) -> dict[str, Any]:
    """Every request's marks and the client's times to the first event, by server."""
    with workdir("ttft_path") as d, Procs(d) as procs:
        up = start_upstream(procs)
        outs = {FWD: d / "forwarder.jsonl", SVC: d / "proxy.jsonl"}
        os.environ["TTFT_PROBE_OUT"] = str(outs[FWD])
        f_url, f_auth, f_pid = start_forwarder(procs, up, wrap=PROBE)
        os.environ["TTFT_PROBE_OUT"] = str(outs[SVC])
        s_url, s_auth = start_service(procs, proxy_config(up), name="svc", wrap=PROBE)
        os.environ.pop("TTFT_PROBE_OUT")
        s_pid = procs.items[-1][1].pid
        targets = {FWD: (f_url, f_auth, f_pid), SVC: (s_url, s_auth, s_pid)}
        marks: dict[str, list[dict[str, float]]] = {FWD: [], SVC: []}
        first: dict[str, list[float]] = {FWD: [], SVC: []}
        for name, (url, auth, pid) in targets.items():  # warm-up: its marks are dropped
            ttfb(None, url, auth, 30)
            dump(pid, outs[name])
        for r in range(rounds):
            order = list(targets) if r % 2 == 0 else list(reversed(targets))
            for name in order:
                url, auth, pid = targets[name]
                log(f"ttft_path: round {r + 1}, {name}")
                first[name] += [t * 1000 for t in ttfb(None, url, auth, streams)["ttfb"]]
                marks[name] += dump(pid, outs[name])
    return {name: summary(marks[name], first[name]) for name in targets}


def _med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def summary(rows: list[dict[str, float]], first_ms: list[float]) -> dict[str, Any]:
    """One server's medians: each step between two marks (µs), the CPU and loop turns to the
    upstream write, the loop turns from the first event to the client, the time to it."""
    pairs = [("line", "sent"), ("event", "out"), *((a, b) for a, b, _ in STEPS)]
    return {
        "requests": len(rows),
        "steps": {
            f"{a}>{b}": _med([r[b] - r[a] for r in rows if a in r and b in r]) for a, b in pairs
        },
        "cpu_sent": _med([r["cpu_sent"] for r in rows]),
        "turns_sent": _med([r["turns_sent"] for r in rows]),
        "turns_out": _med([r["turns_out"] for r in rows]),
        "first_ms": _med(first_ms),
    }


def section(res: dict[str, Any]) -> list[str]:
    m = res["machine"]
    fwd, svc = res[FWD], res[SVC]
    sent_f, sent_s = fwd["steps"]["line>sent"], svc["steps"]["line>sent"]
    out_f, out_s = fwd["steps"]["event>out"], svc["steps"]["event>out"]
    first_f, first_s = fwd["first_ms"], svc["first_ms"]
    lines = [
        MARK,
        "## Where the time to first token goes (`bench/bench_ttft_path.py`)",
        "",
        f"Run {res['when']} on {m['nproc']} cores ({m['cpu']}, Python {m['python']}), shared "
        "with other sessions' work. rsql-proxy (memory state, SQLite usage log) and the bare "
        "forwarder each run under `bench/ttft_probe.py`, which notes the time at marks on a "
        f"stream's way inside the server; {res['rounds']} rounds (the order turning) of "
        f"{res['streams']} sequential streams to each, a 50 ms upstream. Medians over the "
        f"{svc['requests']:,} and {fwd['requests']:,} requests; *loop turns*: the event loop's turns between "
        "the marks (each lets whatever else is ready run first). The probe's marks are "
        "wrapped calls with a clock read each: a few µs on each server's way, more on "
        "rsql-proxy's (eight marks to the forwarder's four).",
        "",
        "| | bare forwarder | rsql-proxy | more in rsql-proxy |",
        "|---|---|---|---|",
        f"| request line parsed to the request written upstream, µs | {sent_f:,.0f} | "
        f"{sent_s:,.0f} | {sent_s - sent_f:,.0f} |",
        f"| the same, the server's CPU, µs | {fwd['cpu_sent']:,.0f} | {svc['cpu_sent']:,.0f} | |",
        f"| the same, loop turns | {fwd['turns_sent']:.0f} | {svc['turns_sent']:.0f} | |",
        f"| the first event read to written to the client, µs | {out_f:,.0f} | {out_s:,.0f} | "
        f"{out_s - out_f:,.0f} |",
        f"| the same, loop turns | {fwd['turns_out']:.0f} | {svc['turns_out']:.0f} | |",
        f"| time to the first event at the client, p50 ms | {first_f:.2f} | {first_s:.2f} | "
        f"{first_s - first_f:.2f} |",
        "",
        "rsql-proxy's way, step by step (the forwarder goes from the request line to its "
        "upstream write in one step, and from the event to the client in another):",
        "",
        "| from | to | what happens between | µs (p50) |",
        "|---|---|---|---|",
    ]
    for a, b, what in STEPS:
        lines.append(f"| {a} | {b} | {what} | {svc['steps'][f'{a}>{b}']:,.0f} |")
    lines += [
        "",
        f"Before the upstream write rsql-proxy takes {svc['turns_sent']:.0f} loop turns where "
        f"the forwarder takes {fwd['turns_sent']:.0f}: its handlers take the body as it streams in "
        "(`tornado.web.stream_request_body`), so the caller is authenticated and the body's cap "
        "holds before a byte of the body is kept, and the handler resumes once the body is in. "
        "The rest is CPU: each step's work is listed in "
        "[Where rsql-proxy's CPU goes](#where-rsql-proxys-cpu-goes-beside-the-forwarders-benchprofile_forwarderpy).",
        MARK,
    ]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--streams", type=int, default=150)
    ap.add_argument("--no-write", action="store_true", help="print the section, write nothing")
    ap.add_argument("--from-json", default="", help="render the page from a saved results file")
    a = ap.parse_args()
    if a.from_json:
        replace_section(DOC, MARK, section(json.loads(Path(a.from_json).read_text())))
        return
    res: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "rounds": a.rounds,
        "streams": a.streams,
        **run(a.rounds, a.streams),
    }
    lines = section(res)
    print("\n".join(lines))
    if not a.no_write:
        RESULTS.write_text(json.dumps(res, indent=1))
        replace_section(DOC, MARK, lines)
        log(f"wrote the bench_ttft_path section of {DOC}")


if __name__ == "__main__":
    main()
