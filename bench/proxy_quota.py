"""Section 5 of bench_proxy.py, quota at real answer times: 3 keys of 10 requests per 10 s on
3 accounts, clients offering twice that, streams and 2 s or 50 ms JSON answers, the provider's
rate headers on and off, rsql-proxy and LiteLLM side by side in a loopback-only namespace. Its
summary (``quota_summary``) is also bench_forwarder.py's for the quota as users meet it."""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import (  # noqa: E402
    Netns,
    Procs,
    log,
    run_loadgen,
    start_service,
    start_upstream,
    upstream_configs,
    upstream_stats,
    workdir,
    wrk,
)
from litellm_side import start_litellm  # noqa: E402
from proxy_runs import proxy_config  # noqa: E402

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
