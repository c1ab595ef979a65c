"""Run every benchmark and write docs/benchmarks.md (what `make bench` runs).

    .venv/bin/python bench/run_all.py                 # everything (about 35 minutes), writes the doc
    .venv/bin/python bench/run_all.py --quick         # short runs; prints the proxy section, writes nothing
    .venv/bin/python bench/run_all.py --only overhead,litellm   # a subset (with --write to keep it)

Sections (`--only a,b` runs a subset): overhead (both hosts, memory and Redis state), state (memory
and Redis side by side, in turns), workers (`rsql-proxy --workers 1` and `2`), litellm (side by
side; needs root for a network namespace and bench/.venv-litellm from bench/install_litellm.sh),
quota (at real answer times: streams and 2 s JSON answers, provider headers on and off, and
LiteLLM), costs, context (bench/bench_context.py), schema (bench/bench_schema.py); forwarder,
quota_open, class (bench/bench_forwarder.py: beside a bare forwarder, quota as users meet it,
completions at class scale; its own results file and page section). The proxy's results go between the
``<!-- bench_proxy -->`` markers of docs/benchmarks.md; the kernel-side scripts write their own
sections; everything else in the file is kept. Raw results: bench/results/proxy.json.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import bench_forwarder  # noqa: E402
import bench_proxy  # noqa: E402
from common import LITELLM_VENV, log, machine  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
IMG = ROOT / "docs" / "img"
START, END = "<!-- bench_proxy -->", "<!-- /bench_proxy -->"
KERNEL = ("context", "schema")
ALL = (*bench_proxy.SECTIONS, *KERNEL, *bench_forwarder.SECTIONS)


def run_kernel_side(which: str, quick: bool, write: bool) -> dict[str, Any]:
    script = BENCH / f"bench_{which}.py"
    if not script.exists():
        return {"skipped": f"{script.name} is not there"}
    argv = [sys.executable, str(script)]
    if which == "context" and quick:
        argv += ["--rows", "1000000", "--repeat", "3"]
    if which == "schema":
        if quick:
            argv += ["--runs", "3"]
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", 5432)) == 0:
                argv.append("--pg")
    if not write:
        argv.append("--no-write")
    log(f"kernel side: {' '.join(argv[1:])}")
    t = time.monotonic()
    res = subprocess.run(argv, capture_output=True, text=True, timeout=1200, cwd=ROOT)
    if res.returncode != 0:
        log(f"  {script.name} failed ({res.returncode}): {res.stderr[-1500:]}")
    return {
        "returncode": res.returncode,
        "elapsed_s": time.monotonic() - t,
        "stdout": res.stdout[-4000:],
    }


# -- formatting ----------------------------------------------------------------------------------


def ms(us: float) -> str:
    return f"{us / 1000:.2f}"


def runs_by(section: dict[str, Any]) -> dict[tuple[str, int, bool], dict[str, Any]]:
    return {
        (r["target"], r["conns"], bool(r.get("saturation"))): r for r in section.get("runs", [])
    }


def baseline(direct: dict[str, Any]) -> tuple[float, float, str]:
    """Direct p50 and p99. The upstream answers in a fixed 50 ms, so a direct p99 more than 10% above
    its p50 is a stall of the shared machine, which would make overhead look smaller (even negative):
    then the direct p50 stands in (†), which can only overstate the overhead."""
    d50, d99 = direct["latency_us"]["p50"], direct["latency_us"]["p99"]
    if d99 > 1.1 * d50:
        return d50, d50, " †"
    return d50, d99, ""


def overhead_rows(ov: dict[str, Any]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    runs = runs_by(ov)
    targets = list(dict.fromkeys(r["target"] for r in ov.get("runs", [])))
    lines = [
        "| host, state | conns | p50 ms | p99 ms | overhead p50 ms | overhead p99 ms | req/s | proxy CPU µs/req |",
        "|---|---|---|---|---|---|---|---|",
    ]
    summary: dict[str, dict[str, Any]] = {}
    for conns in (10, 50, 200):
        direct = runs.get(("direct", conns, False))
        for t in targets:
            r = runs.get((t, conns, False))
            if r is None:
                continue
            lat = r["latency_us"]
            if t == "direct" or direct is None or t.endswith("(floor)"):
                o50 = o99 = "—"
            else:
                base50, base99, mark = baseline(direct)
                d50, d99 = lat["p50"] - base50, lat["p99"] - base99
                o50, o99 = ms(d50), ms(d99) + mark
                summary.setdefault(t, {})[conns] = (d50, d99, r["rps"])
            cpu = f"{r['cpu_us_per_req']:.0f}" if "cpu_us_per_req" in r else "—"
            lines.append(
                f"| {t} | {conns} | {ms(lat['p50'])} | {ms(lat['p99'])} | {o50} | {o99} | "
                f"{r['rps']:.0f} | {cpu} |"
            )
    return lines, summary


def saturation(ov: dict[str, Any]) -> dict[str, dict[str, float]]:
    best: dict[str, dict[str, float]] = {}
    for r in ov.get("runs", []):
        t = r["target"]
        if t == "direct":
            continue
        b = best.setdefault(t, {"rps": 0.0, "conns": 0, "cpu": [], "errors": 0})
        if r["rps"] > b["rps"]:
            b["rps"], b["conns"] = r["rps"], r["conns"]
        if r["conns"] >= 50 and "cpu_us_per_req" in r:
            b["cpu"].append(r["cpu_us_per_req"])
        b["errors"] += sum(r["errors"].values())
    for b in best.values():
        cpu = sorted(b["cpu"])
        b["cpu_us"] = cpu[len(cpu) // 2] if cpu else float("nan")
        b["per_core"] = 1e6 / b["cpu_us"] if cpu else float("nan")
    return best


def plots(res: dict[str, Any]) -> list[str]:
    """PNG plots under docs/img; returns markdown image lines."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no plots")
        return []
    IMG.mkdir(parents=True, exist_ok=True)
    out = []
    ov = res.get("overhead", {})
    if ov.get("runs"):
        runs = runs_by(ov)
        targets = [
            t
            for t in dict.fromkeys(r["target"] for r in ov["runs"])
            if t != "direct" and not t.startswith("tornado")
        ]
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        for ax, q in zip(axes, ("p50", "p99"), strict=True):
            for t in targets:
                xs, ys = [], []
                for c in (10, 50, 200):
                    r, d = runs.get((t, c, False)), runs.get(("direct", c, False))
                    if r and d:
                        base = baseline(d)[0 if q == "p50" else 1]
                        xs.append(c)
                        ys.append(max(0.1, (r["latency_us"][q] - base) / 1000))
                ax.plot(xs, ys, marker="o", label=t)
            ax.set_xscale("log")
            ax.set_xticks([10, 50, 200], ["10", "50", "200"])
            ax.set_yscale("log")
            ax.set_ylim(bottom=0.1)
            ax.set_xlabel("concurrent connections")
            ax.set_ylabel(f"overhead {q}, ms")
            ax.axhline({"p50": 1, "p99": 5}[q], color="grey", ls=":", lw=1)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.suptitle(
            "Latency added by the proxy (through the proxy minus straight to the 50 ms upstream)",
            fontsize=9,
        )
        fig.tight_layout()
        fig.savefig(IMG / "bench_overhead.png", dpi=110)
        plt.close(fig)
        out.append("![overhead](img/bench_overhead.png)")
    ll = res.get("litellm", {})
    if ll.get("runs"):
        runs = runs_by(ll)
        fig, ax = plt.subplots(figsize=(6.5, 3.4))
        conns = sorted({r["conns"] for r in ll["runs"]})
        width = 0.38
        for i, t in enumerate(("rsql-proxy", "LiteLLM")):
            ys = [runs[(t, c, False)]["rps"] if (t, c, False) in runs else 0 for c in conns]
            ax.bar([j + (i - 0.5) * width for j in range(len(conns))], ys, width, label=t)
        ax.set_xticks(range(len(conns)), [str(c) for c in conns])
        ax.set_xlabel("concurrent connections")
        ax.set_ylabel("requests/s")
        ax.set_yscale("log")
        ax.legend()
        ax.grid(alpha=0.3, axis="y")
        ax.set_title("Throughput, same run, same cores, 50 ms upstream", fontsize=9)
        fig.tight_layout()
        fig.savefig(IMG / "bench_litellm.png", dpi=110)
        plt.close(fig)
        out.append("![throughput vs LiteLLM](img/bench_litellm.png)")
    q = res.get("quota", {})
    qruns = [r for r in q.get("runs", []) if r.get("first_bytes_per_second")]
    if qruns:
        import itertools

        scens = [
            sc for sc in bench_proxy.QUOTA_SCENARIOS if any(r["scenario"] == sc for r in qruns)
        ]
        fig, axes = plt.subplots(1, len(scens), figsize=(5 * len(scens), 3.4), squeeze=False)
        for ax, scen in zip(axes[0], scens, strict=True):
            for r in (
                r for r in qruns if r["scenario"] == scen
            ):  # cumulative: windows make per-second counts swing
                ys = list(itertools.accumulate(r["first_bytes_per_second"]))
                ax.plot(
                    range(1, len(ys) + 1),
                    ys,
                    label=f"{r['proxy']}, headers {'on' if r['headers'] else 'off'}",
                )
            # at best: one window's worth, then capacity
            n, w = (
                int(q["seconds"][scen]),
                q["per_key"] * q["keys"],
            )
            t0 = q["period"] + bench_proxy.QUOTA_SCENARIOS[scen][1]
            ax.plot(
                [t0, n],
                [w, w + q["capacity_rps"] * (n - t0)],
                color="grey",
                ls=":",
                lw=1,
                label="keys' capacity",
            )
            ax.set_xlabel("second of the test")
            ax.set_ylabel("answers delivered, by first byte (cumulative)")
            ax.set_title(
                f"{scen}: {scen_label(scen)}",
                fontsize=9,
            )
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
        fig.suptitle(
            "Quota at real answer times: 3 keys x 10 requests / 10 s, clients offering twice that",
            fontsize=9,
        )
        fig.tight_layout()
        fig.savefig(IMG / "bench_quota.png", dpi=110)
        plt.close(fig)
        out.append("![quota at real answer times](img/bench_quota.png)")
    return out


def quota_runs(q: dict[str, Any]) -> dict[tuple[str, str, bool], dict[str, Any]]:
    return {(r["scenario"], r["proxy"], r["headers"]): r for r in q.get("runs", [])}


def scen_label(scen: str) -> str:
    stream, first, end = bench_proxy.QUOTA_SCENARIOS[scen]
    if stream:
        return f"streams, first byte {first:g} s, end {end:g} s"
    return f"JSON answers of {1000 * end:.0f} ms" if end < 1 else f"JSON answers of {end:g} s"


def scen_name(r: dict[str, Any]) -> str:
    return f"{r['scenario']} ({'streams' if r['stream'] else 'JSON'}), headers {'on' if r['headers'] else 'off'}"


# Prose kept with the results: the profiling notes (notes.md) and the engine side of what holds back a
# missed quota / Redis target (engine-notes.md, written by the engine's maintainer; lines starting
# with "<!--" are left out; empty: not shown).
NOTES_MD, ENGINE_MD = BENCH / "results" / "notes.md", BENCH / "results" / "engine-notes.md"


def prose(path: Path) -> str:
    if not path.exists():
        return ""
    return "\n".join(
        ln for ln in path.read_text().splitlines() if not ln.startswith("<!--")
    ).strip()


def holds_back(res: dict[str, Any], nproc: str) -> list[str]:
    """One measured bullet per missed target of the quota, shared-state and workers sections."""
    out: list[str] = []
    q = res.get("quota", {})
    for r in q.get("runs", []):
        if r["proxy"] != "rsql-proxy" or r["share"] >= 0.98:
            continue
        hold = bench_proxy.QUOTA_SCENARIOS[r["scenario"]][1]
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
    st = bench_proxy.state_summary(res.get("state", {}))
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
    ws = bench_proxy.workers_summary(res.get("workers", {}))
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


def section(res: dict[str, Any], info: dict[str, str], images: bool = True) -> str:
    L: list[str] = [
        START,
        "## Proxy: overhead, shared state, workers, LiteLLM side by side, quota at real answer times, "
        "per-request costs (`bench/bench_proxy.py`)",
        "",
    ]
    L.append(
        f"Run {info['date']}{' (**--quick**: short runs, rough numbers)' if res.get('quick') else ''} with "
        "`make bench` (`.venv/bin/python bench/run_all.py`)."
    )
    # a subset run keeps the other sections' last results: say which ran when
    dates = {
        sec: res[sec]["run_at"]
        for sec in bench_proxy.SECTIONS
        if isinstance(res.get(sec), dict) and res[sec].get("run_at")
    }
    # and on which CPU, where they differ: the table below is the latest run's machine
    cpus = {sec: res[sec].get("run_on", "") for sec in dates}
    mixed = len({c for c in cpus.values() if c}) > 1
    if len(set(dates.values())) > 1:
        L += [
            "",
            "Sections run at different times (`--only`): "
            + "; ".join(
                f"{sec} {when}" + (f" ({cpus[sec]})" if mixed and cpus[sec] else "")
                for sec, when in dates.items()
            )
            + "."
            + (" The machine below is the latest run's; compare rows of one run." if mixed else ""),
        ]
    L += ["", "| machine | |", "|---|---|"]
    for k in (
        "nproc",
        "cpu",
        "python",
        "os",
        "tornado",
        "jupyter_server",
        "aiohttp",
        "redis",
        "prometheus_client",
        "litellm",
        "wrk",
    ):
        if info.get(k):
            L.append(f"| {k} | {info[k]} |")
    L += [
        "",
        "Method: load from `wrk` (1 thread, `bench/chat.lua`; latency percentiles from its `done()`), "
        "each in its own process; the upstream is `bench/upstream.py`, a raw-asyncio OpenAI-compatible "
        "server answering after a fixed 50 ms, in its own process; three keys on three accounts; requests "
        "are non-deterministic (temperature 0.7) so the cache never answers them, except where a cache hit is "
        "the point. *Overhead* = latency through the proxy minus latency straight to the upstream at the "
        "same connection count, measured back to back in the same run. *Proxy CPU µs/req* is the proxy "
        "process's user+system CPU time divided by the requests it answered (from /proc): it is the "
        "figure that holds on a busy machine, and 10⁶ / it is the requests/s one process can carry on one "
        "free core. The machine has 2 cores shared by wrk, the upstream, the proxy and other work, so "
        "absolute req/s are lower bounds and vary from run to run; compare rows of one run.",
        "",
    ]
    loads = [
        float(r["load"].split()[0])
        for sec in ("overhead", "litellm", "state")
        for r in res.get(sec, {}).get("runs", [])
        if r.get("load", "?") != "?"
    ]
    if loads:
        L += [
            f"During this run the 1-minute load average ranged {min(loads):.1f} to {max(loads):.1f} on "
            f"{info.get('nproc', '?')} cores (other sessions' tests share the machine).",
            "",
        ]
    ov = res.get("overhead", {})
    sat = saturation(ov) if ov.get("runs") else {}
    ll = res.get("litellm", {})
    q = res.get("quota", {})
    summ: dict[str, Any] = {}
    if ov.get("runs"):
        _, summ = overhead_rows(ov)
    # targets
    L += ["### Against the targets", "", "| target | goal | measured | |", "|---|---|---|---|"]

    def row(name: str, goal: str, value: float | None, fmt: str, ok: bool | None) -> None:
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
    f200 = runs_ov.get((bench_proxy.EXT_FLOOR, 200, False))
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
    for name, v in bench_proxy.apis_summary(res.get("apis", {})).items():
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
    ratio = None
    if ll.get("runs"):
        best = {
            t: max((r["rps"] for r in ll["runs"] if r["target"] == t), default=0)
            for t in ("rsql-proxy", "LiteLLM")
        }
        ratio = best["rsql-proxy"] / best["LiteLLM"] if best["LiteLLM"] else None
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
    for scen in bench_proxy.QUOTA_SCENARIOS:
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
    st = bench_proxy.state_summary(res.get("state", {}))
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
    ws = bench_proxy.workers_summary(res.get("workers", {}))
    if 1 in ws and 2 in ws:
        row(
            f"--workers 2 / --workers 1, req/s at {res['workers']['conns']} conns, Redis state",
            "(reported)",
            ws[2]["rps"] / ws[1]["rps"],
            "{:.2f}x",
            None,
        )
    L.append("")
    if ov.get("runs"):
        lines, _ = overhead_rows(ov)
        L += [
            "### Overhead and throughput, both hosts, memory and Redis state",
            "",
            f"{ov['seconds']:g} s of wrk per row."
            f"{'' if ov.get('redis') else ' Redis was not reachable: no Redis rows.'} "
            "The *tornado no-op* row is a tornado handler answering at once (no engine, no upstream): the floor "
            "the framework sets on this machine. The *Jupyter Server no-op* row is the server extension's "
            "floor: an authenticated API handler in the same Jupyter server as the extension "
            "(`bench/noop_jupyter.py`), answering at once, its CPU the server's as a whole.",
            "",
            *lines,
            "",
            "† the direct run's p99 was hit by a stall of the shared machine (over 1.1x its p50); "
            "overhead p99 is taken against the direct p50 instead.",
            "",
            "Saturation (best req/s over 10 to 400 connections; CPU per request is the median over runs "
            "with ≥ 50 connections):",
            "",
            "| host, state | best req/s | at conns | proxy CPU µs/req | req/s per free core | errors |",
            "|---|---|---|---|---|---|",
        ]
        for t, b in sat.items():
            L.append(
                f"| {t} | {b['rps']:,.0f} | {b['conns']} | {b['cpu_us']:.0f} | {b['per_core']:,.0f} | {b['errors']} |"
            )
        L.append("")
    elif ov.get("error"):
        L += ["### Overhead and throughput", "", f"Failed: `{ov['error'][:300]}`", ""]
    if ll.get("runs"):
        runs = runs_by(ll)
        L += [
            "### Side by side with LiteLLM",
            "",
            f"LiteLLM's proxy {info.get('litellm', '1.109.1')} (one worker, no database, the same three keys as "
            "three deployments of one model, priced), rsql-proxy with memory state, and the upstream, all in one "
            "loopback-only network namespace, measured in turns in the same run "
            f"({ll['seconds']:g} s of wrk per row).",
            "",
            "| conns | rsql-proxy req/s | LiteLLM req/s | ratio | rsql-proxy overhead p50 ms | LiteLLM overhead p50 ms "
            "| ratio | rsql-proxy CPU µs/req | LiteLLM CPU µs/req |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for c in sorted({r["conns"] for r in ll["runs"]}):
            a, b, d = (
                runs.get(("rsql-proxy", c, False)),
                runs.get(("LiteLLM", c, False)),
                runs.get(("direct", c, False)),
            )
            if not (a and b and d):
                continue
            oa = a["latency_us"]["p50"] - d["latency_us"]["p50"]
            ob = b["latency_us"]["p50"] - d["latency_us"]["p50"]
            L.append(
                f"| {c} | {a['rps']:,.0f} | {b['rps']:,.1f} | {a['rps'] / max(b['rps'], 1e-9):.1f}x | {ms(oa)} | "
                f"{ms(ob)} | {ob / oa if oa > 0 else float('nan'):.1f}x less | {a.get('cpu_us_per_req', 0):.0f} | "
                f"{b.get('cpu_us_per_req', 0):,.0f} |"
            )
        errs = sum(sum(r["errors"].values()) for r in ll["runs"] if r["target"] == "LiteLLM")
        L += [
            "",
            f"Throughput ratio at saturation (best of each): **{ratio:.1f}x**. LiteLLM errors over these runs: {errs}.",
            "",
        ]
    elif ll.get("error"):
        L += ["### Side by side with LiteLLM", "", f"Not run: `{ll['error'][:300]}`", ""]
    stt = res.get("state", {})
    if st:
        L += [
            "### Shared state: memory and Redis side by side",
            "",
            "rsql-proxy on memory state and on Redis state (the machine's Redis, a key prefix of this run's own, "
            f"deleted afterwards), in turns: {stt['rounds']} round(s) of {stt['seconds']:g} s of wrk per row, "
            "non-streamed requests, 50 ms upstream. Medians over the rounds; overhead against the direct run of "
            "the same round. *Redis server CPU* is that process's CPU over the run per request (others' use of "
            "the same Redis counts in it).",
            "",
            "| conns | state | p50 ms | overhead p50 ms | req/s | proxy CPU µs/req | Redis server CPU µs/req |",
            "|---|---|---|---|---|---|---|",
        ]
        for conns, sm in sorted(st.items()):
            for name in ("memory", "Redis"):
                x = sm.get(name)
                if x:
                    rc = f"{x['rcpu']:.0f}" if x["rcpu"] == x["rcpu"] else "—"
                    L.append(
                        f"| {conns} | {name} | {ms(x['p50'])} | {ms(x['over'])} | "
                        f"{x['rps']:,.0f} | {x['cpu']:.0f} | {rc} |"
                    )
            if "cpu_ratio" in sm:
                L.append(
                    f"| {conns} | **Redis / memory** | | **{sm['over_ratio']:.2f}x** | | **{sm['cpu_ratio']:.2f}x** | |"
                )
        L.append("")
    elif stt.get("skipped") or stt.get("error"):
        L += [
            "### Shared state: memory and Redis side by side",
            "",
            f"Not run: {stt.get('skipped') or stt['error'][:300]}",
            "",
        ]
    w = res.get("workers", {})
    if ws:
        L += [
            "### Several cores: `rsql-proxy --workers N`",
            "",
            f"`--workers 1` and `--workers 2`, both on Redis state, wrk at {w['conns']} connections, 50 ms upstream, "
            f"{w['seconds']:g} s per run, {w['rounds']} round(s) in turns; medians. "
            f"What ran on the {info.get('nproc', '?')} "
            "cores during each run, in CPU seconds from /proc: the proxy (supervisor and workers), wrk, the upstream, "
            "the machine's Redis server, and *others* = the whole machine's busy time (/proc/stat) minus those.",
            "",
            "| workers | req/s | p50 ms | errors | proxy CPU s | wrk | upstream | Redis | others | machine busy / "
            "available CPU s | 1-min load |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for n, x in sorted(ws.items()):
            c = x["cpu"]
            L.append(
                f"| {n} | {x['rps']:,.0f} | {ms(x['p50'])} | {x['errors']} | {c['proxy']:.1f} | {c['wrk']:.1f} | "
                f"{c['upstream']:.1f} | {c['redis']:.1f} | {c['others']:.1f} | {c['machine']:.1f} / "
                f"{float(info.get('nproc') or 2) * x['wall']:.0f} | {x['load']} |"
            )
        if 1 in ws and 2 in ws:
            L += [
                "",
                f"Ratio, `--workers 2` / `--workers 1`: **{ws[2]['rps'] / ws[1]['rps']:.2f}x**.",
            ]
        L.append("")
    elif w.get("skipped") or w.get("error"):
        L += [
            "### Several cores: `rsql-proxy --workers N`",
            "",
            f"Not run: {w.get('skipped') or w['error'][:300]}",
            "",
        ]
    if q.get("runs"):
        cap, n = q["capacity_rps"], int(q["per_key"] * 60 / q["period"])
        L += [
            "### Quota at real answer times",
            "",
            f"Three keys, each limited by the upstream to {q['per_key']} requests per {q['period']:g} s (a moving "
            "window counted at each request's arrival, 429 + Retry-After beyond it, like OpenAI): "
            f"{cap:g} requests/s together. *A*: streamed answers, first byte (head and first event) "
            f"{q['first_byte']:g} s after arrival, the end at {q['stream_seconds']:g} s, for {q['seconds']['A']:g} s; "
            f"*B*: JSON answers taking {q['answer_seconds']:g} s (the first byte is the whole answer), for "
            f"{q['seconds']['B']:g} s"
            + (
                f"; *C*: JSON answers taking {1000 * q['short_answer_seconds']:.0f} ms, for "
                f"{q['seconds']['C']:g} s"
                if "C" in q["seconds"]
                else ""
            )
            + ". *Provider headers on*: each answer's head carries OpenAI's "
            "`x-ratelimit-limit-requests`, `-remaining-requests` and `-reset-requests` (computed when the head is "
            "sent); *off*: none (429s still carry Retry-After). An open-loop client (`bench/loadgen.py`, its own "
            f"process) offers {q['offered_rps']:g} requests/s; streams are read to `data: [DONE]` and count only "
            "when complete; nobody retries. rsql-proxy is told the keys' limits; LiteLLM gets "
            f"`rpm: {n}` per deployment, the nearest it can say.",
            "",
            "*Share of capacity (steady state)*: answers delivered per second after the provider's first window, "
            f"divided by the keys' capacity; timed by first bytes, between two delivered answers m x "
            f"{round(cap * q['period'])} apart (what the keys allow per window; m as large as the run allows). A "
            "fixed interval's count would swing by up to a window's worth with where the bursts fall; as any "
            "window admits at most that many, this measure can reach but not pass 100%. *Upstream counted*: the "
            "same measure on the upstream's arrival times. Refusals are the load above capacity (half must be "
            "turned away): rsql-proxy queues a request up to `max_wait_seconds` (10 s) for a key with headroom, "
            "then answers 429 with Retry-After; so its answer and first-byte times, counted from the client's "
            "send, include that wait.",
            "",
            "| scenario | proxy | share of capacity | upstream counted | delivered/s (over) | upstream 429s | refused "
            "(429) | with Retry-After | other errors | answer p50 | first byte p50 |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in q["runs"]:
            L.append(
                f"| {scen_name(r)} | {r['proxy']} | {100 * r['share']:.1f}% | {100 * r['upstream_share']:.1f}% | "
                f"{r['delivered_steady_rps']:.3f} ({r['steady_answers']} answers, {r['steady_from_s']:.0f}-"
                f"{r['steady_to_s']:.0f} s) | {r['upstream_429']} | {r['refused_429']} | "
                f"{r['refused_with_retry_after']} | {r['errors']}"
                f"{' ' + str(r['error_statuses']) if r['errors'] else ''} | "
                f"{r['answer_p50_ms']:,.0f} ms | {r['first_byte_p50_ms']:,.0f} ms |"
            )
        if q.get("LiteLLM_error"):
            L.append(f"\nLiteLLM's quota run failed: `{q['LiteLLM_error'][:300]}`")
        L.append("")
    ap = res.get("apis", {})
    if ap.get("runs"):
        L += [
            "### The Responses and Messages APIs against Chat Completions",
            "",
            "The same small question in each API through `rsql-proxy` (memory state), 10 connections, "
            "in front of a chat-completions upstream, so a Responses or Messages request is "
            f"translated both ways; {len(ap['runs']) // 3} interleaved rounds of {ap['seconds']:g} s, "
            "medians. Goal: at most 0.3 ms of CPU added per request over Chat Completions.",
            "",
            "| API | CPU µs/req | added over chat | req/s | p50 ms |",
            "|---|---|---|---|---|",
        ]
        for name, v in bench_proxy.apis_summary(ap).items():
            L.append(
                f"| {name} | {v['cpu_us']:.0f} | {v['added_us']:+.0f} µs | {v['rps']:,.0f} | "
                f"{v['p50_ms']:.1f} |"
            )
        L.append("")
    elif ap.get("error"):
        L += ["### The Responses and Messages APIs", "", f"Failed: `{ap['error'][:300]}`", ""]
    hb = holds_back(res, info.get("nproc", "2"))
    if hb:
        L += ["### What holds back missed targets in this run (measured)", "", *hb, ""]
    c = res.get("costs", {})
    if c.get("admission"):
        L += ["### Per-request costs", "", "| what | p50 | p99 / notes |", "|---|---|---|"]
        for kind, a in c["admission"].items():
            L.append(
                f"| admission decision, {kind} state (admit: windows, lease, budget; in-process, {a['n']} calls) | "
                f"{a['admit_p50_us']:.0f} µs | p99 {a['admit_p99_us']:.0f} µs; finish p50 {a['finish_p50_us']:.0f} µs |"
            )
        for host, byc in c.get("cache_hit", {}).items():
            for conns, r in sorted(byc.items(), key=lambda kv: int(kv[0])):
                L.append(
                    f"| cache hit end to end, {host}, {conns} conn (wrk) | {ms(r['latency_us']['p50'])} ms | "
                    f"p99 {ms(r['latency_us']['p99'])} ms; {r['rps']:,.0f} req/s; "
                    f"{r.get('cpu_us_per_req', 0):.0f} µs CPU/req |"
                )
        t = c.get("ttfb", {})
        d = t.get("direct")
        for host in ("rsql-proxy", "extension"):
            h = t.get(host)
            if h and d:
                L.append(
                    f"| streaming time to first event, {host} minus direct ({h['count']} sequential streams) | "
                    f"{h['p50_ms'] - d['p50_ms']:.2f} ms | through the proxy p50 {h['p50_ms']:.1f} ms, p99 "
                    f"{h['p99_ms']:.1f} ms; direct p50 {d['p50_ms']:.1f} ms |"
                )
        L.append("")
    if images:
        L += plots(res)
    L += ["", prose(NOTES_MD), "", END]
    return "\n".join(L)


def write_doc(text: str) -> None:
    DOC.parent.mkdir(parents=True, exist_ok=True)
    doc = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if START in doc and END in doc:
        head, rest = doc.split(START, 1)
        _, tail = rest.split(END, 1)
        doc = head + text + tail
    else:
        head, sep, tail = doc.partition("\n")
        doc = head + sep + "\n" + text + "\n" + tail
    DOC.write_text(doc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--only", default=",".join(ALL), help=f"comma-separated subset of {', '.join(ALL)}"
    )
    ap.add_argument(
        "--quick", action="store_true", help="short runs; does not write the doc unless --write"
    )
    ap.add_argument(
        "--write", action="store_true", help="write docs/benchmarks.md even with --quick"
    )
    ap.add_argument(
        "--no-write", action="store_true", help="print the proxy section, write nothing"
    )
    ap.add_argument("--from-json", default="", help="re-render the doc from a saved results file")
    args = ap.parse_args()
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in wanted if s not in ALL]
    if bad:
        ap.error(f"unknown section {bad[0]!r}; choose from {', '.join(ALL)}")
    write = not args.no_write and (args.write or not args.quick)
    t0 = time.monotonic()
    info = machine()
    if LITELLM_VENV.exists():
        v = subprocess.run(
            [
                str(LITELLM_VENV / "bin" / "python"),
                "-c",
                "import importlib.metadata as m; print(m.version('litellm'))",
            ],
            capture_output=True,
            text=True,
        )
        info["litellm"] = v.stdout.strip()
    results_path = BENCH / "results" / "proxy.json"
    if args.from_json:
        res = json.loads(Path(args.from_json).read_text())
    else:
        proxy_sections = [s for s in wanted if s in bench_proxy.SECTIONS]
        res = {}
        if proxy_sections:
            if "litellm" in proxy_sections or "quota" in proxy_sections:
                if not (LITELLM_VENV / "bin" / "litellm").exists():
                    log(
                        "bench/.venv-litellm is missing: run bench/install_litellm.sh (LiteLLM rows will be missing)"
                    )
            argv = ["--only", ",".join(proxy_sections)] + (["--quick"] if args.quick else [])
            res = bench_proxy.main(argv)
            for sec in proxy_sections:
                if isinstance(res.get(sec), dict):
                    res[sec]["run_at"] = info["date"]
                    res[sec]["run_on"] = info.get("cpu", "")  # the machine table is the last run's
            res["machine"] = info
            if write:
                results_path.parent.mkdir(exist_ok=True)
                old = json.loads(results_path.read_text()) if results_path.exists() else {}
                kept = old.get("machine", {}).get("litellm")
                old.update(res)  # a subset run keeps the other sections' last results
                if kept and "litellm" not in res["machine"] and "litellm" in old:
                    res["machine"]["litellm"] = kept  # the LiteLLM rows kept are of that version
                res = old
                results_path.write_text(json.dumps(res, indent=1))
        for k in KERNEL:
            if k in wanted:
                run_kernel_side(k, args.quick, write)
        forwarder = [s for s in wanted if s in bench_forwarder.SECTIONS]
        if forwarder:  # keeps its own results and writes its own section
            flags = (["--quick"] if args.quick else []) + (["--write"] if write else ["--no-write"])
            bench_forwarder.main(["--only", ",".join(forwarder), *flags])
    if any(s in res for s in bench_proxy.SECTIONS):
        text = section(res, res.get("machine", info), images=write)
        if write:
            write_doc(text)
            log(f"wrote {DOC.relative_to(ROOT)}")
        else:
            print(text)
    log(f"done in {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
