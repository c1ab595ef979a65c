"""Run every benchmark and write docs/benchmarks.md (what `make bench` runs).

    .venv/bin/python bench/run_all.py                 # everything (about 60 minutes), writes the doc
    .venv/bin/python bench/run_all.py --quick         # short runs; prints the proxy section, writes nothing
    .venv/bin/python bench/run_all.py --only overhead,litellm   # a subset (with --write to keep it)

Sections (`--only a,b` runs a subset): overhead (both hosts, memory and Redis state), state (memory
and Redis side by side, in turns), workers (`rsql-proxy --workers 1` and `2`), litellm (side by
side; needs root for a network namespace and bench/.venv-litellm from bench/install_litellm.sh),
quota (at real answer times: streams and 2 s JSON answers, provider headers on and off, and
LiteLLM), costs, context (bench/bench_context.py), schema (bench/bench_schema.py);
prompt_cache (bench/bench_prompt_cache.py: agent sessions' prompt caches through key rotation);
answer_times (bench/bench_quota.py: quota at every answer time, streams and JSON, headers on
and off, one process and replicas);
forwarder, quota_open, class (bench/bench_forwarder.py: beside a bare forwarder, quota as users meet it,
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
from proxy_page import DOC, section, write_doc  # noqa: E402

# scripts that write their own section: the kernel side's, the prompt caches' (issue 74) and
# quota at every answer time (issue 76; "quota" is bench_proxy's older section)
KERNEL = ("context", "schema", "prompt_cache", "answer_times")
SCRIPTS = {"answer_times": "bench_quota.py"}
ALL = (*bench_proxy.SECTIONS, *KERNEL, *bench_forwarder.SECTIONS)


def run_kernel_side(which: str, quick: bool, write: bool) -> dict[str, Any]:
    script = BENCH / SCRIPTS.get(which, f"bench_{which}.py")
    if not script.exists():
        return {"skipped": f"{script.name} is not there"}
    argv = [sys.executable, str(script)]
    if which == "context" and quick:
        argv += ["--rows", "1000000", "--repeat", "3"]
    if which in ("prompt_cache", "answer_times") and quick:
        argv.append("--quick")
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
    # bench_quota's 20 cases take about 25 minutes
    res = subprocess.run(argv, capture_output=True, text=True, timeout=2400, cwd=ROOT)
    if res.returncode != 0:
        log(f"  {script.name} failed ({res.returncode}): {res.stderr[-1500:]}")
    return {
        "returncode": res.returncode,
        "elapsed_s": time.monotonic() - t,
        "stdout": res.stdout[-4000:],
    }


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
