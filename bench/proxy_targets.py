"""The page's "Against the targets" table and its "What holds back missed targets" bullets,
from bench_proxy.py's results (proxy_page.py puts them in the section)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_proxy import EXT_FLOOR  # noqa: E402
from proxy_quota import QUOTA_SCENARIOS  # noqa: E402
from proxy_results import (  # noqa: E402
    ENGINE_MD,
    apis_summary,
    litellm_ratio,
    overhead_rows,
    prose,
    quota_runs,
    runs_by,
    saturation,
    scen_label,
    scen_name,
    state_summary,
    workers_summary,
)


def target_rows(res: dict[str, Any]) -> list[str]:
    """The "Against the targets" table: each target, its goal, this run's figure, and whether it
    was met."""
    L: list[str] = []
    ov = res.get("overhead", {})
    sat = saturation(ov) if ov.get("runs") else {}
    ll = res.get("litellm", {})
    q = res.get("quota", {})
    summ: dict[str, Any] = {}
    if ov.get("runs"):
        _, summ = overhead_rows(ov)
    L += ["### Against the targets", "", "| target | goal | measured | |", "|---|---|---|---|"]

    # `value` and `ok` as the lines below write them (``svc and svc[0] / 1000``): a missing run's
    # falsy value, shown as a dash
    def row(name: str, goal: str, value: Any, fmt: str, ok: Any) -> None:
        v = "—" if value is None else fmt.format(value)
        verdict = "" if ok is None or value is None else ("met" if ok else "**missed**")
        L.append(f"| {name} | {goal} | {v} | {verdict} |")

    svc = summ.get("rsql-proxy, memory", {}).get(10)
    ext = summ.get("extension, memory", {}).get(10)
    row(
        "rsql-proxy overhead p50, 10 conns",
        "≤ 1 ms",
        svc and svc[0] / 1000,
        "{:.2f} ms",
        svc and svc[0] <= 1000,
    )
    row(
        "rsql-proxy overhead p99, 10 conns",
        "≤ 5 ms",
        svc and svc[1] / 1000,
        "{:.2f} ms",
        svc and svc[1] <= 5000,
    )
    s = sat.get("rsql-proxy, memory")
    row(
        "rsql-proxy req/s, one process (measured)",
        "≥ 2,000",
        s and s["rps"],
        "{:,.0f}",
        s and s["rps"] >= 2000,
    )
    row(
        "rsql-proxy req/s per free core (10⁶ / CPU µs per req)",
        "≥ 2,000",
        s and s["per_core"],
        "{:,.0f}",
        s and s["per_core"] >= 2000,
    )
    row(
        "extension overhead p50, 10 conns",
        "≤ 1 ms",
        ext and ext[0] / 1000,
        "{:.2f} ms",
        ext and ext[0] <= 1000,
    )
    runs_ov = runs_by(ov)
    e200 = runs_ov.get(("extension, memory", 200, False))
    f200 = runs_ov.get((EXT_FLOOR, 200, False))
    row(
        "extension req/s at 200 conns / its Jupyter Server's authenticated no-op",
        "≥ 0.8x",
        e200 and f200 and e200["rps"] / f200["rps"],
        "{:.2f}x",
        e200 and f200 and e200["rps"] >= 0.8 * f200["rps"],
    )
    floor, svc_sat = sat.get("tornado no-op (floor)"), sat.get("rsql-proxy, memory")
    cpu_x = floor and svc_sat and svc_sat["cpu_us"] / floor["cpu_us"]
    row(
        "rsql-proxy CPU per request / a tornado no-op's (runs of 50 conns and more)",
        "≤ 1.5x",
        cpu_x,
        "{:.2f}x",
        cpu_x and cpu_x <= 1.5,
    )
    ttfb = res.get("costs", {}).get("ttfb", {})
    for host in ("rsql-proxy", "extension"):
        h, d = ttfb.get(host), ttfb.get("direct")
        added = h and d and h["p50_ms"] - d["p50_ms"]
        row(
            f"streaming time to first event added, {host}, p50",
            "≤ 1 ms",
            added,
            "{:.2f} ms",
            added is not None and added <= 1.0,
        )
    for name, v in apis_summary(res.get("apis", {})).items():
        if name != "chat completions":
            row(
                f"{name} API, CPU added over chat completions",
                "≤ 300 µs",
                v["added_us"],
                "{:+.0f} µs",
                v["added_us"] <= 300,
            )
    e = sat.get("extension, memory")
    row("extension req/s (measured)", "≥ 1,000", e and e["rps"], "{:,.0f}", e and e["rps"] >= 1000)
    row(
        "extension req/s per free core",
        "≥ 1,000",
        e and e["per_core"],
        "{:,.0f}",
        e and e["per_core"] >= 1000,
    )
    ratio = litellm_ratio(ll)
    row(
        "throughput vs LiteLLM, same cores (best req/s of each, measured)",
        "≥ 20x",
        ratio,
        "{:.1f}x",
        ratio is not None and ratio >= 20,
    )
    cpu_ratio = None
    if ll.get("runs"):
        cpus = {
            t: sorted(
                r["cpu_us_per_req"]
                for r in ll["runs"]
                if r["target"] == t and r["conns"] >= 10 and "cpu_us_per_req" in r
            )
            for t in ("rsql-proxy", "LiteLLM")
        }
        if cpus["rsql-proxy"] and cpus["LiteLLM"]:
            med = {t: v[len(v) // 2] for t, v in cpus.items()}
            cpu_ratio = med["LiteLLM"] / med["rsql-proxy"]
    row(
        "capacity vs LiteLLM (its CPU per request / ours: req/s each carries per core)",
        "≥ 20x",
        cpu_ratio,
        "{:.1f}x",
        cpu_ratio is not None and cpu_ratio >= 20,
    )
    if ll.get("runs"):
        runs1 = runs_by(ll)
        a, d = runs1.get(("rsql-proxy", 1, False)), runs1.get(("direct", 1, False))
        if a and d:
            o = (a["latency_us"]["p50"] - d["latency_us"]["p50"]) / 1000
            row(
                "rsql-proxy overhead p50, 1 connection (LiteLLM section)",
                "(context)",
                o,
                "{:.2f} ms",
                None,
            )
    qr = quota_runs(q)
    for scen in QUOTA_SCENARIOS:
        for hdr in (True, False):
            r = qr.get((scen, "rsql-proxy", hdr))
            if r is None:
                continue
            goal = "(reported)" if scen == "B" else "≥ 98%"
            row(
                f"quota share, {scen}: {scen_label(scen)}, provider headers "
                f"{'on' if hdr else 'off'} (steady state)",
                goal,
                r and 100 * r["share"],
                "{:.2f}%",
                r and (None if scen == "B" else r["share"] >= 0.98),
            )
    ours = [r for r in q.get("runs", []) if r["proxy"] == "rsql-proxy"]
    n429 = sum(r["upstream_429"] or 0 for r in ours) if ours else None
    row("upstream 429s, rsql-proxy's quota runs", "0", n429, "{:.0f}", ours and n429 == 0)
    nerr = sum(r["errors"] for r in ours) if ours else None
    row(
        "client errors, rsql-proxy's quota runs (not counting 429 refusals)",
        "0",
        nerr,
        "{:.0f}",
        ours and nerr == 0,
    )
    st = state_summary(res.get("state", {}))
    for conns, sm in sorted(st.items()):
        c, o = sm.get("cpu_ratio"), sm.get("over_ratio")
        row(
            f"Redis / memory state, proxy CPU per request, {conns} conns",
            "≤ 1.3x",
            c,
            "{:.2f}x",
            c and c <= 1.3,
        )
        row(
            f"Redis / memory state, p50 overhead, {conns} conns",
            "≤ 1.3x",
            o,
            "{:.2f}x",
            o and o <= 1.3,
        )
    ws = workers_summary(res.get("workers", {}))
    if 1 in ws and 2 in ws:
        row(
            f"--workers 2 / --workers 1, req/s at {res['workers']['conns']} conns, Redis state",
            "(reported)",
            ws[2]["rps"] / ws[1]["rps"],
            "{:.2f}x",
            None,
        )
    L.append("")
    return L


def holds_back(res: dict[str, Any], nproc: str) -> list[str]:
    """One measured bullet per missed target of the quota, shared-state and workers sections."""
    out: list[str] = []
    q = res.get("quota", {})
    for r in q.get("runs", []):
        if r["proxy"] != "rsql-proxy" or r["share"] >= 0.98:
            continue
        hold = QUOTA_SCENARIOS[r["scenario"]][1]
        bound = q["period"] / (q["period"] + hold)
        txt = (
            f"- Quota share, {scen_name(r)}: {100 * r['share']:.1f}% delivered; the upstream counted "
            f"{100 * r['upstream_share']:.1f}% of its capacity at its side, so "
            + (
                "the shortfall is in what the proxy sent"
                if r["upstream_share"] < 0.98
                else "the proxy sent enough and the loss is on the way back"
            )
            + f" (upstream 429s {r['upstream_429']}, other errors {r['errors']}). "
        )
        if not r["headers"]:
            txt += (
                f"Without the provider's headers a request's slot is held until its first byte, {hold:g} s after "
                f"the provider counted it: a key then admits at most {q['per_key']} per "
                f"{q['period'] + hold:g} s, {100 * bound:.1f}% of its capacity."
            )
        out.append(txt)
    st = state_summary(res.get("state", {}))
    adm = res.get("costs", {}).get("admission", {})
    for conns, s in sorted(st.items()):
        m, r = s.get("memory"), s.get("Redis")
        if not (m and r):
            continue
        if s["cpu_ratio"] > 1.3:
            extra = (
                (
                    f" (an admission alone takes {adm['redis']['admit_p50_us']:.0f} µs p50 of wall time on Redis, "
                    f"{adm['memory']['admit_p50_us']:.0f} µs in memory: Per-request costs)"
                )
                if "redis" in adm
                else ""
            )
            out.append(
                f"- Redis CPU ratio at {conns} conns: {s['cpu_ratio']:.2f}x: Redis state costs the proxy "
                f"{r['cpu'] - m['cpu']:.0f} µs more CPU per request ({r['cpu']:.0f} against {m['cpu']:.0f}), the "
                f"client side of its Redis calls{extra}. The Redis server spent {r['rcpu']:.0f} µs per request "
                "besides (not in the ratio)."
            )
        if s["over_ratio"] > 1.3 or s["over_ratio"] != s["over_ratio"]:
            out.append(
                f"- Redis p50 overhead ratio at {conns} conns: {s['over_ratio']:.2f}x: Redis adds "
                f"{(r['over'] - m['over']) / 1000:.2f} ms to the p50 ({r['over'] / 1000:.2f} against "
                f"{m['over'] / 1000:.2f} ms over the direct call): the admission's round trip (with the key "
                "pick), which the answer waits for, and the wake-ups of the proxy and of Redis on 2 shared "
                "cores; the writes at its first byte and end are not waited for (bench/results/notes.md)"
                + (
                    f"; one admission alone takes {adm['redis']['admit_p50_us']:.0f} µs p50 in process, unloaded "
                    "(Per-request costs)"
                    if "redis" in adm
                    else ""
                )
                + "."
            )
    ws = workers_summary(res.get("workers", {}))
    if 1 in ws and 2 in ws:
        w = ws[2]
        avail = float(nproc or 2) * w["wall"]
        c = w["cpu"]
        out.append(
            f"- Workers: --workers 2 carried {w['rps']:,.0f} req/s against {ws[1]['rps']:,.0f} "
            f"({w['rps'] / ws[1]['rps']:.2f}x). Of the {avail:.0f} CPU seconds the {nproc} cores had in a "
            f"{w['wall']:.0f} s run, the proxy's processes got {c['proxy']:.1f}; wrk used {c['wrk']:.1f}, the "
            f"upstream {c['upstream']:.1f}, Redis {c['redis']:.1f}, everything else on the machine "
            f"{c['others']:.1f} (idle: {avail - c['machine']:.1f})."
        )
    if out and prose(ENGINE_MD):
        out += ["", prose(ENGINE_MD)]
    return out
