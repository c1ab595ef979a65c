"""The proxy beside a bare forwarder, quota as users meet it, completions at class scale (#58).

    .venv/bin/python bench/bench_forwarder.py [--only forwarder,quota_open,class] [--quick]
        [--no-write] [--from-json FILE]

Sections:
  forwarder   rsql-proxy and the server extension beside ``bench/forwarder.py`` (a bare tornado +
              asyncio forwarder: token, JSON, key, pooled keep-alive upstream, no limits, log,
              cache or failover), the 50 ms upstream straight, and the tornado and Jupyter
              no-ops: wrk at 10 and 100 connections and sequential streams, in rounds whose
              order turns, so a busy spell of the shared machine hits each alike.
  quota_open  the quota scenario users meet: an open-loop client offering 30 requests/s for
              40 s to rsql-proxy (memory state, SQLite usage log), 3 keys on 3 accounts, each
              limited by the upstream to 10 requests per 2 s (a sliding window counted at
              arrival), 50 ms answers; steady state = successes completed from 5 s to 40 s.
  class       N simulated editors (50, 200, 500) through one rsql-proxy's ``{proxy}inline``
              at the pace the editor's debounce allows, a 200 ms model (bench/bench_class.py).

Results are kept in bench/results/forwarder.json (a subset run keeps the other sections' last
results, and the page says when each ran); the page section between the
``<!-- bench_forwarder -->`` markers of docs/benchmarks.md is rewritten from them
(bench/forwarder_page.py). Loopback only; every load bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_class  # noqa: E402
import forwarder_page  # noqa: E402
from common import (  # noqa: E402
    BENCH,
    KEYS,
    MODEL,
    PY,
    STATIC_TOKEN,
    Procs,
    cpu_seconds,
    free_port,
    log,
    machine,
    run_loadgen,
    start_extension,
    start_service,
    start_upstream,
    upstream_configs,
    upstream_stats,
    wait_http,
    workdir,
    wrk,
)
from proxy_quota import quota_summary  # noqa: E402
from proxy_runs import pct, proxy_config, run_target, ttfb  # noqa: E402

SECTIONS = ("forwarder", "quota_open", "class")
RESULTS = BENCH / "results" / "forwarder.json"
DIRECT, FWD, SVC, EXT = "direct", "bare forwarder", "rsql-proxy", "extension"
NOOP, JNOOP = "tornado no-op", "Jupyter Server no-op"
CONNS = (10, 100)


def start_forwarder(
    procs: Procs, up: str, wrap: Sequence[str] = (), wait_seconds: float = 60.0
) -> tuple[str, str, int]:
    """bench/forwarder.py in front of `up` with the bench's three keys; (URL, auth, pid).
    `wrap`: a command it runs under (valgrind), `wait_seconds`: how long it may take to start."""
    port = free_port()
    keys = [a for k in KEYS for a in ("--key", k)]
    argv = [*wrap, PY, str(BENCH / "forwarder.py"), "--port", str(port), "--upstream", up]
    proc = procs.start("forwarder", [*argv, "--token", STATIC_TOKEN, *keys])
    base = f"http://127.0.0.1:{port}/v1/"
    # a GET: 405 once it listens
    wait_http(base + "chat/completions", proc, procs, "forwarder", timeout=wait_seconds)
    return base + "chat/completions", f"Bearer {STATIC_TOKEN}", proc.pid


# -- forwarder: the same run, interleaved, repeated ---------------------------------------------


def bench_forwarder(quick: bool) -> dict[str, Any]:
    seconds, rounds, count = (3.0, 1, 50) if quick else (5.0, 3, 150)
    out: dict[str, Any] = {
        "seconds": seconds,
        "rounds": rounds,
        "ttfb_count": count,
        "runs": [],
        "ttfb": [],
    }
    with workdir("forwarder") as d, Procs(d) as procs:
        up = start_upstream(procs)
        targets: dict[str, tuple[str, str, int | None]] = {
            DIRECT: (up + "/chat/completions", "", None),
            FWD: start_forwarder(procs, up),
        }
        url, auth = start_service(procs, proxy_config(up), name="svc")
        targets[SVC] = (url, auth, procs.items[-1][1].pid)
        url, auth = start_extension(procs, proxy_config(up), name="ext", noop=True)
        ext_pid = procs.items[-1][1].pid
        targets[EXT] = (url, auth, ext_pid)
        port = free_port()
        noop = procs.start("noop", [PY, str(BENCH / "noop_server.py"), "--port", str(port)])
        wait_http(f"http://127.0.0.1:{port}/x", noop, procs, "noop")
        floors = {
            NOOP: (f"http://127.0.0.1:{port}/v1/chat/completions", "", noop.pid),
            JNOOP: (
                url.replace("rsql/v1/chat/completions", "bench-noop/v1/chat/completions"),
                auth,
                ext_pid,
            ),
        }
        log("forwarder: warm-up")
        for url, auth, _pid in (*targets.values(), *floors.values()):
            r = wrk(url, conns=10, seconds=1, auth=auth)
            if sum(r["errors"].values()):
                raise RuntimeError(f"{url}: errors in the warm-up {r['errors']}")
        names = list(targets)
        for rnd in range(rounds):
            order = names[rnd % len(names) :] + names[: rnd % len(names)]  # turns each round
            for conns in CONNS:
                log(f"forwarder: round {rnd + 1}/{rounds}, {conns} connections, {order}")
                for name in order:
                    url, auth, pid = targets[name]
                    r = run_target(name, url, auth, pid, conns, seconds)
                    out["runs"].append({**r, "round": rnd})
            for name, (url, auth, pid) in floors.items():
                r = run_target(name, url, auth, pid, CONNS[0], seconds)
                out["runs"].append({**r, "round": rnd, "floor": True})
            log(f"forwarder: round {rnd + 1}/{rounds}, {count} sequential streams each")
            for name in order:
                url, auth, pid = targets[name]
                cpu0 = cpu_seconds(pid) if pid else 0.0
                t = ttfb(None, url, auth or "Bearer x", count)
                # the server's CPU over the streams it answered (loadgen's 10 warm-up ones too)
                cpu = (cpu_seconds(pid) - cpu0) / (count + 10) * 1e6 if pid else None
                out["ttfb"].append(
                    {
                        "target": name,
                        "round": rnd,
                        "p50_ms": 1000 * pct(t["ttfb"], 0.5),
                        "p99_ms": 1000 * pct(t["ttfb"], 0.99),
                        "total_p50_ms": 1000 * pct(t["total"], 0.5),
                        "count": len(t["ttfb"]),
                        "errors": t["errors"],
                        "cpu_us_per_stream": cpu,
                    }
                )
            log("  ttfb p50 ms:", {x["target"]: round(x["p50_ms"], 2) for x in out["ttfb"][-4:]})
    return out


# -- quota_open: the scenario users meet ----------------------------------------------------------

QUOTA_OPEN = {
    "rate": 30.0,
    "seconds": 40.0,
    "steady_from": 5.0,
    "keys": 3,
    "per_key": 10,
    "period": 2.0,
    "answer_seconds": 0.05,
    "max_wait_seconds": 10.0,  # the product's default, which this scenario keeps
}


def ideal_completions(q: dict[str, Any], n: int) -> list[float]:
    """When each of `n` requests arriving at `rate` would complete through a perfect admitter:
    each sent the first moment one of the keys has room in its sliding window (counted at the
    send, as the upstream counts it at arrival), first come first served, refused after
    max_wait_seconds. The ceiling of any measure taken on these arrivals and windows."""
    sent: list[list[float]] = [[] for _ in range(q["keys"])]
    done, last = [], 0.0
    for i in range(n):
        arrival = i / q["rate"]
        ready = [w[-q["per_key"]] + q["period"] if len(w) >= q["per_key"] else 0.0 for w in sent]
        k = min(range(q["keys"]), key=ready.__getitem__)
        t = max(arrival, last, ready[k])
        if t - arrival > q["max_wait_seconds"]:
            continue  # refused: it takes no slot
        sent[k].append(t)
        last = t
        done.append(t + q["answer_seconds"])
    return done


def quota_open_summary(q: dict[str, Any], load: dict[str, Any], up: dict[str, Any]) -> dict:
    res = load["results"]  # [start, end, status, retry-after, first byte], seconds from the start
    lo, hi = q["steady_from"], q["seconds"]
    capacity = q["keys"] * q["per_key"] / q["period"]
    ok = [r for r in res if r[2] == 200]
    steady = [r for r in ok if lo <= r[1] <= hi]
    refused = [r for r in res if r[2] == 429]
    errors = [r for r in res if r[2] not in (200, 429)]
    ideal = [t for t in ideal_completions(q, load["sent"]) if lo <= t <= hi]
    page = quota_summary(load, up, capacity, q["answer_seconds"], q["period"])
    # a perfect admitter sends request i + (keys x per_key) exactly one window after request i;
    # how much later the proxy sent it, at the upstream's side, in the steady part
    arr, w = up.get("arrivals") or [], q["keys"] * q["per_key"]
    cycles = [arr[i + w] - arr[i] for i in range(len(arr) - w) if arr[i] >= lo]
    per_sec = [0] * (int(hi) + 12)
    for r in ok:
        if 0 <= r[1] < len(per_sec):
            per_sec[int(r[1])] += 1
    return {
        "offered": load["sent"],
        "capacity_rps": capacity,
        "steady_successes": len(steady),
        "steady_rps": len(steady) / (hi - lo),
        "share": len(steady) / (hi - lo) / capacity,
        "ideal_successes": len(ideal),
        "ideal_share": len(ideal) / (hi - lo) / capacity,
        "page_measure_share": page["share"],
        "page_measure_span": [page["steady_from_s"], page["steady_to_s"]],
        "upstream_share": page["upstream_share"],
        "window_cycle_p50_s": pct(cycles, 0.5) if cycles else float("nan"),
        "delivered_total": len(ok),
        "refused_429": len(refused),
        "refused_with_retry_after": sum(1 for r in refused if r[3]),
        "errors": len(errors),
        "error_statuses": sorted({r[2] for r in errors}),
        "upstream_ok": up.get("ok"),
        "upstream_429": up.get("rate_limited"),
        "answer_p50_ms": page["answer_p50_ms"],
        "successes_per_second": per_sec,
        "wait_p50_ms": 1000 * pct([r[1] - r[0] for r in ok], 0.5) if ok else float("nan"),
        "wait_p99_ms": 1000 * pct([r[1] - r[0] for r in ok], 0.99) if ok else float("nan"),
    }


def bench_quota_open(quick: bool) -> dict[str, Any]:
    """The scenario as written (the upstream sends no x-ratelimit headers), then the same with
    OpenAI's x-ratelimit-*-requests headers on every answer, each with a fresh proxy."""
    q = {**QUOTA_OPEN, "seconds": 15.0 if quick else QUOTA_OPEN["seconds"]}
    out: dict[str, Any] = {**q, "runs": []}
    with workdir("quota-open") as d:
        for headers in (False, True):
            with Procs(d / f"headers-{headers}") as procs:
                up = start_upstream(
                    procs,
                    latency=q["answer_seconds"],
                    limit=f"{q['per_key']}/{q['period']:g}",
                    headers=headers,
                    name="upstream-quota",
                )
                limits = [f"{q['per_key']} per {q['period']:g} seconds"]
                # the product's defaults otherwise: memory state, max_wait_seconds 10, health on
                cfg = {"upstreams": upstream_configs(up, limits=limits), "default_model": MODEL}
                url, auth = start_service(procs, cfg, name="svc-quota")
                upstream_stats(None, up, reset=True)
                log(
                    f"quota_open: offering {q['rate']:g} req/s for {q['seconds']:g} s to "
                    f"rsql-proxy, provider headers {'on' if headers else 'off'}"
                )
                load = run_loadgen(None, url, auth, q["rate"], q["seconds"])
                up_stats = upstream_stats(None, up)
            run = {"headers": headers, **quota_open_summary(q, load, up_stats)}
            log("   ", {k: v for k, v in run.items() if k != "successes_per_second"})
            out["runs"].append(run)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"a subset of {','.join(SECTIONS)}")
    ap.add_argument(
        "--quick", action="store_true", help="short runs (a smoke test); writes only with --write"
    )
    ap.add_argument("--write", action="store_true", help="keep the results even with --quick")
    ap.add_argument("--no-write", action="store_true", help="print the section, write nothing")
    ap.add_argument("--from-json", default="", help="render the page from a saved results file")
    args = ap.parse_args(argv)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    write = not args.no_write and (args.write or not args.quick)
    for s in wanted:
        if s not in SECTIONS:
            ap.error(f"unknown section {s!r}; choose from {', '.join(SECTIONS)}")
    if args.from_json:
        res = json.loads(Path(args.from_json).read_text())
    else:
        info = machine()
        fns = {"forwarder": bench_forwarder, "quota_open": bench_quota_open}
        fns["class"] = bench_class.bench_class
        res = {"machine": info}
        for s in wanted:
            t = time.monotonic()
            try:
                res[s] = fns[s](args.quick)
            except Exception as exc:  # one failed section must not lose the others
                log(f"section {s} failed: {type(exc).__name__}: {exc}")
                res[s] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            # each section's own machine: a subset run keeps the others', run elsewhere
            res[s].update(
                elapsed_s=time.monotonic() - t,
                run_at=info["date"],
                run_on=info["cpu"],
                quick=args.quick,
            )
        if write:
            old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
            old.update(res)  # a subset run keeps the other sections' last results
            res = old
            RESULTS.parent.mkdir(exist_ok=True)
            RESULTS.write_text(json.dumps(res, indent=1))
    text = forwarder_page.section(res)
    if not write:
        print(text)
    else:
        forwarder_page.write(text)
        log("wrote docs/benchmarks.md")
    return res


if __name__ == "__main__":
    main()
