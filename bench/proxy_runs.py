"""The proxy benchmarks' shared steps (bench_proxy.py, bench_forwarder.py, bench_class.py): the
proxy's configuration in front of bench/upstream.py, one wrk run of a target with its process's
CPU per request, sequential streams' time to the first event, a percentile."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import (  # noqa: E402
    BENCH,
    PY,
    Netns,
    cpu_seconds,
    in_ns,
    loadavg,
    log,
    upstream_configs,
    wrk,
)


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


def ttfb(ns: Netns | None, url: str, auth: str, count: int) -> dict[str, Any]:
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


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")
