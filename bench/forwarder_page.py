"""The page section of bench/bench_forwarder.py: #58's targets against a bare forwarder, quota as
users meet it, completions at class scale. Written between the ``<!-- bench_forwarder -->``
markers of docs/benchmarks.md (after the proxy's own section the first time)."""

from __future__ import annotations

import json
import statistics
from typing import Any

from common import REPO

DOC = REPO / "docs" / "benchmarks.md"
START, END = "<!-- bench_forwarder -->", "<!-- /bench_forwarder -->"
AFTER = "<!-- /bench_proxy -->"
DIRECT, FWD, SVC, EXT = "direct", "bare forwarder", "rsql-proxy", "extension"
NAN = float("nan")


def _med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else NAN


def _span(xs: list[float], fmt: str) -> str:
    return f"{fmt.format(min(xs))} to {fmt.format(max(xs))}" if len(xs) > 1 else ""


def per_round(fw: dict[str, Any]) -> dict[str, list[float]]:
    """Each ratio and difference of #58 once per round (both sides from the same round)."""
    runs = {(r["target"], r["conns"], r["round"]): r for r in fw.get("runs", [])}
    ttfb = {(t["target"], t["round"]): t for t in fw.get("ttfb", [])}
    out: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        out.setdefault(key, []).append(value)

    for rnd in range(fw.get("rounds", 0)):
        g = {
            (t, c): runs[(t, c, rnd)]
            for t in (DIRECT, FWD, SVC, EXT)
            for c in (10, 100)
            if (t, c, rnd) in runs
        }
        if len(g) < 8:  # a target failed this round: no ratio from it
            continue
        p50 = {k: v["latency_us"]["p50"] / 1000 for k, v in g.items()}
        add("svc_over_fwd_p50", p50[(SVC, 10)] - p50[(FWD, 10)])
        add("ext_over_direct_p50", p50[(EXT, 10)] - p50[(DIRECT, 10)])
        add("fwd_over_direct_p50", p50[(FWD, 10)] - p50[(DIRECT, 10)])
        add("svc_over_direct_p50", p50[(SVC, 10)] - p50[(DIRECT, 10)])
        add("ext_over_fwd_p50", p50[(EXT, 10)] - p50[(FWD, 10)])
        add("svc_rps_ratio_100", g[(SVC, 100)]["rps"] / g[(FWD, 100)]["rps"])
        add("ext_rps_ratio_100", g[(EXT, 100)]["rps"] / g[(FWD, 100)]["rps"])
        for c in (10, 100):
            fcpu = g[(FWD, c)]["cpu_us_per_req"]
            add(f"svc_cpu_ratio_{c}", g[(SVC, c)]["cpu_us_per_req"] / fcpu)
            add(f"ext_cpu_ratio_{c}", g[(EXT, c)]["cpu_us_per_req"] / fcpu)
        t = {name: ttfb[(name, rnd)] for name in (DIRECT, FWD, SVC, EXT) if (name, rnd) in ttfb}
        if len(t) == 4:
            add("svc_ttfb_over_fwd", t[SVC]["p50_ms"] - t[FWD]["p50_ms"])
            add("ext_ttfb_over_fwd", t[EXT]["p50_ms"] - t[FWD]["p50_ms"])
            add("fwd_ttfb_over_direct", t[FWD]["p50_ms"] - t[DIRECT]["p50_ms"])
            if t[SVC].get("cpu_us_per_stream") and t[FWD].get("cpu_us_per_stream"):
                add(
                    "svc_stream_cpu_ratio",
                    t[SVC]["cpu_us_per_stream"] / t[FWD]["cpu_us_per_stream"],
                )
    return out


def target_rows(res: dict[str, Any]) -> list[str]:
    L = ["| target (#58) | goal | measured | |", "|---|---|---|---|"]

    def row(name: str, goal: str, xs: list[float], fmt: str, ok: Any) -> None:
        if not xs:
            L.append(f"| {name} | {goal} | not measured | |")
            return
        v, spread = _med(xs), _span(xs, fmt)
        extra = f" (rounds: {spread})" if spread else ""
        verdict = "" if ok is None else ("met" if ok(v) else "**not met**")
        L.append(f"| {name} | {goal} | {fmt.format(v)}{extra} | {verdict} |")

    pr = per_round(res.get("forwarder", {}))
    ms, x = "{:.2f} ms", "{:.2f}x"
    row(
        "rsql-proxy's added p50 over the bare forwarder, 10 conns",
        "≤ 0.5 ms",
        pr.get("svc_over_fwd_p50", []),
        ms,
        lambda v: v <= 0.5,
    )
    row(
        "rsql-proxy req/s / the bare forwarder's, 100 conns",
        "≥ 0.85x",
        pr.get("svc_rps_ratio_100", []),
        x,
        lambda v: v >= 0.85,
    )
    row(
        "the extension's added p50 over the provider (direct), 10 conns",
        "≤ 1.0 ms",
        pr.get("ext_over_direct_p50", []),
        ms,
        lambda v: v <= 1.0,
    )
    row(
        "rsql-proxy's added time to first token on streams over the forwarder, p50",
        "≤ 0.5 ms",
        pr.get("svc_ttfb_over_fwd", []),
        ms,
        lambda v: v <= 0.5,
    )
    for c in (10, 100):
        row(
            f"rsql-proxy CPU per proxied request / the forwarder's, {c} conns",
            "≤ 1.3x",
            pr.get(f"svc_cpu_ratio_{c}", []),
            x,
            lambda v: v <= 1.3,
        )
    for name, key, fmt in (
        ("the bare forwarder's added p50 over the provider, 10 conns", "fwd_over_direct_p50", ms),
        ("the extension's added p50 over the bare forwarder, 10 conns", "ext_over_fwd_p50", ms),
        ("the extension's req/s / the bare forwarder's, 100 conns", "ext_rps_ratio_100", x),
        ("the extension's CPU per request / the forwarder's, 10 conns", "ext_cpu_ratio_10", x),
        ("the extension's added time to first token over the forwarder", "ext_ttfb_over_fwd", ms),
        (
            "rsql-proxy CPU per streamed request / the forwarder's (sequential streams)",
            "svc_stream_cpu_ratio",
            x,
        ),
    ):
        row(name, "(context)", pr.get(key, []), fmt, None)
    c = res.get("class", {})
    if c.get("runs"):
        held, _ = class_verdict(c)
        r50 = c["runs"][0]
        L.append(
            f"| completions at class scale: per-user limits hold (every class size) | "
            f"{c['limits'][0]}/minute, {c['limits'][1]} at once | "
            f"{'held' if held else 'broken'} | {'met' if held else '**not met**'} |"
        )
        L.append(
            f"| completions at class scale, {r50['editors']} editors: added p50 / p99 | "
            f"(reported) | {r50['added_p50_ms']:.1f} / {r50['added_p99_ms']:.1f} ms | |"
        )
        # #76: a class of 500 at the debounce's pace on more than one core (the editors and the
        # model share the machine's cores)
        for r in c["runs"]:
            if r["editors"] < 500 or r.get("deployment") == "one process":
                continue
            ok = r["added_p50_ms"] <= 50 and r["added_p99_ms"] <= 250
            L.append(
                f"| completions at class scale, {r['editors']} editors, {r['deployment']}: "
                f"added p50 / p99 | ≤ 50 / 250 ms | {r['added_p50_ms']:.1f} / "
                f"{r['added_p99_ms']:.1f} ms | {'met' if ok else '**not met**'} |"
            )
    q = res.get("quota_open", {})
    for r in q.get("runs", []):
        how = f"provider headers {'on' if r['headers'] else 'off'}"
        L.append(
            f"| quota as users meet it ({how}): successes {q['steady_from']:g}-{q['seconds']:g} "
            f"s / {r['capacity_rps']:g} per s | ≥ 99% | {100 * r['share']:.1f}% (an unpaced "
            f"perfect admitter, each request sent as soon as a key has room: "
            f"{100 * r['ideal_share']:.1f}%) | "
            f"{'met' if r['share'] >= 0.99 else '**not met**'} |"
        )
        L.append(
            f"| quota as users meet it ({how}): upstream 429s | 0 | {r['upstream_429']} | "
            f"{'met' if r['upstream_429'] == 0 else '**not met**'} |"
        )
        every = r["refused_429"] == r["refused_with_retry_after"] and r["errors"] == 0
        L.append(
            f"| quota as users meet it ({how}): every refusal a 429 with Retry-After | all | "
            f"{r['refused_with_retry_after']} of {r['refused_429']} 429s; other errors "
            f"{r['errors']} | {'met' if every else '**not met**'} |"
        )
    return L


def forwarder_rows(fw: dict[str, Any]) -> list[str]:
    by: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in fw.get("runs", []):
        by.setdefault((r["target"], r["conns"]), []).append(r)
    base = {c: _med([r["latency_us"]["p50"] for r in by.get((DIRECT, c), [])]) for c in (10, 100)}
    fwd = {c: _med([r["latency_us"]["p50"] for r in by.get((FWD, c), [])]) for c in (10, 100)}
    L = [
        "| target | conns | p50 ms | p99 ms | req/s | CPU µs/req | p50 over direct ms "
        "| p50 over the forwarder ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (t, c), rs in by.items():
        p50 = _med([r["latency_us"]["p50"] for r in rs])
        cpu = [r["cpu_us_per_req"] for r in rs if "cpu_us_per_req" in r]
        floor = any(r.get("floor") for r in rs)
        over_d = "—" if t == DIRECT or floor else f"{(p50 - base[c]) / 1000:.2f}"
        over_f = "—" if t in (DIRECT, FWD) or floor else f"{(p50 - fwd[c]) / 1000:.2f}"
        L.append(
            f"| {t} | {c} | {p50 / 1000:.2f} | "
            f"{_med([r['latency_us']['p99'] for r in rs]) / 1000:.2f} | "
            f"{_med([r['rps'] for r in rs]):,.0f} | {f'{_med(cpu):.0f}' if cpu else '—'} | "
            f"{over_d} | {over_f} |"
        )
    L += [
        "",
        "| streams (sequential) | first event p50 ms | p99 ms | over the forwarder ms "
        "| CPU µs/stream |",
        "|---|---|---|---|---|",
    ]
    tt: dict[str, list[dict[str, Any]]] = {}
    for t in fw.get("ttfb", []):
        tt.setdefault(t["target"], []).append(t)
    f50 = _med([t["p50_ms"] for t in tt.get(FWD, [])])
    for name, ts in tt.items():
        p50 = _med([t["p50_ms"] for t in ts])
        over = "—" if name in (DIRECT, FWD) else f"{p50 - f50:.2f}"
        cpu = [t["cpu_us_per_stream"] for t in ts if t.get("cpu_us_per_stream")]
        L.append(
            f"| {name} | {p50:.2f} | {_med([t['p99_ms'] for t in ts]):.2f} | {over} "
            f"| {f'{_med(cpu):,.0f}' if cpu else '—'} |"
        )
    return L


def cores_note(fw: dict[str, Any], conns: int = 100, goal: float = 0.85) -> list[str]:
    """What bounds each server's req/s at `conns` connections: one near a whole core (a Python
    process runs on one) answers as fast as its CPU a request allows, so its req/s, and its
    ratio to a server that waits on the upstream instead, move with the machine's speed; and
    the CPU a request that would meet `goal` (#58's req/s ratio)."""
    runs = {
        t: [r for r in fw.get("runs", []) if r["target"] == t and r["conns"] == conns]
        for t in (SVC, FWD)
    }
    cpu = {t: [r for r in rs if "cpu_us_per_req" in r] for t, rs in runs.items()}
    if not cpu[SVC] or not cpu[FWD]:
        return []
    # the share of a core each kept busy: its CPU a request times its requests a second
    used = {t: _med([r["cpu_us_per_req"] * r["rps"] / 1e6 for r in rs]) for t, rs in cpu.items()}
    if used[SVC] < 0.9:
        return []
    svc_cpu = _med([r["cpu_us_per_req"] for r in cpu[SVC]])
    fwd_rps = _med([r["rps"] for r in runs[FWD]])
    # the same share of a core at the CPU a request that gives `goal` x the forwarder's req/s
    needed = used[SVC] * 1e6 / (goal * fwd_rps)
    fwd_bound = used[FWD] >= 0.9
    forwarder = (
        "and so, on this machine, does the forwarder"
        if fwd_bound
        else "the forwarder as fast as the 50 ms answers come back"
    )
    unbound = "" if fwd_bound else ", which its CPU does not bound"
    return [
        f"At {conns} connections rsql-proxy kept {used[SVC]:.2f} of a core busy and the "
        f"forwarder {used[FWD]:.2f}: rsql-proxy answers as fast as its CPU a request allows "
        f"(a process runs on one core), {forwarder}. So rsql-proxy's req/s is what "
        f"{used[SVC]:.2f} of a core gives at {svc_cpu:,.0f} µs a request "
        f"({used[SVC] * 1e6 / svc_cpu:,.0f}/s), against the forwarder's {fwd_rps:,.0f}/s{unbound}; "
        f"{goal:.2f}x the forwarder's would take {needed:,.0f} µs a request "
        f"({needed / svc_cpu - 1:+.0%}). That ratio moves with the machine's speed: a slower "
        "spell of the shared cores costs rsql-proxy req/s before the forwarder's (compare the "
        "no-op rows' CPU between runs).",
        "",
    ]


def quota_rows(q: dict[str, Any]) -> list[str]:
    lo, hi = q["steady_from"], q["seconds"]
    runs = q["runs"]

    def line(what: str, cell: Any) -> str:
        return f"| {what} | " + " | ".join(cell(r) for r in runs) + " |"

    return [
        f"rsql-proxy (memory state, SQLite usage log, the product's defaults: `max_wait_seconds` "
        f"{q['max_wait_seconds']:g}, health checks on) told each key's limit; {q['keys']} keys on "
        f"{q['keys']} accounts, each limited by `bench/upstream.py` to {q['per_key']} requests "
        f"per {q['period']:g} s (a sliding window counted at arrival; 429 + Retry-After beyond it), "
        f"answers after {1000 * q['answer_seconds']:.0f} ms: {q['keys'] * q['per_key'] / q['period']:g} "
        f"requests/s together. An open-loop client (`bench/loadgen.py open`, its own process) "
        f"offers {q['rate']:g} requests/s for {hi:g} s; nobody retries. Run as written (the "
        "upstream sends no rate-limit headers), then again with OpenAI's "
        "`x-ratelimit-*-requests` headers on every answer, a fresh proxy each.",
        "",
        "| measure | "
        + " | ".join(f"headers {'on' if r['headers'] else 'off'}" for r in runs)
        + " |",
        "|---|" + "---|" * len(runs),
        line(
            f"successes completed {lo:g}-{hi:g} s",
            lambda r: (
                f"{r['steady_successes']} ({r['steady_rps']:.2f}/s, **{100 * r['share']:.1f}%**)"
            ),
        ),
        line(
            "an unpaced perfect admitter on the same arrivals and windows, same interval",
            lambda r: f"{r['ideal_successes']} ({100 * r['ideal_share']:.1f}%)",
        ),
        line(
            "the page's quota measure on this run (between answers 30 x m apart)",
            lambda r: (
                f"{100 * r['page_measure_share']:.1f}% ({r['page_measure_span'][0]:.1f}-"
                f"{r['page_measure_span'][1]:.1f} s)"
            ),
        ),
        line(
            "the same measure on the upstream's arrival times",
            lambda r: f"{100 * r['upstream_share']:.1f}%",
        ),
        line(
            f"a window's {q['keys'] * q['per_key']} sends take, at the upstream (p50; perfect: "
            f"{q['period']:g} s)",
            lambda r: f"{r['window_cycle_p50_s']:.3f} s",
        ),
        line(
            "answered / refused 429 (with Retry-After) / other errors",
            lambda r: (
                f"{r['delivered_total']} / {r['refused_429']} "
                f"({r['refused_with_retry_after']}) / {r['errors']}"
                f"{' ' + str(r['error_statuses']) if r['errors'] else ''}"
            ),
        ),
        line("upstream: answered / 429s", lambda r: f"{r['upstream_ok']} / {r['upstream_429']}"),
        line(
            "send to answer, p50 / p99 (with the wait for a key)",
            lambda r: f"{r['wait_p50_ms']:,.0f} / {r['wait_p99_ms']:,.0f} ms",
        ),
        "",
        *(
            f"Successes completed per second, headers {'on' if r['headers'] else 'off'}: "
            + " ".join(str(n) for n in r["successes_per_second"][: int(hi) + 1])
            + "."
            for r in runs
        ),
    ]


def class_verdict(c: dict[str, Any]) -> tuple[bool, str]:
    """Whether the per-user limits held in every run, and what one proxy carried (measured)."""
    lim, conc = c["limits"]
    runs = c["runs"]
    held = all(
        r["pusher_admitted_max_per_minute"] <= lim
        and r.get("pusher_at_model_max_at_once", 0) <= conc
        and r["editor_429"] == 0
        and r["refused_with_retry_after"] == r["refused_429"]
        for r in runs
    )
    single = [r for r in runs if r.get("deployment", "one process") == "one process"]
    best = max(single, key=lambda r: r["completions"] / r["seconds"])
    busy = [r for r in single if r.get("cpu_cores", 0) >= 0.95]
    more = [r for r in runs if r not in single]
    text = (
        f"The per-user limits {'held' if held else '**did not hold**'} in every run: no "
        f"pusher had more than {lim} requests reach the model in a minute or more than "
        f"{conc} at the model at once, the editors were never refused, and every refusal was a "
        "429 with Retry-After. At the debounce's pace an editor asked "
        f"{runs[0]['per_editor_per_s'] * 60:.0f} completions a minute ({runs[0]['editors']} "
        "editors)"
        + (
            f", more than the {lim}/minute limit: a {runs[0]['seconds']:g} s run does not reach "
            "it, but someone typing at that pace minute after minute is refused about "
            f"{runs[0]['per_editor_per_s'] * 60 - lim:.0f} of them a minute (the editor shows "
            "nothing and asks again after the next keystroke)"
            if runs[0]["per_editor_per_s"] * 60 > lim
            else f", within the {lim}/minute limit"
        )
        + ". One rsql-proxy process "
        f"answered at most {best['completions'] / best['seconds']:,.0f} completions/s here "
        f"({best['editors']} editors)"
        + (
            f"; from {busy[0]['editors']} editors on it had a core's worth of CPU busy, so the "
            "editors' completions waited in it (the added latency, and the slower pace per "
            "editor), and a larger class wants `--workers` or replicas on Redis state."
            if busy
            else "."
        )
        + "".join(
            f" {r['deployment']}, {r['editors']} editors: added {r['added_p50_ms']:.1f} / "
            f"{r['added_p99_ms']:.1f} ms (p50 / p99), {r['cpu_cores']:.2f} cores busy in the "
            "proxy."
            for r in more
        )
        + " "
        + cores_for_a_class(c)
    )
    return held, text


# what an editor asks typing as people type: bursts with pauses of 1-4 s, about 15 completions
# a minute (issue 76's held-out run); the debounce's continuous pace is the bench's own
TYPING_PER_MINUTE = 15


def cores_for_a_class(c: dict[str, Any]) -> str:
    """How many editors one core of the proxy carries, from the CPU a request cost in the
    busiest one-process run below a full core (queueing does not hide the cost there yet, and
    an idle loop's wake-ups no longer weigh on each request as in the smallest class)."""
    single = [
        r
        for r in c["runs"]
        if r.get("deployment", "one process") == "one process" and r.get("cpu_cores", 1) < 0.95
    ]
    if not single:
        return ""
    busiest = max(single, key=lambda r: r["completions"])
    cpu_s = busiest["cpu_us_per_request"] / 1e6  # every request: editors', pushers', refused
    pace = max(r["per_editor_per_s"] for r in single)
    continuous = 1 / (cpu_s * pace)
    typing = 1 / (cpu_s * TYPING_PER_MINUTE / 60)
    return (
        f"Cores for a class: a completion costs the proxy about {cpu_s * 1e3:.2f} ms of CPU "
        f"({busiest['editors']} editors), so "
        f"one core carries about {continuous:,.0f} editors typing without a pause (the "
        f"debounce's pace, {pace:.2f} completions a second each) and about {typing:,.0f} typing "
        f"as people do ({TYPING_PER_MINUTE} a minute); keep a proxy's cores under about 70% busy "
        "for the p99 to stay low, and the model's own capacity decides the rest."
    )


def class_rows(c: dict[str, Any]) -> list[str]:
    lim, conc = c["limits"]
    L = [
        "| deployment | editors | completions (per editor/s) | added p50 ms | added p99 ms | proxy's own "
        "overhead p50 / p99 ms (usage log) | proxy CPU µs per completion (per request); cores "
        "busy | "
        "editors' 429s | pushers: sent, 429s (with Retry-After), left before the model | "
        f"pushers' most sent to the model per minute (limit {lim}) | most in flight at once "
        f"(limit {conc}): usage log, at the model | 1-min load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in c["runs"]:
        L.append(
            f"| {r.get('deployment', 'one process')} | {r['editors']} (+{r['pushers']} pushers) "
            f"| {r['completions']:,} "
            f"({r['per_editor_per_s']:.2f}) | {r['added_p50_ms']:.1f} | {r['added_p99_ms']:.1f} | "
            f"{r['log_overhead_p50_ms']:.1f} / {r['log_overhead_p99_ms']:.1f} | "
            f"{r['cpu_us_per_completion']:,.0f} ({r['cpu_us_per_request']:,.0f}); "
            f"{r.get('cpu_cores', NAN):.2f} | "
            f"{r['editor_429']} | {r['pusher_sent']:,}, {r['refused_429'] - r['editor_429']:,} "
            f"({r['refused_with_retry_after']:,} of all 429s), "
            f"{r.get('pusher_dropped_before_model', '?')} | "
            f"{r['pusher_admitted_max_per_minute']} | {r['pusher_admitted_max_at_once']}, "
            f"{r.get('pusher_at_model_max_at_once', '?')} (editors "
            f"{r['editor_admitted_max_at_once']}) | {r['load']} |"
        )
    return L


def profile_rows(p: dict[str, Any]) -> list[str]:
    """The forwarder's and rsql-proxy's CPU per request by phase, side by side (py-spy)."""
    f, r = p[FWD]["phases_us"], p[SVC]["phases_us"]
    names = sorted(set(f) | set(r), key=lambda k: -(r.get(k, 0.0) + f.get(k, 0.0)))
    L = [
        "| phase | bare forwarder µs/req | rsql-proxy µs/req | more in rsql-proxy |",
        "|---|---|---|---|",
    ]
    for k in names:
        a, b = f.get(k, 0.0), r.get(k, 0.0)
        L.append(f"| {k} | {a:,.0f} | {b:,.0f} | {b - a:+,.0f} |")
    a, b = p[FWD]["cpu_us"], p[SVC]["cpu_us"]
    L.append(f"| **all** (CPU over the run / requests) | {a:,.0f} | {b:,.0f} | {b - a:+,.0f} |")
    return L


def profile_summary(p: dict[str, Any]) -> str:
    theirs = ("tornado's HTTP server", "the asyncio loop", "other", "logging")
    f, r = p[FWD]["phases_us"], p[SVC]["phases_us"]
    own_f = sum(v for k, v in f.items() if k not in theirs)
    own_r = sum(v for k, v in r.items() if k not in theirs)
    frame_f = sum(v for k, v in f.items() if k in theirs)
    frame_r = sum(v for k, v in r.items() if k in theirs)
    io = r.get("upstream I/O", 0.0) + r.get("parsing the body", 0.0) + r.get("key choice", 0.0)
    return (
        f"rsql-proxy's own code took {own_r:,.0f} µs a request against the forwarder's "
        f"{own_f:,.0f} µs; tornado, the loop and the rest {frame_r:,.0f} against "
        f"{frame_f:,.0f} µs. What the forwarder does too (forward the body over a kept-alive "
        f"connection with a key: *upstream I/O*, *parsing the body*, *key choice*) costs the "
        f"proxy {io:,.0f} µs against the forwarder's {own_f:,.0f}; what it alone does "
        f"(admission, usage log, metrics, pricing, the answer's accounting, the engine around "
        f"them) {own_r - io:,.0f} µs. The CPU ratio target (≤ 1.3x) leaves rsql-proxy "
        f"{0.3 * p[FWD]['cpu_us']:,.0f} µs over the forwarder here; it spends "
        f"{p[SVC]['cpu_us'] - p[FWD]['cpu_us']:,.0f}."
    )


def section(res: dict[str, Any]) -> str:
    info = res.get("machine", {})
    L = [
        START,
        "## The proxy beside a bare forwarder, quota as users meet it, completions at class "
        "scale (`bench/bench_forwarder.py`)",
        "",
    ]
    when = "; ".join(
        f"{s} {res[s]['run_at']}{' (--quick)' if res[s].get('quick') else ''}"
        + (f" on {res[s]['run_on']}" if res[s].get("run_on") else "")
        for s in ("forwarder", "quota_open", "class")
        if isinstance(res.get(s), dict) and res[s].get("run_at")
    )
    L += [
        f"Run with `.venv/bin/python bench/bench_forwarder.py` ({when}), each on "
        f"{info.get('nproc', '?')} cores (the latest run's: {info.get('cpu', '?')}, Python "
        f"{info.get('python', '?')}, tornado "
        f"{info.get('tornado', '?')}, jupyter_server {info.get('jupyter_server', '?')}), shared "
        "with other sessions' work: compare rows of one run.",
        "",
        "### Against #58's targets",
        "",
        *target_rows(res),
        "",
    ]
    fw = res.get("forwarder", {})
    if fw.get("runs"):
        L += [
            "### rsql-proxy and the extension beside a bare forwarder",
            "",
            "`bench/forwarder.py` is what any proxy on this stack must do: tornado + asyncio, "
            "check the bearer token, parse the JSON body (orjson, as the proxy), put in one of "
            "the three keys, forward over a pooled keep-alive HTTP/1.1 connection, answer (a "
            "stream event by event); no limits, log, cache or failover. In the same run: "
            "rsql-proxy (memory state, SQLite usage log), the server extension in a Jupyter "
            "server, the 50 ms upstream straight (*direct*), and the floors: a tornado handler "
            "and the Jupyter server's authenticated API handler answering at once. "
            f"{fw['rounds']} round(s); in each, wrk (1 thread, `bench/chat.lua`) for "
            f"{fw['seconds']:g} s per target at 10 and at 100 connections, the order turning "
            f"each round, then {fw['ttfb_count']} sequential streams per target "
            "(`bench/loadgen.py ttfb`: time to the first SSE event). Medians over the rounds; "
            "the targets above take each difference or ratio within a round first. *CPU "
            "µs/req*: the server process's CPU (from /proc) over the requests it answered; "
            "*CPU µs/stream* the same over the sequential streams (the upstream sends a stream's "
            "events together, 50 ms in).",
            "",
            *forwarder_rows(fw),
            "",
            *cores_note(fw),
        ]
    elif fw.get("error"):
        L += ["### rsql-proxy beside a bare forwarder", "", f"Failed: `{fw['error'][:300]}`", ""]
    q = res.get("quota_open", {})
    if q.get("runs"):
        L += ["### Quota as users meet it", "", *quota_rows(q), "", *quota_notes(q), ""]
    elif q.get("error"):
        L += ["### Quota as users meet it", "", f"Failed: `{q['error'][:300]}`", ""]
    p = res.get("profile", {})
    if p.get(FWD) and p.get(SVC):
        L += [
            "### Where rsql-proxy's CPU goes beside the forwarder's (`bench/profile_forwarder.py`)",
            "",
            f"Run {p['run_at']}: each server in turn in front of the 50 ms upstream (forwarder, "
            f"rsql-proxy, rsql-proxy, forwarder), wrk at {p['conns']} connections for "
            f"{p['seconds']:g} s a run while py-spy sampled it (500 Hz, "
            "only while it ran; the sampling itself costs the server some CPU). A sample counts "
            "for the phase of its innermost frame of ours, else of the innermost library frame "
            "(`bench/profile_proxy.py`'s phases); in the forwarder, forwarder.py is one phase "
            "(its calls into asyncio's streams count as its own, as the proxy's HTTP client is "
            "its *upstream I/O*; its calls into tornado count as tornado's, as the proxy's "
            "handlers' do). µs per request = the phase's share of the samples x the CPU per "
            "request over the same run.",
            "",
            *profile_rows(p),
            "",
            profile_summary(p),
            "",
        ]
    c = res.get("class", {})
    if c.get("runs"):
        L += [
            "### Completions at class scale",
            "",
            f"One rsql-proxy (memory state, SQLite usage log, the product's completion limits: "
            f"`completion_user_limits` {c['limits'][0]}/minute, `completion_user_concurrency` "
            f"{c['limits'][1]}) in front of a {1000 * c['model_seconds']:.0f} ms model "
            f"(`bench/upstream.py`; straight to it a stream takes {c['model_p50_ms']:.1f} ms at "
            "the median). `bench/editors.py` (its own process) runs the editors, each a user of "
            "their own at the pace the editor's 250 ms debounce allows (keystroke, 250 ms, the "
            "completion streamed from `{proxy}inline` to its `done` event, the next keystroke), "
            "each completion with a prefix of its own (no cache hits) and a 5-frame session; "
            "beside them max(2, N/50) *pushers* with the debounce set to 0, a key every 50 ms, "
            f"each aborting the completion before it. {c['seconds']:g} s per class size, a fresh "
            "proxy each. *Added*: an editor's completion time minus the model's own p50. *CPU "
            "per completion*: the proxy's CPU over the editors' completed completions (per "
            "request: over every request, the pushers' and the refused ones too). Admitted per "
            "minute and in flight at once come from the usage log (rows not refused, each "
            "[start, start + latency]): the rows of requests that reached the model, which were "
            "certainly admitted and held their lease until the model's answer was read, even "
            "when the client had left. A row's start is the request's arrival, before its "
            "admission, so where requests wait in a busy proxy these spans overlap more than "
            "the leases did; *at the model* is the other bound: each request's span at the model "
            "(`bench/upstream.py --spans`: arrival to the answer's end), inside its lease. "
            "*Left before the model*: a pusher's requests abandoned before they reached the "
            "model (the log does not say whether they had been admitted), counted apart. "
            "*Cores busy*: the proxy's CPU seconds over the run's seconds (one event loop: about "
            "1, a little more with its threads).",
            "",
            *class_rows(c),
            "",
            class_verdict(c)[1],
            "",
        ]
    elif c.get("error"):
        L += ["### Completions at class scale", "", f"Failed: `{c['error'][:300]}`", ""]
    L.append(END)
    return "\n".join(L)


def page_quota_c() -> dict[bool, float]:
    """The proxy section's scenario C (50 ms JSON answers, 10 per 10 s) from its last results."""
    path = REPO / "bench" / "results" / "proxy.json"
    runs = json.loads(path.read_text()).get("quota", {}).get("runs", []) if path.exists() else []
    return {
        r["headers"]: r["share"]
        for r in runs
        if r.get("scenario") == "C" and r.get("proxy") == "rsql-proxy"
    }


def quota_notes(q: dict[str, Any]) -> list[str]:
    """Why this scenario's figures and the proxy section's quota figures differ (measured)."""
    burst, period, answer = q["keys"] * q["per_key"], q["period"], q["answer_seconds"]
    by = {r["headers"]: r for r in q["runs"]}
    off, on = by.get(False), by.get(True)
    c = page_quota_c()
    page_c = (
        f" (its C, 50 ms JSON answers: {100 * c[False]:.1f}% headers off, "
        f"{100 * c.get(True, NAN):.1f}% on)"
        if False in c
        else ""
    )
    out = [
        "How this differs from *Quota at real answer times* above"
        + page_c
        + ": there each key allows 10 requests per 10 s (3 requests/s together), clients offer "
        "6/s, and the share is timed between delivered answers a whole number of windows' "
        f"worth apart. Here the window is {period:g} s and successes are counted in a fixed "
        f"interval ({q['steady_from']:g}-{q['seconds']:g} s). Two things follow.",
        "",
        "1. *The fixed interval.* Under a sliding window counted at arrival a key's room comes "
        "back when its oldest request leaves the window, so a perfect admitter facing a queue "
        f"sends the {burst} of each window in its first second and none in its second, window "
        "after window; a fixed interval counts a whole number of those bursts plus whatever "
        "part its ends cut. On these arrivals the perfect admitter gets "
        + " and ".join(
            f"{100 * r['ideal_share']:.1f}% (headers {'on' if r['headers'] else 'off'})"
            for r in q["runs"]
        )
        + f" in {q['steady_from']:g}-{q['seconds']:g} s: the ceiling of this measure for an "
        "admitter that sends each request as soon as a key has room. rsql-proxy paces a "
        "window more than half used while requests wait (docs/architecture.md, *Moving "
        "windows and stamping*), so its sends are spread evenly (the successes per second "
        "above) and the interval's ends cut no burst: "
        + " and ".join(
            f"{100 * r['share']:.1f}% (headers {'on' if r['headers'] else 'off'})"
            for r in q["runs"]
        )
        + ". The page's measure does not depend on where bursts fall: "
        + " and ".join(
            f"{100 * r['page_measure_share']:.1f}% (headers {'on' if r['headers'] else 'off'})"
            for r in q["runs"]
        )
        + " on these runs.",
    ]
    if off is not None:
        bound = period / (period + answer)
        out += [
            "",
            "2. *Without the provider's headers* the proxy counts a request in its key's "
            "window until the first byte of its answer (`engine/upstreams/buckets.py`: it "
            "cannot know when the provider counted it, and must never count it shorter), so a "
            f"key's {q['per_key']} come back {1000 * answer:.0f} ms late each window: at best "
            f"{q['per_key']} per {period + answer:g} s, {100 * bound:.1f}% of the capacity. "
            f"Measured at the upstream, a window's {burst} sends took "
            f"{off['window_cycle_p50_s']:.3f} s (p50) against {period:g} s. With a 10 s "
            f"window the same {1000 * answer:.0f} ms leaves {100 * 10 / (10 + answer):.1f}% "
            f"(the page's C); with a {period:g} s one it costs {10 / period:g} times as much."
            + (
                " With the headers on, the proxy stamps a request at the newest arrival the "
                "provider's `x-ratelimit-reset-requests` implies (`provider_stamp`: this "
                "request's or a later one's, never earlier; paced, a key's requests are 180 ms "
                "or more apart, so it is this request's own), and its `remaining` header clamps "
                "nothing while the provider counts no more than the proxy's own window holds; "
                f"a window's sends took {on['window_cycle_p50_s']:.3f} s. Providers' request "
                "windows are a minute long, where waiting for the first byte costs "
                f"{1000 * answer:.0f} ms a minute, {100 * answer / 60:.2f}%."
                if on is not None
                else ""
            ),
        ]
    return out


def write(text: str) -> None:
    doc = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if START in doc and END in doc:
        head, rest = doc.split(START, 1)
        _, tail = rest.split(END, 1)
        doc = head + text + tail
    elif AFTER in doc:
        head, tail = doc.split(AFTER, 1)
        doc = head + AFTER + "\n\n" + text + tail
    else:
        doc = doc.rstrip("\n") + "\n\n" + text + "\n"
    DOC.write_text(doc)
