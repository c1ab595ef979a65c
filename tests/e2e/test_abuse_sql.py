"""A hostile model against %%sql_ai on real databases, in real kernels (issue 24).

- A string literal that PostgreSQL reads differently when ``standard_conforming_strings`` is
  off (``'\\'``) must not smuggle ``COMMIT; CREATE TABLE ...`` past the guard, through the magic
  or through the executor with the guard bypassed, on every PostgreSQL driver installed.
- Generated SQL must not exhaust the kernel: values that grow in one step (``zeroblob``,
  ``repeat``, padding and format widths, DuckDB's list ``range``) are refused, results stop at a
  byte bound, and the statement timeout interrupts CPU-bound work on every engine. The kernel's
  peak memory (``VmHWM``) is measured around the attacks.
"""

from __future__ import annotations

import importlib.util
import re
import sqlite3
from pathlib import Path

import pytest

from tests.helpers import FAKE_KEY, require
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.kernels import kernel_env, make_notebook, outputs_text, run_notebook
from tests.helpers.shop import SHOP

pytestmark = pytest.mark.slow

SETUP = "%load_ext rsql_magic\n%config RSQLMagic.model = 'fake-small'"
SMUGGLE = (
    "SELECT '\\' AS q, '; COMMIT; CREATE TABLE pwned AS SELECT 1 AS x; -- ' AS z FROM customers"
)
# the kernel's peak resident memory, in MB
PEAK = (
    "def peak_mb():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM'):\n"
    "            return int(line.split()[1]) // 1024\n"
)
GROWTH_LIMIT_MB = 200


def fenced(sql: str) -> str:
    return f"```sql\n{sql}\n```"


def env_for(fp: FakeProvider) -> dict[str, str]:
    return kernel_env(f"http://127.0.0.1:{fp.port}/", FAKE_KEY, PLOOMBER_STATS_ENABLED="false")


def error_text(cell) -> str:
    errs = [o for o in cell.outputs if o["output_type"] == "error"]
    assert errs, f"the cell did not fail: {outputs_text(cell)}"
    return errs[0]["ename"] + "\n" + "\n".join(errs[0]["traceback"])


def shop_in_postgres(url: str, *, legacy_strings: bool) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        for s in SHOP.split(";"):
            if s.strip():
                c.execute(s)
        if legacy_strings:
            name = url.rsplit("/", 1)[1]
            c.execute(f"ALTER DATABASE {name} SET standard_conforming_strings = off")


def pwned_exists(url: str) -> bool:
    import psycopg

    with psycopg.connect(url) as c:
        return c.execute("SELECT to_regclass('public.pwned') IS NOT NULL").fetchone()[0]


# PostgreSQL connections a user hands %%sql_ai: (kernel code making `conn`, label)
def _pg_connections(url: str) -> list[tuple[str, str]]:
    out = [
        (f"import psycopg\nconn = psycopg.connect({url!r})", "psycopg 3"),
        (
            f"import psycopg\nconn = psycopg.connect({url!r}, autocommit=True)",
            "psycopg 3 autocommit",
        ),
        (
            f"conn = {url.replace('postgresql://', 'postgresql+psycopg://')!r}",
            "SQLAlchemy + psycopg 3",
        ),
    ]
    if importlib.util.find_spec("psycopg2") is not None:
        out += [
            (f"import psycopg2\nconn = psycopg2.connect({url!r})", "psycopg2"),
            (
                f"conn = {url.replace('postgresql://', 'postgresql+psycopg2://')!r}",
                "SQLAlchemy + psycopg2",
            ),
        ]
    return out


# -- finding 7: a backslash must not end the read-only transaction -------------------------


def test_a_backslash_string_cannot_smuggle_a_commit_past_the_guard_in_a_kernel(
    fresh_provider: FakeProvider, tmp_path: Path, pg_database: str
) -> None:
    shop_in_postgres(pg_database, legacy_strings=True)
    connections = _pg_connections(pg_database)
    cells = [SETUP]
    attacks = []
    for make, _label in connections:
        cells.append(make)
        attacks.append(len(cells))
        cells.append("%%sql_ai conn --max-retries 0\nList the customers")
    fresh_provider.script(*[fenced(SMUGGLE)] * len(connections))
    nb = make_notebook(cells, raises=tuple(attacks))
    run_notebook(nb, env_for(fresh_provider), tmp_path)

    assert not pwned_exists(pg_database)
    for (_make, label), i in zip(connections, attacks, strict=True):
        text = error_text(nb.cells[i])
        assert "SqlAIError" in text, label
        assert "Refused:" in text and "backslash" in text, (label, text)
        assert "nothing ran" in text, label


@pytest.mark.parametrize("driver", ["psycopg", "sqlalchemy+psycopg", "psycopg2"])
def test_the_database_reads_the_smuggled_text_as_one_select_when_the_guard_is_bypassed(
    driver: str, pg_database: str
) -> None:
    """The executor's own wall: standard_conforming_strings is pinned on for generated SQL."""
    if driver == "psycopg2":
        require(
            "psycopg2",
            reason="SQLAlchemy's default PostgreSQL driver, whose simple query protocol runs several statements",
        )
    from rsql_sql.connections import resolve
    from rsql_sql.execute import run_query

    shop_in_postgres(pg_database, legacy_strings=True)
    if driver == "psycopg":
        import psycopg

        conn = psycopg.connect(pg_database)
    elif driver == "psycopg2":
        import psycopg2

        conn = psycopg2.connect(pg_database)
    else:
        import sqlalchemy as sa

        conn = sa.create_engine(pg_database.replace("postgresql://", "postgresql+psycopg://"))
    try:
        result = run_query(resolve(conn), SMUGGLE, max_rows=10, timeout_s=10)
    finally:
        conn.dispose() if hasattr(conn, "dispose") else conn.close()
    assert result.frame["q"].tolist() == ["\\"] * 3
    assert not pwned_exists(pg_database)


# -- finding 11: memory and time stay bounded ----------------------------------------------

GROWERS = {
    "sqlite": [
        "SELECT length(zeroblob(400000000)) AS n FROM customers",
        "SELECT length(printf('%400000000d', 1)) AS n FROM customers",
        "SELECT length(replace(hex(zeroblob(1000)), '0', hex(zeroblob(100000)))) AS n",
    ],
    "duckdb": [
        "SELECT len(repeat('x', 2000000000)) AS n",
        "SELECT len(lpad('x', 2000000000, 'y')) AS n",
        "SELECT len(printf('%2000000000d', 1)) AS n",
        "SELECT len(format('{:>2000000000}', 1)) AS n",
        "SELECT len(range(300000000)) AS n",
        "SELECT count(*) AS n FROM (SELECT unnest(generate_series(1, 300000000)))",
    ],
    "postgres": [
        "SELECT length(repeat(md5(name), 30000000)) AS n FROM customers",
        "SELECT length(rpad(name, 900000000, 'x')) AS n FROM customers",
        "SELECT length(format('%900000000s', name)) AS n FROM customers",
        "SELECT pg_sleep(30) FROM customers",
    ],
}
# CPU-bound statements that only the timeout stops
SPINNERS = {
    "sqlite": "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) "
    "SELECT count(*) AS n FROM r",
    "duckdb": "SELECT count(*) AS n FROM range(1000000000000) a WHERE a.range % 7 = 3",
    "postgres": "SELECT count(*) AS n FROM generate_series(1, 100000000000) g WHERE g % 7 = 3",
}
# a plain SELECT of large values: 1,000 rows of 300 kB each (300 MB), stored compressed
BIG_ROWS = 1000
BIG_BODY_CHARS = 300_000
BIG = "SELECT id, body FROM docs ORDER BY id"


def test_generated_sql_cannot_exhaust_the_kernels_memory_or_time(
    fresh_provider: FakeProvider, tmp_path: Path, pg_database: str
) -> None:
    import duckdb

    shop_in_postgres(pg_database, legacy_strings=False)
    import psycopg

    with psycopg.connect(pg_database, autocommit=True) as c:
        c.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        c.execute(
            "INSERT INTO docs SELECT g, repeat(md5(g::text), %s) FROM generate_series(1, %s) g",
            (BIG_BODY_CHARS // 32, BIG_ROWS),
        )
    lite = tmp_path / "shop.db"
    with sqlite3.connect(lite) as c:
        c.executescript(SHOP)
    duck = tmp_path / "docs.duckdb"
    with duckdb.connect(str(duck)) as c:
        for s in SHOP.split(";"):
            if s.strip():
                c.execute(s)
        c.execute(
            f"CREATE TABLE docs AS SELECT g::INT AS id, repeat(md5(g::VARCHAR), {BIG_BODY_CHARS // 32}) "
            f"AS body FROM range(1, {BIG_ROWS + 1}) t(g)"
        )

    cells = [
        SETUP + "\n%config SqlAIMagics.timeout = 3",
        PEAK + "import time, sqlite3, duckdb, psycopg\n"
        f"lite = sqlite3.connect({str(lite)!r})\n"
        f"duck = duckdb.connect({str(duck)!r})\n"
        f"pg = psycopg.connect({pg_database!r})\n"
        # psycopg2 in autocommit mode (as JupySQL's connections are) makes no server-side cursor
        f"import psycopg2\npg2 = psycopg2.connect({pg_database!r})\npg2.autocommit = True\n",
    ]
    answers: list[str] = []
    warm = "SELECT region, count(*) AS n FROM customers GROUP BY region"
    for name in ("lite", "duck", "pg", "pg2"):  # imports and caches in place before the baseline
        cells.append(f"%%sql_ai {name} --max-retries 0\nwarm up")
        answers.append(fenced(warm))
    cells.append("base = peak_mb(); print('baseline', base)")
    checks: list[tuple[int, str, str]] = []  # (cell index, engine, what must show)
    for engine, name in (("sqlite", "lite"), ("duckdb", "duck"), ("postgres", "pg")):
        for sql in GROWERS[engine]:
            checks.append((len(cells) + 1, engine, "Refused:"))
            cells.append("t0 = time.monotonic()")
            cells.append(f"%%sql_ai {name} --max-retries 0\nmake something big")
            cells.append("print('took', round(time.monotonic() - t0, 1), 'peak', peak_mb())")
            answers.append(fenced(sql))
        checks.append((len(cells) + 1, engine, "(timeout)"))
        cells.append("t0 = time.monotonic()")
        cells.append(f"%%sql_ai {name} --max-retries 0\ncount forever")
        cells.append("print('took', round(time.monotonic() - t0, 1), 'peak', peak_mb())")
        answers.append(fenced(SPINNERS[engine]))
    # DuckDB builds vectors of 2,048 such rows in the kernel: its memory_limit refuses
    for sql in (BIG, BIG.replace(" ORDER BY id", "")):
        checks.append((len(cells) + 1, "duckdb", "Out of Memory"))
        cells.append("t0 = time.monotonic()")
        cells.append("%%sql_ai duck --max-retries 0\nall documents")
        cells.append("print('took', round(time.monotonic() - t0, 1), 'peak', peak_mb())")
        answers.append(fenced(sql))
    # PostgreSQL streams them through a server-side cursor: fetching stops at the byte bound
    big_cell = len(cells)
    cells.append("%%sql_ai pg --max-retries 0 -o big_pg\nall documents")
    answers.append(fenced(BIG))
    cells.append("print('rows', len(big_pg), 'peak', peak_mb())\ndel big_pg")
    big2_cell = len(cells)
    cells.append("%%sql_ai pg2 --max-retries 0 -o big_pg2\nall documents")
    answers.append(fenced(BIG))
    cells.append("print('rows', len(big_pg2), 'peak', peak_mb())\ndel big_pg2")
    cells.append("print('growth', peak_mb() - base)")
    fresh_provider.script(*answers)
    raises = tuple(i for i, _e, _w in checks)
    nb = make_notebook(cells, raises=raises)
    run_notebook(nb, env_for(fresh_provider), tmp_path, timeout=180)

    for i, engine, what in checks:
        text = error_text(nb.cells[i])
        assert what in text, (engine, nb.cells[i].source, text)
        found = re.search(r"took ([\d.]+)", outputs_text(nb.cells[i + 1]))
        # where the line went, if not to its cell, is the first thing to read when this fails
        assert found, [(c.source[:40], c.outputs) for c in nb.cells[i - 1 : i + 3]]
        took = float(found.group(1))
        assert took < 15, (engine, nb.cells[i].source, took)
    for cell in (big_cell, big2_cell):
        shown = outputs_text(nb.cells[cell])
        assert "result bound of 50 MB" in shown and "max_result_bytes" in shown, shown
        # what the next cell printed, or raised, is the first thing to read when this fails
        after = outputs_text(nb.cells[cell + 1]) + "".join(
            f"{o['ename']}: {o['evalue']}" for o in nb.cells[cell + 1].outputs if "ename" in o
        )
        counted = re.search(r"rows (\d+)", after)
        assert counted is not None, (nb.cells[cell].source, shown, after)
        assert 0 < int(counted.group(1)) < BIG_ROWS, after
    growth = int(re.search(r"growth (-?\d+)", outputs_text(nb.cells[-1])).group(1))
    peaks = [outputs_text(c) for c in nb.cells if "peak" in outputs_text(c)]
    assert growth < GROWTH_LIMIT_MB, f"the kernel's peak memory grew by {growth} MB: {peaks}"
