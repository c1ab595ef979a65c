"""Code the tests share: components a test needs, child processes' environment, loopback HTTP.

Modules: ``fake_provider`` (the loopback provider), ``servers`` (Jupyter servers, the rsql-proxy
service, JupyterHub), ``kernels`` (notebooks in real kernels, the in-process chat panel),
``browser`` (JupyterLab for headless Chromium), ``services`` (PostgreSQL and Redis discovery),
``identity`` (named token users in a Jupyter server), ``payloads`` (hostile answers),
``shop`` (the SQL tests' database), ``loopback`` (the fake providers' server base) with
``fake_azure`` and ``fake_anthropic``, ``own_servers`` (PostgreSQL and Redis a test may stop),
``kernel_policy``, ``dist`` (the wheel as `make dist` builds it, the registry a user's pip
asks), and the scenarios a unit test and its end-to-end twin share (one case each
side: ``sql_fixtures``, ``inflight``, ``policy_proxy``, ``replay``, ``tracing``,
``usage_spool``, ``window_stamping``). Fixtures live in ``tests/conftest.py``; tests/unit's own
conftest keeps unit tests from starting processes or using shared services.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    from tests.helpers.fake_provider import FakeProvider

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REPO = Path(__file__).resolve().parents[2]

# the fake provider's keys: (key, alias, account); three keys on two accounts
PROVIDER_KEYS = [
    ("sk-test-a1-fake0123456789", "a1", "acct-a"),
    ("sk-test-a2-fake0123456789", "a2", "acct-a"),
    ("sk-test-b1-fake0123456789", "b1", "acct-b"),
]
FAKE_KEY = PROVIDER_KEYS[0][0]


def missing(msg: str) -> NoReturn:
    """A component is missing: skip with ``msg``; in CI, where every test must run, fail."""
    if IN_CI:
        pytest.fail(f"CI must run every test, but {msg}")
    pytest.skip(msg)


def require(what: str, *, binary: bool = False, reason: str = "") -> None:
    """Skip when a component is missing, with a reason; in CI a missing component fails."""
    found = shutil.which(what) if binary else importlib.util.find_spec(what) is not None
    if found:
        return
    missing(f"{what} is not installed" + (f" ({reason})" if reason else ""))


def child_env(**extra: str) -> dict[str, str]:
    """os.environ for a server or kernel started by a test, without R's LD_LIBRARY_PATH.

    rpy2 puts R's library folders into LD_LIBRARY_PATH when a test in this process starts R;
    a Python started with it loads the system libpython and dies on import of _ssl.
    """
    env = {**os.environ, **extra}
    if "/usr/lib/R" in env.get("LD_LIBRARY_PATH", ""):
        env.pop("LD_LIBRARY_PATH")
    return env


def http(
    method: str,
    url: str,
    body: Any = None,
    authorization: str | None = None,
    headers: dict | None = None,
    timeout: float = 60,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request: (status, lower-cased headers, body), error statuses included."""
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    if authorization:
        hdrs["Authorization"] = authorization
    data = (
        None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    )
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        headers = {k.lower(): v for k, v in err.headers.items()}
        try:
            return err.code, headers, err.read()
        except ConnectionResetError:
            # a server that refuses a request outright (tornado's 400 for a control character
            # in a header) closes at once; with the request's body still unread on its side the
            # close is a reset, which can overtake the answer's body but not its status line
            return err.code, headers, b""


def _own_ports() -> Iterator[int]:
    """This test process's own loopback ports, each handed out once, in a span the kernel never
    picks by itself.

    A port the kernel chose for `bind(0)` and we let go is free for the kernel to choose again: for
    the other xdist worker's next `free_port()`, or as the local end of any outgoing connection.
    One full run lost a whole module that way, its service's port taken before it bound. So ports
    come from below the kernel's ephemeral range, and each worker has its own slice of it.
    """
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        low, high = (int(x) for x in text.split())
    except (OSError, ValueError):
        low, high = 49152, 65535  # IANA's ephemeral range: macOS and the BSDs
    span = range(low - 10_000, low) if low >= 12_000 else range(high + 1, 65_536)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(worker) if worker.isdigit() else 0
    size = len(span) // max(count, 1)
    mine = span[index * size : (index + 1) * size] if size >= 100 else range(0)
    if not mine:
        return
    # a random start: a second test run beside this one, or the last run's ports still in TIME_WAIT
    start = random.randrange(len(mine))
    for i in range(len(mine)):
        yield mine[(start + i) % len(mine)]


_PORTS = _own_ports()
_PORTS_LOCK = threading.Lock()  # fixtures start servers from threads: one generator for all


def free_port() -> int:
    """A loopback port nothing listens on right now, never handed out before in this process."""
    with _PORTS_LOCK:
        for port in _PORTS:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue  # someone else's, or still in TIME_WAIT from an earlier run
                return port
    with socket.socket() as s:  # no span of our own (or all used): the kernel's choice
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGINT, wait: float = 20) -> int:
    """Send `sig` and wait up to `wait` seconds for the process to exit, then kill it; its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode
