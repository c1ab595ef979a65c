"""rsql-proxy and the bare forwarder on tornado's HTTP server and on a leaner host (#58).

    .venv/bin/python bench/bench_lean_host.py [--counts 2] [--rounds 3] [--seconds 5]
        [--streams 150] [--quick] [--no-write] [--from-json FILE]
    needs: wrk and valgrind (scripts/install-system-deps.sh bench), httptools (the [bench] extra)

#58: "If the host (tornado) is the limit, say so with the measurement, and measure a leaner host
for the standalone service behind the same handlers." bench/lean_host.py runs the same
application and handlers with each connection an ``asyncio.Protocol`` parsed by httptools (C)
in place of tornado's ``HTTP1Connection`` on an ``IOStream`` (Python). Four servers in front of
the same 50 ms upstream: rsql-proxy (memory state, SQLite usage log) and bench/forwarder.py,
each on both hosts.

- *Instructions a request* (callgrind, bench/count_proxy.py's way: sequential requests to an
  upstream answering at once, counted after a warm-up; the same for the same code whatever else
  the machine does), the median of `--counts` counts.
- *Under load*: `--rounds` rounds of wrk at 10 and 100 connections for `--seconds` each, the
  order turning each round; the server's CPU (from /proc) over the requests it answered; then
  `--streams` sequential streams each, the time to their first event.

Keeps its results in bench/results/lean_host.json and rewrites the ``bench_lean_host`` section
of docs/benchmarks.md from them, unless ``--no-write`` or ``--quick`` (``--from-json FILE``
renders the section from saved results).
"""

from __future__ import annotations

import argparse
import json
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
    wrk,
)
from count_proxy import count  # noqa: E402
from proxy_runs import pct, proxy_config, run_target, ttfb  # noqa: E402

BENCH = Path(__file__).resolve().parent
DOC = BENCH.parent / "docs" / "benchmarks.md"
MARK = "<!-- bench_lean_host -->"
RESULTS = BENCH / "results" / "lean_host.json"
LEAN = (PY, str(BENCH / "lean_host.py"))
# (name, forwarder?, lean host?)
TARGETS = (
    ("rsql-proxy on tornado", False, False),
    ("rsql-proxy on the lean host", False, True),
    ("forwarder on tornado", True, False),
    ("forwarder on the lean host", True, True),
)
CONNS = (10, 100)


def counts(rounds: int, requests: int) -> dict[str, list[float]]:
    """Instructions per request of each target, `rounds` counts each, interleaved."""
    out: dict[str, list[float]] = {name: [] for name, _, _ in TARGETS}
    for n in range(rounds):
        for name, fwd, lean in TARGETS if n % 2 == 0 else reversed(TARGETS):
            out[name].append(count(requests, False, forwarder=fwd, host=LEAN if lean else ()))
            log(f"  {name}: {out[name][-1]:,.0f} instructions a request")
    return out


def load(rounds: int, seconds: float, streams: int) -> dict[str, Any]:
    """wrk at each of CONNS and sequential streams against each target, in turning order."""
    runs: list[dict[str, Any]] = []
    firsts: list[dict[str, Any]] = []
    with workdir("lean-host") as d, Procs(d) as procs:
        up = start_upstream(procs)
        targets: dict[str, tuple[str, str, int]] = {}
        for name, fwd, lean in TARGETS:
            host = LEAN if lean else ()
            if fwd:
                targets[name] = start_forwarder(procs, up, wrap=host)
            else:
                slug = "svc-lean" if lean else "svc"
                url, auth = start_service(procs, proxy_config(up), wrap=host, name=slug)
                targets[name] = (url, auth, procs.items[-1][1].pid)
        for url, auth, _pid in targets.values():  # warm-up
            r = wrk(url, conns=10, seconds=1, auth=auth)
            if sum(r["errors"].values()):
                raise RuntimeError(f"{url}: errors in the warm-up {r['errors']}")
        names = list(targets)
        for rnd in range(rounds):
            order = names[rnd % len(names) :] + names[: rnd % len(names)]
            for conns in CONNS:
                log(f"lean host: round {rnd + 1}/{rounds}, {conns} connections")
                for name in order:
                    url, auth, pid = targets[name]
                    runs.append({**run_target(name, url, auth, pid, conns, seconds), "round": rnd})
            for name in order:
                url, auth, _pid = targets[name]
                t = ttfb(None, url, auth, streams)
                firsts.append({"target": name, "round": rnd, "p50_ms": 1000 * pct(t["ttfb"], 0.5)})
    return {"runs": runs, "ttfb": firsts}


def _med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def section(res: dict[str, Any]) -> list[str]:
    info, c, ld = res["machine"], res["counts"], res["load"]
    med = {name: _med(v) for name, v in c.items()}
    names = [name for name, _, _ in TARGETS]
    lines = [
        MARK,
        "## rsql-proxy on a leaner HTTP host (`bench/bench_lean_host.py`)",
        "",
        f"Run {res['when']} on {info.get('nproc', '?')} cores ({info.get('cpu', '?')}, Python "
        f"{info.get('python', '?')}), shared with other sessions' work: compare rows of one run. "
        "#58 asks, where the host is the limit, for a leaner host measured behind the same "
        "handlers. `bench/lean_host.py` serves the same tornado application and handlers with "
        "each connection an `asyncio.Protocol` parsed by httptools (llhttp, in C; uvicorn's "
        "parser), in place of tornado's `HTTP1Connection` on an `IOStream` (Python: buffering, "
        "the start line and headers parsed line by line, a timer and a task for each request's "
        "headers). A measuring host, not the product's: it leaves out TLS, idle and body "
        "timeouts and `Expect: 100-continue`.",
        "",
        f"Instructions a request (callgrind; {res['requests']} sequential chat completions to "
        f"an upstream answering at once, after a warm-up; median of {res['rounds']} counts "
        "each):",
        "",
        "| server | tornado's HTTP server | the lean host | the lean host saves |",
        "|---|---|---|---|",
    ]
    for who in ("rsql-proxy", "forwarder"):
        t, lean = med[f"{who} on tornado"], med[f"{who} on the lean host"]
        lines.append(f"| {who} | {t:,.0f} | {lean:,.0f} | {t - lean:,.0f} ({1 - lean / t:.0%}) |")
    fwd_t = med["forwarder on tornado"]
    proxy_t, proxy_l = med["rsql-proxy on tornado"], med["rsql-proxy on the lean host"]
    lines += [
        "",
        f"rsql-proxy against the forwarder on tornado (#58's CPU ratio, goal 1.3x): "
        f"{proxy_t / fwd_t:.2f}x on tornado, {proxy_l / fwd_t:.2f}x on the lean host; both on the "
        f"lean host, {proxy_l / med['forwarder on the lean host']:.2f}x.",
        "",
        f"Under load (wrk, {res['seconds']:g} s a target and connection count, "
        f"{res['load_rounds']} rounds whose order turns; medians over the rounds; a 50 ms "
        f"upstream; *first event*: {res['streams']} sequential streams, p50):",
        "",
        "| server | conns | p50 ms | p99 ms | req/s | CPU µs/req |",
        "|---|---|---|---|---|---|",
    ]
    for conns in CONNS:
        for name in names:
            rs = [r for r in ld["runs"] if r["target"] == name and r["conns"] == conns]
            lines.append(
                f"| {name} | {conns} | {_med([r['latency_us']['p50'] / 1000 for r in rs]):.2f} "
                f"| {_med([r['latency_us']['p99'] / 1000 for r in rs]):.2f} "
                f"| {_med([r['rps'] for r in rs]):,.0f} "
                f"| {_med([r['cpu_us_per_req'] for r in rs]):,.0f} |"
            )
    lines += ["", "| server | first event p50 ms |", "|---|---|"]
    for name in names:
        lines.append(
            f"| {name} | {_med([t['p50_ms'] for t in ld['ttfb'] if t['target'] == name]):.2f} |"
        )
    fwd_l = med["forwarder on the lean host"]
    own = proxy_l - fwd_l  # what rsql-proxy does beyond the forwarder, on the same lean host
    lines += [
        "",
        f"What it says: tornado's HTTP server is {fwd_t - fwd_l:,.0f} instructions of the "
        f"forwarder's {fwd_t:,.0f} a request ({1 - fwd_l / fwd_t:.0%}) and {proxy_t - proxy_l:,.0f} "
        "of rsql-proxy's: a host cost both pay alike, which a leaner host takes off both. What "
        "keeps rsql-proxy from 1.3x the forwarder is its own work beyond the forwarder's "
        "(admission, key choice, the usage row, metrics, the answer's accounting), which no host "
        f"changes: {own:,.0f} instructions a request, {own / proxy_l:.0%} of rsql-proxy's on the "
        "lean host. The server extension cannot change hosts: it lives in the Jupyter server.",
        MARK,
    ]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="load rounds")
    ap.add_argument("--counts", type=int, default=2, help="callgrind counts of each target")
    ap.add_argument("--requests", type=int, default=300, help="requests a callgrind count")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--streams", type=int, default=150)
    ap.add_argument("--quick", action="store_true", help="1 round, 1 count; writes nothing")
    ap.add_argument("--no-write", action="store_true", help="print the section, write nothing")
    ap.add_argument("--from-json", default="", help="render the page from a saved results file")
    a = ap.parse_args()
    if a.from_json:
        replace_section(DOC, MARK, section(json.loads(Path(a.from_json).read_text())))
        return
    if a.quick:
        a.rounds, a.counts, a.requests, a.seconds, a.streams = 1, 1, 100, 2.0, 30

    res: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "rounds": a.counts,
        "requests": a.requests,
        "load_rounds": a.rounds,
        "seconds": a.seconds,
        "streams": a.streams,
    }
    res["counts"] = counts(a.counts, a.requests)
    res["load"] = load(a.rounds, a.seconds, a.streams)
    lines = section(res)
    print("\n".join(lines))
    if not (a.quick or a.no_write):
        RESULTS.write_text(json.dumps(res, indent=1))
        replace_section(DOC, MARK, lines)
        log(f"wrote the bench_lean_host section of {DOC}")


if __name__ == "__main__":
    main()
