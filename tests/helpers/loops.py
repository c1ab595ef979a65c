"""How long an answer loops: the one measure the local model's loop test and its bench share
(tests/e2e/test_local_model_loops.py, bench/bench_local_loops.py). Each caller splits the text
into words its own way; the scan over them is this one."""

from __future__ import annotations

from collections.abc import Sequence

MAX_PERIOD = 8  # the longest cycle, in words, that counts as a loop


def longest_loop_run(words: Sequence[str]) -> int:
    """Words in the longest stretch where each word equals the word a period (1 to 8) before,
    but for single words at least 8 apart (a loop that drifts: "1.6, 1.6, 1.4, 1.4"); the
    stretch counts its first cycle too. 0: no word repeats that way."""
    best = 0
    for period in range(1, MAX_PERIOD + 1):
        run = since_miss = 0
        for i in range(period, len(words)):
            if words[i] == words[i - period]:
                run, since_miss = run + 1, since_miss + 1
            elif run and since_miss >= 8:  # one word off in a long run: the loop goes on
                run, since_miss = run + 1, 0
            else:
                run = since_miss = 0
            if run:
                best = max(best, run + period)
    return best
