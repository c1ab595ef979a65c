"""The kernel context of inline completions (rsql_magic.context.inline, issue 38's contract,
section 2) through its public function, in a real IPython shell with real pandas, polars, numpy,
SQLite and R frames. What a real kernel answers to the editor's silent execute request, and
that the module imports nothing heavy, are in tests/e2e/test_inline_kernel.py (processes)."""

from __future__ import annotations

import importlib
import json
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest

from rsql_common.context_policy import ContextPolicy
from rsql_magic.context.inline import InlineContext, frontend_context, remember_schema
from rsql_sql.schema import capture_schema, capture_values
from tests.helpers.kernels import import_rpy2, require_r

# the frontend's expression, exactly as section 2 of the contract writes it
EXPRESSION = (
    "__import__('rsql_magic.context.inline', fromlist=['frontend_context'])"
    ".frontend_context(get_ipython())"
)


@pytest.fixture
def shell() -> Iterator[Any]:
    """The test process's InteractiveShell; the names a test binds are removed after it."""
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    before = set(ip.user_ns)
    yield ip
    for name in set(ip.user_ns) - before:
        ip.user_ns.pop(name, None)


def context(ip: Any, **kw: Any) -> dict[str, Any]:
    ctx = frontend_context(ip, **kw)
    assert isinstance(ctx, InlineContext)
    data = ctx._repr_json_()
    json.dumps(data)  # what IPython sends must be JSON as it is
    return data


def frame(data: dict[str, Any], name: str) -> dict[str, Any]:
    hits = [f for f in data["frames"] if f["name"] == name]
    assert len(hits) == 1, [f["name"] for f in data["frames"]]
    return hits[0]


def test_frames_columns_dtypes_rows_and_what_is_left_out(shell: Any) -> None:
    shell.run_cell(
        "import os, json\n"
        "import pandas as pd, polars as pl, numpy as np\n"
        "sales = pd.DataFrame({'region': ['n', 's', 'n'], 'revenue': [1.5, 2.0, 3.25],\n"
        "                      'kind': pd.Categorical(['secret_a', 'secret_b', 'secret_a'])})\n"
        "orders = pl.DataFrame({'id': [1, 2], 'status': pl.Series(['open_x', 'shut_y'],\n"
        "                       dtype=pl.Enum(['open_x', 'shut_y']))})\n"
        "lazy = orders.lazy()\n"
        "_private = pd.DataFrame({'hidden_col': [1]})\n"
        "n = 3\nlabel = 'a secret value'\ngrid = np.zeros((3, 4))\nprices = sales['revenue']\n"
        "def helper(): pass\n"
        "class Thing: pass\n"
    )
    data = context(shell)
    assert list(data) == ["frames", "r", "tables", "variables", "truncated", "ms"]
    assert data["truncated"] is False and 0 <= data["ms"] < 1000

    sales = frame(data, "sales")
    assert sales["kind"] == "pandas.DataFrame" and sales["rows"] == 3
    assert sales["columns"] == ["region", "revenue", "kind"]
    assert sales["dtypes"][1:] == ["float64", "category"]
    orders = frame(data, "orders")
    assert orders == {
        "name": "orders",
        "kind": "polars.DataFrame",
        "columns": ["id", "status"],
        "dtypes": ["Int64", "Enum"],  # an Enum's type text would list its values
        "rows": 2,
    }

    # the collector's own timing ("ms") is a number of its own: a run of 1.53 ms once read
    # as the frame's 1.5
    text = json.dumps({key: part for key, part in data.items() if key != "ms"})
    for value in ("secret_a", "open_x", "a secret value", "1.5"):
        assert value not in text  # names and types only, never a value
    names = {f["name"] for f in data["frames"]} | {v["name"] for v in data["variables"]}
    for absent in ("_private", "hidden_col", "os", "json", "pd", "helper", "Thing", "In", "Out"):
        assert absent not in names and json.dumps(absent) not in text
    assert "exit" not in names and "get_ipython" not in names

    variables = {v["name"]: v for v in data["variables"]}
    assert variables["n"] == {"name": "n", "type": "int"}
    assert variables["label"] == {"name": "label", "type": "str"}
    assert variables["grid"] == {"name": "grid", "type": "numpy.ndarray", "shape": [3, 4]}
    assert variables["prices"] == {"name": "prices", "type": "pandas.Series", "shape": [3]}
    assert variables["lazy"]["type"] == "polars.LazyFrame"  # a plan: never resolved here


def test_user_expressions_answer_is_the_json(shell: Any) -> None:
    shell.user_ns["sales"] = pd.DataFrame({"region": ["n"], "revenue": [1.0]})
    reply = shell.user_expressions({"rsql": EXPRESSION})["rsql"]
    assert reply["status"] == "ok", reply
    data = reply["data"]["application/json"]
    assert frame(data, "sales")["columns"] == ["region", "revenue"]
    assert data["truncated"] is False and isinstance(data["ms"], float)
    assert reply["data"]["text/plain"].startswith("<rsql inline context: ")


def test_sixty_frames_are_bounded_to_fifty(shell: Any) -> None:
    for i in range(60):
        shell.user_ns[f"f{i:02d}"] = pd.DataFrame({"a": [i], "b": [float(i)]})
    data = context(shell, budget_ms=5000)
    assert len(data["frames"]) == 50 and data["truncated"] is True
    assert frame(data, "f59")["columns"] == ["a", "b"]  # the most recently defined first


def test_fifty_frames_of_twenty_columns_fit_whole(shell: Any) -> None:
    """The benchmark's case (issue 38, item 6): all of it is sent, within the size bound."""
    for i in range(50):
        shell.user_ns[f"frame{i}"] = pd.DataFrame({f"c{j}": [1.0] for j in range(20)})
    shell.user_ns["total"] = 3
    data = context(shell, budget_ms=5000)
    mine = [f for f in data["frames"] if f["name"].startswith("frame")]
    assert len(mine) == 50 and all(len(f["columns"]) == 20 for f in mine)
    assert data["truncated"] is False
    assert len(json.dumps(data)) <= 32_000


def test_a_tiny_time_budget_truncates(shell: Any) -> None:
    for i in range(50):
        shell.user_ns[f"f{i:02d}"] = pd.DataFrame({f"c{j}": [1] for j in range(50)})
    data = context(shell, budget_ms=0.001)
    assert data["truncated"] is True
    assert len(data["frames"]) < 50
    assert data["ms"] < 500


def test_a_wide_frame_is_bounded(shell: Any) -> None:
    shell.user_ns["wide"] = pd.DataFrame(
        np.zeros((2, 5000)), columns=[f"c{i}" for i in range(5000)]
    )
    shell.user_ns["wide_pl"] = pl.DataFrame({f"p{i}": [1] for i in range(5000)})
    data = context(shell, budget_ms=5000)
    for name in ("wide", "wide_pl"):
        f = frame(data, name)
        assert 0 < len(f["columns"]) <= 200 and len(f["columns"]) == len(f["dtypes"])
    assert frame(data, "wide")["columns"][:2] == ["c0", "c1"]
    assert data["truncated"] is True
    assert len(json.dumps(data)) <= 32_000


def test_the_size_bound_holds_for_long_names(shell: Any) -> None:
    long = "x" * 500
    for i in range(50):
        shell.user_ns[f"f{i:02d}"] = pd.DataFrame({f"{long}{j}": [1] for j in range(200)})
    data = context(shell, budget_ms=5000)
    assert data["truncated"] is True
    assert len(json.dumps(data)) <= 32_000
    assert all(len(c) <= 100 for f in data["frames"] for c in f["columns"])


class Raising:
    def __str__(self) -> str:
        raise RuntimeError("no text for you")

    def __hash__(self) -> int:
        return 1

    def __eq__(self, other: object) -> bool:
        return other is self


class Slow:
    def __init__(self, i: int) -> None:
        self.i = i

    def __str__(self) -> str:
        time.sleep(0.05)
        return f"slow{self.i}"

    def __hash__(self) -> int:
        return self.i

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Slow) and other.i == self.i


class NotText:
    def __str__(self) -> Any:  # a __str__ that does not return a str
        return 42


def test_hostile_column_labels(shell: Any) -> None:
    bad = pd.DataFrame([[1, 2, 3, 4]], columns=["ok", Raising(), NotText(), "fine"])
    shell.user_ns["bad"] = bad
    shell.user_ns["tricky"] = pd.DataFrame(
        {"__import__('os').system('x')": [1], "{{7*7}}": [2], '"; DROP': [3], "é\n\x00": [4]}
    )
    shell.user_ns["multi"] = pd.DataFrame(
        [[1, 2]], columns=pd.MultiIndex.from_tuples([("a", "x"), ("a", "y")])
    )
    data = context(shell, budget_ms=5000)
    assert frame(data, "bad")["columns"] == ["ok", "fine"]
    assert frame(data, "bad")["dtypes"] == ["int64", "int64"]
    assert data["truncated"] is True  # something was left out
    assert frame(data, "tricky")["columns"] == [
        "__import__('os').system('x')",
        "{{7*7}}",
        '"; DROP',
        "é\n\x00",
    ]  # text, as it is, in JSON: never evaluated
    assert frame(data, "multi")["columns"] == ["a.x", "a.y"]

    shell.user_ns["slow"] = pd.DataFrame([list(range(40))], columns=[Slow(i) for i in range(40)])
    t0 = time.perf_counter()
    data = context(shell, budget_ms=120)
    assert time.perf_counter() - t0 < 0.5  # stopped at the next look at the clock
    assert data["truncated"] is True


def test_captured_schemas_are_tables_without_a_query(shell: Any) -> None:
    conn = sqlite3.connect(":memory:")
    conn.executescript(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL);"
        "CREATE TABLE people (name TEXT, email TEXT);"
        "INSERT INTO people VALUES ('Ann', 'ann@example.com');"
    )
    schema = capture_schema(conn)
    # the values %%sql_ai reads where the policy allows them: the schema then holds Ann's email
    capture_values(conn, schema, policy=ContextPolicy())
    assert "ann@example.com" in json.dumps(list(schema.values.values()))
    shell.user_ns["conn"] = conn
    # a label of its own: %%sql_ai runs of other tests leave theirs on the same shell
    remember_schema(shell, "conn_probe", schema)
    conn.execute("DROP TABLE people")  # later changes are not read: no query here
    data = context(shell)
    assert [t for t in data["tables"] if t["connection"] == "conn_probe"] == [
        {"connection": "conn_probe", "name": "orders", "columns": ["id", "total"]},
        {"connection": "conn_probe", "name": "people", "columns": ["name", "email"]},
    ]
    assert "ann@example.com" not in json.dumps(data)
    assert {"name": "conn", "type": "sqlite3.Connection"} in data["variables"]

    class Other:
        pass

    assert context(Other())["tables"] == []  # another shell: none of this one's schemas
    conn.close()


def test_sql_ai_leaves_the_tables_it_read_for_the_editor(
    shell: Any, fresh_provider: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """%%sql_ai's own schema capture is what the editor's completions then name: a database it
    reached by URL, which no connection in the namespace gives the editor to read."""
    monkeypatch.setenv("RSQL_PROXY_URL", f"http://127.0.0.1:{fresh_provider.port}/")
    monkeypatch.setenv("RSQL_PROXY_TOKEN", "sk-test-a1-fake0123456789")
    monkeypatch.setenv("RSQL_MODEL", "fake-small")
    monkeypatch.delenv("RSQL_BATCH", raising=False)
    shell.run_line_magic("load_ext", "rsql_magic")
    path = tmp_path / "probe.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE inline_probe (id INTEGER PRIMARY KEY, total REAL)")
    conn.close()
    fresh_provider.script("```sql\nSELECT count(*) AS n FROM inline_probe\n```")

    def probes() -> list[list[str]]:
        found = context(shell)["tables"]
        return [t["columns"] for t in found if t["name"] == "inline_probe"]

    assert probes() == []
    shell.run_cell_magic("sql_ai", f"sqlite:///{path} -o probe_rows", "How many rows?")
    assert list(shell.user_ns["probe_rows"].columns) == ["n"]
    assert probes() == [["id", "total"]]


def test_many_captured_tables_are_bounded(shell: Any) -> None:
    conn = sqlite3.connect(":memory:")
    conn.executescript("".join(f"CREATE TABLE t{i:03d} (a INT, b INT);" for i in range(150)))
    remember_schema(shell, "big", capture_schema(conn))
    data = context(shell, budget_ms=5000)
    assert 0 < len(data["tables"]) <= 100 and data["truncated"] is True
    conn.close()


def shop_database(path: Any = ":memory:") -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL);"
        "CREATE TABLE people (name TEXT, email TEXT);"
        "INSERT INTO people VALUES ('Ann', 'ann@example.com');"
    )
    return conn


def tables_of(data: dict[str, Any], label: str) -> list[tuple[str, list[str]]]:
    return [(t["name"], t["columns"]) for t in data["tables"] if t["connection"] == label]


def test_a_local_database_in_the_namespace_lists_its_tables_once_read(shell: Any) -> None:
    """A plain sqlite3 connection the user made (no %%sql_ai yet): its catalog is read once,
    names only, and later keystrokes reuse what was read."""
    shop = shop_database()
    shell.user_ns["shop"] = shop
    data = context(shell, budget_ms=2000)
    assert tables_of(data, "shop") == [("orders", ["id", "total"]), ("people", ["name", "email"])]
    assert "ann@example.com" not in json.dumps(data) and "Ann" not in json.dumps(data)
    assert {"name": "shop", "type": "sqlite3.Connection"} in data["variables"]
    shop.execute("CREATE TABLE later (x INT)")  # not read again within the TTL
    assert [n for n, _ in tables_of(context(shell, budget_ms=2000), "shop")] == ["orders", "people"]
    del shell.user_ns["shop"]  # gone from the namespace: its tables go too
    assert tables_of(context(shell, budget_ms=2000), "shop") == []
    shop.close()


def test_one_new_database_is_read_per_request_within_the_time_left(
    shell: Any, tmp_path: Any
) -> None:
    duckdb = pytest.importorskip("duckdb")
    sa = pytest.importorskip("sqlalchemy")
    ducks = duckdb.connect(str(tmp_path / "ducks.duckdb"))
    ducks.execute("CREATE TABLE ponds (pond VARCHAR, depth DOUBLE)")
    shell.user_ns["ducks"] = ducks
    shell.user_ns["files"] = sa.create_engine(f"sqlite:///{tmp_path / 'files.db'}")
    shop_database(tmp_path / "files.db").close()
    idle = context(shell, budget_ms=0)  # no time left: nothing is read
    assert not tables_of(idle, "files") and not tables_of(idle, "ducks")
    first = context(shell, budget_ms=2000)
    read = {t["connection"] for t in first["tables"]} & {"ducks", "files"}
    assert len(read) == 1 and first["truncated"] is True  # one per request
    second = context(shell, budget_ms=2000)
    assert tables_of(second, "ducks") == [("ponds", ["pond", "depth"])]
    assert tables_of(second, "files") == [
        ("orders", ["id", "total"]),
        ("people", ["name", "email"]),
    ]
    ducks.close()


def test_a_network_database_is_never_read_from_the_editor(shell: Any) -> None:
    sa = pytest.importorskip("sqlalchemy")
    # capture_schema's module loaded, as after a %%sql_ai: else the editor reads nothing yet
    importlib.import_module("rsql_sql.schema.backends")
    tried: list[int] = []

    def connect() -> Any:  # every connection the engine would open, recorded, none made
        tried.append(1)
        raise ConnectionRefusedError("recorded, not connected")

    remote = sa.create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres", creator=connect
    )
    shell.user_ns["warehouse"] = remote
    data = context(shell, budget_ms=2000)
    assert tables_of(data, "warehouse") == []
    assert tried == []  # not even tried: a refused connection would hide a read otherwise
    remote.dispose()


def test_no_shell_and_a_broken_namespace() -> None:
    assert context(None)["frames"] == []  # not IPython: nothing, never an error

    class Shell:
        user_ns = {"odd": pd.DataFrame({"a": [1]}), 3: "not a name"}

    data = context(Shell())
    assert frame(data, "odd")["columns"] == ["a"]


@pytest.fixture(scope="module")  # as test_context_r's: rpy2 asks `R RHOME` once, at its start
def r_session() -> Iterator[Any]:
    require_r()
    import_rpy2()
    import rpy2.robjects as ro

    ro.r(
        "cars_inline <- mtcars\n"
        "notes_inline <- 'a secret value'\n"
        "for (i in 1:60) assign(sprintf('r_inline_%02d', i), data.frame(k = 1, v = 'x'))"
    )
    yield ro
    ro.r("rm(list = c('cars_inline', 'notes_inline', sprintf('r_inline_%02d', 1:60)))")


def test_r_data_frames_of_a_running_r(shell: Any, r_session: Any) -> None:
    # a level of the user's own that no reading here would leave behind (R's default is 3,
    # and the collector turns the JIT off while it reads)
    level = r_session.r("compiler::enableJIT(2)")[0]
    assert r_session.r("compiler::enableJIT(-1)")[0] == 2
    data = context(shell, budget_ms=5000)
    assert data["r"][0] == {
        "name": "cars_inline",
        "kind": "data.frame",
        "columns": ["mpg", "cyl", "disp", "hp", "drat", "wt", "qsec", "vs", "am", "gear", "carb"],
    }
    assert {"name": "r_inline_01", "kind": "data.frame", "columns": ["k", "v"]} in data["r"]
    assert len(data["r"]) == 50 and data["truncated"] is True
    assert "secret" not in json.dumps(data)
    assert r_session.r("compiler::enableJIT(-1)")[0] == 2  # the user's JIT level is back
    r_session.r(f"compiler::enableJIT({level})")
    data = context(shell)  # the default budget: R comes last, with the time left
    assert data["ms"] < 200
