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
    loadavg,
    log,
    machine_cpu_seconds,
    start_extension,
    start_service,
    start_upstream,
    tree_cpu_seconds,
    wait_http,
    workdir,
    wrk,
)
from litellm_side import start_litellm  # noqa: E402
from proxy_quota import bench_quota  # noqa: E402
from proxy_runs import pct, proxy_config, run_target, ttfb  # noqa: E402
from redis_state import (  # noqa: E402
    REDIS_URL,
    redis_cleanup,
    redis_prefix,
    redis_server_pid,
    redis_up,
)

EXT_FLOOR = "Jupyter Server no-op (floor)"
SECTIONS = ("overhead", "state", "workers", "litellm", "quota", "costs", "apis")


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


# -- 6. per-request costs -----------------------------------------------------------------------


async def _admission_cost(state_kind: str, n: int) -> dict[str, float]:
    from jupyter_server_ext.engine.admission.limiter import Limiter, LimitSettings, UserRules
    from jupyter_server_ext.engine.admission.shared_state import StateBackend
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
    state: StateBackend
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
            await t.settle(0.0001)
        admit_t, finish_t = [], []
        for i in range(n):
            t0 = time.perf_counter()
            t = await limiter.admit(f"user{i % 10}", ("staff",), 0.0001)
            t1 = time.perf_counter()
            await t.settle(0.0001)
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
        direct = ttfb(None, up + "/chat/completions", "Bearer x", count)
        svc = ttfb(None, url_s, auth_s, count)
        ext = ttfb(None, url_e, auth_e, count)
        out["ttfb"] = {}
        for name, r in (("direct", direct), ("rsql-proxy", svc), ("extension", ext)):
            out["ttfb"][name] = {
                "p50_ms": 1000 * pct(r["ttfb"], 0.5),
                "p99_ms": 1000 * pct(r["ttfb"], 0.99),
                "total_p50_ms": 1000 * pct(r["total"], 0.5),
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
