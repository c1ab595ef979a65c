"""Graceful shutdown of `rsql-proxy`: SIGTERM in the middle of 50 streams."""

from __future__ import annotations

import http.client
import json
import signal
import sqlite3
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import ProxyService, start_service
from tests.helpers.services import leases_held

pytestmark = pytest.mark.slow

USERS = {f"tok-u{i}": {"name": f"u{i}"} for i in range(5)}
STREAMS = 50


@pytest.fixture
def replica(tmp_path: Path, fresh_provider: FakeProvider, redis_url: str, redis_prefix: str):
    prefix = redis_prefix  # its keys are deleted after the replicas stop
    started: list[ProxyService] = []

    def start(name: str, **proxy_config: Any) -> ProxyService:
        config = {
            "upstreams": upstreams_for(fresh_provider),
            "default_model": "fake-small",
            "state_url": redis_url,
            "state_prefix": prefix,
            # leases of their own for every request: a leaked one would stay in Redis
            "user_concurrency": 100,
            "global_concurrency": 1000,
            "database_url": f"sqlite:///{tmp_path / name}/usage.sqlite",
            **proxy_config,
        }
        started.append(start_service(tmp_path / name, config, static_users=USERS))
        return started[-1]

    start.prefix = prefix  # type: ignore[attr-defined]
    yield start
    for s in started:
        s.stop(9)


class Stream:
    """One streamed chat request read to its end on a connection of its own."""

    def __init__(self, svc: ProxyService, token: str, started: threading.Semaphore) -> None:
        self.svc, self.token, self.started = svc, token, started
        self.status = 0
        self.request_id = ""
        self.body = b""

    def run(self) -> Stream:
        u = urllib.parse.urlparse(self.svc.url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        body = json.dumps(
            {
                "model": "fake-small",
                "stream": True,
                "messages": [{"role": "user", "content": "tell me a long story"}],
            }
        )
        conn.request(
            "POST",
            u.path + "v1/chat/completions",
            body,
            {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        self.status = resp.status
        self.request_id = resp.getheader("X-Request-Id", "")
        try:
            self.body = resp.read1(65536)  # the first event: the stream is under way
            self.started.release()
            while chunk := resp.read1(65536):
                self.body += chunk
        except (http.client.IncompleteRead, ConnectionError) as exc:
            self.body += getattr(exc, "partial", b"")
        finally:
            conn.close()
        return self

    @property
    def done(self) -> bool:
        return self.body.rstrip().endswith(b"data: [DONE]")

    @property
    def cut(self) -> bool:
        last = self.body.rstrip().rsplit(b"\n\n", 1)[-1]
        if not last.startswith(b"data: {"):
            return False
        err = json.loads(last[6:]).get("error") or {}
        return err.get("code") == "shutting_down" and "shutting down" in err.get("message", "")


def stream_and_stop(svc: ProxyService, during: Any = None) -> tuple[list[Stream], float, int]:
    """50 streams through `svc`; SIGTERM once all are under way; (streams, seconds to exit, code)."""
    started = threading.Semaphore(0)
    streams = [Stream(svc, f"tok-u{i % 5}", started) for i in range(STREAMS)]
    with ThreadPoolExecutor(STREAMS) as pool:
        futures = [pool.submit(s.run) for s in streams]
        for _ in range(STREAMS):
            assert started.acquire(timeout=20), [f.exception() for f in futures if f.done()]
        t0 = time.monotonic()
        svc.proc.send_signal(signal.SIGTERM)
        if during is not None:
            during()
        code = svc.proc.wait(30)
        took = time.monotonic() - t0
        for f in futures:
            f.result(30)
    return streams, took, code


def usage_rows(svc: ProxyService) -> dict[str, int]:
    with sqlite3.connect(svc.cwd / "usage.sqlite") as db:
        return dict(db.execute("SELECT request_id, status FROM usage"))


def test_streams_in_flight_finish_within_the_grace(
    replica, fresh_provider: FakeProvider, redis_url: str
) -> None:
    a = replica("a", shutdown_grace_seconds=20.0)
    b = replica("b")
    fresh_provider.script(*[" ".join(["word"] * 400)] * STREAMS)  # about 2 s each, 5 ms a word
    u = urllib.parse.urlparse(a.url)
    kept = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    kept.request("GET", "/v1/models", headers={"Authorization": "Bearer tok-u0"})
    assert kept.getresponse().read() and True
    seen: dict[str, Any] = {}

    def during() -> None:
        deadline = time.monotonic() + 10
        while f"draining {STREAMS} requests" not in a.log():  # the signal is handled on its loop
            assert time.monotonic() < deadline, a.log()
            time.sleep(0.02)
        # a request on a kept-alive connection: told to go elsewhere, and the connection closes
        kept.request("GET", "/v1/models", headers={"Authorization": "Bearer tok-u0"})
        resp = kept.getresponse()
        seen["kept"] = (
            resp.status,
            resp.getheader("Retry-After"),
            resp.getheader("Connection"),
            resp.read(),
        )
        # the other replica answers meanwhile
        seen["b"] = b.request(
            "POST",
            "v1/chat/completions",
            {"model": "fake-small", "messages": [{"role": "user", "content": "hi"}]},
            token="tok-u1",
        )[0]

    streams, took, code = stream_and_stop(a, during)
    assert code == 0, a.log()
    assert all(s.status == 200 and s.done for s in streams), [
        s.body[-200:] for s in streams if not s.done
    ]
    status, retry_after, connection, body = seen["kept"]
    assert (status, retry_after, connection) == (503, "2", "close"), seen
    assert json.loads(body)["error"]["code"] == "shutting_down"
    assert seen["b"] == 200
    log = a.log()
    assert f"draining {STREAMS} requests (grace 20 s)" in log, log
    assert f"{STREAMS} finished, 0 ended by the shutdown" in log, log
    assert leases_held(redis_url, replica.prefix) == {}
    rows = usage_rows(a)
    assert all(rows.get(s.request_id) == 200 for s in streams), rows
    print(
        f"drain with grace 20 s: {STREAMS} streams finished, process exited {took:.2f} s after SIGTERM"
    )


def test_streams_outlasting_the_grace_end_with_an_error_event(
    replica, fresh_provider: FakeProvider, redis_url: str
) -> None:
    a = replica("a", shutdown_grace_seconds=0.5)
    fresh_provider.script(*[" ".join(["word"] * 3000)] * STREAMS)  # 15 s or more each
    streams, took, code = stream_and_stop(a)
    assert code == 0, a.log()
    assert all(s.status == 200 and (s.done or s.cut) for s in streams), [
        s.body[-300:] for s in streams
    ]
    assert sum(s.cut for s in streams) >= STREAMS // 2
    assert took < 10, took
    log = a.log()
    assert f"draining {STREAMS} requests (grace 0.5 s)" in log, log
    assert "ended by the shutdown" in log
    # the cut answers gave back their leases and upstream slots, and each has its usage row
    assert leases_held(redis_url, replica.prefix) == {}
    rows = usage_rows(a)
    assert all(s.request_id in rows for s in streams), (len(rows), log)
    print(
        f"drain with grace 0.5 s: {sum(s.cut for s in streams)} of {STREAMS} streams cut, "
        f"process exited {took:.2f} s after SIGTERM"
    )


def test_answers_not_begun_when_the_grace_ends_get_a_503(
    replica, fresh_provider: FakeProvider, redis_url: str
) -> None:
    a = replica("a", shutdown_grace_seconds=0.3)
    fresh_provider.latency = 8.0  # the provider thinks for longer than the grace
    ask = {"model": "fake-small", "messages": [{"role": "user", "content": "think hard"}]}
    with ThreadPoolExecutor(5) as pool:
        futures = [
            pool.submit(a.request, "POST", "v1/chat/completions", ask, f"tok-u{i}")
            for i in range(5)
        ]
        deadline = time.monotonic() + 10
        while len(fresh_provider.received) < 5:  # all five are upstream
            assert time.monotonic() < deadline
            time.sleep(0.05)
        t0 = time.monotonic()
        a.proc.send_signal(signal.SIGTERM)
        assert a.proc.wait(20) == 0, a.log()
        took = time.monotonic() - t0
        answers = [f.result(10) for f in futures]
    for status, headers, body in answers:
        assert (status, headers.get("retry-after")) == (503, "2"), (status, body)
        assert json.loads(body)["error"]["code"] == "shutting_down"
    assert took < 5, took
    assert leases_held(redis_url, replica.prefix) == {}
    assert len(usage_rows(a)) == 5
