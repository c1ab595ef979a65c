"""Unit tests start no process and no server, and use no shared service (tests/e2e/ is where
those go). tests/conftest.py refuses, at collection, a unit test that requests one of its
fixtures NOT_IN_UNIT; here the same fixtures are refused when a unit test asks for them at run
time (``request.getfixturevalue``), and, for the duration of each unit test, whatever would
start a child process (subprocess and asyncio's subprocesses, os.system, fork and spawn,
multiprocessing) fails the test, naming the command; the few commands libraries run on their
own (ABSENT) are answered as if the program were not installed."""

from __future__ import annotations

import multiprocessing.process
import os
import subprocess
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest

from tests.conftest import not_in_unit

# Commands libraries run on their own during a unit test, each answered as if the program were
# not installed (FileNotFoundError, which each of them handles), so no process starts: why.
ABSENT: dict[tuple[str, ...], str] = {
    (
        "git",
        "rev-parse",
        "--short",
        "HEAD",
    ): "jupyter_server's system info, at an in-process server's start, when its package is in a"
    " git checkout (a .venv in this repository); without git it reports no commit",
    ("uname", "-p"): "platform.uname().processor, for jupyter_server's system info at the same"
    " start; without uname it is blank",
}


def _refuse(what: str) -> NoReturn:
    # pytest.fail's exception is no Exception: a library's `except Exception` does not hide it
    pytest.fail(
        f"a unit test started a process ({what}): unit tests start no process; "
        "move the test to tests/e2e/",
        pytrace=True,
    )


def _argv(args: Any) -> tuple[str, ...]:
    return tuple(map(os.fsdecode, [args] if isinstance(args, (str, bytes, os.PathLike)) else args))


def _start_child(self: subprocess.Popen, args: Any, *rest: Any) -> None:  # type: ignore[type-arg]
    if _argv(args) in ABSENT:
        raise FileNotFoundError(
            2, "not run in a unit test (tests/unit/conftest.py)", _argv(args)[0]
        )
    _refuse(f"subprocess.Popen({args!r})")


def _refuser(name: str) -> Any:
    def refuse(*args: Any, **_kw: Any) -> NoReturn:
        _refuse(f"{name}{args!r}")

    return refuse


@pytest.fixture(autouse=True)
def _no_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # every subprocess.Popen starts its child here, however the class was imported: run() and
    # friends, os.popen, asyncio's subprocesses, jupyter_client's kernels (a private method, but
    # the one place; a changed name fails every unit test at setup, not silently)
    monkeypatch.setattr(subprocess.Popen, "_execute_child", _start_child)
    monkeypatch.setattr(
        multiprocessing.process.BaseProcess, "start", _refuser("multiprocessing Process.start")
    )
    # what starts a process without subprocess (os.spawn* goes through os.fork)
    for name in ("system", "fork", "forkpty", "posix_spawn", "posix_spawnp"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, _refuser(f"os.{name}"))
    yield


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> None:
    # before the fixture runs (and before its value is cached), for the fixtures scoped to a
    # unit test or its module, and the fixtures they use; a session-scoped one is set up in the
    # session's scope, which this folder's hooks do not see: pytest_runtest_call catches those
    why = not_in_unit(request.node, [fixturedef.argname, *fixturedef.argnames])
    if why:
        pytest.fail(why, pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    # every fixture the test ended up with, asked for at run time too (a server set up earlier
    # by an e2e test is not set up again: only this shows the unit test used it)
    try:
        return (yield)
    finally:
        request = getattr(item, "funcargs", {}).get("request")
        why = request is not None and not_in_unit(item, request.fixturenames)
        if why:
            pytest.fail(why, pytrace=False)
