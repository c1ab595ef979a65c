"""Three `rsql-proxy` replicas sharing one Redis and one PostgreSQL."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import ProxyService, start_service

pytestmark = pytest.mark.slow

USERS = {f"tok-u{i}": {"name": f"u{i}"} for i in range(40)} | {
    "tok-admin": {"name": "admin", "admin": True}
}
ASK = {"model": "fake-small", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def replicas(
    tmp_path: Path,
    fresh_provider: FakeProvider,
    redis_url: str,
    redis_prefix: str,
    pg_database: str,
):
    prefix = redis_prefix  # its keys are deleted after the replicas stop
    started: list[ProxyService] = []

    def start(**proxy_config: Any) -> list[ProxyService]:
        config = {
            "upstreams": upstreams_for(fresh_provider),
            "default_model": "fake-small",
            "state_url": redis_url,
            "state_prefix": prefix,
            "database_url": pg_database,
            **proxy_config,
        }
        for i in range(3):
            started.append(start_service(tmp_path / f"r{i}", config, static_users=USERS))
        return started

    yield start
    for s in started:
        s.stop(9)


def post(svc: ProxyService, token: str, body: dict | None = None) -> tuple[int, dict, bytes]:
    return svc.request("POST", "v1/chat/completions", body or ASK, token=token)


def test_a_user_limit_admits_exactly_n_across_replicas(replicas) -> None:
    reps = replicas(user_limits=["10/minute"])
    with ThreadPoolExecutor(30) as pool:
        results = list(pool.map(lambda i: post(reps[i % 3], "tok-u1")[0], range(45)))
    assert results.count(200) == 10
    assert results.count(429) == 35
    me = json.loads(reps[2].request("GET", "me", token="tok-u1")[2])
    assert me["limits"][0]["used"] == 10


def test_account_limits_hold_across_replicas(replicas, fresh_provider: FakeProvider) -> None:
    # the provider allows each account 5 requests per 2 s; so do we
    for pol in fresh_provider.keys.values():
        pol.limit, pol.window = 5, 2.0
    fresh_provider.latency = 0.02
    limited = {"limits": ["5 per 2 seconds"]}
    reps = replicas(
        upstreams=upstreams_for(fresh_provider, a1=limited, b1=limited),
        max_wait_seconds=30.0,
    )
    t0 = time.monotonic()
    with ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(lambda i: post(reps[i % 3], f"tok-u{i % 40}"), range(60)))
    elapsed = time.monotonic() - t0
    refused = [(status, body[:300]) for status, _, body in answers if status != 200]
    assert not refused, (
        refused,
        fresh_provider.count_by_alias(None),
        [line for r in reps for line in r.log().splitlines() if "WARNING" in line][-20:],
    )
    # two accounts x 5 per 2 s = 5/s: 60 requests need about 12 s
    assert 9 < elapsed < 25, elapsed
    # every request is stamped into the shared window when it completes (after the provider
    # saw it), and all replicas read one clock (Redis TIME): no upstream 429 is left
    assert fresh_provider.too_many == 0


def test_usage_rows_of_all_replicas_land_in_postgresql(replicas, pg_database: str) -> None:
    reps = replicas()
    ids = set()
    for i in range(30):
        status, headers, _ = post(reps[i % 3], f"tok-u{i % 5}")
        assert status == 200
        ids.add(headers["x-request-id"])
    for r in reps:
        assert r.stop(signal.SIGTERM) == 0
    import psycopg

    with psycopg.connect(
        pg_database.replace("postgresql://postgres@", "postgresql://postgres@")
    ) as conn:
        stored = {row[0] for row in conn.execute("SELECT request_id FROM rsql_usage")}
    assert stored == ids


def test_admin_stats_read_the_shared_log(replicas) -> None:
    reps = replicas()
    for i in range(9):
        post(reps[i % 3], "tok-u7")
    deadline = time.monotonic() + 10
    while True:
        stats = json.loads(reps[0].request("GET", "admin/stats?hours=1", token="tok-admin")[2])
        if stats["requests"] >= 9 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert stats["requests"] == 9 and stats["by_user"][0] == {
        **stats["by_user"][0],
        "user": "u7",
        "requests": 9,
    }
    status = json.loads(reps[1].request("GET", "status", token="tok-u7")[2])
    assert status["state"] == {"backend": "redis", "reachable": True}
    assert status["database"] == {"backend": "postgresql", "reachable": True}


def test_killed_replica_leaks_no_slot_beyond_its_lease(
    replicas, fresh_provider: FakeProvider
) -> None:
    reps = replicas(user_concurrency=1, lease_seconds=3.0)
    fresh_provider.latency = 0.0
    body = json.dumps(
        {**ASK, "stream": True, "messages": [{"role": "user", "content": " ".join(["w"] * 400)}]}
    ).encode()
    u = urllib.parse.urlparse(reps[0].url)
    sock = socket.create_connection((u.hostname, u.port))
    sock.sendall(
        f"POST {u.path}v1/chat/completions HTTP/1.1\r\nHost: {u.netloc}\r\nAuthorization: Bearer tok-u3\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    assert b"200 OK" in sock.recv(4096)
    assert post(reps[1], "tok-u3")[0] == 429  # the slot is held while the stream runs
    reps[0].proc.send_signal(signal.SIGKILL)  # the replica dies mid-stream
    reps[0].proc.wait(5)
    sock.close()
    killed = time.monotonic()
    assert post(reps[1], "tok-u3")[0] == 429  # nobody released it...
    while post(reps[2], "tok-u3")[0] != 200:  # ...but the lease runs out on its own
        assert time.monotonic() - killed < 3.0 + 2.0, "the slot outlived its lease"
        time.sleep(0.2)
    assert time.monotonic() - killed > 1.0


@pytest.mark.parametrize("fail_open", [False, True])
def test_redis_outage_is_configurable_and_never_a_crash(
    service_factory, fresh_provider: FakeProvider, fail_open: bool
) -> None:
    from tests.helpers import free_port

    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    svc = service_factory(
        {
            "upstreams": upstreams_for(fresh_provider),
            "default_model": "fake-small",
            "state_url": dead,
            "fail_open": fail_open,
            "user_limits": ["5/minute"],
        },
        static_users=USERS,
    )
    statuses = [post(svc, "tok-u1")[0] for _ in range(3)]
    status = json.loads(svc.request("GET", "status", token="tok-u1")[2])
    assert status["state"] == {"backend": "redis", "reachable": False}
    assert status["status"] == "degraded"
    if fail_open:
        assert statuses == [200, 200, 200]
    else:
        code, headers, raw = post(svc, "tok-u1")
        assert statuses == [503, 503, 503] and code == 503
        assert headers["retry-after"] == "5" and "Redis" in json.loads(raw)["error"]["message"]
    svc.stop()
    log = svc.log()
    assert log.count("state backend redis unreachable") == 1  # once per outage, not per request
    assert "Traceback" not in log


def test_replicas_agree_on_a_window_started_on_one_of_them(replicas) -> None:
    """An admin starts an exam window on one replica; within the windows' refresh time every
    replica refuses its users with the window's message, and ending it on another lifts it."""
    reps = replicas()
    window = {
        "name": "exam",
        "users": ["u5"],
        "minutes": 10,
        "mode": "off",
        "message": "Exam: no assistant",
    }
    status, _, raw = reps[0].request("POST", "admin/windows", window, token="tok-admin")
    assert status == 200, raw
    deadline = time.monotonic() + 10  # REFRESH_SECONDS (2 s), with room for a slow machine
    seen: set[int] = set()
    while len(seen) < 3:
        assert time.monotonic() < deadline, f"replicas refusing so far: {seen}"
        for i, r in enumerate(reps):
            status, _, raw = post(r, "tok-u5")
            if status == 403:
                err = json.loads(raw)["error"]
                assert err["code"] == "policy_window" and err["message"].startswith(
                    "Exam: no assistant"
                )
                seen.add(i)
        time.sleep(0.2)
    assert post(reps[1], "tok-u6")[0] == 200  # only the window's users
    listed = json.loads(reps[2].request("GET", "admin/windows", token="tok-admin")[2])["windows"]
    assert [(w["name"], w["active"]) for w in listed] == [("exam", True)]
    assert reps[2].request("POST", "admin/windows/exam/end", {}, token="tok-admin")[0] == 200
    deadline = time.monotonic() + 10
    while any(post(r, "tok-u5")[0] != 200 for r in reps):
        assert time.monotonic() < deadline
        time.sleep(0.2)
