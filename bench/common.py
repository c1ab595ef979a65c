"""Shared plumbing for the proxy benchmarks: processes, wrk, the network namespace, the machine.

Every process started here is registered in a ``Procs`` and stopped when its ``with`` block ends,
on success or failure. Every load is bounded: wrk runs for a fixed duration, clients for a fixed
count and time. Loopback only.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PY = sys.executable
LUA = BENCH / "chat.lua"
WRK = shutil.which("wrk") or "/usr/bin/wrk"
LITELLM_VENV = BENCH / ".venv-litellm"
NETNS = "rsqlbench"
KEYS = [f"sk-bench-{c}-" + "0123456789abcdef" * 2 for c in "abc"]
STATIC_TOKEN = "bench-" + "0" * 24
MODEL = "fake-small"


def log(*args: Any) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *args, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Netns:
    """A loopback-only network namespace (nothing started in it can leave the machine)."""

    def __init__(self, name: str = NETNS) -> None:
        self.name = name
        self.made = False

    def __enter__(self) -> Netns:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.made = True
        subprocess.run(
            ["ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "up"], check=True
        )
        return self

    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def __exit__(self, *exc: Any) -> None:
        if self.made:
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


def in_ns(ns: Netns | None) -> list[str]:
    return ns.prefix() if ns is not None else []


def port_free_in(ns: Netns | None) -> int:
    """A port for a server: any free one; inside a fresh namespace every port is free."""
    return free_port()


class Procs:
    """Processes started by a benchmark; all are stopped on exit, even on failure."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.items: list[tuple[str, subprocess.Popen, Path]] = []

    def __enter__(self) -> Procs:
        self.workdir.mkdir(parents=True, exist_ok=True)
        return self

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        replace_env: bool = False,
    ) -> subprocess.Popen:
        logf = self.workdir / f"{name}.log"
        proc = subprocess.Popen(
            list(argv),
            stdout=logf.open("wb"),
            stderr=subprocess.STDOUT,
            env=dict(env or {}) if replace_env else {**os.environ, **(env or {})},
            cwd=cwd or self.workdir,
            start_new_session=True,
        )
        self.items.append((name, proc, logf))
        return proc

    def logtext(self, name: str) -> str:
        for n, _, logf in self.items:
            if n == name:
                return logf.read_text(errors="replace")[-4000:]
        return ""

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGINT) -> None:
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)  # its own session: reaches `ip netns exec`'s child too
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def __exit__(self, *exc: Any) -> None:
        for _, proc, _ in reversed(self.items):
            self.stop(proc)
        self.items.clear()


def wait_http(
    url: str,
    proc: subprocess.Popen,
    procs: Procs,
    name: str,
    *,
    ns: Netns | None = None,
    timeout: float = 60.0,
    headers: dict[str, str] | None = None,
) -> None:
    """Wait until `url` answers (any HTTP status)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited ({proc.returncode}):\n{procs.logtext(name)}")
        if ns is None:
            try:
                req = urllib.request.Request(url, headers=headers or {})
                with urllib.request.urlopen(req, timeout=2):
                    return
            except urllib.error.HTTPError:
                return
            except OSError:
                pass
        else:  # urllib cannot enter a namespace: ask curl inside it
            args = [*in_ns(ns), "curl", "-s", "-o", "/dev/null", "-m", "2", "-w", "%{http_code}"]
            for k, v in (headers or {}).items():
                args += ["-H", f"{k}: {v}"]
            out = subprocess.run([*args, url], capture_output=True, text=True)
            if out.stdout.strip() not in ("", "000"):
                return
        time.sleep(0.2)
    raise RuntimeError(
        f"{name} did not answer at {url} within {timeout:g} s:\n{procs.logtext(name)}"
    )


def start_upstream(
    procs: Procs,
    *,
    latency: float = 0.05,
    limit: str = "",
    ns: Netns | None = None,
    name: str = "upstream",
    port: int = 0,
    timing: dict[str, float] | None = None,
    headers: bool = False,
    spans: bool = False,
    head_first: bool = False,
) -> str:
    """bench/upstream.py; `timing`: first_byte, stream_seconds, answer_seconds (its flags);
    `spans`: keep each ``@user:NAME@`` request's [arrival, end] (its ``--spans``)."""
    port = port or free_port()
    argv = [
        *in_ns(ns),
        PY,
        str(BENCH / "upstream.py"),
        "--port",
        str(port),
        "--latency",
        str(latency),
        "--ratelimit-headers",
        "on" if headers else "off",
    ]
    for k, v in (timing or {}).items():
        argv += ["--" + k.replace("_", "-"), str(v)]
    if limit:
        argv += ["--limit", limit]
    if spans:
        argv.append("--spans")
    if head_first:
        argv.append("--head-first")
    proc = procs.start(name, argv)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/stats", proc, procs, name, ns=ns)
    return base + "/v1"


def upstream_configs(base_url: str, limits: Sequence[str] = ()) -> list[dict[str, Any]]:
    return [
        {
            "name": f"key-{i}",
            "base_url": base_url,
            "api_key": key,
            "account": f"acct-{i}",
            "models": ["fake-small", "fake-large"],
            "limits": list(limits),
            "prices": {m: {"input": 0.05, "output": 0.08} for m in ("fake-small", "fake-large")},
        }
        for i, key in enumerate(KEYS)
    ]


def write_proxy_config(path: Path, proxy: dict[str, Any], extra_lines: Sequence[str] = ()) -> Path:
    lines = [f"c.RSQLProxy.{k} = {v!r}" for k, v in proxy.items()]
    path.write_text("\n".join([*lines, *extra_lines]) + "\n")
    return path


def start_service(
    procs: Procs,
    proxy: dict[str, Any],
    *,
    ns: Netns | None = None,
    name: str = "rsql-proxy",
    env: dict[str, str] | None = None,
    wrap: Sequence[str] = (),
    args: Sequence[str] = (),
    users: dict[str, dict[str, Any]] | None = None,
    wait_seconds: float = 60.0,
) -> tuple[str, str]:
    """`rsql-proxy` with a static bearer token; returns (chat URL, Authorization value).
    `users`: more static users (token: {"name": ...}), each a user of their own for the limits.
    `wait_seconds`: how long it may take to answer (longer under `wrap` = valgrind).
    The usage log is ``{workdir}/{name}/usage.sqlite``."""
    work = procs.workdir / name
    work.mkdir(parents=True, exist_ok=True)
    static = {STATIC_TOKEN: {"name": "bench"}, **(users or {})}
    cfg = write_proxy_config(
        work / "rsql_config.py",
        {"database_url": f"sqlite:///{work}/usage.sqlite", **proxy},
        [f"c.RSQLProxyService.static_users = {static!r}"],
    )
    port = free_port()
    argv = [
        *in_ns(ns),
        *wrap,
        PY,
        "-m",
        "jupyter_server_ext",
        "--config",
        str(cfg),
        "--port",
        str(port),
        *args,
    ]
    proc = procs.start(name, argv, cwd=work, env={"PYTHONPATH": str(REPO), **(env or {})})
    base = f"http://127.0.0.1:{port}/"
    auth = f"Bearer {STATIC_TOKEN}"
    wait_http(
        base + "status",
        proc,
        procs,
        name,
        ns=ns,
        headers={"Authorization": auth},
        timeout=wait_seconds,
    )
    return base + "v1/chat/completions", auth


def start_extension(
    procs: Procs,
    proxy: dict[str, Any],
    *,
    ns: Netns | None = None,
    name: str = "jupyter-server",
    env: dict[str, str] | None = None,
    wrap: Sequence[str] = (),
    noop: bool = False,
) -> tuple[str, str]:
    """A Jupyter server with only the rsql extension; returns (chat URL, Authorization value).
    With `noop`, also ``bench/noop_jupyter.py``'s authenticated no-op at ``{base}bench-noop/``."""
    work = procs.workdir / name
    for sub in ("root", "runtime", "config", "data"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    cfg = write_proxy_config(
        work / "jupyter_server_config.py",
        {"database_url": f"sqlite:///{work}/usage.sqlite", **proxy},
        [
            "c.ServerApp.jpserver_extensions = {'jupyter_server_ext': True, 'jupyterlab': False, "
            "'notebook': False, 'jupyter_lsp': False, 'jupysql_plugin': False, 'notebook_shim': False, "
            "'jupyter_server_terminals': False" + (", 'noop_jupyter': True}" if noop else "}")
        ],
    )
    token = secrets.token_hex(16)
    port = free_port()
    argv = [
        *in_ns(ns),
        *wrap,
        PY,
        "-m",
        "jupyter_server",
        "--no-browser",
        f"--port={port}",
        "--ip=127.0.0.1",
        f"--IdentityProvider.token={token}",
        "--allow-root",
        f"--config={cfg}",
        f"--ServerApp.root_dir={work / 'root'}",
        "--ServerApp.port_retries=0",
    ]
    env = {
        "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
        "JUPYTER_CONFIG_DIR": str(work / "config"),
        "JUPYTER_DATA_DIR": str(work / "data"),
        "PYTHONPATH": os.pathsep.join((str(REPO), str(REPO / "bench"))) if noop else str(REPO),
        **(env or {}),
    }
    proc = procs.start(name, argv, cwd=work / "root", env=env)
    base = f"http://127.0.0.1:{port}/"
    auth = f"token {token}"
    wait_http(base + "rsql/status", proc, procs, name, ns=ns, headers={"Authorization": auth})
    return base + "rsql/v1/chat/completions", auth


def wrk(
    url: str,
    *,
    conns: int,
    seconds: float,
    auth: str = "",
    body: str | None = None,
    ns: Netns | None = None,
    threads: int = 1,
    timeout: str = "10s",
) -> dict[str, Any]:
    """One bounded wrk run; returns its JSON summary plus req/s."""
    env = {**os.environ, "BENCH_AUTH": auth}
    if body is not None:
        env["BENCH_BODY"] = body
    argv = [
        *in_ns(ns),
        WRK,
        f"-t{threads}",
        f"-c{conns}",
        f"-d{seconds:g}s",
        "--timeout",
        timeout,
        "-s",
        str(LUA),
        url,
    ]
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=seconds + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")
    res = json.loads(line[8:])
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
    res["conns"] = conns
    return res


def chat_body(temperature: float = 0.7, stream: bool = False) -> str:
    return json.dumps(
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "how many rows in t250?"}],
            "max_tokens": 32,
            "temperature": temperature,
            "stream": stream,
        }
    )


def machine() -> dict[str, str]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    import importlib.metadata as md

    for pkg in ("tornado", "jupyter_server", "aiohttp", "redis", "prometheus_client"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[pkg] = md.version(pkg)
    # wrk is the load benches' only: a bench without it still says on what machine it ran
    wrk_v = (
        subprocess.run([WRK, "-v"], capture_output=True, text=True)
        if Path(WRK).exists()
        else subprocess.CompletedProcess([], 0, "not installed", "")
    )
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu or platform.processor(),
        "python": platform.python_version(),
        "os": platform.platform(),
        "wrk": (wrk_v.stdout + wrk_v.stderr).split("\n")[0].strip()[:40],
        **versions,
    }


def loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


@contextlib.contextmanager
def workdir(name: str) -> Iterator[Path]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix=f"rsql-bench-{name}-") as d:
        yield Path(d)


def commit_id(rev: str) -> str:
    """`rev` (a branch, a tag, "HEAD", a commit) as its short commit id: a baseline's name
    that cannot be taken for this checkout's own."""
    return subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", rev],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@contextlib.contextmanager
def worktree(rev: str) -> Iterator[Path]:
    """A scratch checkout of `rev` (put first on a service's PYTHONPATH to run its code),
    removed afterwards."""
    with workdir("baseline") as tmp:
        tree = tmp / "tree"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", "-f", str(tree), rev],
            check=True,
            capture_output=True,
        )
        try:
            yield tree
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                capture_output=True,
            )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants that it waited for (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a live process and all its live descendants (a supervisor and its workers)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d.name))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += cpu_seconds(p)
        todo += children.get(p, [])
    return total


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine so far, all cores (from /proc/stat)."""
    with contextlib.suppress(OSError):
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    return 0.0


def run_loadgen(
    ns: Netns | None,
    url: str | Sequence[str],
    auth: str,
    rate: float,
    seconds: float,
    *,
    stream: bool = False,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """bench/loadgen.py open-loop, in its own process; its parsed JSON. Several `url`s: the
    requests go to each in turn (replicas)."""
    urls = [url] if isinstance(url, str) else list(url)
    argv = [
        *in_ns(ns),
        PY,
        str(BENCH / "loadgen.py"),
        "open",
        *(arg for u in urls for arg in ("--url", u)),
        "--auth",
        auth,
        "--rate",
        str(rate),
        "--seconds",
        str(seconds),
        "--timeout",
        str(timeout),
    ]
    if stream:
        argv.append("--stream")
    res = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + timeout + 90)
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("LOADJSON ")), None)
    if line is None:
        raise RuntimeError(f"loadgen failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return json.loads(line[9:])


def upstream_stats(ns: Netns | None, base: str, reset: bool = False) -> dict[str, Any]:
    """The upstream's /stats (or /reset: zero the counts, empty the windows)."""
    path = "/reset" if reset else "/stats"
    res = subprocess.run(
        [
            *in_ns(ns),
            "curl",
            "-s",
            "-m",
            "5",
            "-X",
            "POST" if reset else "GET",
            base.rsplit("/v1", 1)[0] + path,
        ],
        capture_output=True,
        text=True,
    )
    return json.loads(res.stdout or "{}")


def server_pid(proc: subprocess.Popen) -> int:
    """The real server's pid: `ip netns exec` execs its command, so it is the same process."""
    return proc.pid


def replace_section(doc: Path, mark: str, lines: Sequence[str]) -> None:
    """Put `lines` (which start and end with `mark`) in place of `doc`'s section between two
    `mark` lines, or at its end: each bench script rewrites its own section only."""
    section = "\n".join(lines)
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if text.count(mark) >= 2:
        head, _, rest = text.partition(mark)
        _, _, tail = rest.partition(mark)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    doc.write_text(text)
