"""A Python process that asked a question and exits while the value index is still read in the
background ends cleanly (issue 73): a batch run or ``rsql-eval`` exited 134 ("terminate called
after throwing an instance of ''", SIGABRT) when the background reader was still inside DuckDB
as the interpreter finalized. Each run is its own process, as a user's batch job is."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from rsql_sql.schema.value_index import STOP_WAIT_S
from tests.helpers import child_env

duckdb = pytest.importorskip("duckdb")

pytestmark = pytest.mark.slow  # eleven Python processes, about 10 s

TABLES, COLUMNS = 150, 12  # 1,800 text columns, 90 queries: seconds of reading in the background
RUNS = 5  # the abort is a race: several runs, each a few seconds at most

# one question that does not wait for the values (values_wait 0), then the process ends at once.
# It prints whether the background read was still going at its last line (a run where the read
# had already ended shows nothing), and, from an exit handler that runs after the package's own
# (registered first: atexit runs last-in first-out), whether the reader was still running when
# the interpreter went on to finalize, and how long the exit handlers took.
QUESTION = textwrap.dedent(
    """
    import atexit, sqlite3, sys, threading, time

    ended = []

    def last_word():
        alive = any(t.name == "rsql-value-index" and t.is_alive() for t in threading.enumerate())
        print(f"at exit: reader alive {alive}, {time.monotonic() - ended[0]:.3f} s", flush=True)

    atexit.register(last_word)

    from rsql_common.context_policy import ContextPolicy
    from rsql_sql.databases import resolve
    from rsql_sql.loop import run_question
    from rsql_sql.schema import capture_schema

    kind, path = sys.argv[1], sys.argv[2]
    if kind == "duckdb":
        import duckdb
        con = duckdb.connect(path, read_only=True)
    elif kind == "sqlalchemy":
        import sqlalchemy
        con = sqlalchemy.create_engine(f"duckdb:///{path}", connect_args={"read_only": True})
    else:
        con = sqlite3.connect(path)
    schema = capture_schema(con)
    result = run_question(
        "How many t000 rows?",
        resolve(con),
        lambda _messages: "```sql\\nSELECT count(*) FROM t000\\n```",
        schema=schema,
        context_policy=ContextPolicy(),
        values_wait_s=0.0,
    )
    assert result.frame is not None and result.frame.iloc[0, 0] == 50, result
    reading = any(t.name == "rsql-value-index" and t.is_alive() for t in threading.enumerate())
    print("reading" if reading else "read", flush=True)
    ended.append(time.monotonic())
    """
)


def fill(con: Any) -> None:
    """Wide tables of short text columns, 50 rows each."""
    cols = ", ".join(f"c{c} VARCHAR" for c in range(COLUMNS))
    for t in range(TABLES):
        con.execute(f"CREATE TABLE t{t:03d} (id INTEGER, {cols})")
        if isinstance(con, sqlite3.Connection):
            rows = ", ".join(
                "(" + ", ".join([str(i)] + [f"'v{t}_{c}_{i % 7}'" for c in range(COLUMNS)]) + ")"
                for i in range(50)
            )
            con.execute(f"INSERT INTO t{t:03d} VALUES {rows}")
        else:
            vals = ", ".join(f"'v{t}_{c}_' || (i % 7)" for c in range(COLUMNS))
            con.execute(f"INSERT INTO t{t:03d} SELECT i, {vals} FROM range(50) r(i)")


def ask_and_exit(kind: str, path: Path) -> tuple[int, str, str]:
    """Run the question in a process of its own: (exit code, what it printed, its stderr)."""
    done = subprocess.run(
        [sys.executable, "-c", QUESTION, kind, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        # off: every run reads the index again (one kept on disk would leave nothing to read)
        env=child_env(RSQL_CACHE_DIR="off"),
    )
    return done.returncode, done.stdout, done.stderr


def stopped_at_exit(out: str) -> tuple[bool, float]:
    """From what a run printed: whether the reader had ended before the interpreter
    finalized, and how long the exit handlers took."""
    found = re.search(r"at exit: reader alive (True|False), ([0-9.]+) s", out)
    assert found, out
    return found[1] == "False", float(found[2])


@pytest.mark.parametrize("kind", ["duckdb", "sqlalchemy"])
def test_a_process_that_exits_while_duckdb_values_are_read_exits_cleanly(
    kind: str, tmp_path: Path
) -> None:
    # a DuckDB connection (read on a cursor of its own) or a SQLAlchemy engine on a DuckDB
    # file (read through its pool): both aborted
    if kind == "sqlalchemy":
        pytest.importorskip("duckdb_engine")
    path = tmp_path / "wh.duckdb"
    with duckdb.connect(str(path)) as con:
        fill(con)
    runs = []
    for _ in range(RUNS):
        code, out, err = ask_and_exit(kind, path)
        runs.append((code, out.split("\n")))
        # what a batch job would report as failed
        assert "terminate called" not in err, (runs, err[-2000:])
        assert code == 0, (runs, err[-2000:])
        # the runs did exit in the middle of the background read: the case at stake
        assert out.startswith("reading"), runs
        stopped, exit_s = stopped_at_exit(out)
        # stopped and joined before the interpreter finalizes, within the exit's bound
        assert stopped and exit_s < STOP_WAIT_S, runs


def test_a_process_that_exits_while_sqlite_values_are_read_exits_cleanly(tmp_path: Path) -> None:
    # a SQLite file is read in the background on a second connection: its reader is stopped
    # at exit as well (sqlite3 does not abort the process, but its thread would be cut off by
    # the interpreter mid-query)
    path = tmp_path / "wh.sqlite"
    con = sqlite3.connect(path)
    fill(con)
    con.commit()
    con.close()
    code, out, err = ask_and_exit("sqlite", path)
    assert code == 0, err[-2000:]
    assert out.startswith("reading"), out
    stopped, exit_s = stopped_at_exit(out)
    assert stopped and exit_s < STOP_WAIT_S, out
