"""Garbage collections in rsql-proxy and the server extension under load: their pauses, their
CPU, the slowest answers.

    .venv/bin/python bench/bench_pauses.py [--baseline REV] [--rounds 2] [--seconds 20]
        [--conns 100] [--extension-conns 10] [--quick] [--no-write]
    needs: wrk (scripts/install-system-deps.sh bench)

Why: a collection of Python's oldest generation walks every object the process holds, and the
event loop answers nothing while it runs; every request in flight waits for it. rsql-proxy
(memory state, SQLite usage log) runs in front of bench/upstream.py answering after 50 ms,
under bench/gc_pauses.py, which writes down each collection's pause; wrk sends chat completions
on `--conns` connections for `--seconds` after a warm-up. A row: the full collections in the
measured span (how many, the median and the longest pause), the younger ones, every
collection's share of the process's CPU, and its CPU per request, beside wrk's latencies. With
``--baseline``, a commit's tree runs the same way, interleaved, in the same run. Then the server
extension in a Jupyter server, the same way at `--extension-conns`, with what the server's start
made frozen (``c.RSQLProxy.freeze_startup_objects``, the default) and not, in turns.

Rewrites the ``bench_pauses`` section of docs/benchmarks.md unless ``--no-write`` or
``--quick``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    PY,
    Procs,
    commit_id,
    cpu_seconds,
    loadavg,
    log,
    machine,
    replace_section,
    start_extension,
    start_service,
    start_upstream,
    upstream_configs,
    workdir,
    worktree,
    wrk,
)

BENCH = Path(__file__).resolve().parent
DOC = BENCH.parent / "docs" / "benchmarks.md"
MARK = "<!-- bench_pauses -->"
THIS = "this checkout"
# the server extension's runs: what its server's start made frozen (the default) or not
EXTENSION = {"extension frozen": "frozen (the default)", "extension not frozen": "not frozen"}


def collections(path: Path, since: float, until: float) -> list[tuple[int, float]]:
    """(generation, pause in ms) of each collection that ended in [since, until]."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        at, generation, ms = line.split()
        if since <= float(at) <= until:
            found.append((int(generation), float(ms)))
    return found


def measure(
    code: Path | None, conns: int, seconds: float, freeze: bool | None = None
) -> dict[str, Any]:
    """One run of rsql-proxy (`code`: a tree to run instead of this checkout's), or with
    `freeze` True or False, of the server extension in a Jupyter server with
    ``freeze_startup_objects`` so."""
    with workdir("pauses") as work, Procs(work) as procs:
        up = start_upstream(procs, latency=0.05)
        pauses = work / "pauses.txt"
        cfg: dict[str, Any] = {"upstreams": upstream_configs(up), "default_model": "fake-small"}
        wrap = [PY, str(BENCH / "gc_pauses.py"), str(pauses)]
        if freeze is None:
            env = {"PYTHONPATH": str(code)} if code is not None else None
            url, auth = start_service(procs, cfg, wrap=wrap, env=env)
        else:
            cfg["freeze_startup_objects"] = freeze
            url, auth = start_extension(procs, cfg, wrap=wrap)
        pid = procs.items[-1][1].pid
        wrk(url, conns=10, seconds=2, auth=auth)  # warm: connections, caches, the usage table
        since, cpu = time.time(), cpu_seconds(pid)
        res = wrk(url, conns=conns, seconds=seconds, auth=auth)
        cpu = cpu_seconds(pid) - cpu
        found = collections(pauses, since, time.time())
    full = [ms for generation, ms in found if generation == 2]
    lat = res["latency_us"]
    return {
        "collections": len(full),
        "median_ms": statistics.median(full) if full else 0.0,
        "longest_ms": max(full, default=0.0),
        "young": len(found) - len(full),
        "gc_share": sum(ms for _, ms in found) / 1000 / cpu if cpu else 0.0,
        "cpu_us": cpu / res["requests"] * 1e6 if res["requests"] else 0.0,
        "rps": res["rps"],
        **{k: lat[k] / 1000 for k in ("p50", "p99", "p999", "max")},
    }


def row(name: str, n: int, r: dict[str, Any]) -> str:
    pauses = f"{r['median_ms']:.1f} | {r['longest_ms']:.1f}" if r["collections"] else "— | —"
    return (
        f"| {name} | {n} | {r['collections']} | {pauses} "
        f"| {r['young']} | {r['gc_share']:.2%} | {r['cpu_us']:.0f} | {r['rps']:,.0f} "
        f"| {r['p50']:.1f} | {r['p99']:.1f} | {r['p999']:.1f} | {r['max']:.1f} |"
    )


def summary(runs: dict[str, list[dict[str, Any]]], names: dict[str, str]) -> list[str]:
    """One line per code: the medians over its rounds."""

    def med(rs: list[dict[str, Any]], k: str) -> float:
        return statistics.median(r[k] for r in rs)

    def full(rs: list[dict[str, Any]]) -> str:
        had = [r for r in rs if r["collections"]]  # a round without one has no pause to count
        if not had:
            return "no full collection in any round"
        return (
            f"{sum(r['collections'] for r in rs)} full collections, a pause of "
            f"{med(had, 'median_ms'):.1f} ms (the longest {max(r['longest_ms'] for r in had):.1f})"
        )

    return [
        f"- {names[key]}: {full(rs)}; medians over the rounds: all "
        f"collections {med(rs, 'gc_share'):.2%} of the CPU, {med(rs, 'cpu_us'):.0f} µs of CPU "
        f"a request, p99 {med(rs, 'p99'):.1f} ms, p99.9 {med(rs, 'p999'):.1f} ms, "
        f"{med(rs, 'rps'):,.0f} req/s."
        for key, rs in runs.items()
        if rs
    ]


def section(runs: dict[str, list[dict[str, Any]]], a: argparse.Namespace, rev: str) -> list[str]:
    m = machine()
    names = {THIS: "this checkout", rev: f"`{rev[:7]}`"} if rev else {THIS: "rsql-proxy"}
    lines = [
        MARK,
        "## Full collections under load (`bench/bench_pauses.py`)",
        "",
        f"Run {m['date']} on {m['nproc']} cores ({m['cpu']}, Python {m['python']}), load "
        f"average {loadavg()} at the end: rsql-proxy (memory state, SQLite usage log) in front "
        f"of a 50 ms upstream, wrk at {a.conns} connections for {a.seconds:g} s after a warm-up, "
        f"{a.rounds} round(s), the order turning each round. *Full collections*: Python's "
        "collections of its oldest generation that ended in the measured span "
        "(`bench/gc_pauses.py` times each); the event loop answers nothing while one runs. "
        "*Younger collections*: those of the two younger generations. *Share of the CPU*: "
        "every collection's time over the process's CPU time in the span; *CPU µs/req* that "
        "CPU time over the requests wrk counted. Latencies in ms, from wrk.",
        "",
        "| code | round | full collections | median pause ms | longest ms | younger "
        "collections | all collections' share of the CPU | CPU µs/req | req/s | p50 | p99 "
        "| p99.9 | max |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    service = {k: v for k, v in runs.items() if k not in EXTENSION}
    for key, rs in service.items():
        lines += [row(names[key], i + 1, r) for i, r in enumerate(rs)]
    lines += ["", *summary(service, names)]
    lines += [
        "",
        "Once it listens, rsql-proxy freezes what its start made (`gc.freeze()` in "
        "`jupyter_server_ext/service.py`): modules, classes and settings, some 100,000 objects "
        "that live as long as the process, so a full collection walks only what requests made "
        "since. It also collects its youngest generation after 10,000 new objects instead of "
        "Python's 700: the requests in flight hold thousands of young objects (coroutines, "
        "futures, handlers), which each young collection walked again.",
    ]
    ext = {k: v for k, v in runs.items() if k in EXTENSION}
    if any(ext.values()):
        lines += [
            "",
            f"The server extension in a Jupyter server (no other extension), the same way at "
            f"{a.extension_conns} connections, the rounds' order turning: what the server's "
            "start made frozen once its loop runs (`c.RSQLProxy.freeze_startup_objects`, the "
            "default) and not. The extension leaves the server's thresholds as they are: the "
            "collector is the server's own, and a full collection holds the whole server still, "
            "its pages and its kernels' messages too.",
            "",
            "| server extension | round | full collections | median pause ms | longest ms | "
            "younger collections | all collections' share of the CPU | CPU µs/req | req/s "
            "| p50 | p99 | p99.9 | max |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for key, rs in ext.items():
            lines += [row(EXTENSION[key], i + 1, r) for i, r in enumerate(rs)]
        lines += ["", *summary(ext, EXTENSION)]
    lines.append(MARK)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", default="", help="run this commit's tree too, interleaved")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--conns", type=int, default=100)
    ap.add_argument(
        "--extension-conns", type=int, default=10, help="the server extension's connections"
    )
    ap.add_argument("--quick", action="store_true", help="one round of 6 s; writes nothing")
    ap.add_argument("--no-write", action="store_true", help="print the section, write nothing")
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.seconds = 1, 6.0
    rev = commit_id(a.baseline) if a.baseline else ""
    runs: dict[str, list[dict[str, Any]]] = {THIS: [], **({rev: []} if rev else {})}
    with worktree(rev) if rev else contextlib.nullcontext() as tree:
        trees: dict[str, Path | None] = {THIS: None, **({rev: tree} if rev else {})}
        for n in range(a.rounds):
            for key in list(trees) if n % 2 == 0 else reversed(list(trees)):
                runs[key].append(measure(trees[key], a.conns, a.seconds))
                log(f"  {key}: {runs[key][-1]}")
    runs.update({key: [] for key in EXTENSION})
    for n in range(a.rounds):
        for key in list(EXTENSION) if n % 2 == 0 else reversed(list(EXTENSION)):
            freeze = key == "extension frozen"
            runs[key].append(measure(None, a.extension_conns, a.seconds, freeze=freeze))
            log(f"  {key}: {runs[key][-1]}")
    lines = section(runs, a, rev)
    print("\n".join(lines))
    if not (a.quick or a.no_write):
        replace_section(DOC, MARK, lines)
        log(f"wrote the bench_pauses section of {DOC}")


if __name__ == "__main__":
    main()
