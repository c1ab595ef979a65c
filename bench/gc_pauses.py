"""Run a Python module with each garbage collection's pause written down (bench_pauses.py).

    python bench/gc_pauses.py OUT PYTHON -m MODULE [ARGS...]

The shape is a wrapper's (``start_service(wrap=...)``: the command it wraps follows), so the
interpreter and ``-m`` are read and skipped; MODULE runs in this process as ``python -m`` would
run it. Each collection appends a line ``wall-clock-seconds generation milliseconds`` to OUT as
it ends.
"""

from __future__ import annotations

import gc
import runpy
import sys
import time
from typing import Any


def main() -> None:
    path, module = sys.argv[1], sys.argv[4]
    sys.argv = [module, *sys.argv[5:]]
    began = [0.0]
    with open(path, "a", buffering=1) as out:  # line-buffered: each pause is on disk as it ends

        def timed(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                began[0] = time.perf_counter()
                return
            ms = (time.perf_counter() - began[0]) * 1000
            out.write(f"{time.time():.3f} {info['generation']} {ms:.3f}\n")

        gc.callbacks.append(timed)
        runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
