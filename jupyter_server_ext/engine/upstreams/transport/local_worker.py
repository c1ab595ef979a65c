"""The local model's own process: llama.cpp runs here, never inside the server.

A native crash, a hang or runaway memory in llama.cpp then costs one request, not the Jupyter
server and every notebook using it (docs/local-model.md). The parent (``engine.local``) starts
this module as ``python -m jupyter_server_ext.engine.upstreams.transport.local_worker '<json options>'`` and talks
JSON lines over the pipes:

parent -> child   {"id": 7, "kwargs": {...create_chat_completion arguments...}}
                  {"cancel": 7}
child -> parent   {"ready": true, "selftest_ms": 41.0} | {"fatal": "why the model cannot run"}
                  {"id": 7, "started": true}      the generation began (it waited in line before)
                  {"id": 7, "chunk": {...}}       one streamed chunk
                  {"id": 7, "done": {...}}        the whole completion (not streamed)
                  {"id": 7, "end": true}          after the last chunk, or when cancelled
                  {"id": 7, "error": "..."}

Generations run one at a time, in arrival order: a llama.cpp context is not thread-safe and
already uses every core it is given.
"""

from __future__ import annotations

import json
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, TextIO

# a multi-token prompt: a build that runs one-token prompts only (the AVX-512 fault) fails here
SELFTEST_MESSAGES = [{"role": "user", "content": "Reply with one word: are you ready?"}]

# A tiny model falls into loops ("mogr_mogr_mogr_...", one sentence again and again with another
# number): over the last LOOP_WINDOW tokens, a loop repeats most of its LOOP_N-token runs, which
# prose and code almost never do (measured in bench/bench_local_model.py).
LOOP_WINDOW = 96
LOOP_N = 4
LOOP_DISTINCT = 0.5
# Short cycles ("1.6, 1.6, 1.6, ...", "1 6 1 6 ...") end sooner: the last CYCLE_SPAN tokens (or
# words) each equal the one a period of 1 to CYCLE_MAX_PERIOD before, all but a few (a sampled
# loop drifts: "1.6, 1.6, 1.4, 1.4", while a list of names, "sql_max_chars", "sql_max_depth", ...,
# differs once in each period). The loop text an answer keeps is then about CYCLE_SPAN
# tokens; prose and code reach CYCLE_MATCH only in a loop (bench/bench_local_loops.py).
CYCLE_MAX_PERIOD = 8
CYCLE_SPAN = 32
CYCLE_MATCH = 0.92
# the generated text's tail checked for word cycles: enough tokens for CYCLE_SPAN + 8 words
WORDS_TAIL_TOKENS = 96
# a run of one mark is one word: a rule of "=" or "-" is a line, not a loop
_WORD = re.compile(r"[^\W\d_]+|\d|_|([^\w\s])\1*")


# The prompt format of a GGUF without a chat template of its own, by its architecture: llama.cpp
# would fall back to Llama 2's [INST] <<SYS>> format, which other families answer with garbage
# (Gemma 3 270M's package ships no template; bench/bench_local_model.py shows the difference).
FORMATS_BY_ARCHITECTURE = {
    "gemma": "gemma",
    "gemma2": "gemma",
    "gemma3": "gemma",
    "qwen2": "chatml",
    "llama": "llama-3",
}


def prompt_format(llm: Any, configured: str | None) -> tuple[str, str]:
    """``(format, how)``: the chat format `llm` is set to use, and how it was chosen: the
    configured one, the GGUF's own template, or a guess from its architecture."""
    if configured:
        llm.chat_format, llm.chat_handler = configured, None
        return configured, "configured"
    if "tokenizer.chat_template" in (llm.metadata or {}):
        return str(llm.chat_format), "the GGUF's own template"
    arch = str((llm.metadata or {}).get("general.architecture", ""))
    guess = FORMATS_BY_ARCHITECTURE.get(arch)
    if guess is None:
        return str(
            llm.chat_format
        ), f"no template in the GGUF and no known format for architecture {arch!r}"
    llm.chat_format, llm.chat_handler = guess, None
    return guess, f"no template in the GGUF: chosen for its architecture {arch!r}"


def cycle_period(items: Sequence[Any], span: int = CYCLE_SPAN) -> int:
    """The period (1 to CYCLE_MAX_PERIOD) of a cycle the last `span` items repeat, or 0: nearly
    all of them (CYCLE_MATCH) equal the item one period before."""
    for period in range(1, CYCLE_MAX_PERIOD + 1):
        if len(items) < span + period:
            break
        tail = items[-(span + period) :]
        same = sum(tail[i] == tail[i - period] for i in range(period, len(tail)))
        if same >= CYCLE_MATCH * span:
            return period
    return 0


def words(text: str) -> list[str]:
    """Words as the loop measure counts them: runs of letters; each digit, underscore and
    run of one punctuation mark alone ("mogr_mogr" and "1.6, 1.6" are cycles of words)."""
    return [m.group(0) for m in _WORD.finditer(text.lower())]


def looping(tokens: Sequence[int], text: str = "") -> bool:
    """Are the last tokens of a generation (`text`: their words) a loop? A short cycle of
    tokens or of words (`cycle_period`), or fewer than half of the LOOP_N-token runs of the
    last LOOP_WINDOW tokens distinct (a long one: a sentence again with another number)."""
    if cycle_period(tokens) or (text and cycle_period(words(text))):
        return True
    if len(tokens) < LOOP_WINDOW:
        return False
    window = list(tokens[-LOOP_WINDOW:])
    runs = LOOP_WINDOW - LOOP_N + 1
    distinct = {tuple(window[i : i + LOOP_N]) for i in range(runs)}
    return len(distinct) < LOOP_DISTINCT * runs


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


class _Out:
    """The protocol channel: one JSON object per line, written by one thread only."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def send(self, **msg: Any) -> None:
        self.stream.write(json.dumps(msg) + "\n")
        self.stream.flush()


def _read_requests(jobs: queue.Queue[Any], cancelled: set[int]) -> None:
    """Reader thread: requests go in line, cancellations take effect at once."""
    for line in sys.stdin:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if "cancel" in msg:
            cancelled.add(int(msg["cancel"]))
        elif "id" in msg:
            jobs.put(msg)
    jobs.put(None)  # the parent closed our stdin (shutdown) or died: end


def _generate(llm: Any, job: dict[str, Any], cancelled: set[int], out: _Out) -> None:
    from llama_cpp import LogitsProcessorList

    rid = int(job["id"])
    kwargs = dict(job["kwargs"])
    stream = bool(kwargs.get("stream"))
    stop_loops = bool(job.get("stop_loops", True))
    eos = llm.token_eos()
    prompt_len: list[int] = []  # the tokens before the first generated one
    sampled = [0]  # tokens sampled: one call of the processor each

    def end_when_cancelled(input_ids: Any, scores: Any) -> Any:
        # create_chat_completion takes no stopping criteria: forcing end-of-sequence ends the
        # generation at the next token, streamed or not
        if not prompt_len:
            prompt_len.append(len(input_ids))
        sampled[0] += 1
        if rid in cancelled or (stop_loops and _loops(input_ids[prompt_len[0] :])):
            scores[:] = -float("inf")
            scores[eos] = 0.0
        return scores

    def _loops(made: Sequence[int]) -> bool:
        if len(made) < CYCLE_SPAN:
            return False
        last = [int(t) for t in made[-max(WORDS_TAIL_TOKENS, LOOP_WINDOW) :]]
        return looping(last, llm.detokenize(last[-WORDS_TAIL_TOKENS:]).decode("utf-8", "replace"))

    out.send(id=rid, started=True)
    result = llm.create_chat_completion(
        **kwargs, logits_processor=LogitsProcessorList([end_when_cancelled])
    )
    if not stream:
        out.send(id=rid, done=result)
        return
    finish = None
    for chunk in result:
        if rid in cancelled:
            break
        out.send(id=rid, chunk=chunk)
        for choice in chunk.get("choices") or ():
            finish = choice.get("finish_reason") or finish
    # llama.cpp's stream says nothing of usage: counted here, as its JSON answer counts it (the
    # end-of-sequence token sampled last is not part of the answer)
    made = max(0, sampled[0] - (1 if finish == "stop" else 0))
    before = prompt_len[0] if prompt_len else 0
    usage = {"prompt_tokens": before, "completion_tokens": made, "total_tokens": before + made}
    out.send(id=rid, end=True, usage=usage)


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity, which a container's cpuset or `taskset`
    narrows (os.cpu_count() counts the whole machine)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows: no affinity to read
        return os.cpu_count() or 1


def default_threads() -> int:
    """The usable CPUs, at most 4 (a small model gains little from more); the upstream's
    `n_threads` overrides it."""
    return max(1, min(4, usable_cpus()))


def main(argv: list[str]) -> int:
    options = json.loads(argv[1]) if len(argv) > 1 else {}
    # The protocol gets a private copy of stdout; fd 1 then points at stderr, so whatever
    # llama.cpp's C code prints cannot corrupt a message.
    out = _Out(os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8"))
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        from llama_cpp import Llama

        threads = int(options.get("n_threads") or default_threads())
        llm = Llama(
            model_path=options["model_path"],
            n_ctx=int(options.get("n_ctx", 8192)),
            n_threads=threads,
            verbose=False,
        )
        chat_format, how = prompt_format(llm, options.get("chat_format") or None)
        t0 = time.perf_counter()
        answer = llm.create_chat_completion(
            messages=SELFTEST_MESSAGES,  # type: ignore[arg-type]  # its TypedDicts; ours are plain dicts
            max_tokens=4,
            temperature=0,
        )
        if not isinstance(answer, dict) or not answer.get("choices"):
            raise RuntimeError("the self-test completion has no choices")
        selftest_ms = (time.perf_counter() - t0) * 1000
    except Exception as exc:  # a segfault never gets here: the parent sees the exit signal
        out.send(fatal=f"{type(exc).__name__}: {exc}")
        return 1
    # the prompt format: the GGUF's own chat template unless llama.cpp recognised a known one
    out.send(
        ready=True,
        selftest_ms=round(selftest_ms, 1),
        pid=os.getpid(),
        threads=threads,
        chat_format=chat_format,
        chat_format_how=how,
    )

    jobs: queue.Queue[Any] = queue.Queue()
    cancelled: set[int] = set()
    threading.Thread(target=_read_requests, args=(jobs, cancelled), daemon=True).start()
    max_rss = float(options.get("max_rss_mb") or 0)
    while (job := jobs.get()) is not None:
        rid = int(job["id"])
        if rid in cancelled:  # gave up while waiting in line
            out.send(id=rid, end=True)
        else:
            try:
                _generate(llm, job, cancelled, out)
            except Exception as exc:
                out.send(id=rid, error=f"{type(exc).__name__}: {exc}")
        cancelled.discard(rid)
        if max_rss and _rss_mb() > max_rss:
            # memory grew past the limit between requests: leave cleanly, the parent restarts us
            print(
                f"local model process uses {_rss_mb():.0f} MiB > {max_rss:.0f} MiB; exiting",
                file=sys.stderr,
            )
            return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
