"""Proxy benchmarks: overhead, shared state, workers, LiteLLM side by side, quota, per-request costs.

Load comes from wrk (bench/chat.lua) or bench/loadgen.py, each in its own process; the upstream
is bench/upstream.py in its own process (a fixed 50 ms, or a provider's answer times and limits
in the quota section). LiteLLM, and everything it talks to, runs in a loopback-only network
namespace; so do the quota runs. Redis state uses the machine's Redis under a prefix of this
run's own, deleted afterwards. Results go to a JSON file that run_all.py turns into
docs/benchmarks.md.

    .venv/bin/python bench/bench_proxy.py [--only overhead,state,workers,litellm,quota,costs] [--quick]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import (  # noqa: E402
    BENCH,
    PY,
    REDIS_URL,
    Netns,
    Procs,
    chat_body,
    cpu_seconds,
    free_port,
    in_ns,
    loadavg,
    log,
    machine_cpu_seconds,
    redis_cleanup,
    redis_prefix,
    redis_server_pid,
    redis_up,
    run_loadgen,
    start_extension,
    start_service,
    start_upstream,
    tree_cpu_seconds,
    upstream_configs,
    upstream_stats,
    wait_http,
    workdir,
    wrk,
)
from litellm_side import start_litellm  # noqa: E402

EXT_FLOOR = "Jupyter Server no-op (floor)"
SECTIONS = ("overhead", "state", "workers", "litellm", "quota", "costs", "apis")


def proxy_config(up: str, **extra: Any) -> dict[str, Any]:
    return {
        "upstreams": upstream_configs(up),
        "default_model": "fake-small",
        "max_wait_seconds": 10.0,
        "health_check_seconds": 0.0,
        **extra,
    }


def run_target(
    name: str,
    url: str,
    auth: str,
    pid: int | None,
    conns: int,
    seconds: float,
    ns: Netns | None = None,
    body: str | None = None,
) -> dict[str, Any]:
    c0 = cpu_seconds(pid) if pid else 0.0
    r = wrk(url, conns=conns, seconds=seconds, auth=auth, ns=ns, body=body)
    if pid:
        r["cpu_us_per_req"] = 1e6 * (cpu_seconds(pid) - c0) / max(1, r["requests"])
    r["target"] = name
    r["load"] = loadavg()
    e = r["errors"]
    log(
        f"  {name:<22} c={conns:<4} {r['rps']:8.1f} req/s  p50 {r['latency_us']['p50'] / 1000:7.2f} ms  "
        f"p99 {r['latency_us']['p99'] / 1000:7.2f} ms  errors {sum(e.values())}"
        + (f"  cpu {r['cpu_us_per_req']:.0f} us/req" if pid else "")
    )
    return r


# -- 1. overhead and throughput: both hosts, memory and Redis state -----------------------------


def bench_overhead(quick: bool) -> dict[str, Any]:
    seconds = 3.0 if quick else 8.0
    conns_list = (10, 50, 200)
    sat_conns = (400,)  # 10, 50 and 200 are in the rows above
    have_redis = redis_up()
    prefixes = [redis_prefix("svc"), redis_prefix("ext")]
    out: dict[str, Any] = {"seconds": seconds, "runs": [], "redis": have_redis}
    with workdir("overhead") as d, Procs(d) as procs:
        try:
            up = start_upstream(procs)
            targets: dict[str, tuple[str, str, int | None]] = {
                "direct": (up + "/chat/completions", "", None)
            }
            # the framework's floor: a tornado handler that answers at once, no upstream call
            port = free_port()
            noop = procs.start("noop", [PY, str(BENCH / "noop_server.py"), "--port", str(port)])
            wait_http(f"http://127.0.0.1:{port}/x", noop, procs, "noop")
            targets["tornado no-op (floor)"] = (
                f"http://127.0.0.1:{port}/v1/chat/completions",
                "",
                noop.pid,
            )
            url, auth = start_service(procs, proxy_config(up), name="svc-memory")
            targets["rsql-proxy, memory"] = (url, auth, procs.items[-1][1].pid)
            if have_redis:
                url, auth = start_service(
                    procs,
                    proxy_config(up, state_url=REDIS_URL, state_prefix=prefixes[0]),
                    name="svc-redis",
                )
                targets["rsql-proxy, Redis"] = (url, auth, procs.items[-1][1].pid)
            url, auth = start_extension(procs, proxy_config(up), name="ext-memory", noop=True)
            ext_pid = procs.items[-1][1].pid
            targets["extension, memory"] = (url, auth, ext_pid)
            # the extension's floor: its own Jupyter server's authenticated no-op API handler
            floor = url.replace("rsql/v1/chat/completions", "bench-noop/v1/chat/completions")
            targets[EXT_FLOOR] = (floor, auth, ext_pid)
            if have_redis:
                url, auth = start_extension(
                    procs,
                    proxy_config(up, state_url=REDIS_URL, state_prefix=prefixes[1]),
                    name="ext-redis",
                )
                targets["extension, Redis"] = (url, auth, procs.items[-1][1].pid)
            log("overhead: warm-up")
            for url, auth, _pid in targets.values():
                wrk(url, conns=10, seconds=1, auth=auth)
            for conns in conns_list:
                log(f"overhead: {conns} connections")
                for name, (url, auth, pid) in targets.items():
                    out["runs"].append(run_target(name, url, auth, pid, conns, seconds))
            for conns in sat_conns:
                log(f"saturation: {conns} connections")
                for name, (url, auth, pid) in targets.items():
                    if name not in ("direct", "tornado no-op (floor)", EXT_FLOOR):
                        r = run_target(name, url, auth, pid, conns, seconds)
                        r["saturation"] = True
                        out["runs"].append(r)
        finally:
            procs.__exit__(None, None, None)
            for p in prefixes:
                redis_cleanup(p)
    return out


# -- 2. LiteLLM side by side, in a loopback-only namespace --------------------------------------


def bench_litellm(quick: bool) -> dict[str, Any]:
    seconds = 3.0 if quick else 6.0
    conns_list = (1, 10, 50, 200)
    out: dict[str, Any] = {"seconds": seconds, "runs": []}
    with workdir("litellm") as d, Procs(d) as procs, Netns() as ns:
        up = start_upstream(procs, ns=ns)
        targets: dict[str, tuple[str, str, int | None]] = {
            "direct": (up + "/chat/completions", "", None)
        }
        url, auth = start_service(procs, proxy_config(up), ns=ns, name="svc-memory")
        targets["rsql-proxy"] = (url, auth, procs.items[-1][1].pid)
        log("litellm: starting LiteLLM's proxy (1 worker) in the namespace")
        url, auth = start_litellm(procs, up, ns)
        targets["LiteLLM"] = (url, auth, procs.items[-1][1].pid)
        for url, auth, _pid in targets.values():  # warm-up: LiteLLM's first calls are slow
            wrk(url, conns=4, seconds=2, auth=auth, ns=ns)
        for conns in conns_list:
            log(f"litellm: {conns} connections")
            for name, (url, auth, pid) in targets.items():
                out["runs"].append(run_target(name, url, auth, pid, conns, seconds, ns=ns))
    return out


# -- 3. shared state cheaply: memory and Redis side by side, alternating, same load -----------------


def bench_state(quick: bool) -> dict[str, Any]:
    """rsql-proxy on memory and on Redis state, in turns (so a busy spell of the shared machine
    hits both), at 10 and 50 connections; the proxy's CPU per request, p50 overhead, and the
    Redis server's CPU per request (the machine's Redis: other users' load counts in it too)."""
    seconds, rounds = (3.0, 1) if quick else (6.0, 3)
    if not redis_up():
        return {"skipped": f"Redis is not reachable at {REDIS_URL}"}
    prefix = redis_prefix("state")
    rpid = redis_server_pid()
    out: dict[str, Any] = {"seconds": seconds, "rounds": rounds, "runs": []}
    with workdir("state") as d, Procs(d) as procs:
        try:
            up = start_upstream(procs)
            targets: dict[str, tuple[str, str, int | None]] = {
                "direct": (up + "/chat/completions", "", None)
            }
            url, auth = start_service(procs, proxy_config(up), name="svc-memory")
            targets["memory"] = (url, auth, procs.items[-1][1].pid)
            url, auth = start_service(
                procs, proxy_config(up, state_url=REDIS_URL, state_prefix=prefix), name="svc-redis"
            )
            targets["Redis"] = (url, auth, procs.items[-1][1].pid)
            for url, auth, _pid in targets.values():
                wrk(url, conns=10, seconds=2, auth=auth)
            for rnd in range(rounds):
                for conns in (10, 50):
                    log(f"state: round {rnd + 1}/{rounds}, {conns} connections")
                    order = [
                        "direct",
                        *(("memory", "Redis") if rnd % 2 == 0 else ("Redis", "memory")),
                    ]
                    for name in order:  # the order turns each round: neither always runs first
                        url, auth, pid = targets[name]
                        r0 = cpu_seconds(rpid) if rpid else 0.0
                        r = run_target(name, url, auth, pid, conns, seconds)
                        if rpid and name == "Redis":
                            r["redis_cpu_us_per_req"] = (
                                1e6 * (cpu_seconds(rpid) - r0) / max(1, r["requests"])
                            )
                        r["round"] = rnd
                        out["runs"].append(r)
        finally:
            procs.__exit__(None, None, None)
            redis_cleanup(prefix)
    return out


# -- 4. many cores: rsql-proxy --workers 1 and 2 on Redis state, at saturation ----------------------


def workers_supported() -> bool:
    code = "from jupyter_server_ext.service import RSQLProxyService as S; print('workers' in S.class_trait_names())"
    res = subprocess.run([PY, "-c", code], capture_output=True, text=True, cwd=BENCH.parent)
    return res.stdout.strip() == "True"


def bench_workers(quick: bool) -> dict[str, Any]:
    """req/s of --workers 1 and --workers 2 at 200 connections, in turns; what else used the
    cores over each run: wrk, the upstream, Redis (their CPU seconds from /proc), the whole
    machine's busy CPU seconds and the load average."""
    if not workers_supported():
        return {"skipped": "rsql-proxy has no --workers option yet (RSQLProxyService.workers)"}
    if not redis_up():
        return {"skipped": f"Redis is not reachable at {REDIS_URL}: --workers 2 needs shared state"}
    seconds, rounds, conns = (4.0, 1, 200) if quick else (10.0, 2, 200)
    prefix = redis_prefix("workers")
    rpid = redis_server_pid()
    out: dict[str, Any] = {"seconds": seconds, "rounds": rounds, "conns": conns, "runs": []}
    with workdir("workers") as d, Procs(d) as procs:
        try:
            up = start_upstream(procs)
            up_pid = procs.items[-1][1].pid
            targets = {}
            for n in (1, 2):
                url, auth = start_service(
                    procs,
                    proxy_config(up, state_url=REDIS_URL, state_prefix=prefix),
                    name=f"svc-w{n}",
                    args=["--workers", str(n)],
                )
                targets[n] = (url, auth, procs.items[-1][1].pid)
            for url, auth, _pid in targets.values():
                wrk(url, conns=50, seconds=2, auth=auth)
            for rnd in range(rounds):
                for n in (1, 2) if rnd % 2 == 0 else (2, 1):
                    url, auth, pid = targets[n]
                    log(f"workers: round {rnd + 1}/{rounds}, --workers {n}, {conns} connections")
                    before = {
                        "proxy": tree_cpu_seconds(pid),
                        "upstream": cpu_seconds(up_pid),
                        "redis": cpu_seconds(rpid) if rpid else 0.0,
                        "wrk": _children_cpu(),
                        "machine": machine_cpu_seconds(),
                    }
                    load0 = loadavg()
                    r = wrk(url, conns=conns, seconds=seconds, auth=auth)
                    after = {
                        "proxy": tree_cpu_seconds(pid),
                        "upstream": cpu_seconds(up_pid),
                        "redis": cpu_seconds(rpid) if rpid else 0.0,
                        "wrk": _children_cpu(),
                        "machine": machine_cpu_seconds(),
                    }
                    cpu = {k: after[k] - before[k] for k in before}
                    cpu["others"] = cpu["machine"] - sum(
                        v for k, v in cpu.items() if k != "machine"
                    )
                    run = {
                        "workers": n,
                        "round": rnd,
                        "rps": r["rps"],
                        "requests": r["requests"],
                        "errors": r["errors"],
                        "latency_us": r["latency_us"],
                        "cpu_s": cpu,
                        "wall_s": r["duration_us"] / 1e6,
                        "load_before": load0,
                        "load_after": loadavg(),
                        "cpu_us_per_req": 1e6 * cpu["proxy"] / max(1, r["requests"]),
                    }
                    log(
                        f"  --workers {n}: {r['rps']:.0f} req/s, CPU s: "
                        + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
                        + f", load {run['load_after']}"
                    )
                    out["runs"].append(run)
        finally:
            procs.__exit__(None, None, None)
            redis_cleanup(prefix)
    return out


def _children_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, once waited for
    return ru.ru_utime + ru.ru_stime


# -- 5. quota at real answer times: 3 keys x 10 requests / 10 s, clients offering twice that -------

QUOTA = {
    "keys": 3,
    "per_key": 10,
    "period": 10.0,
    "first_byte": 0.2,
    "stream_seconds": 2.0,
    "answer_seconds": 2.0,
    "short_answer_seconds": 0.05,
}
# scenario: (streamed, seconds to the first byte, seconds to the end); C is #40's quota target
QUOTA_SCENARIOS = {
    "A": (True, QUOTA["first_byte"], QUOTA["stream_seconds"]),
    "B": (False, QUOTA["answer_seconds"], QUOTA["answer_seconds"]),
    "C": (False, QUOTA["short_answer_seconds"], QUOTA["short_answer_seconds"]),
}


def steady_rate(
    times: list[float], start: float, end: float, per_window: int
) -> tuple[float, int, float, float]:
    """Events per second in the steady part: from the first event at or after `start`, over a whole
    number m of windows' worth of events (m * per_window) ending by `end`. Timed between two events
    m * per_window apart, it does not depend on where the windows' bursts fall against the ends of a
    fixed interval (which would swing a count by up to one window's worth); and as any window admits
    at most per_window, it can reach but not pass the capacity. Returns (rate, events, from, to)."""
    ts = sorted(times)
    i = next((k for k, t in enumerate(ts) if t >= start), len(ts))
    n = sum(1 for t in ts[i:] if t <= end)
    m = (n - 1) // per_window if n else 0
    if m < 1:
        return float("nan"), 0, start, end
    j = i + m * per_window
    return m * per_window / (ts[j] - ts[i]), m * per_window, ts[i], ts[j]


def quota_summary(
    load: dict[str, Any], up: dict[str, Any], capacity: float, first_byte: float, period: float
) -> dict[str, Any]:
    """Steady state: after the provider's first window. Share = delivered answers per second there
    (timed by their first bytes, `first_byte` after the provider counted them; see `steady_rate`) /
    the keys' capacity. The upstream's own count of arrivals gives the same measure at its side."""
    seconds, res = load["seconds"], load["results"]
    per_window = round(capacity * period)
    ok = [r for r in res if r[2] == 200]
    rate, n, t0, t1 = steady_rate(
        [r[4] for r in ok], period + first_byte, seconds + first_byte, per_window
    )
    arrivals = up.get("arrivals") or [0.0]  # seconds since the upstream's reset, at its side
    up_rate = steady_rate(arrivals, arrivals[0] + period, arrivals[0] + seconds, per_window)[0]
    refused = [r for r in res if r[2] == 429]
    errors = [r for r in res if r[2] not in (200, 429)]
    per_sec = [0] * (int(seconds) + 3)
    for r in ok:
        if 0 <= r[4] < len(per_sec):
            per_sec[int(r[4])] += 1
    return {
        "offered": load["sent"],
        "offered_rps": load["rate"],
        "seconds": seconds,
        "steady_from_s": t0,
        "steady_to_s": t1,
        "steady_answers": n,
        "delivered_steady_rps": rate,
        "capacity_rps": capacity,
        "share": rate / capacity,
        "upstream_share": up_rate / capacity,
        "delivered_total": len(ok),
        "refused_429": len(refused),
        "refused_with_retry_after": sum(1 for r in refused if r[3]),
        "errors": len(errors),
        "error_statuses": sorted({r[2] for r in errors}),
        "incomplete_streams": sum(1 for r in errors if r[2] == -3),
        "upstream_ok": up.get("ok"),
        "upstream_429": up.get("rate_limited"),
        "first_bytes_per_second": per_sec,
        "answer_p50_ms": 1000 * statistics.median([r[1] - r[0] for r in ok] or [0]),
        "first_byte_p50_ms": 1000 * statistics.median([r[4] - r[0] for r in ok] or [0]),
    }


def _quota_upstream(procs: Procs, ns: Netns, scen: str, headers: bool) -> str:
    q = QUOTA
    stream, first_byte, end = QUOTA_SCENARIOS[scen]
    timing = (
        {"first_byte": first_byte, "stream_seconds": end}
        if stream
        else {"first_byte": first_byte, "answer_seconds": end}
    )
    return start_upstream(
        procs,
        ns=ns,
        limit=f"{q['per_key']}/{q['period']:g}",
        timing=timing,
        headers=headers,
        name="upstream-quota",
    )


def _quota_load(
    ns: Netns, up: str, url: str, auth: str, scen: str, seconds: float
) -> dict[str, Any]:
    q = QUOTA
    stream, first_byte, _ = QUOTA_SCENARIOS[scen]
    capacity = q["keys"] * q["per_key"] / q["period"]
    upstream_stats(ns, up, reset=True)
    load = run_loadgen(ns, url, auth, 2 * capacity, seconds, stream=stream)
    res = quota_summary(load, upstream_stats(ns, up), capacity, first_byte, q["period"])
    res["first_byte_s"] = first_byte
    log("   ", {k: v for k, v in res.items() if k != "first_bytes_per_second"})
    return res


def bench_quota(quick: bool) -> dict[str, Any]:
    q = QUOTA
    capacity = q["keys"] * q["per_key"] / q["period"]
    secs = {
        "A": 30.0 if quick else 120.0,
        "B": 30.0 if quick else 60.0,
        "C": 30.0 if quick else 60.0,
    }
    out: dict[str, Any] = {
        **q,
        "capacity_rps": capacity,
        "offered_rps": 2 * capacity,
        "seconds": secs,
        "runs": [],
    }
    with workdir("quota") as d, Procs(d) as procs, Netns() as ns:
        for scen, (stream, _, _) in QUOTA_SCENARIOS.items():
            for headers in (True, False):
                up = _quota_upstream(procs, ns, scen, headers)
                cfg = proxy_config(up)
                cfg["upstreams"] = upstream_configs(
                    up, limits=[f"{q['per_key']} per {q['period']:g} seconds"]
                )
                url, auth = start_service(procs, cfg, ns=ns, name=f"svc-{scen}-{headers}")
                log(
                    f"quota {scen}: rsql-proxy, {'streams' if stream else 'JSON'}, "
                    f"headers {'on' if headers else 'off'}, "
                    f"offering {2 * capacity:g} req/s for {secs[scen]:g} s"
                )
                res = _quota_load(ns, up, url, auth, scen, secs[scen])
                out["runs"].append(
                    {
                        "scenario": scen,
                        "proxy": "rsql-proxy",
                        "stream": stream,
                        "headers": headers,
                        **res,
                    }
                )
                procs.__exit__(None, None, None)  # this run's proxy and upstream
        for scen, stream in (
            ("A", True),
            ("B", False),
        ):  # a fresh LiteLLM each: its per-minute counts
            try:
                up = _quota_upstream(procs, ns, scen, True)
                rpm = int(q["per_key"] * 60 / q["period"])  # per minute: its nearest to 10 per 10 s
                log(f"quota {scen}: starting LiteLLM (rpm {rpm} per deployment)")
                url, auth = start_litellm(procs, up, ns, rpm=rpm, name=f"litellm-{scen}")
                wrk(url, conns=1, seconds=1, auth=auth, ns=ns)  # its first calls are slow
                log(
                    f"quota {scen}: LiteLLM, headers on, offering {2 * capacity:g} req/s for {secs[scen]:g} s"
                )
                res = _quota_load(ns, up, url, auth, scen, secs[scen])
                out["runs"].append(
                    {"scenario": scen, "proxy": "LiteLLM", "stream": stream, "headers": True, **res}
                )
            except (RuntimeError, FileNotFoundError, subprocess.TimeoutExpired) as exc:
                out["LiteLLM_error"] = str(exc)[:500]
            procs.__exit__(None, None, None)
    return out


# -- 6. per-request costs -----------------------------------------------------------------------


async def _admission_cost(state_kind: str, n: int) -> dict[str, float]:
    from jupyter_server_ext.engine.admission.limiter import Limiter, LimitSettings, UserRules
    from jupyter_server_ext.engine.upstreams.specs import parse_rates

    settings = LimitSettings(
        user=UserRules(
            limits=parse_rates(["100000/minute", "1000000/day"], where="bench"),
            concurrency=50,
            daily_budget_usd=1000.0,
        ),
        global_concurrency=1000,
        global_daily_budget_usd=10000.0,
    )
    prefix = redis_prefix("admit")
    if state_kind == "memory":
        from jupyter_server_ext.state.admission.memory import MemoryState

        state = MemoryState()
    else:
        from jupyter_server_ext.state.admission.redis import RedisState

        state = RedisState(REDIS_URL, prefix=prefix)
    limiter = Limiter(settings, state)
    try:
        for i in range(50):
            t = await limiter.admit(f"user{i % 10}", (), 0.0001)
            await limiter.finish(t, 0.0001)
        admit_t, finish_t = [], []
        for i in range(n):
            t0 = time.perf_counter()
            t = await limiter.admit(f"user{i % 10}", ("staff",), 0.0001)
            t1 = time.perf_counter()
            await limiter.finish(t, 0.0001)
            t2 = time.perf_counter()
            admit_t.append(t1 - t0)
            finish_t.append(t2 - t1)
    finally:
        await state.close()
        if state_kind == "redis":
            redis_cleanup(prefix)
    admit_t.sort()
    finish_t.sort()
    return {
        "n": n,
        "admit_p50_us": 1e6 * admit_t[n // 2],
        "admit_p99_us": 1e6 * admit_t[int(n * 0.99)],
        "finish_p50_us": 1e6 * finish_t[n // 2],
    }


def _ttfb(ns: Netns | None, url: str, auth: str, count: int) -> dict[str, Any]:
    argv = [
        *in_ns(ns),
        PY,
        str(BENCH / "loadgen.py"),
        "ttfb",
        "--url",
        url,
        "--auth",
        auth,
        "--count",
        str(count),
        "--warmup",
        "10",
    ]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("LOADJSON ")), None)
    if line is None:
        raise RuntimeError(f"loadgen ttfb failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return json.loads(line[9:])


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def bench_costs(quick: bool) -> dict[str, Any]:
    n = 2000 if quick else 10000
    out: dict[str, Any] = {"admission": {}}
    log("costs: admission decision")
    out["admission"]["memory"] = asyncio.run(_admission_cost("memory", n))
    if redis_up():
        out["admission"]["redis"] = asyncio.run(_admission_cost("redis", n // 5))
    log("  ", out["admission"])
    seconds = 3.0 if quick else 6.0
    count = 100 if quick else 300
    with workdir("costs") as d, Procs(d) as procs:
        up = start_upstream(procs)
        url_s, auth_s = start_service(procs, proxy_config(up), name="svc")
        pid_s = procs.items[-1][1].pid
        url_e, auth_e = start_extension(procs, proxy_config(up), name="ext")
        pid_e = procs.items[-1][1].pid
        cached = chat_body(temperature=0.0)
        log("costs: cache hits end to end (wrk, a deterministic request answered from the cache)")
        hits = {}
        for name, url, auth, pid in (
            ("rsql-proxy", url_s, auth_s, pid_s),
            ("extension", url_e, auth_e, pid_e),
        ):
            wrk(url, conns=1, seconds=1, auth=auth, body=cached)  # fills the cache
            hits[name] = {
                c: run_target(f"{name} cache hit", url, auth, pid, c, seconds, body=cached)
                for c in (1, 10)
            }
        out["cache_hit"] = hits
        log("costs: streaming time to first byte (sequential streams)")
        direct = _ttfb(None, up + "/chat/completions", "Bearer x", count)
        svc = _ttfb(None, url_s, auth_s, count)
        ext = _ttfb(None, url_e, auth_e, count)
        out["ttfb"] = {}
        for name, r in (("direct", direct), ("rsql-proxy", svc), ("extension", ext)):
            out["ttfb"][name] = {
                "p50_ms": 1000 * _pct(r["ttfb"], 0.5),
                "p99_ms": 1000 * _pct(r["ttfb"], 0.99),
                "total_p50_ms": 1000 * _pct(r["total"], 0.5),
                "errors": r["errors"],
                "count": len(r["ttfb"]),
            }
        log("  ", out["ttfb"])
    return out


# -- 7. the Responses and Messages APIs against Chat Completions -----------------------------------

# the same small question in each API; temperature 0.7, so the cache never answers it
API_BODIES = {
    "chat completions": (
        "v1/chat/completions",
        {
            "model": "fake-small",
            "messages": [{"role": "user", "content": "how many rows in t250?"}],
            "max_tokens": 32,
            "temperature": 0.7,
        },
    ),
    "responses": (
        "v1/responses",
        {
            "model": "fake-small",
            "input": "how many rows in t250?",
            "max_output_tokens": 32,
            "temperature": 0.7,
        },
    ),
    "messages": (
        "v1/messages",
        {
            "model": "fake-small",
            "max_tokens": 32,
            "messages": [{"role": "user", "content": "how many rows in t250?"}],
            "temperature": 0.7,
        },
    ),
}


def bench_apis(quick: bool) -> dict[str, Any]:
    """CPU per request of each API through `rsql-proxy` (memory state) in front of a
    chat-completions upstream, so the Responses and Messages requests are translated both ways:
    the rounds interleave the APIs (A B C A B C ...) so drift on a shared machine hits each alike."""
    seconds = 3.0 if quick else 6.0
    rounds = 2 if quick else 4
    out: dict[str, Any] = {"seconds": seconds, "runs": []}
    with workdir("apis") as d, Procs(d) as procs:
        up = start_upstream(procs)
        chat_url, auth = start_service(procs, proxy_config(up), name="svc")
        pid = procs.items[-1][1].pid
        root = chat_url[: -len("v1/chat/completions")]
        for path, body in API_BODIES.values():  # warm-up, and each answers 200
            r = wrk(root + path, conns=10, seconds=1, auth=auth, body=json.dumps(body))
            if sum(r["errors"].values()):
                raise RuntimeError(f"{path}: errors in the warm-up {r['errors']}")
        for _ in range(rounds):
            for name, (path, body) in API_BODIES.items():
                r = run_target(name, root + path, auth, pid, 10, seconds, body=json.dumps(body))
                out["runs"].append(r)
    return out


def apis_summary(a: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per API: the median CPU µs/req over the rounds, req/s and p50, and the CPU added over
    chat completions."""
    out: dict[str, dict[str, float]] = {}
    for name in API_BODIES:
        rs = [r for r in a.get("runs", []) if r["target"] == name]
        if rs:
            out[name] = {
                "cpu_us": _med([r["cpu_us_per_req"] for r in rs]),
                "rps": _med([r["rps"] for r in rs]),
                "p50_ms": _med([r["latency_us"]["p50"] / 1000 for r in rs]),
            }
    base = out.get("chat completions", {}).get("cpu_us")
    for v in out.values():
        v["added_us"] = v["cpu_us"] - base if base is not None else float("nan")
    return out


# -- summaries (run_all.py renders them) ------------------------------------------------------------


def _med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def state_summary(st: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Per connection count: medians over the rounds for memory and Redis (overhead against the
    direct run of the same round), and the Redis / memory ratios."""
    rounds: dict[tuple[int, int], dict[str, dict[str, Any]]] = {}
    for r in st.get("runs", []):
        rounds.setdefault((r["conns"], r["round"]), {})[r["target"]] = r
    acc: dict[int, dict[str, dict[str, list[float]]]] = {}
    for (conns, _), t in sorted(rounds.items()):
        d = t.get("direct")
        for name in ("memory", "Redis"):
            r = t.get(name)
            if not (r and d):
                continue
            x = acc.setdefault(conns, {}).setdefault(
                name, {"p50": [], "over": [], "rps": [], "cpu": [], "rcpu": []}
            )
            x["p50"].append(r["latency_us"]["p50"])
            x["over"].append(r["latency_us"]["p50"] - d["latency_us"]["p50"])
            x["rps"].append(r["rps"])
            x["cpu"].append(r.get("cpu_us_per_req", float("nan")))
            if "redis_cpu_us_per_req" in r:
                x["rcpu"].append(r["redis_cpu_us_per_req"])
    out: dict[int, dict[str, Any]] = {}
    for conns, by in acc.items():
        out[conns] = {name: {k: _med(v) for k, v in x.items()} for name, x in by.items()}
        m, r = out[conns].get("memory"), out[conns].get("Redis")
        if m and r:
            out[conns]["cpu_ratio"] = r["cpu"] / m["cpu"]
            out[conns]["over_ratio"] = r["over"] / m["over"] if m["over"] > 0 else float("nan")
    return out


def workers_summary(w: dict[str, Any]) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for n in (1, 2):
        runs = [r for r in w.get("runs", []) if r["workers"] == n]
        if runs:
            cpu = {k: _med([r["cpu_s"][k] for r in runs]) for k in runs[0]["cpu_s"]}
            out[n] = {
                "rps": _med([r["rps"] for r in runs]),
                "p50": _med([r["latency_us"]["p50"] for r in runs]),
                "cpu": cpu,
                "wall": _med([r["wall_s"] for r in runs]),
                "rounds": len(runs),
                "errors": sum(sum(r["errors"].values()) for r in runs),
                "load": ", ".join(
                    f"{r['load_before'].split()[0]}→{r['load_after'].split()[0]}" for r in runs
                ),
            }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {', '.join(SECTIONS)}",
    )
    ap.add_argument(
        "--quick", action="store_true", help="short runs (a smoke test; numbers are rough)"
    )
    ap.add_argument("--json", default="", help="write the results here")
    args = ap.parse_args(argv)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    for s in wanted:
        if s not in SECTIONS:
            ap.error(f"unknown section {s!r}; choose from {', '.join(SECTIONS)}")
    if os.geteuid() != 0 and any(s in wanted for s in ("litellm", "quota")):
        log("litellm and quota need root for a network namespace (ip netns); skipping them")
        wanted = [s for s in wanted if s not in ("litellm", "quota")]
    fns = {
        "overhead": bench_overhead,
        "state": bench_state,
        "workers": bench_workers,
        "litellm": bench_litellm,
        "quota": bench_quota,
        "costs": bench_costs,
        "apis": bench_apis,
    }
    results: dict[str, Any] = {"quick": args.quick}
    for s in wanted:
        t = time.monotonic()
        try:
            results[s] = fns[s](args.quick)
        except Exception as exc:  # one failed section must not lose the others
            log(f"section {s} failed: {type(exc).__name__}: {exc}")
            results[s] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        results[s]["elapsed_s"] = time.monotonic() - t
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
