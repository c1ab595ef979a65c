"""Measure %%ask context capture: a 10M x 20 pandas DataFrame, and an R session with 50 frames.

    .venv/bin/python bench/bench_context.py [--rows 10000000] [--repeat 7] [--no-write]

Prints the numbers and rewrites the ``bench_context`` section of docs/benchmarks.md (only the
text between ``<!-- bench_context -->`` and ``<!-- /bench_context -->``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

START, END = "<!-- bench_context -->", "<!-- /bench_context -->"


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    times = []
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), max(times), out


def bench_pandas(rows: int, repeat: int) -> list[str]:
    import numpy as np
    import pandas as pd

    from rsql_magic.context import build_context
    from rsql_magic.context.frames import describe_frame

    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    cols: dict[str, object] = {}
    for i in range(12):
        a = rng.random(rows)
        if i % 4 == 0:
            a[rng.integers(0, rows, rows // 50)] = np.nan  # some nulls
        cols[f"f{i}"] = a
    for i in range(4):
        cols[f"i{i}"] = rng.integers(0, 1_000_000, rows)
    cols["cat"] = pd.Categorical.from_codes(rng.integers(0, 8, rows), list("abcdefgh"))
    cols["ts"] = pd.date_range("2020-01-01", periods=rows, freq="s")
    cols["flag"] = rng.random(rows) < 0.3
    cols["label"] = pd.array(np.array(["red", "green", "blue", "amber"])[rng.integers(0, 4, rows)])
    df = pd.DataFrame(cols)
    build = time.perf_counter() - t0
    mem = df.memory_usage(deep=False).sum() / 2**30
    med, worst, text = timed(lambda: describe_frame("big", df), repeat)
    nd_med, _, _ = timed(lambda: describe_frame("big", df, no_data=True), repeat)
    ns = {"big": df}
    ctx_med, ctx_worst, ctx = timed(
        lambda: build_context(question="what drives f0 in big?", ns=ns, budget_tokens=3000), repeat
    )
    print(f"pandas {rows:,} x {df.shape[1]} ({mem:.2f} GiB, built in {build:.1f} s)")
    print(f"  describe_frame:            median {med * 1000:.1f} ms, worst {worst * 1000:.1f} ms")
    print(f"  describe_frame --no-data:  median {nd_med * 1000:.1f} ms")
    print(
        f"  build_context (3000 tok):  median {ctx_med * 1000:.1f} ms, worst {ctx_worst * 1000:.1f} ms, "
        f"{len(ctx.render())} chars"
    )
    return [
        f"| pandas {rows:,} x {df.shape[1]} ({mem:.1f} GiB): `describe_frame` | {med * 1000:.1f} ms | "
        f"{worst * 1000:.1f} ms |",
        f"| same, `--no-data` | {nd_med * 1000:.1f} ms | |",
        f"| same, `build_context` (3,000-token budget) | {ctx_med * 1000:.1f} ms | {ctx_worst * 1000:.1f} ms |",
    ]


def bench_r(repeat: int) -> list[str]:
    try:
        import rpy2.robjects as ro
    except Exception as e:  # rpy2 missing or R does not load
        print(f"R: skipped ({type(e).__name__}: {e})")
        return [f"| R session, 50 data.frames | skipped: {type(e).__name__} | |"]
    from rsql_magic.context.rsession import describe_r_session

    ro.r(
        """
        for (i in 1:49) assign(sprintf("frame%02d", i),
          data.frame(id = 1:1000, value = rnorm(1000), group = factor(sample(letters[1:5], 1000, TRUE)),
                     label = as.character(1:1000), when = Sys.Date() + 0:999))
        big_r <- data.frame(x = runif(1e7), g = factor(sample(LETTERS, 1e7, TRUE)))
        """
    )
    med, worst, text = timed(lambda: describe_r_session(budget_chars=6000), repeat)
    nd_med, _, _ = timed(lambda: describe_r_session(no_data=True, budget_chars=6000), repeat)
    print("R session: 50 data.frames (49 x 1,000 rows, one 10M rows)")
    print(
        f"  describe_r_session:        median {med * 1000:.1f} ms, worst {worst * 1000:.1f} ms, "
        f"{len(str(text))} chars"
    )
    print(f"  describe_r_session --no-data: median {nd_med * 1000:.1f} ms")
    return [
        f"| R session, 50 data.frames (one 10M rows): `describe_r_session` | {med * 1000:.1f} ms | "
        f"{worst * 1000:.1f} ms |",
        f"| same, `--no-data` | {nd_med * 1000:.1f} ms | |",
    ]


def write_section(rows: list[str], args: argparse.Namespace) -> None:
    path = ROOT / "docs" / "benchmarks.md"
    path.parent.mkdir(exist_ok=True)
    body = "\n".join(
        [
            START,
            "## %%ask context capture (`bench/bench_context.py`)",
            "",
            f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d')}; median and worst of {args.repeat} runs.",
            "Column stats on frames longer than 10,000 rows come from a 10,000-row random sample; "
            "the frame is never scanned in full, so time does not grow with the row count.",
            "",
            "| what | median | worst |",
            "|---|---|---|",
            *rows,
            END,
        ]
    )
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if START in text and END in text:
        pre, rest = text.split(START, 1)
        post = rest.split(END, 1)[1]
        text = pre + body + post
    else:
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    path.write_text(text)
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    rows = bench_pandas(args.rows, args.repeat) + bench_r(args.repeat)
    if not args.no_write:
        write_section(rows, args)


if __name__ == "__main__":
    main()
