"""Shared fixtures: a loopback fake provider, and real Jupyter servers running the proxy."""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fake_provider import FakeProvider, KeyPolicy

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REPO = Path(__file__).resolve().parent.parent

# configurable-http-proxy is installed into the checkout (scripts/install-system-deps.sh), not
# globally; the hubs the tests start find it on PATH
_NODE_BIN = REPO / ".tools" / "node_modules" / ".bin"
if _NODE_BIN.is_dir():
    os.environ["PATH"] = f"{_NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}"

# jupysql (through ploomber-core) phones home for telemetry and version checks; tests, kernels
# and servers started from here talk to loopback only
os.environ["PLOOMBER_STATS_ENABLED"] = "false"
os.environ["PLOOMBER_VERSION_CHECK_DISABLED"] = "true"


def require(what: str, *, binary: bool = False, reason: str = "") -> None:
    """Skip when a component is missing, with a reason; in CI a missing component fails."""
    found = shutil.which(what) if binary else importlib.util.find_spec(what) is not None
    if found:
        return
    msg = f"{what} is not installed" + (f" ({reason})" if reason else "")
    if IN_CI:
        pytest.fail(f"CI must run every test, but {msg}")
    pytest.skip(msg)


def child_env(**extra: str) -> dict[str, str]:
    """os.environ for a server or kernel started by a test, without R's LD_LIBRARY_PATH.

    rpy2 puts R's library folders into LD_LIBRARY_PATH when a test in this process starts R;
    a Python started with it loads the system libpython and dies on import of _ssl.
    """
    env = {**os.environ, **extra}
    if "/usr/lib/R" in env.get("LD_LIBRARY_PATH", ""):
        env.pop("LD_LIBRARY_PATH")
    return env


def http(method: str, url: str, body: Any = None, authorization: str | None = None,
         headers: dict | None = None, timeout: float = 60) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request: (status, lower-cased headers, body), error statuses included."""
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    if authorization:
        hdrs["Authorization"] = authorization
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_PROVIDER_KEYS = [
    ("sk-test-a1-fake0123456789", "a1", "acct-a"),
    ("sk-test-a2-fake0123456789", "a2", "acct-a"),
    ("sk-test-b1-fake0123456789", "b1", "acct-b"),
]


@pytest.fixture(scope="session")
def provider() -> Iterator[FakeProvider]:
    """Three keys on two accounts, no limits by default; tests reset it and set policies."""
    fp = FakeProvider(
        {key: KeyPolicy(alias, account=account) for key, alias, account in _PROVIDER_KEYS}
    ).start()
    yield fp
    fp.stop()


@pytest.fixture
def fresh_provider(provider: FakeProvider) -> FakeProvider:
    """The session's provider with its three keys as they started: no limits, no faults."""
    provider.reset()
    provider.keys = {
        key: KeyPolicy(alias, account=account)
        for key, alias, account in _PROVIDER_KEYS
    }
    provider.latency = 0.0
    return provider


def upstreams_for(fp: FakeProvider, **extra: Any) -> list[dict[str, Any]]:
    """One upstream per fake key, with inline keys (tests only; users use api_key_env)."""
    out = []
    for key, pol in fp.keys.items():
        out.append(
            {
                "name": pol.alias,
                "base_url": fp.base_url,
                "api_key": key,
                "account": pol.account or pol.alias,
                "models": list(fp.model_ids),
                **extra.get(pol.alias, {}),
            }
        )
    return out


# -- kernel side in-process: an IPython shell and a chat panel on the fake provider --------

FAKE_KEY = _PROVIDER_KEYS[0][0]


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


def chat_panel_for(shell: Any, fp: FakeProvider, **kw: Any) -> Any:
    """A chat panel talking to the fake provider directly (it speaks the proxy's API)."""
    require("ipywidgets", reason="the chat panel is ipywidgets")
    from rsql_magic.chat.panel import ChatPanel
    from rsql_magic.client import ProxyClient

    kw.setdefault("model", "fake-small")
    client = ProxyClient(f"http://127.0.0.1:{fp.port}/", FAKE_KEY)
    return ChatPanel(shell, client=client, refresh_usage=False, **kw)


@dataclass
class JupyterServer:
    """A real `jupyter server` subprocess with the rsql extension."""

    url: str
    token: str
    proc: subprocess.Popen
    log_path: Path
    root: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def proxy_url(self) -> str:
        return self.url + "rsql/"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def request(
        self, method: str, path: str, body: Any = None, token: str | None = "default", headers: dict | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        tok = self.token if token == "default" else token
        return http(method, self.proxy_url + path, body, f"token {tok}" if tok else None, headers)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


USERS = {
    "tok-alice": {"name": "alice", "groups": ["students"]},
    "tok-bob": {"name": "bob", "groups": ["students"]},
    "tok-carol": {"name": "carol", "groups": ["staff"]},
}


def start_jupyter_server(tmp: Path, proxy_config: dict[str, Any], *, env: dict[str, str] | None = None,
                         wait: bool = True, named_users: bool = False) -> JupyterServer:
    """Start `jupyter server` with `c.RSQLProxy.<k> = <v>` for each item of proxy_config."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    token = secrets.token_hex(16)
    cfg = tmp / "jupyter_server_config.py"
    # only our extension: the others (jupyterlab, lsp, ...) triple the start-up time
    lines = [
        "c.ServerApp.jpserver_extensions = {'jupyter_server_ext': True, 'jupyterlab': False, "
        "'notebook': False, 'jupyter_lsp': False, 'jupysql_plugin': False, 'notebook_shim': False, "
        "'jupyter_server_terminals': False}"
    ]
    lines += [f"c.RSQLProxy.{k} = {v!r}" for k, v in proxy_config.items()]
    if named_users:  # tok-alice, tok-bob (students), tok-carol (staff) instead of one owner
        lines.append("c.ServerApp.identity_provider_class = 'tests.token_users.TokenUsers'")
        env = {**(env or {}), "RSQL_TEST_TOKEN_USERS": json.dumps(USERS),
               "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cfg.write_text("\n".join(lines) + "\n")
    root = tmp / "root"
    root.mkdir(exist_ok=True)
    full_env = {
        **child_env(),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "JUPYTER_CONFIG_DIR": str(tmp / "config"),
        "JUPYTER_DATA_DIR": str(tmp / "data"),  # the usage log's default home
        **(env or {}),
    }
    log_path = tmp / "server.log"
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "jupyter_server", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
            f"--IdentityProvider.token={token}", "--allow-root", f"--config={cfg}", f"--ServerApp.root_dir={root}",
            "--ServerApp.port_retries=0",
        ],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        env=full_env,
        cwd=root,
    )
    server = JupyterServer(f"http://127.0.0.1:{port}/", token, proc, log_path, root, full_env)
    if not wait:
        return server
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter server exited ({proc.returncode}):\n{server.log()}")
        try:
            with urllib.request.urlopen(server.url + f"api/status?token={token}", timeout=2):
                return server
        except urllib.error.HTTPError:  # it answers (a custom identity provider may say 403)
            return server
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"jupyter server did not start:\n{server.log()}")


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


@pytest.fixture(scope="module")
def jupyter_proxy(provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """A Jupyter server whose proxy fronts the session's fake provider (3 keys, 2 accounts)."""
    server = start_jupyter_server(
        tmp_path_factory.mktemp("jupyter_proxy"),
        {"upstreams": upstreams_for(provider), "default_model": "fake-small", "max_wait_seconds": 5.0},
    )
    yield server
    server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """In CI nothing is silently skipped: a skip (a missing component) is a failure there."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"skipped in CI, where every test must run: {reason}"


@dataclass
class ProxyService:
    """A real `rsql-proxy` process (the hub service host)."""

    url: str
    proc: subprocess.Popen
    log_path: Path
    cwd: Path

    @property
    def proxy_url(self) -> str:
        return self.url

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def request(self, method: str, path: str, body: Any = None, token: str | None = None,
                headers: dict | None = None, timeout: float = 60) -> tuple[int, dict[str, str], bytes]:
        return http(method, self.url + path, body, f"Bearer {token}" if token else None, headers, timeout)

    def stop(self, sig: int = 2) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def start_service(tmp: Path, proxy_config: dict[str, Any], *, static_users: dict | None = None,
                  env: dict[str, str] | None = None, prefix: str = "/") -> ProxyService:
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cfg = tmp / "rsql_config.py"
    lines = [f"c.RSQLProxy.{k} = {v!r}" for k, v in proxy_config.items()]
    if static_users:
        lines.append(f"c.RSQLProxyService.static_users = {static_users!r}")
    cfg.write_text("\n".join(lines) + "\n")
    log_path = tmp / "service.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server_ext", "--config", str(cfg), "--port", str(port),
         "--base-url", prefix],
        stdout=log_path.open("wb"), stderr=subprocess.STDOUT, cwd=tmp, env=child_env(**(env or {})),
    )
    svc = ProxyService(f"http://127.0.0.1:{port}{prefix}", proc, log_path, tmp)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"rsql-proxy exited ({proc.returncode}):\n{svc.log()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return svc
        except OSError:
            time.sleep(0.1)
    svc.stop()
    raise RuntimeError(f"rsql-proxy did not start:\n{svc.log()}")


@pytest.fixture
def service_factory(tmp_path: Path) -> Iterator:
    yield from _factory(tmp_path, start_service, "svc", lambda s: s.stop(9))


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _missing_service(msg: str) -> None:
    if IN_CI:
        pytest.fail(f"CI must run every test, but {msg}")
    pytest.skip(msg)


def _as_service_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its tools as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: p.parts[-3])
    return str(candidates[-1]) if candidates else None


def _trusted_postgres(port: int) -> bool:
    import psycopg

    try:
        with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", connect_timeout=3):
            return True
    except psycopg.Error:
        return False


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
    if os.environ.get("RSQL_TEST_SERVICES") != "private" and _reachable(5432) and _trusted_postgres(5432):
        yield "postgresql://postgres@127.0.0.1:5432"
        return
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        _missing_service("PostgreSQL is not installed (initdb, pg_ctl), and none runs on 127.0.0.1:5432")
    # not under pytest's temporary folder: that one is private to the user running the tests,
    # and the server runs as `postgres` when they are root
    folder = Path(tempfile.mkdtemp(prefix="rsql-test-pg-"))
    data = folder / "data"
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    port = free_port()
    subprocess.run(
        _as_service_user([initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]),
        check=True, capture_output=True,
    )
    opts = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        _as_service_user([pg_ctl, "-D", str(data), "-o", opts, "-l", str(folder / "log"), "-w", "start"]),
        check=True, capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(_as_service_user([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True)
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


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server: `redis://127.0.0.1:PORT` (tests pick database 9 and a key prefix of their own).

    $RSQL_TEST_REDIS_URL if set; else the machine's own on 127.0.0.1:6379 (CI machines); else a
    throw-away `redis-server` of our own on a random loopback port, keeping nothing on disk.
    """
    if os.environ.get("RSQL_TEST_REDIS_URL"):
        yield os.environ["RSQL_TEST_REDIS_URL"].rstrip("/")
        return
    if os.environ.get("RSQL_TEST_SERVICES") != "private" and _redis_answers(6379):
        yield "redis://127.0.0.1:6379"
        return
    binary = shutil.which("redis-server")
    if binary is None:
        _missing_service("redis-server is not installed, and no Redis answers on 127.0.0.1:6379")
    folder = tmp_path_factory.mktemp("redis")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder), "--protected-mode", "yes"],
        stdout=(folder / "log").open("wb"), stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while not _redis_answers(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"redis-server did not start:\n{(folder / 'log').read_text()}")
        time.sleep(0.1)
    try:
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
