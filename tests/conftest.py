"""Shared fixtures: a loopback fake provider, real Jupyter servers and rsql-proxy services
running the proxy, JupyterHub, PostgreSQL and Redis. The code behind them is tests/helpers/.
And the rules the folders set: tests/e2e/ is slow; tests/unit/ uses none of the servers here
but the in-process ones (see pytest_collection_modifyitems)."""

from __future__ import annotations

import atexit
import json
import logging
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

# pytest-jupyter's in-process Jupyter server, taken as fixtures only: loaded as a plugin, its
# hooks would run every async test on its own event loop instead of pytest-asyncio's
from pytest_jupyter.jupyter_core import (  # noqa: F401
    echo_kernel_spec,
    jp_asyncio_loop,
    jp_config_dir,
    jp_data_dir,
    jp_env_config_path,
    jp_env_jupyter_path,
    jp_environ,
    jp_home_dir,
    jp_kernel_dir,
    jp_runtime_dir,
    jp_system_config_path,
    jp_system_jupyter_path,
)
from pytest_jupyter.jupyter_server import (  # noqa: F401
    jp_argv,
    jp_configurable_serverapp,
    jp_http_port,
    jp_logging_stream,
    jp_nbconvert_templates,
    jp_root_dir,
    jp_server_config,
)
from pytest_jupyter.pytest_tornasync import http_server_port  # noqa: F401

from tests.helpers import (
    FAKE_KEY,
    IN_CI,
    PROVIDER_KEYS,
    REPO,
    free_port,
    missing,
    require,
    upstreams_for,
)
from tests.helpers.browser import chromium_process, running_lab
from tests.helpers.fake_provider import FakeProvider, KeyPolicy
from tests.helpers.identity import TokenUsers
from tests.helpers.servers import (
    ONLY_RSQL,
    USERS,
    Hub,
    InProcessJupyter,
    JupyterServer,
    ServerLog,
    serve_in_thread,
    start_jupyter_server,
    start_service,
)
from tests.helpers.services import (
    PG_ENGINES,
    as_service_user,
    pg_bin,
    reachable,
    redis_answers,
    trusted_postgres,
)

# configurable-http-proxy is installed into the checkout (scripts/install-system-deps.sh), not
# globally; the hubs the tests start find it on PATH
_NODE_BIN = REPO / ".tools" / "node_modules" / ".bin"
if _NODE_BIN.is_dir():
    os.environ["PATH"] = f"{_NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}"

# The suite passes whatever the shell holds: a developer's RSQL_REPLAY_FILE, proxy URL, model,
# provider keys or hub variables would reach every server and kernel the tests start (they
# inherit os.environ) and change what they do. Tests set what they need; the rest is cleared.
# RSQL_TEST_* configure the suite itself and stay.
SCRUBBED_PREFIXES = ("RSQL_", "JUPYTERHUB_", "JPY_", "OTEL_", "PAPERMILL_")
SCRUBBED_NAMES = frozenset(
    {
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "GEMINI_API_KEY",
        "GROQ_API_KEY",
        "AZURE_OPENAI_API_KEY",
        "AZURE_OPENAI_ENDPOINT",
    }
)


def scrub_environment(environ: dict[str, str] | os._Environ[str] = os.environ) -> list[str]:
    """Remove the variables the project reads from `environ`; the names removed."""
    gone = [
        k
        for k in environ
        if (k.startswith(SCRUBBED_PREFIXES) and not k.startswith("RSQL_TEST_"))
        or k in SCRUBBED_NAMES
    ]
    for k in gone:
        del environ[k]
    return gone


scrub_environment()

# the value index is kept on disk (rsql_sql/schema/value_index.py): each test process keeps
# its own, never the developer's ~/.cache; kernels and servers started from here inherit it
_CACHE_DIR = tempfile.mkdtemp(prefix="rsql-test-cache-")
os.environ["RSQL_CACHE_DIR"] = _CACHE_DIR
atexit.register(shutil.rmtree, _CACHE_DIR, True)

# jupysql (through ploomber-core) phones home for telemetry and version checks; tests, kernels
# and servers started from here talk to loopback only
os.environ["PLOOMBER_STATS_ENABLED"] = "false"
os.environ["PLOOMBER_VERSION_CHECK_DISABLED"] = "true"


@pytest.fixture(scope="session")
def provider() -> Iterator[FakeProvider]:
    """Three keys on two accounts, no limits by default; tests reset it and set policies."""
    fp = FakeProvider(
        {key: KeyPolicy(alias, account=account) for key, alias, account in PROVIDER_KEYS}
    ).start()
    yield fp
    fp.stop()


def _as_started(provider: FakeProvider) -> None:
    provider.reset()
    provider.keys = {
        key: KeyPolicy(alias, account=account) for key, alias, account in PROVIDER_KEYS
    }
    provider.latency = 0.0


@pytest.fixture
def fresh_provider(provider: FakeProvider) -> Iterator[FakeProvider]:
    """The session's provider with its three keys as they started: no limits, no faults. It is
    left so after the test too: a module fixture that reads the session's `provider` (its keys
    make a proxy's upstreams) must not find the keys or limits a test before it set."""
    _as_started(provider)
    yield provider
    _as_started(provider)


# -- kernel side in-process: an IPython shell and %%sql_ai's model call on the fake provider --


@pytest.fixture
def shell() -> Iterator[Any]:
    """The process's IPython shell, its namespace restored afterwards."""
    from IPython.core.interactiveshell import InteractiveShell

    sh = InteractiveShell.instance()
    saved = dict(sh.user_ns)
    yield sh
    sh.user_ns.clear()
    sh.user_ns.update(saved)


@pytest.fixture
def complete(fresh_provider: FakeProvider) -> Callable[[list[dict]], str]:
    """%%sql_ai's model call, straight to the fake provider (which speaks the proxy's API)."""
    from rsql_magic.client import ProxyClient

    client = ProxyClient(f"http://127.0.0.1:{fresh_provider.port}/", FAKE_KEY)

    def call(messages: list[dict]) -> str:
        return client.chat(messages, model="fake-small", client_kind="sql", temperature=0).text

    return call


def _factory(tmp_path: Path, start: Any, name: str, stop: Any) -> Iterator:
    """A fixture body: start processes on demand, each in its own folder; stop them all after."""
    started: list[Any] = []
    counter = iter(range(1000))

    def factory(proxy_config: dict[str, Any], **kw: Any) -> Any:
        s = start(tmp_path / f"{name}{next(counter)}", proxy_config, **kw)
        started.append(s)
        return s

    yield factory
    for s in started:
        stop(s)


@pytest.fixture
def jupyter_server_factory(tmp_path: Path) -> Iterator:
    yield from _factory(tmp_path, start_jupyter_server, "srv", JupyterServer.stop)


@pytest.fixture
def jp_base_url() -> str:
    """The in-process server at the root, as `jupyter server` and JupyterHub's servers are."""
    return "/"


@pytest.fixture
def jupyter_app_factory(
    jp_configurable_serverapp: Callable,  # noqa: F811
    jp_asyncio_loop: Any,  # noqa: F811
    http_server_port: tuple,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> Iterator[Callable[..., InProcessJupyter]]:
    """Start the proxy in a Jupyter server inside this process: one per test (a ServerApp is a
    singleton), configured as start_jupyter_server configures its `jupyter server` process."""
    started: list[InProcessJupyter] = []
    log = ServerLog()
    root, engine_log = logging.getLogger(), logging.getLogger("rsql")
    # the extension sends the engine's lines to the server's handlers once per process; each
    # test's server gets them afresh, and later tests find the logger as it was
    engine_state = (list(engine_log.handlers), engine_log.propagate, engine_log.level)
    engine_log.handlers.clear()
    root.addHandler(log)

    def factory(proxy_config: dict[str, Any], *, named_users: bool = False) -> InProcessJupyter:
        if started:
            raise RuntimeError("one in-process Jupyter server per test: ServerApp is a singleton")
        server_app: dict[str, Any] = {"jpserver_extensions": dict(ONLY_RSQL)}
        if named_users:  # tok-alice, tok-bob (students), tok-carol (staff) instead of one owner
            server_app["identity_provider_class"] = TokenUsers
            monkeypatch.setenv("RSQL_TEST_TOKEN_USERS", json.dumps(USERS))
        try:
            # the server is this test process: freezing its objects would keep every earlier
            # test's leftovers from the collector (a test that asks for it says True)
            proxy = {"freeze_startup_objects": False, **proxy_config}
            app = jp_configurable_serverapp(config={"ServerApp": server_app, "RSQLProxy": proxy})
        except SystemExit as exc:  # what makes `jupyter server` exit, e.g. a bad configuration
            # the extension (a traitlets app) logs to stderr, as the real server does
            raise RuntimeError(
                f"jupyter server exited ({exc.code}):\n{log.text()}\n{capsys.readouterr().err}"
            ) from None
        engine_log.addHandler(log)
        started.append(serve_in_thread(app, http_server_port[0], jp_asyncio_loop, log))
        return started[-1]

    try:
        yield factory
    finally:
        for server in started:
            server.stop()
        root.removeHandler(log)
        engine_log.handlers[:], engine_log.propagate = engine_state[0], engine_state[1]
        engine_log.setLevel(engine_state[2])


@pytest.fixture(scope="module")
def jupyter_proxy(
    provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[JupyterServer]:
    """A Jupyter server whose proxy fronts the session's fake provider (3 keys, 2 accounts)."""
    server = start_jupyter_server(
        tmp_path_factory.mktemp("jupyter_proxy"),
        {
            "upstreams": upstreams_for(provider),
            "default_model": "fake-small",
            "max_wait_seconds": 5.0,
        },
    )
    yield server
    server.stop()


@pytest.fixture
def service_factory(tmp_path: Path) -> Iterator:
    yield from _factory(tmp_path, start_service, "svc", lambda s: s.stop(9))


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, provider: FakeProvider) -> Iterator[Hub]:
    """A real JupyterHub with the proxy as its service, in front of the session's provider."""
    require("configurable-http-proxy", binary=True, reason="npm install -g configurable-http-proxy")
    require("jupyterhub")
    h = Hub(tmp_path_factory.mktemp("hub"), provider)
    yield h
    h.stop()


@pytest.fixture(scope="module")
def shared_lab(
    provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, Path]]:
    """A full JupyterLab serving the proxy in front of the session's provider, one for a
    module's browser tests (a lab takes seconds to start): (url, token, root). Each test opens
    a notebook of its own name (`tests.helpers.browser.notebook_address`) and asks a question of
    its own, since the lab's proxy caches answers at temperature 0."""
    with running_lab(tmp_path_factory.mktemp("lab"), provider) as started:
        yield started


@pytest.fixture
def chromium_browser() -> Iterator[Any]:
    """Headless Chromium for one test, which opens fresh profiles in it
    (`tests.helpers.browser.chromium`, `notebook_page`). Not shared by a module's tests:
    Playwright's sync API marks its event loop as running between calls, and pytest-jupyter's
    loop fixture, set up and closed around every test, would take that loop for its own."""
    require("playwright", reason="pip install playwright (driving Debian's chromium; no download)")
    require("chromium", binary=True, reason="apt install chromium")
    with chromium_process() as browser:
        yield browser


# What a unit test may not use: each of these starts a process of its own or reaches a server
# other processes share. A loopback server inside the test's own process (the fake providers,
# `provider` and `fresh_provider`; pytest-jupyter's `jupyter_app_factory`) is part of a unit.
NOT_IN_UNIT: dict[str, str] = {
    "pg_server": "a PostgreSQL server",
    "pg_database": "a database on a PostgreSQL server",
    "pg_url": "a database on a PostgreSQL server",
    "redis_server": "a Redis server",
    "redis_url": "a Redis server",
    "redis_prefix": "a Redis server",
    "service_factory": "rsql-proxy service processes",
    "jupyter_server_factory": "`jupyter server` processes",
    "jupyter_proxy": "a `jupyter server` process",
    "hub": "a JupyterHub process and its proxy",
    "shared_lab": "a `jupyter lab` process",
    "chromium_browser": "a Chromium process",
}


def folder_of(node: pytest.Item | pytest.Collector) -> str | None:
    """`unit` or `e2e` for a test (or module) under tests/unit/ or tests/e2e/ of the rootdir."""
    try:
        parts = node.path.relative_to(node.config.rootpath).parts
    except ValueError:  # collected from outside the checkout
        return None
    return parts[1] if len(parts) > 2 and parts[0] == "tests" else None


def not_in_unit(node: pytest.Item | pytest.Collector, fixtures: Iterable[str]) -> str | None:
    """Why `node` (a test, or the module a module-scoped fixture is set up for) may not use
    `fixtures`, or None when it may."""
    refused = sorted({name for name in fixtures if name in NOT_IN_UNIT})
    if not refused or folder_of(node) != "unit":
        return None
    uses = ", ".join(f"{name!r} ({NOT_IN_UNIT[name]})" for name in refused)
    return (
        f"{node.nodeid} uses {uses}: unit tests start no process and no server, "
        "and use no shared service; move the test to tests/e2e/"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The folder decides. Everything under tests/e2e/ is slow (`make test-fast` leaves it
    out), whether or not its module says so. A test under tests/unit/ that requests a fixture
    of NOT_IN_UNIT (directly or through another fixture) stops the run before anything starts:
    unit tests start no process and no server (an in-process loopback server in the test's own
    process is part of a unit; a separate process or a shared database is not). Fixtures asked
    for at run time (`request.getfixturevalue`), and processes, are refused by
    tests/unit/conftest.py."""
    refused = []
    for item in items:
        if folder_of(item) == "e2e":
            item.add_marker(pytest.mark.slow)
        why = not_in_unit(item, getattr(item, "fixturenames", ()))
        if why:
            refused.append(why)
    if refused:
        raise pytest.UsageError("\n".join(refused))


def in_ci() -> bool:
    """CI=true, read when asked (a test of these rules sets it for a project of its own)."""
    return IN_CI or os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _failed_in_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    report.outcome = "failed"
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.longrepr = f"skipped in CI, where every test must run: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """In CI nothing is silently skipped: a skip (a missing component) is a failure there."""
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        _failed_in_ci(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    """The same for a module skipped while it is collected (a module-level importorskip: a
    package missing), which never reaches the hook above: in CI the run stops there, naming it."""
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped:
        _failed_in_ci(report)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A PostgreSQL server to make test databases on: `postgresql://postgres@127.0.0.1:PORT`.

    $RSQL_TEST_PG_URL if set; else the machine's own on 127.0.0.1:5432 when it lets `postgres`
    in from loopback without a password (CI machines); else a throw-away cluster of our own
    (initdb in a temporary folder, a random loopback port, stopped afterwards). Nothing here
    changes the machine's PostgreSQL configuration.
    """
    require("psycopg")
    if os.environ.get("RSQL_TEST_PG_URL"):
        yield os.environ["RSQL_TEST_PG_URL"].rstrip("/")
        return
    if (
        os.environ.get("RSQL_TEST_SERVICES") != "private"
        and reachable(5432)
        and trusted_postgres(5432)
    ):
        yield "postgresql://postgres@127.0.0.1:5432"
        return
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        missing("PostgreSQL is not installed (initdb, pg_ctl), and none runs on 127.0.0.1:5432")
    # not under pytest's temporary folder: that one is private to the user running the tests,
    # and the server runs as `postgres` when they are root
    folder = Path(tempfile.mkdtemp(prefix="rsql-test-pg-"))
    data = folder / "data"
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    port = free_port()
    subprocess.run(
        as_service_user([initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]),
        check=True,
        capture_output=True,
    )
    opts = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        as_service_user(
            [pg_ctl, "-D", str(data), "-o", opts, "-l", str(folder / "log"), "-w", "start"]
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            as_service_user([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_database(pg_server: str) -> Iterator[str]:
    """A database of our own on the test PostgreSQL server, dropped afterwards."""
    require("asyncpg")
    require("psycopg")
    import psycopg

    name = "rsql_test_" + secrets.token_hex(4)
    with psycopg.connect(pg_server + "/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield f"{pg_server}/{name}"
    with psycopg.connect(pg_server + "/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh PostgreSQL database ``rsql_test_<random>`` per test module, dropped afterwards."""
    try:
        import psycopg
    except ImportError:
        missing("psycopg is not installed (pip install 'psycopg[binary]')")
    try:
        admin = psycopg.connect(pg_server + "/postgres", autocommit=True, connect_timeout=5)
    except Exception as e:
        missing(f"PostgreSQL is not reachable at {pg_server!r}: {e}")
    name = f"rsql_test_{secrets.token_hex(4)}"
    admin.execute(f"CREATE DATABASE {name}")
    url = pg_server.replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    try:
        yield url
    finally:
        for e in PG_ENGINES:
            e.dispose()
        from rsql_sql.databases.sqlalchemy_adapter import dispose_url_pools

        dispose_url_pools(name)
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server: `redis://127.0.0.1:PORT` (tests pick database 9 and a key prefix of their own).

    $RSQL_TEST_REDIS_URL if set; else the machine's own on 127.0.0.1:6379 (CI machines); else a
    throw-away `redis-server` of our own on a random loopback port, keeping nothing on disk.
    """
    if os.environ.get("RSQL_TEST_REDIS_URL"):
        yield os.environ["RSQL_TEST_REDIS_URL"].rstrip("/")
        return
    if os.environ.get("RSQL_TEST_SERVICES") != "private" and redis_answers(6379):
        yield "redis://127.0.0.1:6379"
        return
    binary = shutil.which("redis-server")
    if binary is None:
        missing("redis-server is not installed, and no Redis answers on 127.0.0.1:6379")
    folder = tmp_path_factory.mktemp("redis")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
            "--protected-mode",
            "yes",
        ],
        stdout=(folder / "log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while not redis_answers(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"redis-server did not start:\n{(folder / 'log').read_text()}")
        time.sleep(0.1)
    try:
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The tests' Redis database (9); pair it with `redis_prefix`."""
    require("redis")
    return redis_server + "/9"


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    prefix = f"rsqltest-{secrets.token_hex(4)}:"
    yield prefix
    import redis

    r = redis.Redis.from_url(redis_url)
    for key in r.scan_iter(match=prefix + "*", count=1000):
        r.delete(key)
    r.close()
