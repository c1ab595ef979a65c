"""The rules the test folders set (tests/conftest.py, tests/unit/conftest.py): a unit test that
asks for a fixture starting a server or reaching a shared service stops the run at collection,
or fails when it asks at run time; the same in tests/e2e/ runs (and is marked slow); a unit
test that starts a process fails, naming the command.

The fixtures are checked in a small project of pytester's, run in this process, whose conftest
takes the hooks of tests/conftest.py and defines stand-ins under the refused names (nothing
starts: the rules read names).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import subprocess

import pytest

from tests.helpers import IN_CI

pytest_plugins = ["pytester"]

CONFTEST = """
import pytest

from tests.conftest import (  # noqa: F401
    pytest_collection_modifyitems,
    pytest_make_collect_report,
    pytest_runtest_makereport,
)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end")


@pytest.fixture(scope="session")
def pg_server():
    return "postgresql://nowhere"


@pytest.fixture(scope="session")
def redis_server():
    return "redis://nowhere"


@pytest.fixture
def airlines(pg_server):
    return pg_server
"""


# the small project's runs: no cache folder, no warning for the loop scope it leaves unset
QUIET = ("-p", "no:cacheprovider", "-o", "asyncio_default_fixture_loop_scope=function")

UNIT_CONFTEST = """
from tests.unit.conftest import pytest_fixture_setup, pytest_runtest_call  # noqa: F401
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    for folder in ("tests/unit", "tests/e2e"):
        (pytester.path / folder).mkdir(parents=True)
    (pytester.path / "tests/unit/conftest.py").write_text(UNIT_CONFTEST)
    return pytester


def write(pytester: pytest.Pytester, path: str, source: str) -> None:
    (pytester.path / path).write_text(source)


def test_a_unit_test_asking_for_a_server_stops_the_run_at_collection(
    project: pytest.Pytester,
) -> None:
    write(
        project,
        "tests/unit/test_a.py",
        (
            "def test_direct(pg_server):\n    pass\n\n"
            "def test_through_a_fixture(airlines):\n    pass\n\n"
            "def test_fine():\n    pass\n"
        ),
    )
    write(project, "tests/e2e/test_b.py", "def test_e2e(pg_server):\n    pass\n")
    result = project.runpytest(*QUIET)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "tests/unit/test_a.py::test_direct uses 'pg_server' (a PostgreSQL server)" in err
    assert "tests/unit/test_a.py::test_through_a_fixture uses 'pg_server'" in err
    assert "move the test to tests/e2e/" in err
    assert "test_fine" not in err and "test_e2e" not in err
    result.stdout.no_fnmatch_line("*passed*")  # nothing ran


def test_a_unit_test_asking_at_run_time_fails_and_e2e_may(project: pytest.Pytester) -> None:
    late = "def test_{}(request):\n    request.getfixturevalue({!r})\n"
    # the e2e test runs first and sets the session's server up: the unit test gets it cached
    write(project, "tests/e2e/test_b.py", late.format("late", "redis_server"))
    write(
        project,
        "tests/unit/test_a.py",
        late.format("late", "redis_server") + late.format("through_a_fixture", "airlines"),
    )
    result = project.runpytest(*QUIET, "-rA")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines_random(
        [
            "tests/unit/test_a.py::test_late uses 'redis_server' (a Redis server): *",
            "tests/unit/test_a.py::test_through_a_fixture uses 'pg_server' (a PostgreSQL server): *",
            "PASSED tests/e2e/test_b.py::test_late",
        ]
    )
    # and the folder marks the e2e test slow, its module unmarked
    project.runpytest(*QUIET, "-m", "not slow").assert_outcomes(failed=2, deselected=1)


def test_a_unit_test_starts_no_process() -> None:
    refused = pytest.fail.Exception
    with pytest.raises(refused, match=r"subprocess.Popen\(\['true'\]\)"):
        subprocess.run(["true"], check=True)
    with pytest.raises(refused, match="os.system"):
        os.system("true")
    with pytest.raises(refused, match="Process.start"):
        multiprocessing.get_context("spawn").Process(target=print).start()

    async def child() -> None:
        await asyncio.create_subprocess_exec("true")

    with pytest.raises(refused, match=r"subprocess.Popen\(\('true',\)\)"):
        asyncio.run(child())


def test_in_ci_a_skipped_test_or_module_fails_and_elsewhere_skips(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI must run every test: a test that skips (a component missing) fails there, and so does
    a module skipped as it is collected (a module-level importorskip); on a laptop both skip."""
    write(
        project,
        "tests/unit/test_a.py",
        "import pytest\n\ndef test_runs():\n    pass\n\n"
        "def test_missing():\n    pytest.skip('duckdb is not installed')\n",
    )
    write(
        project,
        "tests/unit/test_b.py",
        "import pytest\n\npytest.importorskip('no_such_package_rsql')\n\n"
        "def test_never():\n    pass\n",
    )
    monkeypatch.delenv("CI", raising=False)
    if not IN_CI:  # the laptop's way (the suite itself may run in CI, where this reads CI)
        project.runpytest(*QUIET).assert_outcomes(passed=1, skipped=2)
    monkeypatch.setenv("CI", "true")
    ran = project.runpytest(*QUIET, "-rA", "tests/unit/test_a.py")
    ran.assert_outcomes(passed=1, failed=1)
    ran.stdout.fnmatch_lines(
        ["*skipped in CI, where every test must run: *duckdb is not installed*"]
    )
    # a module skipped as it is collected stops the run there, named
    collected = project.runpytest(*QUIET, "tests/unit/test_b.py")
    assert collected.ret == pytest.ExitCode.INTERRUPTED
    collected.stdout.fnmatch_lines(
        [
            "*ERROR tests/unit/test_b.py - skipped in CI, where every test must run: *no_such_package*"
        ]
    )
