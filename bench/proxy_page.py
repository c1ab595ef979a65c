"""bench_proxy.py's section of docs/benchmarks.md, between the ``<!-- bench_proxy -->`` marks:
the machine, the targets (proxy_targets.py), each section's table, the per-request costs, the
plots under docs/img and the prose kept with the results (run_all.py writes it)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_proxy import SECTIONS  # noqa: E402
from common import log  # noqa: E402
from proxy_quota import QUOTA_SCENARIOS  # noqa: E402
from proxy_results import (  # noqa: E402
    NOTES_MD,
    apis_summary,
    baseline,
    litellm_ratio,
    ms,
    overhead_rows,
    prose,
    runs_by,
    saturation,
    scen_label,
    scen_name,
    state_summary,
    workers_summary,
)
from proxy_targets import holds_back, target_rows  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
IMG = ROOT / "docs" / "img"
START, END = "<!-- bench_proxy -->", "<!-- /bench_proxy -->"


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
        for sec in SECTIONS
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
    L += target_rows(res)
    st = state_summary(res.get("state", {}))
    ws = workers_summary(res.get("workers", {}))
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
            ours, theirs, d = (
                runs.get(("rsql-proxy", c, False)),
                runs.get(("LiteLLM", c, False)),
                runs.get(("direct", c, False)),
            )
            if not (ours and theirs and d):
                continue
            oa = ours["latency_us"]["p50"] - d["latency_us"]["p50"]
            ob = theirs["latency_us"]["p50"] - d["latency_us"]["p50"]
            L.append(
                f"| {c} | {ours['rps']:,.0f} | {theirs['rps']:,.1f} | "
                f"{ours['rps'] / max(theirs['rps'], 1e-9):.1f}x | {ms(oa)} | "
                f"{ms(ob)} | {ob / oa if oa > 0 else float('nan'):.1f}x less | {ours.get('cpu_us_per_req', 0):.0f} | "
                f"{theirs.get('cpu_us_per_req', 0):,.0f} |"
            )
        errs = sum(sum(r["errors"].values()) for r in ll["runs"] if r["target"] == "LiteLLM")
        ratio = litellm_ratio(ll)
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
        for name, v in apis_summary(ap).items():
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


def _saved(plt: Any, fig: Any, name: str, alt: str) -> str:
    """`fig` laid out, written to docs/img/`name` and closed; its markdown image line."""
    fig.tight_layout()
    fig.savefig(IMG / name, dpi=110)
    plt.close(fig)
    return f"![{alt}](img/{name})"


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
        out.append(_saved(plt, fig, "bench_overhead.png", "overhead"))
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
        out.append(_saved(plt, fig, "bench_litellm.png", "throughput vs LiteLLM"))
    q = res.get("quota", {})
    qruns = [r for r in q.get("runs", []) if r.get("first_bytes_per_second")]
    if qruns:
        import itertools

        scens = [sc for sc in QUOTA_SCENARIOS if any(r["scenario"] == sc for r in qruns)]
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
            t0 = q["period"] + QUOTA_SCENARIOS[scen][1]
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
        out.append(_saved(plt, fig, "bench_quota.png", "quota at real answer times"))
    return out


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
