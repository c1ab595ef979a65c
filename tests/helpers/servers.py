"""Servers with the proxy: a Jupyter server in this process (pytest-jupyter's ServerApp) and the
real processes the end-to-end tests start (a Jupyter server, the rsql-proxy service, JupyterHub
with the proxy as a hub-managed service)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_server.serverapp import ServerApp
from tornado.httpserver import HTTPServer

from tests.helpers import REPO, child_env, free_port, http, stop_process, upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.kernels import KERNELS_ON_SOCKETS, short_runtime_dir


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
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = "default",
        headers: dict | None = None,
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


# token -> user of a server started with named_users (tests.helpers.identity.TokenUsers)
USERS = {
    "tok-alice": {"name": "alice", "groups": ["students"]},
    "tok-bob": {"name": "bob", "groups": ["students"]},
    "tok-carol": {"name": "carol", "groups": ["staff"]},
}

# only our extension: the others (jupyterlab, lsp, ...) triple the start-up time
ONLY_RSQL = {
    "jupyter_server_ext": True,
    "jupyterlab": False,
    "notebook": False,
    "jupyter_lsp": False,
    "jupysql_plugin": False,
    "notebook_shim": False,
    "jupyter_server_terminals": False,
}


class ServerLog(logging.Handler):
    """The lines an in-process server logs, formatted as `jupyter server` prints them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("[%(levelname)1.1s %(asctime)s %(name)s] %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class InProcessJupyter:
    """A Jupyter server with the rsql extension inside the test process.

    Its event loop runs in a thread of its own, so a test talks to it over loopback HTTP with the
    same blocking requests (and threads, and raw sockets) as to a `jupyter server` process.
    """

    url: str
    token: str
    app: ServerApp
    http_server: HTTPServer
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    logged: ServerLog
    env: dict[str, str] = field(default_factory=dict)  # os.environ as the server started

    @property
    def proxy_url(self) -> str:
        return self.url + "rsql/"

    def log(self) -> str:
        return self.logged.text()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = "default",
        headers: dict | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        tok = self.token if token == "default" else token
        return http(method, self.proxy_url + path, body, f"token {tok}" if tok else None, headers)

    def stop(self) -> None:
        """Stop serving, then shut the extensions down as the server does on exit."""
        if not self.thread.is_alive():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(15)
        self.http_server.stop()

        async def shut_down() -> None:
            await self.http_server.close_all_connections()
            await self.app.cleanup_extensions()
            await self.app.cleanup_kernels()

        # a shutdown that hangs is the test's failure, named by what still runs, not a pytest
        # timeout minutes later with the next test's logging left as this one's
        shutting = self.loop.create_task(shut_down())
        self.loop.run_until_complete(asyncio.wait({shutting}, timeout=SHUTDOWN_SECONDS))
        ServerApp.clear_instance()
        if not shutting.done():
            stuck = [t for t in asyncio.all_tasks(self.loop) if not t.done() and t is not shutting]
            shutting.cancel()
            raise AssertionError(
                f"the server did not shut down within {SHUTDOWN_SECONDS:g} s; still running:\n"
                + "\n".join(_stack(t) for t in stuck)
            )
        shutting.result()


def _stack(task: asyncio.Task[Any]) -> str:
    out = io.StringIO()
    task.print_stack(file=out)
    return out.getvalue()


SHUTDOWN_SECONDS = 30.0  # what a clean shutdown takes at most: every drain is bounded below it


def serve_in_thread(
    app: ServerApp, sock: socket.socket, loop: asyncio.AbstractEventLoop, logged: ServerLog
) -> InProcessJupyter:
    """Serve `app` (made by pytest-jupyter on `loop`, which is not running) on `sock` from a thread."""

    async def listen() -> HTTPServer:
        server = HTTPServer(app.web_app)
        server.add_socket(sock)
        return server

    http_server = loop.run_until_complete(listen())
    thread = threading.Thread(target=loop.run_forever, name="jupyter-in-process", daemon=True)
    thread.start()
    port = sock.getsockname()[1]
    return InProcessJupyter(
        f"http://127.0.0.1:{port}{app.base_url}",
        app.identity_provider.token,
        app,
        http_server,
        loop,
        thread,
        logged,
        dict(os.environ),
    )


def start_jupyter_server(
    tmp: Path,
    proxy_config: dict[str, Any],
    *,
    env: dict[str, str] | None = None,
    wait: bool = True,
    named_users: bool = False,
) -> JupyterServer:
    """Start `jupyter server` with `c.RSQLProxy.<k> = <v>` for each item of proxy_config."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    token = secrets.token_hex(16)
    cfg = tmp / "jupyter_server_config.py"
    lines = [f"c.ServerApp.jpserver_extensions = {ONLY_RSQL!r}", KERNELS_ON_SOCKETS]
    lines += [f"c.RSQLProxy.{k} = {v!r}" for k, v in proxy_config.items()]
    if named_users:  # tok-alice, tok-bob (students), tok-carol (staff) instead of one owner
        lines.append("c.ServerApp.identity_provider_class = 'tests.helpers.identity.TokenUsers'")
        env = {
            **(env or {}),
            "RSQL_TEST_TOKEN_USERS": json.dumps(USERS),
            "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
    cfg.write_text("\n".join(lines) + "\n")
    root = tmp / "root"
    root.mkdir(exist_ok=True)
    full_env = {
        **child_env(),
        "JUPYTER_RUNTIME_DIR": short_runtime_dir(),
        "JUPYTER_CONFIG_DIR": str(tmp / "config"),
        "JUPYTER_DATA_DIR": str(tmp / "data"),  # the usage log's default home
        **(env or {}),
    }
    log_path = tmp / "server.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_server",
            "--no-browser",
            f"--port={port}",
            "--ip=127.0.0.1",
            f"--IdentityProvider.token={token}",
            "--allow-root",
            f"--config={cfg}",
            f"--ServerApp.root_dir={root}",
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

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        headers: dict | None = None,
        timeout: float = 60,
    ) -> tuple[int, dict[str, str], bytes]:
        return http(
            method, self.url + path, body, f"Bearer {token}" if token else None, headers, timeout
        )

    def stop(self, sig: int = 2) -> int:
        return stop_process(self.proc, sig)


def start_workers(
    tmp: Path,
    proxy_config: dict[str, Any],
    workers: int,
    *,
    static_users: dict,
    wait: bool = True,
    umask: int = -1,
    env: dict[str, str] | None = None,
) -> ProxyService:
    """`rsql-proxy --workers N` in `tmp` (``start_service`` takes no command-line options); with
    `wait`, returns once every worker listens."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cfg = tmp / "rsql_config.py"
    lines = [f"c.RSQLProxy.{k} = {v!r}" for k, v in proxy_config.items()]
    lines.append(f"c.RSQLProxyService.static_users = {static_users!r}")
    cfg.write_text("\n".join(lines) + "\n")
    log_path = tmp / "service.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_server_ext",
            "--config",
            str(cfg),
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=tmp,
        umask=umask,
        env=child_env(**(env or {})),
    )
    svc = ProxyService(f"http://127.0.0.1:{port}/", proc, log_path, tmp)
    if not wait:
        return svc
    deadline = time.monotonic() + 40
    while svc.log().count("rsql-proxy listening") < workers:
        if proc.poll() is not None or time.monotonic() > deadline:
            svc.stop(9)
            raise RuntimeError(
                f"rsql-proxy workers did not start ({proc.returncode}):\n{svc.log()}"
            )
        time.sleep(0.1)
    return svc


def start_service(
    tmp: Path,
    proxy_config: dict[str, Any],
    *,
    static_users: dict | None = None,
    env: dict[str, str] | None = None,
    prefix: str = "/",
) -> ProxyService:
    """Start `rsql-proxy` with `c.RSQLProxy.<k> = <v>` for each item of proxy_config."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cfg = tmp / "rsql_config.py"
    lines = [f"c.RSQLProxy.{k} = {v!r}" for k, v in proxy_config.items()]
    if static_users:
        lines.append(f"c.RSQLProxyService.static_users = {static_users!r}")
    cfg.write_text("\n".join(lines) + "\n")
    log_path = tmp / "service.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_server_ext",
            "--config",
            str(cfg),
            "--port",
            str(port),
            "--base-url",
            prefix,
        ],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=tmp,
        env=child_env(**(env or {})),
    )
    svc = ProxyService(f"http://127.0.0.1:{port}{prefix}", proc, log_path, tmp)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"rsql-proxy exited ({proc.returncode}):\n{svc.log()}")
        # its own line, not a connection: another process on the port would answer that one
        if "rsql-proxy listening" in svc.log():
            return svc
        time.sleep(0.05)
    svc.stop()
    raise RuntimeError(f"rsql-proxy did not start:\n{svc.log()}")


class Hub:
    """A real JupyterHub: configurable-http-proxy, DummyAuthenticator, the proxy as its service."""

    def __init__(self, tmp: Path, provider: FakeProvider) -> None:
        self.tmp = tmp
        self.port, self.api_port, self.proxy_port, self.svc_port = (free_port() for _ in range(4))
        self.url = f"http://127.0.0.1:{self.port}/"
        self.admin_token = secrets.token_hex(16)
        runtimes = short_runtime_dir()
        rsql_cfg = tmp / "rsql_config.py"
        # the keys as a hub admin keeps them: in the hub's environment, passed on to the service
        # alone (configure_jupyterhub's `environment`), named in the config by api_key_env; the
        # kernels' environments are then checked against the hub's real ones
        upstreams, keys = [], {}
        for upstream in upstreams_for(provider):
            var = f"RSQL_TEST_HUB_KEY_{upstream['name'].upper()}"
            keys[var] = upstream.pop("api_key")
            upstreams.append({**upstream, "api_key_env": var})
        rsql_cfg.write_text(
            f"c.RSQLProxy.upstreams = {upstreams!r}\n"
            "c.RSQLProxy.default_model = 'fake-small'\n"
            "c.RSQLProxy.user_limits = ['3/minute']\n"
            # entitlements by hub group (tests/e2e/test_hub.py moves a user between them); the
            # service asks the hub again about a token after 2 s, so group changes show quickly
            "c.RSQLProxy.limit_overrides = {'user:carla': {'user_limits': ['100/minute']},"
            " 'group:students': {'models': ['fake-small'], 'default_model': 'fake-small',"
            " 'user_limits': ['100/minute']},"
            " 'group:staff': {'default_model': 'fake-large', 'user_limits': ['100/minute']}}\n"
            "c.RSQLProxy.admin_timezone = 'Europe/Berlin'\n"
            "c.RSQLProxyService.hub_cache_seconds = 2\n"
            f"c.RSQLProxy.database_url = 'sqlite:///{tmp}/usage.sqlite'\n"
            # the admin's privacy settings: every user's kernel obeys them with no set-up
            "c.RSQLProxy.context_policy = {'redact_columns': ['*email*']}\n"
            "c.RSQLProxy.redact_patterns = ['email']\n"
        )
        (tmp / "jupyterhub_config.py").write_text(f"""
import sys
from jupyter_server_ext.hub import configure_jupyterhub

c.JupyterHub.bind_url = "{self.url}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {self.api_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.proxy_port}"
c.ConfigurableHTTPProxy.pid_file = "{tmp}/proxy.pid"
c.JupyterHub.db_url = "sqlite:///{tmp}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{tmp}/cookie_secret"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {{"carla"}}
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{tmp}/home/{{username}}"
c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
# each user's kernels on Unix sockets, in a short runtime folder of their own
# (tests/helpers/kernels.py, kernel_sockets, says why)
c.Spawner.args = ["--allow-root", "--KernelManager.transport=ipc"]
c.Spawner.environment = {{"JUPYTER_RUNTIME_DIR": lambda spawner: "{runtimes}/" + spawner.user.name}}
c.Spawner.start_timeout = 90
c.Spawner.http_timeout = 90
c.JupyterHub.load_groups = {{"students": {{"users": ["stu"]}}, "staff": {{"users": ["prof"]}}}}
c.JupyterHub.services = [{{"name": "tester", "api_token": "{self.admin_token}"}}]
c.JupyterHub.load_roles = [{{"name": "tester", "services": ["tester"],
    "scopes": ["admin:users", "tokens", "admin:servers", "access:servers", "read:users", "groups"]}}]
import os
configure_jupyterhub(c, config_file="{rsql_cfg}", name="rsql", url="http://127.0.0.1:{self.svc_port}", ai_tools=True,
    environment={{name: os.environ[name] for name in {sorted(keys)!r}}})
""")
        env = child_env(
            PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"], **keys
        )
        self.log_path = tmp / "hub.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(tmp / "jupyterhub_config.py")],
            cwd=tmp,
            env=env,
            stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited:\n{self.log()}")
            try:
                if self.api("GET", "")[0] == 200 and self.service(
                    "GET", "status", self.admin_token
                )[0] in (200, 403):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"hub did not start:\n{self.log()}")
            time.sleep(0.5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _req(
        self, method: str, url: str, token: str | None, body: object = None
    ) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"token {token}"
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, data=data, method=method, headers=headers), timeout=60
            ) as r:
                raw = r.read()
                if not r.headers.get("Content-Type", "").startswith("application/json"):
                    return r.status, {"raw": raw.decode(errors="replace")}
                return r.status, json.loads(raw) if raw else {}
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                return err.code, json.loads(raw)
            except ValueError:
                return err.code, {"raw": raw.decode(errors="replace")}

    def api(self, method: str, path: str, body: object = None) -> tuple[int, dict]:
        return self._req(method, self.url + "hub/api/" + path, self.admin_token, body)

    def service(
        self, method: str, path: str, token: str | None, body: object = None
    ) -> tuple[int, dict]:
        # through the hub's public proxy, as any client would
        return self._req(method, self.url + "services/rsql/" + path, token, body)

    def token_for(self, user: str, **kw: object) -> str:
        self.api("POST", "users/" + user)
        status, body = self.api("POST", f"users/{user}/tokens", {"note": "test", **kw})
        assert status == 201, body
        return body["token"]

    def stop(self) -> None:
        self.proc.send_signal(2)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
