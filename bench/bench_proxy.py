"""Proxy benchmarks: overhead and throughput, LiteLLM side by side, quota efficiency, per-request costs.

Load comes from wrk (bench/chat.lua) or bench/loadgen.py, each in its own process; the upstream
is bench/upstream.py (fixed 50 ms) in its own process. LiteLLM, and everything it talks to,
runs in a loopback-only network namespace. Results go to a JSON file that run_all.py turns into
docs/benchmarks.md.

    .venv/bin/python bench/bench_proxy.py [--only overhead,litellm,quota,costs] [--quick] [--json out.json]
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
    Netns,
    Procs,
    chat_body,
    cpu_seconds,
    free_port,
    in_ns,
    loadavg,
    log,
    start_extension,
    start_litellm,
    start_service,
    start_upstream,
    upstream_configs,
    wait_http,
    workdir,
    wrk,
)

REDIS_URL = os.environ.get("RSQL_BENCH_REDIS", "redis://127.0.0.1:6379/12")
SECTIONS = ("overhead", "litellm", "quota", "costs")


def redis_prefix(tag: str) -> str:
    return f"rsqlbench-{os.getpid()}-{tag}:"


def redis_cleanup(prefix: str) -> int:
    """Delete every key this run wrote under its own prefix."""
    try:
        import redis
    except ImportError:
        return 0
    r = redis.Redis.from_url(REDIS_URL)
    n = 0
    try:
        for key in r.scan_iter(match=prefix + "*", count=500):
            n += r.delete(key)
    except redis.RedisError:
        pass
    finally:
        r.close()
    return n


def redis_up() -> bool:
    try:
        import redis

        r = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        ok = bool(r.ping())
        r.close()
        return ok
    except Exception:
        return False


def proxy_config(up: str, **extra: Any) -> dict[str, Any]:
    return {"upstreams": upstream_configs(up), "default_model": "fake-small", "max_wait_seconds": 10.0,
            "health_check_seconds": 0.0, **extra}


def run_target(name: str, url: str, auth: str, pid: int | None, conns: int, seconds: float,
               ns: Netns | None = None, body: str | None = None) -> dict[str, Any]:
    c0 = cpu_seconds(pid) if pid else 0.0
    r = wrk(url, conns=conns, seconds=seconds, auth=auth, ns=ns, body=body)
    if pid:
        r["cpu_us_per_req"] = 1e6 * (cpu_seconds(pid) - c0) / max(1, r["requests"])
    r["target"] = name
    r["load"] = loadavg()
    e = r["errors"]
    log(f"  {name:<22} c={conns:<4} {r['rps']:8.1f} req/s  p50 {r['latency_us']['p50'] / 1000:7.2f} ms  "
        f"p99 {r['latency_us']['p99'] / 1000:7.2f} ms  errors {sum(e.values())}"
        + (f"  cpu {r['cpu_us_per_req']:.0f} us/req" if pid else ""))
    return r


# -- 1. overhead and throughput: both hosts, memory and Redis state -----------------------------

def bench_overhead(quick: bool) -> dict[str, Any]:
    seconds = 3.0 if quick else 8.0
    conns_list = (10, 50, 200)
    sat_conns = (200, 400)
    have_redis = redis_up()
    prefixes = [redis_prefix("svc"), redis_prefix("ext")]
    out: dict[str, Any] = {"seconds": seconds, "runs": [], "redis": have_redis}
    with workdir("overhead") as d, Procs(d) as procs:
        try:
            up = start_upstream(procs)
            targets: dict[str, tuple[str, str, int | None]] = {"direct": (up + "/chat/completions", "", None)}
            # the framework's floor: a tornado handler that answers at once, no upstream call
            port = free_port()
            noop = procs.start("noop", [PY, str(BENCH / "noop_server.py"), "--port", str(port)])
            wait_http(f"http://127.0.0.1:{port}/x", noop, procs, "noop")
            targets["tornado no-op (floor)"] = (f"http://127.0.0.1:{port}/v1/chat/completions", "", noop.pid)
            url, auth = start_service(procs, proxy_config(up), name="svc-memory")
            targets["rsql-proxy, memory"] = (url, auth, procs.items[-1][1].pid)
            if have_redis:
                url, auth = start_service(procs, proxy_config(up, state_url=REDIS_URL, state_prefix=prefixes[0]),
                                          name="svc-redis")
                targets["rsql-proxy, Redis"] = (url, auth, procs.items[-1][1].pid)
            url, auth = start_extension(procs, proxy_config(up), name="ext-memory")
            targets["extension, memory"] = (url, auth, procs.items[-1][1].pid)
            if have_redis:
                url, auth = start_extension(procs, proxy_config(up, state_url=REDIS_URL, state_prefix=prefixes[1]),
                                            name="ext-redis")
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
                    if name not in ("direct", "tornado no-op (floor)"):
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
        targets: dict[str, tuple[str, str, int | None]] = {"direct": (up + "/chat/completions", "", None)}
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


# -- 3. quota efficiency: 3 keys x 10 requests / 2 s, clients offering twice that -----------------

def _loadgen(ns: Netns, url: str, auth: str, rate: float, seconds: float) -> dict[str, Any]:
    argv = [*in_ns(ns), PY, str(BENCH / "loadgen.py"), "open", "--url", url, "--auth", auth,
            "--rate", str(rate), "--seconds", str(seconds), "--timeout", "30"]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120)
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("LOADJSON ")), None)
    if line is None:
        raise RuntimeError(f"loadgen failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return json.loads(line[9:])


def _upstream_stats(ns: Netns, base: str, reset: bool = False) -> dict[str, Any]:
    path = "/reset" if reset else "/stats"
    res = subprocess.run([*in_ns(ns), "curl", "-s", "-m", "5", "-X", "POST" if reset else "GET",
                          base.rsplit("/v1", 1)[0] + path], capture_output=True, text=True)
    return json.loads(res.stdout or "{}")


def _quota_summary(load: dict[str, Any], up: dict[str, Any], capacity: float) -> dict[str, Any]:
    seconds = load["seconds"]
    res = load["results"]
    ok_in = sum(1 for s, e, st, _ in res if st == 200 and e <= seconds)
    ok = sum(1 for r in res if r[2] == 200)
    refused = [r for r in res if r[2] == 429]
    errors = [r for r in res if r[2] not in (200, 429)]
    per_sec = [0] * (int(seconds) + 1)
    for _s, e, st, _ in res:
        if st == 200 and e <= seconds:
            per_sec[min(int(e), len(per_sec) - 1)] += 1
    # when did the first refusal come? (before the first 2 s capacity cannot be short)
    first_refusal = min((r[1] for r in refused), default=None)
    return {
        "offered": load["sent"], "offered_rps": load["rate"], "seconds": seconds,
        "delivered_in_window": ok_in, "delivered_total": ok,
        "delivered_rps": ok_in / seconds, "capacity_rps": capacity,
        "efficiency": ok_in / (capacity * seconds),
        "refused_429": len(refused),
        "refused_with_retry_after": sum(1 for r in refused if r[3]),
        "errors": len(errors),
        "error_statuses": sorted({r[2] for r in errors}),
        "first_refusal_s": first_refusal,
        "upstream_ok": up.get("ok"), "upstream_429": up.get("rate_limited"),
        "per_second": per_sec,
        "latency_p50_ms": 1000 * statistics.median([e - s for s, e, st, _ in res if st == 200] or [0]),
    }


def bench_quota(quick: bool) -> dict[str, Any]:
    seconds = 20.0 if quick else 60.0
    per_key, period = 10, 2.0
    capacity = 3 * per_key / period  # 15 requests/s
    rate = 2 * capacity
    out: dict[str, Any] = {"seconds": seconds, "capacity_rps": capacity, "offered_rps": rate}
    with workdir("quota") as d, Procs(d) as procs, Netns() as ns:
        up = start_upstream(procs, ns=ns, limit=f"{per_key}/{period:g}")
        cfg = proxy_config(up)
        cfg["upstreams"] = upstream_configs(up, limits=[f"{per_key} per {period:g} seconds"])
        url, auth = start_service(procs, cfg, ns=ns, name="svc-quota")
        log(f"quota: rsql-proxy, offering {rate:g} req/s for {seconds:g} s")
        _upstream_stats(ns, up, reset=True)
        load = _loadgen(ns, url, auth, rate, seconds)
        out["rsql-proxy"] = _quota_summary(load, _upstream_stats(ns, up), capacity)
        log("  ", {k: v for k, v in out["rsql-proxy"].items() if k != "per_second"})
        procs.stop(procs.items[-1][1])
        time.sleep(period + 0.5)  # let the upstream's windows empty
        try:
            log("quota: starting LiteLLM (rpm 300 per deployment: its nearest to 10 per 2 s)")
            url, auth = start_litellm(procs, up, ns, rpm=int(per_key * 60 / period), name="litellm-quota")
            # one request per deployment to warm it, then let the windows empty again
            wrk(url, conns=1, seconds=1, auth=auth, ns=ns)
            time.sleep(period + 0.5)
            _upstream_stats(ns, up, reset=True)
            log(f"quota: LiteLLM, offering {rate:g} req/s for {seconds:g} s")
            load = _loadgen(ns, url, auth, rate, seconds)
            out["LiteLLM"] = _quota_summary(load, _upstream_stats(ns, up), capacity)
            log("  ", {k: v for k, v in out["LiteLLM"].items() if k != "per_second"})
        except (RuntimeError, FileNotFoundError) as exc:
            out["LiteLLM_error"] = str(exc)[:500]
    return out


# -- 4. per-request costs -----------------------------------------------------------------------

async def _admission_cost(state_kind: str, n: int) -> dict[str, float]:
    from jupyter_server_ext.engine.limiter import Limiter, LimitSettings, UserPolicy
    from jupyter_server_ext.engine.settings import parse_rates

    settings = LimitSettings(
        user=UserPolicy(limits=parse_rates(["100000/minute", "1000000/day"], where="bench"), concurrency=50,
                        daily_budget_usd=1000.0),
        global_concurrency=1000, global_daily_budget_usd=10000.0,
    )
    prefix = redis_prefix("admit")
    if state_kind == "memory":
        from jupyter_server_ext.state.memory import MemoryState

        state = MemoryState()
    else:
        from jupyter_server_ext.state.redis import RedisState

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
    return {"n": n, "admit_p50_us": 1e6 * admit_t[n // 2], "admit_p99_us": 1e6 * admit_t[int(n * 0.99)],
            "finish_p50_us": 1e6 * finish_t[n // 2]}


def _ttfb(ns: Netns | None, url: str, auth: str, count: int) -> dict[str, Any]:
    argv = [*in_ns(ns), PY, str(BENCH / "loadgen.py"), "ttfb", "--url", url, "--auth", auth,
            "--count", str(count), "--warmup", "10"]
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
        for name, url, auth, pid in (("rsql-proxy", url_s, auth_s, pid_s), ("extension", url_e, auth_e, pid_e)):
            wrk(url, conns=1, seconds=1, auth=auth, body=cached)  # fills the cache
            hits[name] = {c: run_target(f"{name} cache hit", url, auth, pid, c, seconds, body=cached) for c in (1, 10)}
        out["cache_hit"] = hits
        log("costs: streaming time to first byte (sequential streams)")
        direct = _ttfb(None, up + "/chat/completions", "Bearer x", count)
        svc = _ttfb(None, url_s, auth_s, count)
        ext = _ttfb(None, url_e, auth_e, count)
        out["ttfb"] = {}
        for name, r in (("direct", direct), ("rsql-proxy", svc), ("extension", ext)):
            out["ttfb"][name] = {"p50_ms": 1000 * _pct(r["ttfb"], 0.5), "p99_ms": 1000 * _pct(r["ttfb"], 0.99),
                                 "total_p50_ms": 1000 * _pct(r["total"], 0.5), "errors": r["errors"],
                                 "count": len(r["ttfb"])}
        log("  ", out["ttfb"])
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {', '.join(SECTIONS)}")
    ap.add_argument("--quick", action="store_true", help="short runs (a smoke test; numbers are rough)")
    ap.add_argument("--json", default="", help="write the results here")
    args = ap.parse_args(argv)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    for s in wanted:
        if s not in SECTIONS:
            ap.error(f"unknown section {s!r}; choose from {', '.join(SECTIONS)}")
    if os.geteuid() != 0 and any(s in wanted for s in ("litellm", "quota")):
        log("litellm and quota need root for a network namespace (ip netns); skipping them")
        wanted = [s for s in wanted if s not in ("litellm", "quota")]
    fns = {"overhead": bench_overhead, "litellm": bench_litellm, "quota": bench_quota, "costs": bench_costs}
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
