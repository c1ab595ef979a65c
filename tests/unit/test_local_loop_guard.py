"""The local model's repeat guard tells a short loop from prose, code and lists (issue 55, item 7).

The guard runs in the model's worker on every sampled token; these are its measures on text the
small model really wrote and on text that does not loop. The whole path, a real model through the
proxy, is tests/e2e/test_local_model_loops.py.
"""

from __future__ import annotations

from pathlib import Path

from jupyter_server_ext.engine.upstreams.transport.local_worker import (
    CYCLE_SPAN,
    cycle_period,
    looping,
    words,
)

ROOT = Path(__file__).resolve().parents[2]


def test_short_cycles_of_words_are_loops_even_when_they_drift() -> None:
    assert cycle_period(words("1 6 " * 20)) == 2
    assert cycle_period(words("mogr_" * 20)) == 2
    # SmolLM2's answer to the demo's R question: the number drifts every five repeats
    drifting = "2.875, " + "1.6, " * 5 + "1.4, " * 5 + "1.3, " * 5 + "1.2, " * 2
    assert cycle_period(words(drifting)) == 4
    # tokens alone: each of the last 32 equals the one 4 before (9 copies of the cycle)
    assert looping([1, 2, 3, 4] * 9, "")
    assert not looping([1, 2, 3, 4] * 8, "")  # not yet


def test_prose_code_lists_and_rules_are_not_loops() -> None:
    span = CYCLE_SPAN + 8
    for path in (
        ROOT / "docs" / "local-model.md",
        ROOT / "jupyter_server_ext" / "engine" / "upstreams" / "specs.py",
    ):
        w = words(path.read_text())
        assert not [end for end in range(span, len(w)) if cycle_period(w[end - span : end])], path
    names = ", ".join(f'"sql_max_{n}"' for n in ("chars", "depth", "nesting", "rows", "cols", "ms"))
    assert not cycle_period(words(names))  # one word differs in every period
    assert not cycle_period(words("=" * 80 + "\n" + "-" * 80 + "\n| a | b |\n"))
    assert not looping(list(range(200)), "one two three " * 3)
