"""The import rules of docs/architecture.md hold: no circles, the kernel and the proxy never
importing each other, no imports against the layers, no private names from another module, no
host reaching into the engine's parts, no API's code imported by the engine's chat path, no
admission of the limiter's past the admission step, no source file over structure.MAX_LINES
lines. And the scripts that measure and map the house do what they say: the two walks count a
request's modules, tests_of.py finds a module's tests."""

from __future__ import annotations

import importlib.util
import sys

from tests.helpers import REPO

spec = importlib.util.spec_from_file_location("structure", REPO / "scripts" / "structure.py")
structure = importlib.util.module_from_spec(spec)
sys.modules["structure"] = structure  # dataclasses look their module up
spec.loader.exec_module(structure)


def test_the_codebase_keeps_its_layers() -> None:
    problems = structure.report(structure.load())
    assert problems == {title: [] for title in problems}


def test_the_check_sees_a_circle_and_a_layer_break(tmp_path) -> None:
    # the rules can fail: a tiny tree that breaks each of them is reported
    for pkg in structure.PACKAGES:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    eng = tmp_path / "jupyter_server_ext" / "engine"
    eng.mkdir()
    (eng / "__init__.py").write_text("")
    (eng / "a.py").write_text("from ..handlers import x\nfrom .b import _hidden\n")
    (eng / "b.py").write_text("from .a import y\n")
    (tmp_path / "jupyter_server_ext" / "handlers.py").write_text(
        "x = 1\n" * (structure.MAX_LINES + 1)
    )
    # a top layer (the magics) may import anything of its own package, never the proxy's
    (tmp_path / "rsql_magic" / "magics.py").write_text("from jupyter_server_ext import handlers\n")
    # a host reaching into the engine's parts; the composition root may build with them
    (tmp_path / "jupyter_server_ext" / "probes.py").write_text(
        "async def ping(ctx):\n    return await ctx.engine.state.ping(), ctx.engine.chat\n"
    )
    (tmp_path / "jupyter_server_ext" / "wiring.py").write_text("engine.replies.course_log = 1\n")
    # an admission built by hand past the admission step; the step itself asks the limiter
    (eng / "edge.py").write_text(
        "async def read(self, c):\n    held = await self.limiter.count(c.user, ())\n"
    )
    (eng / "admission_step.py").write_text(
        "async def count(self, c):\n    return await self.limiter.count(c.user, ())\n"
    )
    # the chat path importing an API's format
    (eng / "apis.py").write_text("")
    (eng / "replies.py").write_text("from .apis import messages\n")
    modules = structure.load(tmp_path)
    problems = structure.report(modules)
    assert problems["the engine's parts reached from outside it"] == [
        "jupyter_server_ext.probes:2: ctx.engine.state"
    ]
    assert problems["admissions outside the admission step"] == [
        "jupyter_server_ext.engine.edge:2: self.limiter.count"
    ]
    assert problems["the engine's chat path importing an API"] == [
        "jupyter_server_ext.engine.replies imports jupyter_server_ext.engine.apis"
    ]
    assert problems["import circles"] == [
        "jupyter_server_ext.engine.a <-> jupyter_server_ext.engine.b"
    ]
    assert problems["imports against the layers"] == [
        "jupyter_server_ext.engine.a imports jupyter_server_ext.handlers"
    ]
    assert problems["imports between packages"] == [
        "rsql_magic.magics imports jupyter_server_ext.handlers"
    ]
    assert problems["private names from another module"] == [
        "jupyter_server_ext.engine.a:2: from jupyter_server_ext.engine.b import _hidden"
    ]
    assert len(problems[f"files over {structure.MAX_LINES} lines"]) == 1


async def test_the_chat_walk_counts_the_modules_one_chat_completion_runs_in() -> None:
    """scripts/chat_walk.py, which measures a request's depth for docs/architecture.md, counts
    what it says: the request's way through the engine, each module once, a stream's reader
    beside a JSON answer's, nothing of the hosts."""
    walk_spec = importlib.util.spec_from_file_location(
        "chat_walk", REPO / "scripts" / "chat_walk.py"
    )
    chat_walk = importlib.util.module_from_spec(walk_spec)
    walk_spec.loader.exec_module(chat_walk)
    plain, streamed = await chat_walk.walk(False), await chat_walk.walk(True)
    engine = "jupyter_server_ext/engine/"
    for step in ("core.py", "admission_step.py", "failover.py", "replies.py", "upstreams/pool.py"):
        assert engine + step in plain, step
    assert set(streamed) - set(plain) == {engine + "bodies/streams.py"}
    assert len(plain) == len(set(plain)) and not any("handlers" in m for m in plain)


def test_the_kernel_walk_counts_the_modules_one_sql_ai_cell_runs_in() -> None:
    """scripts/kernel_walk.py, the kernel side's count beside chat_walk.py: one %%sql_ai cell
    through the session, the operation, the client and the SQL loop, and nothing of the proxy."""
    walk_spec = importlib.util.spec_from_file_location(
        "kernel_walk", REPO / "scripts" / "kernel_walk.py"
    )
    kernel_walk = importlib.util.module_from_spec(walk_spec)
    walk_spec.loader.exec_module(kernel_walk)
    modules = kernel_walk.walk()
    for step in (
        "rsql_magic/magics/sql_ai.py",
        "rsql_magic/operations/sql_question.py",
        "rsql_magic/client/proxy.py",
        "rsql_sql/loop.py",
        "rsql_sql/checks/guard.py",
    ):
        assert step in modules, step
    assert not any(m.startswith("jupyter_server_ext") for m in modules)
    assert len(modules) == len(set(modules))


def test_tests_of_finds_a_modules_tests_by_import_by_citation_and_by_name(
    capsys, monkeypatch
) -> None:
    """scripts/tests_of.py, where a newcomer asks for a module's tests: the SQL guard's own unit
    tests import it, docs/security.md's row on the engine's failover cites end-to-end ones, and a
    path that names no module is refused, exit 2, saying why."""
    spec = importlib.util.spec_from_file_location("tests_of", REPO / "scripts" / "tests_of.py")
    tests_of = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "tests_of", tests_of)  # dataclasses look their module up
    spec.loader.exec_module(tests_of)

    guard = tests_of.tests_of(tests_of.module_name("rsql_sql/checks/guard.py"))
    assert "tests/unit/test_sql_guard.py" in guard.imports
    # by name: this file names the guard's path (just above) and imports none of it
    assert "tests/unit/test_structure.py" in guard.names
    assert "tests/unit/test_structure.py" not in guard.imports | guard.cites
    assert tests_of.module_name(str(REPO / "rsql_sql" / "checks" / "__init__.py")) == (
        "rsql_sql.checks"
    )
    failover = tests_of.tests_of("jupyter_server_ext.engine.failover")
    assert "tests/e2e/test_proxy_hardening.py" in failover.cites
    assert "tests/e2e/test_rsql_mcp.py" in tests_of.tests_of("rsql_sql.warehouse").cites
    # a path is read with its package or below it, but not below it where another package has
    # the same path (both have mcp/): the proxy's MCP rows are not the SQL package's
    assert tests_of._spoken("jupyter_server_ext.engine.failover").search("(`engine/failover.py`")
    assert tests_of._spoken("rsql_sql.mcp").search("`rsql_sql/mcp/server.py`")
    assert not tests_of._spoken("rsql_sql.mcp").search("`mcp/handler.py`")
    assert not tests_of._spoken("rsql_sql.mcp").search("jupyter_server_ext/mcp/handler.py")
    # the command line prints the same, unit and end-to-end apart
    assert tests_of.main(["rsql_sql/checks/guard.py"]) == 0
    assert "imports (unit" in capsys.readouterr().out
    for wrong, says in (
        ("rsql_sql/nothing.py", "no module rsql_sql.nothing"),
        ("tests/unit/test_sql_guard.py", "not in one of the packages"),
        ("/etc/passwd", "not a file of this checkout"),
    ):
        assert tests_of.main([wrong]) == 2
        assert says in capsys.readouterr().err
