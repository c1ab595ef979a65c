"""Where rsql-proxy's CPU goes beside the bare forwarder's: py-spy over each under the same wrk load.

    .venv/bin/python bench/profile_forwarder.py [--seconds 15] [--conns 10] [--no-write]
    needs: wrk and py-spy (pip install -e '.[bench]')

The bare forwarder (``bench/forwarder.py``) and rsql-proxy (memory state, SQLite usage log, as
``bench_forwarder.py --only forwarder`` runs it) in front of the same 50 ms upstream, one after
the other in one run (forwarder, proxy, proxy, forwarder): wrk at ``--conns`` for ``--seconds``
while py-spy samples the server's threads (500 Hz, only while they run). Each sample is put in a
phase as ``bench/profile_proxy.py`` does (the innermost frame of ours decides, else the innermost
library frame: tornado's HTTP server, the asyncio loop); in the forwarder, forwarder.py is "the
forwarder's own code". A phase's share of a server's samples times its CPU per request over the
same runs is the phase's µs per request. Kept as ``profile`` in
bench/results/forwarder.json and shown in bench_forwarder.py's page section.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import forwarder_page  # noqa: E402
from bench_forwarder import FWD, RESULTS, SVC, start_forwarder  # noqa: E402
from common import (  # noqa: E402
    Procs,
    log,
    machine,
    start_service,
    start_upstream,
    workdir,
    wrk,
)
from profile_proxy import FRAME, LIBRARIES, LOOP, phase_of, spied  # noqa: E402
from proxy_runs import proxy_config  # noqa: E402

OWN = "the forwarder's own code"
TORNADO = "tornado's HTTP server"


def forwarder_phase(stack: str) -> str:
    """profile_proxy's rule with forwarder.py as our code: read from the innermost frame out to
    the loop's own frames, the first forwarder.py frame decides (its calls into asyncio's
    streams are its upstream I/O, as the proxy's transport is ours), except that its calls into
    tornado are tornado's, as the proxy's handlers' are."""
    library = ""
    for frame in reversed(stack.split(";")):
        m = FRAME.match(frame.strip())
        file = m.group("file") if m else frame
        if file.endswith("forwarder.py"):
            return library if library == TORNADO else OWN
        if not library:
            library = next((name for name, pat in LIBRARIES if pat.search(file)), "")
        if LOOP.search(file):
            return library or "the asyncio loop"
    return library or "other"


def sample(url: str, auth: str, pid: int, seconds: float, conns: int, own: bool) -> dict:
    """One wrk run under py-spy: requests, the server's CPU seconds, samples per phase."""
    wrk(url, conns=conns, seconds=2, auth=auth)  # warm-up
    with workdir("spy") as d:
        classify = forwarder_phase if own else phase_of
        run, cpu, counts = spied(pid, url, auth, seconds, conns, classify, d / "samples.txt")
    return {"requests": int(run["requests"]), "cpu_s": cpu, "counts": counts}


def summed(runs: list[dict]) -> dict[str, Any]:
    """The runs of one server together: CPU per request over all, each phase's share of it."""
    counts: Counter[str] = sum((r["counts"] for r in runs), Counter())
    total = sum(counts.values()) or 1
    cpu_us = 1e6 * sum(r["cpu_s"] for r in runs) / max(1, sum(r["requests"] for r in runs))
    return {
        "requests": sum(r["requests"] for r in runs),
        "runs_cpu_us": [1e6 * r["cpu_s"] / max(1, r["requests"]) for r in runs],
        "cpu_us": cpu_us,
        "samples": total,
        "phases_us": {k: cpu_us * n / total for k, n in counts.most_common()},
    }


def profile(seconds: float, conns: int) -> dict[str, Any]:
    """Forwarder, proxy, proxy, forwarder: a drift of the shared machine hits both alike."""
    out: dict[str, Any] = {"seconds": seconds, "conns": conns}
    with workdir("profile-forwarder") as d, Procs(d) as procs:
        up = start_upstream(procs)
        url, auth, pid = start_forwarder(procs, up)
        servers = {FWD: (url, auth, pid, True)}
        url, auth = start_service(procs, proxy_config(up), name="svc")
        servers[SVC] = (url, auth, procs.items[-1][1].pid, False)
        runs: dict[str, list[dict]] = {FWD: [], SVC: []}
        for name in (FWD, SVC, SVC, FWD):
            log(f"profile: {name}, {conns} connections, {seconds:g} s")
            url, auth, pid, own = servers[name]
            runs[name].append(sample(url, auth, pid, seconds, conns, own))
        for name, rs in runs.items():
            out[name] = summed(rs)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--conns", type=int, default=10)
    ap.add_argument("--no-write", action="store_true", help="print, keep nothing")
    args = ap.parse_args()
    res = profile(args.seconds, args.conns)
    res["run_at"] = machine()["date"]
    lines = forwarder_page.profile_rows(res)
    print("\n".join(lines))
    if not args.no_write:
        old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        old["profile"] = res
        RESULTS.write_text(json.dumps(old, indent=1))
        forwarder_page.write(forwarder_page.section(old))
        log("wrote docs/benchmarks.md")


if __name__ == "__main__":
    main()
