"""Benchmark: schema capture of a 500-table database (SQLite and DuckDB, PostgreSQL if reachable).

    .venv/bin/python bench/bench_schema.py [--tables 500] [--runs 7] [--pg] [--no-write]

Builds a schema of N tables (8 columns each, a primary key, a foreign key to the previous
table), then times ``capture_schema`` (the catalog read) and ``describe_connection`` (capture +
ranking + DDL within a 6,000-character budget), reporting the median and the worst of the
runs. Writes its section of docs/benchmarks.md between the ``<!-- bench_schema -->`` markers.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import replace_section  # noqa: E402

from rsql_sql.schema import capture_schema, describe_connection  # noqa: E402

MARK = "<!-- bench_schema -->"
QUESTION = "total value of t250 rows per name created last month"


def ddl(n: int) -> list[str]:
    out = []
    for i in range(n):
        fk = f", parent_id INTEGER REFERENCES t{i - 1:03d}(id)" if i else ", parent_id INTEGER"
        out.append(
            f"CREATE TABLE t{i:03d} (id INTEGER PRIMARY KEY, name VARCHAR(80) NOT NULL, "
            f"value DOUBLE PRECISION, qty INTEGER, created_at TIMESTAMP, note TEXT, "
            f"flag BOOLEAN{fk})"
        )
    return out


def timed(fn: Any, runs: int) -> tuple[float, float, Any]:
    times = []
    result = None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), max(times), result


def bench(label: str, conn: Any, runs: int) -> dict[str, Any]:
    capture_schema(conn)  # warm caches (type rendering, catalog pages)
    med, worst, schema = timed(lambda: capture_schema(conn), runs)
    dmed, dworst, text = timed(lambda: describe_connection(conn, QUESTION), runs)
    row = {
        "db": label,
        "tables": len(schema.tables),
        "columns": sum(len(t.columns) for t in schema.tables),
        "fks": sum(len(t.foreign_keys) for t in schema.tables),
        "capture_ms": med * 1000,
        "capture_worst_ms": worst * 1000,
        "describe_ms": dmed * 1000,
        "describe_worst_ms": dworst * 1000,
        "ddl_chars": len(text),
        "shown": text.count("CREATE TABLE"),
        "first": text.splitlines()[1].split(" (")[0],
    }
    print(
        f"{label:<11} {row['tables']} tables, {row['columns']} columns, {row['fks']} FKs: "
        f"capture {row['capture_ms']:.1f} ms (worst {row['capture_worst_ms']:.1f}), "
        f"describe {row['describe_ms']:.1f} ms (worst {row['describe_worst_ms']:.1f}); "
        f"DDL {row['ddl_chars']} chars, {row['shown']} tables shown, first: {row['first']}",
        flush=True,
    )
    return row


def write_section(rows: list[dict[str, Any]], n: int, runs: int) -> None:
    path = ROOT / "docs" / "benchmarks.md"
    path.parent.mkdir(exist_ok=True)
    lines = [
        MARK,
        "## SQL schema capture (`bench/bench_schema.py`)",
        "",
        f"{n} tables x 8 columns, a primary key and a foreign key each; median (worst) of "
        f"{runs} runs on {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}. *capture* reads the catalog (`capture_schema`); "
        "*describe* is capture + relevance ranking + DDL cut to 6,000 characters "
        f'(`describe_connection`, question: "{QUESTION}").',
        "",
        "| database | tables | columns | capture ms | describe ms | DDL chars | tables shown | first shown |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['db']} | {r['tables']} | {r['columns']} | {r['capture_ms']:.1f} "
            f"({r['capture_worst_ms']:.1f}) | {r['describe_ms']:.1f} ({r['describe_worst_ms']:.1f}) "
            f"| {r['ddl_chars']} | {r['shown']} | `{r['first'].replace('CREATE TABLE ', '')}` |"
        )
    lines.append(MARK)
    replace_section(path, MARK, lines)
    print(f"wrote {path.relative_to(ROOT)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tables", type=int, default=500)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--pg", action="store_true", help="also PostgreSQL at 127.0.0.1 (trust auth)")
    ap.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args()
    stmts = ddl(args.tables)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        conn = sqlite3.connect(path)
        conn.executescript(";\n".join(stmts) + ";")
        conn.commit()
        rows.append(bench("SQLite", conn, args.runs))
        conn.close()

        import duckdb

        con = duckdb.connect(str(Path(tmp) / "bench.duckdb"))
        for s in stmts:
            con.execute(s)
        rows.append(bench("DuckDB", con, args.runs))
        con.close()

    if args.pg:
        import psycopg
        import sqlalchemy as sa

        name = f"rsql_bench_{secrets.token_hex(4)}"
        admin = psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True)
        admin.execute(f"CREATE DATABASE {name}")
        try:
            eng = sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1/{name}")
            with eng.begin() as c:
                for s in stmts:
                    c.exec_driver_sql(s)
            rows.append(bench("PostgreSQL", eng, args.runs))
            eng.dispose()
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.close()
    if not args.no_write:
        write_section(rows, args.tables, args.runs)


if __name__ == "__main__":
    main()
