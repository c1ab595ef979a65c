"""Benchmark: do the local model's answers loop? Before and after the repeat guard (issue 55, item 7).

    nice .venv/bin/python bench/bench_local_loops.py [--runs 4] [--demo-runs 1] [--no-write]
    nice .venv/bin/python bench/bench_local_loops.py --capture   # record the demo's prompts again

With no provider key the demo (notebooks/demo.ipynb) is answered by SmolLM2-135M through the
local upstream (engine/upstreams/transport/local_worker.py). Two measurements, each for the
guard as it was (the worker and its spec defaults at ``--before``, a commit) and as it is now:

1. **The demo's prompts.** The chat requests the demo sends, recorded once by running the notebook
   through a proxy whose only upstream is the loopback fake provider (``--capture``; kept in
   ``bench/questions/demo_prompts.jsonl``), sent straight to the model's worker process, as the
   proxy sends them (its kwargs, ``max_tokens`` 256 when the demo sends none), once each at the
   demo's temperature (0: greedy, the same answer every time) and ``--runs`` times each at
   ``--hot`` (sampled, seeds 1..runs: a user who raises the temperature).
2. **The demo itself**, ``--demo-runs`` times: the notebook run headless through a real Jupyter
   server and proxy, as ``make demo`` runs it (``bench_local_model.run_one``); for *before*, the
   server runs a copy of ``jupyter_server_ext`` whose worker and spec are ``--before``'s.

An answer **loops** when it holds a run of LOOP_RUN_WORDS (48) words or more in which each word
equals the one a period of 1 to 8 words before (the same cycle repeated: "1 . 6 , 1 . 6 , ...",
words as ``local_worker.words`` splits them: runs of letters, each digit and mark alone). The
guard ends a loop within about its 32-token span, so *longest loop run* shows the tail it leaves.
The guard's false alarms: every position of this repository's docs, notebooks and Python
sources, scanned with the word check (``local_worker.cycle_period``).

Writes its section of docs/benchmarks.md between the ``<!-- bench_local_loops -->`` markers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_local_model import answers_of, run_one  # noqa: E402
from common import replace_section  # noqa: E402
from run_demo import NOTEBOOK, proxy_server  # noqa: E402

from jupyter_server_ext.engine.upstreams.specs import UpstreamSpec  # noqa: E402
from jupyter_server_ext.engine.upstreams.transport import local_worker  # noqa: E402
from jupyter_server_ext.engine.upstreams.transport.local import default_gguf_path  # noqa: E402
from tests.helpers import loops as loops_measure  # noqa: E402

MARK = "<!-- bench_local_loops -->"
PROMPTS = ROOT / "bench" / "questions" / "demo_prompts.jsonl"
WORKER = "jupyter_server_ext/engine/upstreams/transport/local_worker.py"
SPECS = "jupyter_server_ext/engine/upstreams/specs.py"
BEFORE = "d6f6afd580e4a1e03467d79a7a70d82b3b3609cb"  # the guard before issue 55, item 7
LOOP_RUN_WORDS = 48
# each guard under other penalties too (1.0: llama.cpp's own sampling; 1.1: before's; 1.3)
ABLATION_PENALTIES = (1.0, 1.1, 1.3)
ANSWER_TIMEOUT_S = 300.0  # one answer of 256 tokens on a busy 2-core machine
# one thread: on a shared machine two spin-waiting threads are slower than one (same answers?
# greedy sums may round differently; the proxy runs two)
N_THREADS = 1


def longest_loop_run(text: str) -> int:
    """The longest loop (tests/helpers/loops.py) in words as ``local_worker.words`` splits them."""
    return loops_measure.longest_loop_run(local_worker.words(text))


def loops(text: str) -> bool:
    return longest_loop_run(text) >= LOOP_RUN_WORDS


# -- the demo's prompts -------------------------------------------------------------------


def capture_prompts() -> list[dict[str, Any]]:
    """Run the demo through a proxy whose upstream is the loopback fake provider; the chat
    requests it received, as the proxy forwarded them."""
    from tests.helpers import upstreams_for
    from tests.helpers.fake_provider import FakeProvider, KeyPolicy

    fp = FakeProvider({"sk-bench-loops": KeyPolicy("fake")})
    fp.word_delay = 0.0
    fp.respond = lambda body: "A short answer."
    with fp, tempfile.TemporaryDirectory(prefix="rsql-bench-loops-") as tmp:
        work = Path(tmp)
        config = work / "rsql_config.py"
        config.write_text(
            f"c.RSQLProxy.upstreams = {upstreams_for(fp)!r}\n"
            "c.RSQLProxy.default_model = 'fake-small'\n"
        )
        with proxy_server(config, work) as (_, _, env):
            env["RSQL_REPLAY"] = "off"
            _execute(env, work / "demo-run.ipynb")
        nb = json.loads((work / "demo-run.ipynb").read_text())
    asked = [a["question"] for a in answers_of(nb)]
    out = []
    for rec in fp.received:
        if rec.path != "chat/completions":
            continue
        body = rec.body
        user = "\n".join(str(m.get("content")) for m in body["messages"] if m["role"] == "user")
        question = next((q for q in map(_asked_in(user), asked) if q), "")
        out.append(
            {
                "question": question,
                "messages": body["messages"],
                "temperature": body.get("temperature"),
                "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens"),
            }
        )
    return out


def _asked_in(user: str) -> Any:
    """The question as the prompt holds it: a line magic's (``%ask --df sales ... question``)
    without its leading options."""

    def found(question: str) -> str:
        parts = question.split()
        for i in range(len(parts)):
            if " ".join(parts[i:]) in user and len(parts) - i >= 3:
                return " ".join(parts[i:])
        return ""

    return found


def _execute(env: dict[str, str], out: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter",
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "--ExecutePreprocessor.timeout=900",
            "--allow-errors",
            str(NOTEBOOK),
            "--output",
            str(out),
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=3600,
    )


class Worker:
    """One local_worker process (this tree's, or a file of another commit), driven over its
    JSON-lines protocol as engine/upstreams/transport/local.py drives it."""

    def __init__(self, command: list[str], model_path: str) -> None:
        self.proc = subprocess.Popen(
            [
                *command,
                json.dumps({"model_path": model_path, "n_ctx": 8192, "n_threads": N_THREADS}),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        self.ids = 0
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        ready = self._line(180.0)
        if not ready.get("ready"):
            raise RuntimeError(f"the worker did not start: {ready}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")  # it exited

    def _line(self, timeout: float) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            self.proc.kill()
            raise RuntimeError(f"the worker gave nothing within {timeout:g} s") from None
        if not line:
            raise RuntimeError("the worker exited")
        return dict(json.loads(line))

    def answer(
        self, prompt: dict[str, Any], *, temperature: float, seed: int | None, repeat_penalty: float
    ) -> dict[str, Any]:
        self.ids += 1
        kwargs = {  # as LocalTransport.send builds them
            "messages": prompt["messages"],
            "max_tokens": prompt.get("max_tokens") or 256,
            "temperature": temperature,
            "top_p": 0.95,
            "repeat_penalty": repeat_penalty,
            "frequency_penalty": 0.0,
            "presence_penalty": 0.0,
            "stop": None,
            "seed": seed,
            "stream": False,
        }
        assert self.proc.stdin is not None
        self.proc.stdin.write(
            json.dumps({"id": self.ids, "kwargs": kwargs, "stop_loops": True}) + "\n"
        )
        self.proc.stdin.flush()
        t0 = time.monotonic()
        while True:
            msg = self._line(ANSWER_TIMEOUT_S)
            if "error" in msg:
                raise RuntimeError(msg["error"])
            if "done" in msg:
                choice = msg["done"]["choices"][0]
                return {
                    "text": choice["message"]["content"] or "",
                    "finish": choice.get("finish_reason"),
                    "tokens": msg["done"]["usage"]["completion_tokens"],
                    "seconds": time.monotonic() - t0,
                }

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def git_show(rev: str, path: str) -> str:
    return subprocess.run(
        ["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout


def default_penalty(rev: str | None) -> float:
    """The spec's default repeat_penalty, now or at commit `rev`."""
    if rev is None:
        default: Any = UpstreamSpec.__dataclass_fields__["repeat_penalty"].default
        return float(default)
    for line in git_show(rev, SPECS).splitlines():
        if line.strip().startswith("repeat_penalty: float ="):
            return float(line.split("=", 1)[1])
    raise RuntimeError(f"no repeat_penalty default in {SPECS} at {rev}")


@contextlib.contextmanager
def worker_command(rev: str | None, work: Path) -> Iterator[list[str]]:
    if rev is None:
        yield [sys.executable, "-m", "jupyter_server_ext.engine.upstreams.transport.local_worker"]
        return
    path = work / f"local_worker_{rev[:8]}.py"  # it imports only the standard library and llama_cpp
    path.write_text(git_show(rev, WORKER))
    yield [sys.executable, str(path)]


def summarize(answers: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(answers)
    runs = [longest_loop_run(a["text"]) for a in answers]
    return {
        "n": n,
        "loops": sum(r >= LOOP_RUN_WORDS for r in runs),
        "longest_run": max(runs, default=0),
        "finish": {f: sum(a["finish"] == f for a in answers) for f in ("stop", "length")},
        "tokens_median": statistics.median(a["tokens"] for a in answers) if answers else 0,
        "seconds_median": statistics.median(a["seconds"] for a in answers) if answers else 0.0,
    }


def bench_prompts(
    prompts: list[dict[str, Any]], rev: str | None, runs: int, hot: float, work: Path, model: str
) -> dict[str, Any]:
    penalty = default_penalty(rev)
    out: dict[str, Any] = {"repeat_penalty": penalty}
    with worker_command(rev, work) as command:
        worker = Worker(command, model)
        try:
            # the demo's temperature, 0, is greedy: one answer per prompt (the same each run);
            # then the guard alone, under weaker penalties (greedy too)
            plan: list[tuple[str, float | None, int, float]] = [
                ("demo", None, 1, penalty),
                ("hot", hot, runs, penalty),
                *((f"penalty {p:g}", None, 1, p) for p in ABLATION_PENALTIES),
            ]
            for label, temperature, n, pen in plan:
                answers = []
                for prompt in prompts:
                    for run in range(n):
                        t = (
                            (prompt.get("temperature") or 0.0)
                            if temperature is None
                            else temperature
                        )
                        a = worker.answer(prompt, temperature=t, seed=run + 1, repeat_penalty=pen)
                        answers.append(
                            {**a, "question": prompt["question"], "temperature": t, "label": label}
                        )
                out[label] = summarize(answers)
                out[label + "_answers"] = answers
                print(rev or "tree", label, json.dumps(out[label]), flush=True)
        finally:
            worker.close()
    return out


# -- the demo, through the proxy --------------------------------------------------------


@contextlib.contextmanager
def package_at(rev: str | None, work: Path) -> Iterator[None]:
    """The Jupyter server (and its worker) import jupyter_server_ext from a copy whose worker
    and spec are `rev`'s: PYTHONPATH, and a working folder outside the checkout."""
    if rev is None:
        yield
        return
    copy = work / "pkg"
    shutil.copytree(
        ROOT / "jupyter_server_ext",
        copy / "jupyter_server_ext",
        ignore=shutil.ignore_patterns("__pycache__", "node_modules", "static"),
    )
    for path in (WORKER, SPECS):
        (copy / path).write_text(git_show(rev, path))
    old_env, old_cwd = os.environ.get("PYTHONPATH"), os.getcwd()
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(copy), old_env) if p)
    os.chdir(work)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        if old_env is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old_env


def bench_demo(rev: str | None, runs: int, model: str) -> dict[str, Any]:
    answers: list[dict[str, Any]] = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="rsql-bench-loops-") as tmp:
            with package_at(rev, Path(tmp)):
                got = run_one(model, {}, Path(tmp))
            answers += [
                {
                    "text": a["answer"],
                    "finish": None,
                    "tokens": 0,
                    "seconds": a["seconds"] or 0.0,
                    "question": a["question"],
                }
                for a in got
            ]
    summary = summarize(answers)
    print(rev or "tree", "demo notebook", json.dumps(summary), flush=True)
    return {**summary, "answers": answers}


# -- false alarms --------------------------------------------------------------------------


def false_alarms() -> tuple[int, int, list[str]]:
    """(positions where the word check fires, positions checked, where) over the repository's
    docs, notebooks and Python sources: text that does not loop."""
    files = [
        *sorted((ROOT / "docs").rglob("*.md")),
        *sorted((ROOT / "notebooks").glob("*.ipynb")),
        *(
            p
            for d in ("rsql_magic", "rsql_sql", "jupyter_server_ext")
            for p in sorted((ROOT / d).rglob("*.py"))
        ),
    ]
    fired, checked, where = 0, 0, []
    span = local_worker.CYCLE_SPAN + local_worker.CYCLE_MAX_PERIOD
    for f in files:
        if f.name == "benchmarks.md":  # it quotes the looping answers themselves
            continue
        w = local_worker.words(f.read_text(errors="replace"))
        for end in range(span, len(w) + 1):
            checked += 1
            if local_worker.cycle_period(w[end - span : end]):
                fired += 1
                where.append(f"{f.relative_to(ROOT)}: {' '.join(w[end - 16 : end])}")
    return fired, checked, where


# -- the report --------------------------------------------------------------------------


def write_section(result: dict[str, Any], args: argparse.Namespace) -> None:
    p = result["prompts"]
    n_prompts = len(result["prompt_questions"])
    lines = [
        MARK,
        "## The local model's loops, before and after the repeat guard (`bench/bench_local_loops.py`)",
        "",
        f"On {platform.machine()}, {os.cpu_count()} cores (shared), {time.strftime('%Y-%m-%d')}, "
        f"SmolLM2-135M-Instruct. *Before*: the worker and spec defaults at `{args.before[:7]}` "
        "(repeat penalty "
        f"{p['before']['repeat_penalty']:g}; an answer ended once fewer than half of the 4-token "
        "runs of its last 96 tokens are distinct). *After*: this tree (repeat penalty "
        f"{p['after']['repeat_penalty']:g}; also ended once its last 32 tokens, or words, repeat a "
        "cycle of 1 to 8 with at most 2 exceptions). An answer *loops* when it holds a run of "
        f"{LOOP_RUN_WORDS} or more words each equal to the word 1 to 8 before it (one cycle "
        "repeated); *longest run* is the longest such run in any answer, the loop text an answer "
        "keeps.",
        "",
        f"The demo's prompts: the {n_prompts} chat requests `notebooks/demo.ipynb` sends "
        "(`bench/questions/demo_prompts.jsonl`), sent to the model's worker at the demo's "
        "temperature (0: greedy, one answer each; the same every run) and {runs} times each "
        "sampled at {hot:g} (seeds 1 to {runs}). The demo: the "
        "notebook run headless through a Jupyter server and the proxy, {demo_runs} time(s).".format(
            runs=args.runs, hot=args.hot, demo_runs=args.demo_runs
        ),
        "",
        "| what | guard | answers | loop | longest run (words) | finish stop / length "
        "| tokens (median) | seconds (median) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = [
        ("demo prompts, temperature 0", "demo"),
        (f"demo prompts, temperature {args.hot:g}", "hot"),
    ]
    rows += [
        (f"demo prompts, temperature 0, repeat penalty {p:g}", f"penalty {p:g}")
        for p in ABLATION_PENALTIES
    ]
    for what, key in rows:
        for guard in ("before", "after"):
            if key not in p[guard]:
                continue
            s = p[guard][key]
            lines.append(
                f"| {what} | {guard} | {s['n']} | {s['loops']}/{s['n']} | {s['longest_run']} "
                f"| {s['finish']['stop']} / {s['finish']['length']} | {s['tokens_median']:g} "
                f"| {s['seconds_median']:.1f} |"
            )
    for guard in ("before", "after"):
        s = result["demo"].get(guard)
        if s:
            lines.append(
                f"| the demo notebook | {guard} | {s['n']} | {s['loops']}/{s['n']} | {s['longest_run']} "
                f"| - | - | {s['seconds_median']:.1f} |"
            )
    fired, checked, _ = result["false_alarms"]
    lines += [
        "",
        f"False alarms of the word check over this repository's docs, notebooks and Python "
        f"sources (text that does not loop): {fired} of {checked:,} positions.",
        "",
    ]

    def answers_of(guard: str) -> list[dict[str, Any]]:
        return [a for key, got in p[guard].items() if key.endswith("_answers") for a in got]

    # the longest loop before, and the same prompt and sampling after: the tail the guard leaves
    worst = max(answers_of("before"), key=lambda a: longest_loop_run(a["text"]), default=None)
    if worst is not None and loops(worst["text"]):
        same = next(
            (
                a
                for a in answers_of("after")
                if (a["label"], a["question"]) == (worst["label"], worst["question"])
            ),
            None,
        )
        for title, a in (("before", worst), ("after", same)):
            if a is not None:
                lines += [
                    f'{title.capitalize()}, "{a["question"][:60]}", {a["label"]}: '
                    f"the answer's last 300 characters ({a['tokens']} tokens, finish "
                    f"{a['finish']}, longest run {longest_loop_run(a['text'])} words):",
                    "",
                    "~~~~text",
                    a["text"].strip()[-300:],
                    "~~~~",
                    "",
                ]
    lines.append(MARK)
    replace_section(ROOT / "docs" / "benchmarks.md", MARK, lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=4, help="answers per prompt and temperature")
    ap.add_argument("--hot", type=float, default=0.8, help="the sampled temperature")
    ap.add_argument(
        "--demo-runs", type=int, default=1, help="demo notebook runs per guard (0: none)"
    )
    ap.add_argument(
        "--before", default=BEFORE, help="the commit whose worker and spec are 'before'"
    )
    ap.add_argument("--capture", action="store_true", help=f"record {PROMPTS.name} again first")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md")
    ap.add_argument("--dump", type=Path, help="write every answer to this JSON file")
    args = ap.parse_args()
    try:
        model = default_gguf_path()
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.capture or not PROMPTS.exists():
        prompts = capture_prompts()
        PROMPTS.write_text("".join(json.dumps(p) + "\n" for p in prompts))
        print(f"recorded {len(prompts)} prompts in {PROMPTS}", flush=True)
    prompts = [json.loads(line) for line in PROMPTS.read_text().splitlines() if line.strip()]
    result: dict[str, Any] = {
        "prompt_questions": [p["question"] for p in prompts],
        "prompts": {},
        "demo": {},
    }
    with tempfile.TemporaryDirectory(prefix="rsql-bench-loops-") as tmp:
        for guard, rev in (("before", args.before), ("after", None)):
            result["prompts"][guard] = bench_prompts(
                prompts, rev, args.runs, args.hot, Path(tmp), model
            )
    for guard, rev in (("before", args.before), ("after", None)):
        if args.demo_runs > 0:
            result["demo"][guard] = bench_demo(rev, args.demo_runs, model)
    result["false_alarms"] = false_alarms()
    print("false alarms:", result["false_alarms"][:2], *result["false_alarms"][2][:5], sep="\n  ")
    if args.dump:
        args.dump.write_text(json.dumps(result, indent=1))
    if not args.no_write:
        write_section(result, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
