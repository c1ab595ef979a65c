"""The values bench_retrieval's questions name, made to sit in their columns, and decoys.

After the tables are filled (``retrieval_rows``), :func:`plant`:

- makes every value a question names (its gold SQL's ``col = 'X'``, ``IN (...)``, ``LIKE``, or
  its ``"values": {"db.table.column": "X" or [...]}``) sit in its column's first 1000 rows (the
  rows ``capture_values`` reads): a cell of those rows overwritten when it is not there already,
  one whose value is repeated (so a categorical column of at most 50 values stays categorical),
  never one holding a value another question names;
- plants decoys: for every third question naming a value (by id), its first value also in a
  categorical text column of a table of another schema (a seeded choice among columns of at
  most 40 values), as "normal" of a medical question is a value of a card game's
  ``cards.layout``; and a question's own ``"decoys": {"db.table.column": "word"}`` (a common
  word of the question that is a value of an unrelated table) as written.

It returns what it did (values already there, planted, skipped; decoys); the warehouse keeps
that beside its file (``python bench/retrieval_warehouse.py --decoys`` lists it).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from retrieval_rows import seeded

SAMPLE = 1000  # capture_values reads a column's first 1000 rows
DECOY_EVERY = 3  # one question naming a value in three gets a decoy in an unrelated table
QUESTIONS = Path(__file__).resolve().parent / "questions"


def _sql_values(sql: str, tables: list[str]) -> list[tuple[str, str, str, str]]:
    """(table, column, value, op) the gold SQL compares with a string literal."""
    import sqlglot
    from sqlglot import exp

    tree = sqlglot.parse_one(sql, read="duckdb")
    alias = {}
    for t in tree.find_all(exp.Table):
        full = f"{t.db}.{t.name}" if t.db else t.name
        alias[t.alias_or_name.lower()] = full
    out = []
    for node in tree.find_all(exp.EQ, exp.In, exp.Like, exp.ILike):
        col = node.this
        if not isinstance(col, exp.Column):
            continue
        lits = node.expressions if isinstance(node, exp.In) else [node.expression]
        op = "like" if isinstance(node, (exp.Like, exp.ILike)) else "="
        for lit in lits:
            if isinstance(lit, exp.Literal) and lit.is_string:
                owner = alias.get(col.table.lower(), "") if col.table else ""
                cands = [owner] if owner else tables
                out += [(t, col.name, lit.this, op) for t in cands]
    return out


def value_specs() -> list[dict[str, Any]]:
    """Every question's named values: {"id", "tables", "values": [(table, col, value, op)],
    "decoys": [(table, col, value)]} in id order; a column is resolved against the
    warehouse by :func:`plant` (a SQL column without its table may be any of the question's)."""
    out = []
    for path in sorted(QUESTIONS.glob("retrieval*.jsonl")):
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            q = json.loads(line)
            vals = _sql_values(q["sql"], q["tables"]) if "sql" in q else []
            for ref, v in q.get("values", {}).items():
                t, c = ref.rsplit(".", 1)
                vals += [(t, c, x, "=") for x in ([v] if isinstance(v, str) else v)]
            dec = [(*ref.rsplit(".", 1), v) for ref, v in q.get("decoys", {}).items()]
            if vals or dec:
                out.append({"id": q["id"], "tables": q["tables"], "values": vals, "decoys": dec})
    return sorted(out, key=lambda s: s["id"])


def digest() -> str:
    """Of the values to plant: part of the warehouse's file name, so that new questions
    rebuild it."""
    return hashlib.sha256(json.dumps(value_specs()).encode()).hexdigest()[:8]


def _split(ref: str) -> tuple[str, str]:
    db, _, table = ref.partition(".")
    return db, table


def _columns(con: Any, ref: str) -> dict[str, tuple[str, str]]:
    db, table = _split(ref)
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? AND lower(table_name) = lower(?)",
        [db, table],
    ).fetchall()
    return {c.lower(): (c, t) for c, t in rows}


def _table_name(con: Any, ref: str) -> str:
    db, table = _split(ref)
    (name,) = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = ? "
        "AND lower(table_name) = lower(?)",
        [db, table],
    ).fetchone()
    return f'"{db}"."{name}"'


def _present(con: Any, tq: str, col: str, value: str, op: str) -> bool:
    cmp = "LIKE" if op == "like" else "="
    sql = f'SELECT count(*) FROM (SELECT "{col}" AS c FROM {tq} LIMIT {SAMPLE}) WHERE CAST(c AS VARCHAR) {cmp} ?'
    return bool(con.execute(sql, [value]).fetchone()[0])


def _put(con: Any, tq: str, col: str, value: str, protected: set[str], salt: str) -> int | None:
    """Overwrite one cell of the first rows with `value`; its rowid. A cell whose value is
    repeated there (or empty) is taken, so the column's distinct values grow by one at most,
    and when they are 50 already a value held once is replaced instead: a categorical column
    stays so. Never a value another question names."""
    rows = con.execute(f'SELECT rowid, "{col}" FROM {tq} LIMIT {SAMPLE}').fetchall()
    if not rows:
        return None
    count: dict[Any, int] = {}
    for _, v in rows:
        count[v] = count.get(v, 0) + 1
    distinct = len([v for v in count if v is not None])
    free = [(r, v) for r, v in rows if str(v) not in protected]
    if distinct == 50:
        pick = [r for r, v in free if count[v] == 1 and v is not None]
    else:
        pick = [r for r, v in free if v is None or count[v] > 1]
    pick = pick or [r for r, _ in free]
    if not pick:
        return None
    rowid = seeded(salt).choice(pick)
    con.execute(f'UPDATE {tq} SET "{col}" = ? WHERE rowid = ?', [value, rowid])
    return int(rowid)


def _decoy_hosts(con: Any, schemas: list[str]) -> list[tuple[str, str]]:
    """(table, column) of categorical text columns of `schemas` (2 to 40 values in the first
    rows, none longer than 40 characters, not numbers, dates or R's row names): where a decoy
    may go, as capture_values would read it."""
    out = []
    for db, table, col in con.execute(
        "SELECT table_schema, table_name, column_name FROM information_schema.columns "
        "WHERE data_type = 'VARCHAR' AND column_name <> 'rownames' ORDER BY ALL"
    ).fetchall():
        if db not in schemas:
            continue
        n, longest, numbers = con.execute(
            f"SELECT count(DISTINCT c), max(length(c)), "
            f"bool_and(regexp_full_match(c, '[-0-9.: T]+')) FROM (SELECT \"{col}\" AS c "
            f'FROM "{db}"."{table}" LIMIT {SAMPLE})'
        ).fetchone()
        if n and 2 <= n <= 40 and (longest or 0) <= 40 and not numbers:
            out.append((f"{db}.{table}", col))
    return out


def plant(con: Any, synthesized: list[str]) -> dict[str, Any]:
    """Make every named value sit in its column, plant the decoys; what was done."""
    specs = value_specs()
    protected: dict[tuple[str, str], set[str]] = {}
    resolved = []
    for s in specs:
        for t, c, v, op in s["values"]:
            cols = _columns(con, t)
            if c.lower() not in cols:
                continue  # a SQL column of another of the question's tables
            col, typ = cols[c.lower()]
            resolved.append((s["id"], t, col, typ, v, op))
            protected.setdefault((t.lower(), col.lower()), set()).add(v)
    report: dict[str, Any] = {"present": [], "planted": [], "skipped": [], "decoys": []}
    for qid, t, col, typ, v, op in resolved:
        tq = _table_name(con, t)
        if _present(con, tq, col, v, op):
            report["present"].append([qid, f"{t}.{col}", v])
            continue
        value = v.strip("%") if op == "like" else v
        if typ != "VARCHAR" or "%" in value or "_" in value and op == "like":
            report["skipped"].append([qid, f"{t}.{col}", v])
            continue
        rowid = _put(con, tq, col, value, protected[(t.lower(), col.lower())], f"{qid} {t} {v}")
        report["planted" if rowid is not None else "skipped"].append([qid, f"{t}.{col}", value])
    # decoys: other schemas' categorical columns, not a column any question's value is in
    hosts = [
        h
        for h in _decoy_hosts(
            con, synthesized + sorted({_split(t)[0] for s in specs for t in s["tables"]})
        )
        if (h[0].lower(), h[1].lower()) not in protected
    ]
    with_values = [s for s in specs if any(r[0] == s["id"] for r in resolved)]
    for k, s in enumerate(with_values):
        own = {_split(t)[0] for t in s["tables"]}
        firsts = [r for r in resolved if r[0] == s["id"] and r[3] == "VARCHAR" and r[5] == "="]
        if k % DECOY_EVERY or not firsts:
            continue
        value = firsts[0][4]
        cands = [h for h in hosts if _split(h[0])[0] not in own]
        t, col = seeded("decoy", s["id"]).choice(cands)
        _decoy(con, report, s["id"], t, col, value, protected)
    for s in specs:
        for t, col, value in s["decoys"]:
            _decoy(con, report, s["id"], t, col, value, protected)
    return report


def _decoy(
    con: Any,
    report: dict[str, Any],
    qid: str,
    t: str,
    col: str,
    value: str,
    protected: dict[tuple[str, str], set[str]],
) -> None:
    tq = _table_name(con, t)
    if not _present(con, tq, col, value, "="):
        _put(con, tq, col, value, protected.get((t.lower(), col.lower()), set()), f"decoy {qid}")
    report["decoys"].append([qid, f"{t}.{col}", value])
