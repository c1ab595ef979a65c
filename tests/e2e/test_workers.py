"""`rsql-proxy --workers N`: several processes on one port sharing limits through Redis."""

from __future__ import annotations

import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import servers, upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import ProxyService

pytestmark = pytest.mark.slow

USERS = {
    "tok-u1": {"name": "u1"},
    "tok-u2": {"name": "u2"},
    "tok-admin": {"name": "admin", "admin": True},
}
ASK = {"model": "fake-small", "messages": [{"role": "user", "content": "hello"}]}


def start_workers(
    tmp: Path, proxy_config: dict[str, Any], workers: int, wait: bool = True
) -> ProxyService:
    return servers.start_workers(tmp, proxy_config, workers, static_users=USERS, wait=wait)


def children(pid: int) -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry))
    return out


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def post(svc: ProxyService, token: str) -> tuple[int, dict, bytes]:
    return svc.request("POST", "v1/chat/completions", ASK, token=token)


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture
def config(
    fresh_provider: FakeProvider, redis_url: str, redis_prefix: str, tmp_path: Path
) -> dict[str, Any]:
    return {
        "upstreams": upstreams_for(fresh_provider),
        "default_model": "fake-small",
        "state_url": redis_url,
        "state_prefix": redis_prefix,
        "database_url": f"sqlite:///{tmp_path}/usage.sqlite",
    }


def test_two_workers_share_one_port_and_the_user_limits(
    tmp_path: Path, config: dict[str, Any]
) -> None:
    svc = start_workers(tmp_path / "svc", {**config, "user_limits": ["10/minute"]}, 2)
    try:
        workers = children(svc.proc.pid)
        assert len(workers) == 2, workers
        # each request on a connection of its own: the kernel spreads them over both workers
        with ThreadPoolExecutor(12) as pool:
            results = [r[0] for r in pool.map(lambda _: post(svc, "tok-u1"), range(40))]
        assert results.count(200) == 10 and results.count(429) == 30, results
        # refusals are logged, each line with the pid of the worker that answered
        refused = re.findall(
            r"\[W [^\]]* rsql (\d+)\] 429 POST|\[I [^\]]* rsql (\d+)\] 429 POST", svc.log()
        )
        pids = {int(a or b) for a, b in refused}
        assert pids == workers, (pids, workers, svc.log())
        # one scrape counts every worker's requests (prometheus_client's multiprocess files)
        status, _, body = svc.request("GET", "metrics", token="tok-admin")
        assert status == 200
        text = body.decode()
        assert metric(text, "rsql_requests_total", status="200") == 10, text
        assert metric(text, "rsql_requests_total", status="429") == 30, text
        # one worker's CPU and memory would read as the service's: left out with several
        assert "process_cpu_seconds_total" not in text and "python_gc_" not in text, text
        assert svc.stop(signal.SIGTERM) == 0, svc.log()
        assert not any(alive(p) for p in workers)
        log = svc.log()
        assert log.count("draining 0 requests") == 2 and "all workers stopped" in log, log
    finally:
        svc.stop(9)


def test_two_workers_without_shared_state_are_refused(
    tmp_path: Path, config: dict[str, Any]
) -> None:
    del config["state_url"]
    svc = start_workers(tmp_path / "svc", config, 2, wait=False)
    assert svc.proc.wait(30) == 2
    log = svc.log()
    assert "--workers 2 needs shared state" in log and "c.RSQLProxy.state_url" in log, log
    assert "rsql-proxy listening" not in log
    svc = start_workers(tmp_path / "svc0", config, 0, wait=False)
    assert svc.proc.wait(30) == 2
    assert "must be at least 1, got 0" in svc.log()


def test_a_killed_worker_is_replaced(tmp_path: Path, config: dict[str, Any]) -> None:
    svc = start_workers(tmp_path / "svc", config, 2)
    try:
        before = children(svc.proc.pid)
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:
            now = children(svc.proc.pid)
            if len(now) == 2 and victim not in now and svc.log().count("rsql-proxy listening") == 3:
                break
            assert time.monotonic() < deadline, svc.log()
            time.sleep(0.1)
        assert f"worker {victim} died unexpectedly (signal SIGKILL)" in svc.log()
        (new,) = now - before
        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(lambda _: post(svc, "tok-u2")[0], range(16))) == {200}
        assert svc.stop(signal.SIGTERM) == 0, svc.log()
        assert not alive(new)
    finally:
        svc.stop(9)
