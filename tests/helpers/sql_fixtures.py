"""What the %%sql_ai tests on SQLite and DuckDB (tests/unit) and on PostgreSQL (tests/e2e)
share: the hostile statements and the table they aim at, the bypassed executor, the magic in
an in-process shell, and the checks each database must pass alike."""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from rsql_magic.errors import QueryTimeout, SuperuserWarning
from rsql_sql.connections import DB, resolve
from rsql_sql.execute import WITHHELD, QueryResult, run_query
from rsql_sql.loop import run_question
from rsql_sql.policy import SqlPolicy
from tests.helpers import FAKE_KEY
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.shop import SHOP

Complete = Callable[[list[dict[str, Any]]], str]  # the `complete` fixture: messages -> text

# -- the guard and the database's walls (test_sql_security) ---------------------------------

SECRET = "TOPSECRET-" + secrets.token_hex(6)
GOOD = "```sql\nSELECT id FROM t ORDER BY id\n```"
U_READ = "SELECT U&\"pg\\005fread\\005ffile\"('/etc/passwd') FROM (SELECT 1 AS u) s"
U_KILL = 'SELECT U&"pg\\005fterminate\\005fbackend"(42) FROM (SELECT 1 AS u) s'


def run(db: Any, sql: str, policy: SqlPolicy | None = None) -> QueryResult:
    """The executor with the guard bypassed: only the database's walls stand."""
    return run_query(db, sql, max_rows=100, timeout_s=10, policy=policy)


def everything_sent(fp: FakeProvider) -> str:
    return "\n".join(json.dumps(r.body) for r in fp.received)


def check_errors_sent_back_carry_no_data(
    kind: str, conn: Any, fresh_provider: FakeProvider, complete: Complete
) -> None:
    """The loop on `conn`, a connection to table t holding SECRET, with the model scripted
    (by the caller) to make the database quote a value in its error, then to answer GOOD."""
    try:
        with pytest.warns(SuperuserWarning) if kind == "postgres" else _nothing():
            res = run_question("ids", resolve(conn), complete)
    finally:
        conn.close()
    assert [a.stage for a in res.attempts] == ["database", "ok"]
    err = res.attempts[0].error
    assert WITHHELD in err
    assert "Conversion Error" in err if kind == "duckdb" else "invalid input syntax" in err
    assert err in fresh_provider.received[1].body["messages"][-1]["content"]
    assert SECRET not in everything_sent(fresh_provider)
    assert SECRET.split("-")[1] not in everything_sent(fresh_provider)
    assert res.frame["id"].tolist() == [1, 2]


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@contextmanager
def magic_shell(fresh_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The process's IPython shell with rsql_magic loaded, talking to the fake provider; the
    magic's settings and the names the tests set are put back afterwards."""
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setenv("RSQL_PROXY_URL", f"http://127.0.0.1:{fresh_provider.port}/")
    monkeypatch.setenv("RSQL_PROXY_TOKEN", FAKE_KEY)
    monkeypatch.setenv("RSQL_MODEL", "fake-small")
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "rsql_magic")
    magic = shell.magics_manager.registry["SqlAIMagics"]
    yield shell
    magic.allowed_functions = []
    magic.postgres_role = ""
    for k in ("conn", "sales", "_"):
        shell.user_ns.pop(k, None)


def cell(ip: Any, text: str) -> None:
    r = ip.run_cell(text)
    if r.error_in_exec is not None:
        raise r.error_in_exec
    if r.error_before_exec is not None:
        raise r.error_before_exec


# -- names as the engine reads them (test_sql_database_rules) ----------------------------------

AIRLINES = """
CREATE TABLE airlines (uid INTEGER PRIMARY KEY, "Airline" TEXT, "Abbreviation" TEXT, "Country" TEXT);
INSERT INTO airlines VALUES (1, 'Delta', 'DL', 'USA'), (2, 'Lufthansa', 'LH', 'Germany'),
                            (3, 'United', 'UA', 'USA');
"""


def sql(text: str) -> str:
    return f"```sql\n{text}\n```"


def check_limit_offset_comma_is_respelled(
    db: Any, fresh_provider: FakeProvider, complete: Complete
) -> None:
    """MySQL's `LIMIT 1, 2` on the AIRLINES table in `db`: respelled after the engine rejects it."""
    fresh_provider.script(sql("SELECT uid FROM airlines ORDER BY uid LIMIT 1, 2"))
    res = run_question("airlines 2 and 3", resolve(db), complete)
    assert len(fresh_provider.received) == 1
    assert res.frame["uid"].tolist() == [2, 3]
    assert "LIMIT 2 OFFSET 1" in res.sql
    assert any(
        "syntax with sqlglot after the database rejected the original" in n for n in res.notes
    )


# -- the loop (test_sql_loop), on the tables of tests/helpers/shop.py ------------------------

EXPECTED = {"north": 130.5, "south": 7.25}


@contextmanager
def shop_sqlite() -> Iterator[sqlite3.Connection]:
    """The shop's tables (tests/helpers/shop.py) in an in-memory SQLite database."""
    conn = sqlite3.connect(":memory:")
    conn.executescript(SHOP)
    yield conn
    conn.close()


def fed_back(fp: FakeProvider, i: int) -> str:
    """The last user message of request `i`: what the model was told."""
    return fp.received[i].body["messages"][-1]["content"]


def totals(df: Any) -> dict[str, float]:
    return {r: float(t) for r, t in zip(df["region"], df["total"], strict=True)}


def check_statement_timeout(db: DB, slow: str) -> None:
    """`slow` is cancelled after 0.5 s, and the connection is usable afterwards."""
    t0 = time.perf_counter()
    with pytest.raises(QueryTimeout, match="statement cancelled after 0.5 s"):
        db.query(slow, timeout_s=0.5)
    assert time.perf_counter() - t0 < 5
    # the connection is usable afterwards
    assert db.query("SELECT 1 AS one").rows == [(1,)]
