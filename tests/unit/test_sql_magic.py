"""%%sql_ai in an in-process IPython shell (interactive: set_next_input), against the fake
provider over HTTP: the emitted cell really runs, display is capped, `_` and -o are set."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import duckdb
import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell

from rsql_magic.errors import ProxyError, SqlAIError
from tests.helpers.fake_provider import FakeProvider

KEY = "sk-test-a1-fake0123456789"


@pytest.fixture
def ip(fresh_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    monkeypatch.setenv("RSQL_PROXY_URL", f"http://127.0.0.1:{fresh_provider.port}/")
    monkeypatch.setenv("RSQL_PROXY_TOKEN", KEY)
    monkeypatch.setenv("RSQL_MODEL", "fake-small")
    monkeypatch.delenv("RSQL_BATCH", raising=False)
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "rsql_magic")
    assert "sql_ai" in shell.magics_manager.magics["cell"]  # registered by %load_ext rsql_magic
    shell.rl_next_input = None
    yield shell
    for k in ("conn", "con", "sales", "res", "df", "_"):
        shell.user_ns.pop(k, None)


def run(ip: InteractiveShell, cell: str) -> None:
    r = ip.run_cell(cell)
    if r.error_in_exec is not None:
        raise r.error_in_exec
    if r.error_before_exec is not None:
        raise r.error_before_exec


def test_emitted_python_cell_runs_and_gives_the_same_frame(
    fresh_provider: FakeProvider, ip
) -> None:
    conn = sqlite3.connect(":memory:")
    conn.executescript(
        "CREATE TABLE t (a INTEGER, b TEXT); INSERT INTO t VALUES (1, 'x'), (2, 'y'), (3, 'x');"
    )
    ip.user_ns["conn"] = conn
    fresh_provider.script("```sql\nSELECT b, COUNT(*) AS n\nFROM t\nGROUP BY b\nORDER BY b\n```")
    run(ip, "%%sql_ai conn -o res --emit\ncount per b")
    res = ip.user_ns["res"]
    assert ip.user_ns["_"] is res
    assert res.to_dict("list") == {"b": ["x", "y"], "n": [2, 1]}
    code = ip.rl_next_input  # interactive: the cell goes next, through set_next_input
    assert code.startswith("import pandas as pd\n\nres = pd.read_sql_query(")
    ip.user_ns.pop("res")
    run(ip, code)
    pd.testing.assert_frame_equal(ip.user_ns["res"], res)


@pytest.mark.parametrize(
    "literal",
    [
        '\'\n"""\npwned = 1\n"""\'',  # closes a triple-quoted Python string, then code
        '\'\n\\"""); pwned = 1 #\'',  # a backslash before the quotes
    ],
)
def test_an_emitted_cell_keeps_a_hostile_sql_literal_a_string(
    fresh_provider: FakeProvider, ip, literal: str
) -> None:
    conn = sqlite3.connect(":memory:")
    conn.executescript("CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1);")
    ip.user_ns["conn"] = conn
    fresh_provider.script(f"```sql\nSELECT {literal} AS s,\n  a\nFROM t\n```")
    run(ip, "%%sql_ai conn -o res --emit\nthe text")
    want = ip.user_ns.pop("res")
    code = ip.rl_next_input
    run(ip, code)
    assert "pwned" not in ip.user_ns, code
    pd.testing.assert_frame_equal(ip.user_ns["res"], want)  # the same string, as data


def test_emitted_duckdb_and_frames_cells_run(fresh_provider: FakeProvider, ip) -> None:
    ip.user_ns["sales"] = pd.DataFrame({"region": ["n", "s", "n"], "amount": [1.0, 2.0, 4.0]})
    fresh_provider.script(
        "SELECT region, SUM(amount) AS total FROM sales GROUP BY region ORDER BY region"
    )
    run(ip, "%%sql_ai sales --emit\ntotal per region")
    first = ip.user_ns["_"]
    assert first.to_dict("list") == {"region": ["n", "s"], "total": [5.0, 2.0]}
    assert ip.rl_next_input.startswith("import duckdb\n\ndf = duckdb.sql(")
    run(ip, ip.rl_next_input)
    pd.testing.assert_frame_equal(ip.user_ns["df"], first)

    con = duckdb.connect()
    con.execute("CREATE TABLE k (v INTEGER); INSERT INTO k SELECT range FROM range(50)")
    ip.user_ns["con"] = con
    fresh_provider.script("SELECT v FROM k WHERE v % 7 = 0 ORDER BY v")
    run(ip, "%%sql_ai con --emit -o df\nmultiples of 7")
    assert ip.user_ns["df"]["v"].tolist() == [0, 7, 14, 21, 28, 35, 42, 49]
    assert ip.rl_next_input == "df = con.execute('SELECT v FROM k WHERE v % 7 = 0 ORDER BY v').df()"


def test_display_is_capped(fresh_provider: FakeProvider, ip, capsys) -> None:
    ip.user_ns["con"] = duckdb.connect()
    fresh_provider.script("SELECT range AS i FROM range(500)")
    run(ip, "%%sql_ai con\nnumbers")
    out = capsys.readouterr().out
    assert "500 rows × 1 columns" in out
    assert "(10 of 500 rows shown)" in out
    assert len(ip.user_ns["_"]) == 500  # the stored frame is whole; only the display is capped
    fresh_provider.script("SELECT range AS i FROM range(500)")
    run(ip, "%%sql_ai con --limit 20\nnumbers")
    assert "first 20 rows fetched (more not fetched: --limit)" in capsys.readouterr().out


def test_dialect_override_and_pinned_tables(fresh_provider: FakeProvider, ip) -> None:
    conn = sqlite3.connect(":memory:")
    conn.executescript("CREATE TABLE a (x INT); CREATE TABLE b (y INT); CREATE TABLE c (z INT);")
    ip.user_ns["conn"] = conn
    fresh_provider.script("SELECT x FROM a")
    run(ip, "%%sql_ai conn --dialect postgresql --tables a,c --dry-run\nx")
    system = fresh_provider.received[0].body["messages"][0]["content"]
    assert "one PostgreSQL SQL statement" in system
    assert "CREATE TABLE a (x INT);" in system and "CREATE TABLE c (z INT);" in system
    assert "CREATE TABLE b" not in system
    assert ip.user_ns["_"] == "SELECT x FROM a"  # --dry-run stores the SQL


def test_usage_errors(ip) -> None:
    with pytest.raises(SqlAIError, match="CONN nosuch: no such variable"):
        run(ip, "%%sql_ai nosuch\nq")
    ip.user_ns["conn"] = sqlite3.connect(":memory:")
    with pytest.raises(SqlAIError, match="needs a question"):
        run(ip, "%%sql_ai conn\n   \n")
    with pytest.raises(SqlAIError, match="--dialect klingon: Unknown dialect"):
        run(ip, "%%sql_ai conn --dialect klingon\nq")


def test_upstream_failure_raises(fresh_provider: FakeProvider, ip) -> None:
    ip.user_ns["conn"] = sqlite3.connect(":memory:")
    fresh_provider.set_fault("a1", "status", status=500)
    # the proxy's failure is the ProxyError it is: SqlAIError is for SQL that failed
    with pytest.raises(ProxyError, match="proxy error 500") as ei:
        run(ip, "%%sql_ai conn\nanything")
    assert not isinstance(ei.value, SqlAIError)
