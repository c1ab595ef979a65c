"""Where a proxied request's CPU goes: py-spy over rsql-proxy under wrk load (#40, item 1).

    .venv/bin/python bench/profile_proxy.py [--seconds 20] [--conns 10] [--no-write]
    needs: wrk (scripts/install-system-deps.sh bench) and py-spy (pip install -e '.[bench]')

rsql-proxy (the service host: memory state, SQLite usage log, no redaction, no cache hit:
temperature 0.7) in front of bench/upstream.py answering after 50 ms, as the overhead section
of bench_proxy.py runs it. wrk sends the same chat completion on `--conns` connections for
`--seconds`, after a warm-up; py-spy samples the service's threads while they run (not while
they wait: ``--idle`` is off) at 500 Hz. The process's CPU time over the run, divided by the
requests wrk counted, is the CPU per request; each sample is put in one phase, so a phase's
share of the samples is its share of that CPU:

- a sample is the phase of its innermost frame in our code (the module decides, ``PHASES``);
- with no frame of ours, the innermost library frame decides (tornado's HTTP server, the
  asyncio loop, logging), else "other".

So json.loads called from the request parser counts as parsing, tornado writing our answer as
tornado. Writes its section of docs/benchmarks.md between the ``<!-- profile_proxy -->`` marks.

``--baseline REV`` measures the CPU per chat completion of this checkout and of commit REV (its
code checked out in a scratch worktree and put first on the service's PYTHONPATH) in one run,
interleaved, ``--rounds`` times each without py-spy, and writes the medians between the
``<!-- profile_proxy_baseline -->`` marks: what a change costs the Chat Completions path.
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import (  # noqa: E402
    Procs,
    chat_body,
    commit_id,
    cpu_seconds,
    replace_section,
    start_service,
    start_upstream,
    upstream_configs,
    workdir,
    worktree,
    wrk,
)

MARK = "<!-- profile_proxy -->"
BASELINE_MARK = "<!-- profile_proxy_baseline -->"
DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
PY_SPY = Path(sys.executable).with_name("py-spy")

# (phase, a pattern on the frame's file): our modules first, innermost frame of ours decides
PHASES: list[tuple[str, re.Pattern[str]]] = [
    ("usage log", re.compile(r"jupyter_server_ext/(engine/accounting/(usage|spool)|store/)")),
    # an upstream kind's own translation (Anthropic's) is how it is spoken over HTTP
    (
        "upstream I/O",
        re.compile(r"jupyter_server_ext/engine/(upstreams/(transport|anthropic)|failover)"),
    ),
    ("key choice", re.compile(r"jupyter_server_ext/engine/upstreams/")),
    ("admission and state", re.compile(r"jupyter_server_ext/(engine/admission|state)/")),
    ("pricing", re.compile(r"jupyter_server_ext/engine/accounting/pricing")),
    (
        "parsing the body",
        re.compile(r"jupyter_server_ext/engine/(parsing|bodies/(request|decode|media))"),
    ),
    ("the answer", re.compile(r"jupyter_server_ext/engine/(replies|bodies/(streams|cache)|apis/)")),
    ("metrics and tracing", re.compile(r"jupyter_server_ext/engine/monitoring/")),
    ("auth", re.compile(r"jupyter_server_ext/(auth|service_auth|identity)")),
    ("handlers", re.compile(r"jupyter_server_ext/(handlers|api_handlers|routes|service)")),
    ("engine, the rest", re.compile(r"jupyter_server_ext/")),
]
LIBRARIES: list[tuple[str, re.Pattern[str]]] = [
    ("logging", re.compile(r"(^|/)logging/")),
    ("tornado's HTTP server", re.compile(r"(^|/)tornado/")),
    ("the asyncio loop", re.compile(r"(^|/)asyncio/|selectors\.py")),
]
FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


# the event loop's own frames: a stack is read from its innermost frame down to here only
# (py-spy names files relative to their folder on sys.path: "asyncio/events.py")
LOOP = re.compile(r"(^|/)asyncio/(base_events|events|runners)\.py|selectors\.py")
_THIN = ("handlers", "auth")  # a library frame inside these is the library's work


def phase_of(stack: str) -> str:
    """The phase of one collapsed stack ("outer;...;inner"), read from its innermost frame:
    the first frame of ours decides (unless it is a handler calling into tornado or logging,
    which is theirs); reaching the event loop's own frames first, the innermost library frame
    does, else the loop itself."""
    library = ""
    for frame in reversed(stack.split(";")):
        m = FRAME.match(frame.strip())
        file = m.group("file") if m else frame
        if "jupyter_server_ext/" in file:
            ours = next(name for name, pat in PHASES if pat.search(file))
            return library if library and ours in _THIN else ours
        if not library:
            library = next((name for name, pat in LIBRARIES if pat.search(file)), "")
        if LOOP.search(file):
            return library or "the asyncio loop"
    return library or "other"


def cpu_per_request(seconds: float, conns: int, code: Path | None = None) -> float:
    """µs of the service's CPU per chat completion under wrk, without py-spy; `code`: a
    checkout whose packages the service imports instead of this one's."""
    with workdir("cpu") as work, Procs(work) as procs:
        up = start_upstream(procs, latency=0.05)
        cfg = {
            "upstreams": upstream_configs(up),
            "default_model": "fake-small",
            "max_wait_seconds": 10.0,
            "health_check_seconds": 0.0,
        }
        env = {"PYTHONPATH": str(code)} if code is not None else None
        url, auth = start_service(procs, cfg, env=env)
        pid = procs.items[-1][1].pid
        body = chat_body()
        wrk(url, conns=conns, seconds=3, auth=auth, body=body)  # warm-up
        c0 = cpu_seconds(pid)
        run = wrk(url, conns=conns, seconds=seconds, auth=auth, body=body)
        return 1e6 * (cpu_seconds(pid) - c0) / max(1, int(run["requests"]))


def against(rev: str, rounds: int, seconds: float, conns: int) -> dict[str, list[float]]:
    """This checkout's and `rev`'s CPU per request, interleaved in one run."""
    with worktree(rev) as tree:
        out: dict[str, list[float]] = {"HEAD": [], rev: []}
        for n in range(rounds):
            # which goes first alternates: the machine warms and drifts over a run
            for name in ("HEAD", rev) if n % 2 == 0 else (rev, "HEAD"):
                code = None if name == "HEAD" else tree
                out[name].append(cpu_per_request(seconds, conns, code))
            print(f"  HEAD {out['HEAD'][-1]:.0f} µs, {rev} {out[rev][-1]:.0f} µs", flush=True)
        return out


def write_baseline(r: dict[str, list[float]], rev: str, seconds: float, conns: int) -> None:
    head, base = statistics.median(r["HEAD"]), statistics.median(r[rev])
    lines = [
        BASELINE_MARK,
        f"### The Chat Completions path against `{rev}` (`bench/profile_proxy.py --baseline`)",
        "",
        f"The same service and load as above, without py-spy ({conns} connections, "
        f"{seconds:g} s a run), this checkout and commit `{rev}` interleaved in one run (which "
        f"goes first alternating), {len(r['HEAD'])} runs each: the service's CPU per chat "
        "completion.",
        "",
        "| code | runs (µs a request) | median |",
        "|---|---|---|",
        f"| this checkout | {', '.join(f'{x:.0f}' for x in r['HEAD'])} | **{head:.0f} µs** |",
        f"| `{rev}` | {', '.join(f'{x:.0f}' for x in r[rev])} | **{base:.0f} µs** |",
        "",
        f"Difference of the medians: {head - base:+.0f} µs ({(head - base) / base:+.1%}).",
        BASELINE_MARK,
    ]
    replace_section(DOC, BASELINE_MARK, lines)
    print(f"wrote {DOC}")


def spied(
    pid: int,
    url: str,
    auth: str,
    seconds: float,
    conns: int,
    phase: Callable[[str], str],
    raw: Path,
    body: str | None = None,
    keep: str = "",
) -> tuple[dict, float, Counter[str]]:
    """One wrk run against the server `pid` under py-spy: wrk's figures, the server's CPU
    seconds, and py-spy's samples counted by `phase` (shared with profile_forwarder.py)."""
    spy = subprocess.Popen(
        [str(PY_SPY), "record", "--pid", str(pid), "--rate", "500", "--format", "raw",
         "--duration", f"{seconds + 2:g}", "--output", str(raw), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    c0 = cpu_seconds(pid)
    run = wrk(url, conns=conns, seconds=seconds, auth=auth, body=body)
    cpu = cpu_seconds(pid) - c0
    spy.wait(timeout=seconds + 60)
    if keep:  # py-spy's collapsed stacks, for a flame graph or a look at one phase
        Path(keep).write_text(raw.read_text())
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            counts[phase(stack)] += int(n)
    return run, cpu, counts


def profile(seconds: float, conns: int, keep: str = "") -> dict[str, object]:
    with workdir("profile") as work, Procs(work) as procs:
        up = start_upstream(procs, latency=0.05)
        cfg = {
            "upstreams": upstream_configs(up),
            "default_model": "fake-small",
            "max_wait_seconds": 10.0,
            "health_check_seconds": 0.0,
        }
        url, auth = start_service(procs, cfg)
        pid = procs.items[-1][1].pid
        body = chat_body()
        wrk(url, conns=conns, seconds=3, auth=auth, body=body)  # warm-up
        run, cpu, counts = spied(
            pid, url, auth, seconds, conns, phase_of, work / "samples.txt", body=body, keep=keep
        )
    requests = max(1, int(run["requests"]))
    return {
        "requests": requests,
        "rps": run["rps"],
        "errors": run["errors"],
        "cpu_us": 1e6 * cpu / requests,
        "samples": dict(counts),
    }


def write(r: dict[str, object], seconds: float, conns: int) -> None:
    samples: dict[str, int] = r["samples"]  # type: ignore[assignment]  # built above
    total = sum(samples.values()) or 1
    cpu_us = float(r["cpu_us"])  # type: ignore[arg-type]  # a float, built above
    rows = sorted(samples.items(), key=lambda kv: -kv[1])
    errors = sum(r["errors"].values()) if isinstance(r["errors"], dict) else r["errors"]
    theirs = {"the asyncio loop", "tornado's HTTP server", "logging", "other"}
    ours = sum(n for name, n in samples.items() if name not in theirs) / total
    lines = [
        MARK,
        "## Where a proxied request's CPU goes (`bench/profile_proxy.py`)",
        "",
        f"rsql-proxy (memory state, SQLite usage log, no redaction, no cache hit) in front of "
        f"the bench upstream answering after 50 ms; wrk, {conns} connections, {seconds:g} s: "
        f"{r['requests']:,} requests ({float(r['rps']):,.0f}/s, {errors} errors), "  # type: ignore[arg-type]  # a float
        f"**{cpu_us:,.0f} µs of the service's CPU per request**. py-spy sampled its threads "
        f"while they ran ({total:,} samples at 500 Hz); a sample counts for the phase of its "
        "innermost frame in our code, else of the innermost library frame. On "
        f"{platform.machine()}, Python {platform.python_version()}.",
        "",
        "| phase | share of the CPU | µs per request |",
        "|---|---|---|",
        *(f"| {name} | {n / total:.1%} | {cpu_us * n / total:,.0f} |" for name, n in rows),
        "",
        f"Our own code (every phase but the loop, tornado, logging and other): {ours:.0%}, "
        f"{cpu_us * ours:,.0f} µs a request; the event loop and tornado's HTTP code the rest.",
        "",
        "*tornado's HTTP server*: reading the request and writing the answer (headers, chunks) "
        "in tornado's own code; *the asyncio loop*: the loop's own work between callbacks; "
        "*upstream I/O*: the engine's own HTTP/1.1 client to the provider "
        "(`engine/upstreams/transport/`) and the failover around it; "
        "*admission and state*: the limiter and the memory state's windows, leases and "
        "budgets; *the answer*: settling usage and cost and building the reply; *usage log*: "
        "the row handed to the writer and written to SQLite (its own thread). The targets "
        "stand beside a no-op in the overhead section above.",
        MARK,
    ]
    replace_section(DOC, MARK, lines)
    print(f"wrote {DOC}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--conns", type=int, default=10)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--raw", default="", help="keep py-spy's collapsed stacks in this file")
    ap.add_argument("--baseline", default="", help="compare the CPU per request with this commit")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each, with --baseline")
    a = ap.parse_args()
    if a.baseline:
        a.baseline = commit_id(a.baseline)  # "HEAD" would be filed with this checkout's runs
        runs = against(a.baseline, a.rounds, a.seconds, a.conns)
        if not a.no_write:
            write_baseline(runs, a.baseline, a.seconds, a.conns)
        return
    if not PY_SPY.exists():
        sys.exit("profile_proxy: py-spy is not installed (pip install -e '.[bench]')")
    r = profile(a.seconds, a.conns, a.raw)
    samples: dict[str, int] = r["samples"]  # type: ignore[assignment]  # built above
    total = sum(samples.values()) or 1
    print(f"{r['requests']} requests, {float(r['cpu_us']):.0f} µs CPU per request")  # type: ignore[arg-type]  # a float
    for name, n in sorted(samples.items(), key=lambda kv: -kv[1]):
        print(f"  {name:24s} {n / total:6.1%}")
    if not a.no_write:
        write(r, a.seconds, a.conns)


if __name__ == "__main__":
    main()
