"""The hub service's probes, `health/live` and `health/ready`, through real HTTP against a real
`rsql-proxy`: no token needed, nothing named, at most one Redis ping a second however often they
are asked, and "not ready" while the service drains or has lost its Redis."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from jupyter_server_ext.probes import (
    HEALTH_CACHE_SECONDS,
    HEALTH_LIVE,
    HEALTH_PING_SECONDS,
    HEALTH_READY,
)
from tests.helpers import free_port, upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import ProxyService

pytestmark = pytest.mark.slow

PREFIX = "/services/rsql/"  # where the hub's proxy forwards the service's requests
USERS = {"tok-alice": {"name": "alice"}}
OK = {"status": "ok"}


def probe(
    svc: ProxyService, path: str, method: str = "GET", token: str | None = None
) -> tuple[int, dict, Any]:
    status, headers, body = svc.request(method, path, token=token, timeout=10)
    return status, headers, json.loads(body) if body else None


def wait_ready(svc: ProxyService, deadline: float = 30) -> None:
    """Poll readiness until 200; before that the only answer is 503 "starting"."""
    end = time.monotonic() + deadline
    while True:
        status, _, body = probe(svc, HEALTH_READY)
        if status == 200:
            return
        assert (status, body) == (503, {"status": "not ready", "reason": "starting"}), body
        assert time.monotonic() < end, svc.log()
        time.sleep(0.1)


def poll(svc: ProxyService, until: Callable[[int], bool], seconds: float) -> tuple[int, Any]:
    """Readiness until `until(status)` holds; its last (status, body)."""
    end = time.monotonic() + seconds
    while True:
        status, _, body = probe(svc, HEALTH_READY)
        if until(status):
            return status, body
        assert time.monotonic() < end, (status, body, svc.log())
        time.sleep(0.1)


def kept_alive(svc: ProxyService) -> http.client.HTTPConnection:
    """A connection opened now, which a later request can still use after the listener closes."""
    u = urllib.parse.urlparse(svc.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request("GET", PREFIX + HEALTH_LIVE)
    assert conn.getresponse().read() == b'{"status": "ok"}'
    return conn


def ask(conn: http.client.HTTPConnection, path: str) -> tuple[int, str | None, Any]:
    conn.request("GET", PREFIX + path)
    resp = conn.getresponse()
    return resp.status, resp.getheader("Connection"), json.loads(resp.read())


class RedisRelay:
    """A loopback TCP relay in front of the tests' Redis that counts the PINGs it carries, and
    can refuse connections (`down`) or take requests and answer none (`hang`)."""

    def __init__(self, redis_url: str) -> None:
        target = urllib.parse.urlparse(redis_url)
        self.target = (target.hostname or "127.0.0.1", target.port or 6379)
        self.db = target.path or "/0"
        self.mode = "up"
        self.pings = 0
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}{self.db}"

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.mode == "down":
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.conns += [client, upstream]
            threading.Thread(target=self.pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self.pump, args=(upstream, client, False), daemon=True).start()

    def pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while data := src.recv(65536):
                if from_client:
                    with self.lock:
                        self.pings += data.count(b"PING\r\n")
                if self.mode == "hang":
                    continue  # taken, never answered
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def set(self, mode: str) -> None:
        self.mode = mode
        if mode == "down":  # what the service holds breaks at once, like a dead Redis
            with self.lock:
                for s in self.conns:
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                self.conns.clear()

    def close(self) -> None:
        self.server.close()
        self.set("down")


def test_probes_answer_without_a_token_and_name_nothing(
    service_factory, fresh_provider: FakeProvider
) -> None:
    svc = service_factory(
        {"upstreams": upstreams_for(fresh_provider), "default_model": "fake-small"},
        static_users=USERS,
        prefix=PREFIX,
    )
    wait_ready(svc)
    for path in (HEALTH_LIVE, HEALTH_READY):
        status, headers, body = probe(svc, path)
        # a fixed body: no upstream alias, model, user, URL or backend, whatever is configured
        assert (status, body) == (200, OK), (path, body)
        assert (
            headers["content-type"] == "application/json" and headers["cache-control"] == "no-store"
        )
        # a token is neither needed nor looked at: a wrong one changes nothing
        assert probe(svc, path, token="not-a-token")[:3:2] == (200, OK)
        # only GET: anything else gets a JSON 405, not tornado's HTML page
        assert probe(svc, path, "POST")[:3:2] == (405, {"status": "error"})
    # the control: the same host still wants a token everywhere else
    assert svc.request("GET", "status")[0] == 401
    assert svc.request("GET", "health/other")[0] == 401
    # probes every few seconds are no news: the access log leaves them out
    assert PREFIX + HEALTH_LIVE not in svc.log() and PREFIX + HEALTH_READY not in svc.log()


def test_a_flood_of_probes_pings_redis_once_a_second_and_an_outage_is_not_ready(
    service_factory,
    fresh_provider: FakeProvider,
    redis_url: str,
    redis_prefix: str,
) -> None:
    relay = RedisRelay(redis_url)
    try:
        svc = service_factory(
            {
                "upstreams": upstreams_for(fresh_provider),
                "default_model": "fake-small",
                "state_url": relay.url,
                "state_prefix": redis_prefix,
            },
            static_users=USERS,
            prefix=PREFIX,
        )
        wait_ready(svc)
        time.sleep(HEALTH_CACHE_SECONDS)
        relay.pings = 0
        t0 = time.monotonic()
        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(lambda _: probe(svc, HEALTH_READY)[:3:2], range(300)))
        took = time.monotonic() - t0
        assert answers == [(200, OK)] * 300
        # at most one ping per HEALTH_CACHE_SECONDS, whatever the probes' rate
        assert 1 <= relay.pings <= took / HEALTH_CACHE_SECONDS + 2, (relay.pings, took)

        # Redis refuses: not ready within a probe period or two; still alive (no restart helps)
        relay.set("down")
        ready = poll(svc, lambda s: s != 200, 5)
        assert ready == (503, {"status": "not ready", "reason": "state backend unreachable"})
        assert probe(svc, HEALTH_LIVE)[:3:2] == (200, OK)

        # Redis takes the ping and never answers: the probe still answers, in bounded time, and
        # the probes waiting on the one ping in flight send no more
        relay.set("up")
        poll(svc, lambda s: s == 200, 10)
        relay.set("hang")
        time.sleep(HEALTH_CACHE_SECONDS)
        relay.pings = 0
        t0 = time.monotonic()
        with ThreadPoolExecutor(20) as pool:
            hung = list(pool.map(lambda _: probe(svc, HEALTH_READY)[:3:2], range(40)))
        assert time.monotonic() - t0 < HEALTH_PING_SECONDS + 2
        unreachable = (503, {"status": "not ready", "reason": "state backend unreachable"})
        assert all(h in ((200, OK), unreachable) for h in hung), hung
        assert probe(svc, HEALTH_READY)[0] == 503
        assert relay.pings <= 2, relay.pings

        # Redis back: ready again
        relay.set("down")  # drop the hung connections
        relay.set("up")
        assert poll(svc, lambda s: s == 200, 10) == (200, OK)
        assert "Traceback" not in svc.log()
    finally:
        relay.close()


def test_with_fail_open_a_lost_redis_leaves_the_service_ready(
    service_factory, fresh_provider: FakeProvider
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    common = {
        "upstreams": upstreams_for(fresh_provider),
        "default_model": "fake-small",
        "state_url": dead,
    }
    # the admin chose to answer without Redis: every replica going unready would undo that
    svc = service_factory({**common, "fail_open": True}, static_users=USERS, prefix=PREFIX)
    wait_ready(svc)
    assert (
        svc.request(
            "POST",
            "v1/chat/completions",
            {"messages": [{"role": "user", "content": "hi"}]},
            token="tok-alice",
        )[0]
        == 200
    )
    # the control: without fail_open the same dead Redis makes it not ready
    closed = service_factory({**common, "fail_open": False}, static_users=USERS, prefix=PREFIX)
    end = time.monotonic() + 15
    while (seen := probe(closed, HEALTH_READY)[:3:2])[1].get("reason") == "starting":
        assert time.monotonic() < end, closed.log()
        time.sleep(0.1)
    assert seen == (503, {"status": "not ready", "reason": "state backend unreachable"})


def test_draining_is_not_ready_but_still_alive(
    service_factory, fresh_provider: FakeProvider
) -> None:
    svc = service_factory(
        {
            "upstreams": upstreams_for(fresh_provider),
            "default_model": "fake-small",
            "shutdown_grace_seconds": 10.0,
        },
        static_users=USERS,
        prefix=PREFIX,
    )
    wait_ready(svc)
    fresh_provider.latency = 3.0  # one answer in flight while the service drains
    u = urllib.parse.urlparse(svc.url)
    # a probe whose head is read before the drain begins and is answered after it
    early = socket.create_connection((u.hostname, u.port), timeout=10)
    try:
        ready_conn, live_conn = kept_alive(svc), kept_alive(svc)
        early.sendall(
            f"GET {PREFIX}{HEALTH_READY} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n".encode()
        )
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(
                svc.request,
                "POST",
                "v1/chat/completions",
                {"messages": [{"role": "user", "content": "slow"}]},
                "tok-alice",
            )
            deadline = time.monotonic() + 10
            while not fresh_provider.received:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            svc.proc.send_signal(signal.SIGTERM)
            # the signal is handled on the service's loop: until then readiness may still say ok
            while (seen := ask(ready_conn, HEALTH_READY))[0] == 200:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert seen == (503, "close", {"status": "not ready", "reason": "draining"})
            # tornado read the early probe's head as kept alive: its answer still closes, so a
            # load balancer's kept connection cannot hold a draining process open
            early.sendall(b"{}")
            head, got = b"", b"-"
            while got:  # to the end the server makes: a connection left open times out here
                head += (got := early.recv(4096))
            early.close()
            assert not answer.done()  # closed once answered, not by the drain's end
            status_line, *fields = head.split(b"\r\n\r\n")[0].decode().split("\r\n")
            assert status_line.startswith("HTTP/1.1 503 "), head
            assert "connection: close" in (f.lower() for f in fields), head
            # the process is alive and says so; liveness must not restart a draining pod
            assert ask(live_conn, HEALTH_LIVE) == (200, "close", OK)
            # a kubelet opens a new connection for each probe: refused now, which fails it too
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((u.hostname, u.port), timeout=5).close()
            assert answer.result(20)[0] == 200  # the answer in flight finished
        assert svc.proc.wait(30) == 0, svc.log()
    finally:
        early.close()  # closed on the way through too: a second close does nothing
        fresh_provider.latency = 0.0
