"""Alerts to webhooks, from real `rsql-proxy` processes, received by a loopback receiver."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.helpers import upstreams_for
from tests.helpers.fake_provider import FakeProvider, KeyPolicy
from tests.helpers.servers import start_service

USERS = {"tok-alice": {"name": "alice"}, "tok-admin": {"name": "root", "admin": True}}
ASK = {
    "model": "fake-small",
    "messages": [{"role": "user", "content": "secret prompt text 42"}],
    "max_tokens": 20,
}
PRICED = {"prices": {"fake-small": {"input": 1000.0, "output": 1000.0}}}  # $0.001 per token


class Receiver:
    """A webhook on 127.0.0.1 that records what it is sent; it can fail the first N POSTs."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.attempts = 0
        self.fail_first = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    outer.attempts += 1
                    failing = outer.attempts <= outer.fail_first
                    if not failing:
                        outer.bodies.append(json.loads(raw))
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self) -> list[str]:
        with self.lock:
            return [b.get("event", "") for b in self.bodies]

    def wait_for(self, event: str, count: int = 1, timeout: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                got = [b for b in self.bodies if b.get("event") == event]
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"no {event} alert within {timeout} s; got {self.events()}")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def _service(factory: Callable, fp: FakeProvider, receiver: Receiver, **config: Any):
    base = {
        "upstreams": upstreams_for(fp),
        "default_model": "fake-small",
        "max_wait_seconds": 0.5,
        "alert_webhooks": [receiver.url],
        "alert_retry_seconds": 0.2,
        "health_check_seconds": 0.0,
    }
    return factory({**base, **config}, static_users=USERS)


def _no_secrets(receiver: Receiver, fp: FakeProvider) -> None:
    text = json.dumps(receiver.bodies)
    for key in fp.keys:
        assert key not in text
    assert "secret prompt text" not in text


def _ask(svc: Any, n: int, body: dict[str, Any] | None = None) -> list[int]:
    return [
        svc.request("POST", "v1/chat/completions", body or ASK, token="tok-alice")[0]
        for _ in range(n)
    ]


def _quiet(seconds: float = 1.0) -> None:
    """Time for an alert that should not come to arrive if it wrongly did."""
    time.sleep(seconds)


def test_key_disabled_and_enabled_once(
    service_factory: Callable, fresh_provider: FakeProvider, receiver: Receiver
) -> None:
    fp = fresh_provider
    ups = upstreams_for(fp)
    for u in ups:
        u["models"] = ["fake-small"]
    late_key = "sk-test-z1-late0123456789"
    ups.append(
        {"name": "z1", "base_url": fp.base_url, "api_key": late_key, "models": ["fake-large"]}
    )
    svc = _service(service_factory, fp, receiver, upstreams=ups)
    large = {**ASK, "model": "fake-large"}
    # z1 alone serves fake-large, with a key the provider does not know: its 401 quotes the key
    fp.unknown_key_message = "Incorrect API key provided: {key}."
    assert _ask(svc, 1, large) == [502]
    got = receiver.wait_for("key_disabled")[0]
    assert got["details"]["alias"] == "z1" and "401" in got["details"]["reason"]
    assert "z1" in got["message"] and got["time"].endswith("Z") and got["source"] == "rsql-proxy"
    assert late_key not in json.dumps(receiver.bodies)  # the provider's words quoted it

    fp.keys[late_key] = KeyPolicy("z1")  # the provider accepts the key now
    status, _, raw = svc.request("POST", "admin/upstreams/health-check", {}, token="tok-admin")
    assert status == 200 and json.loads(raw)["upstreams"]["z1"] == "healthy"
    assert receiver.wait_for("key_enabled")[0]["details"] == {"alias": "z1"}
    assert _ask(svc, 1, large) == [200]

    # rejected again within the window: the same condition, no second alert
    del fp.keys[late_key]
    assert _ask(svc, 1, large) == [502]
    _quiet()
    assert receiver.events().count("key_disabled") == 1
    status, _, raw = svc.request("GET", "admin/alerts", token="tok-admin")
    listed = json.loads(raw)["alerts"]
    assert [a["event"] for a in listed] == ["key_enabled", "key_disabled"]  # newest first
    assert listed[1]["delivery"] == {"127.0.0.1": "sent"}
    assert svc.request("GET", "admin/alerts", token="tok-alice")[0] == 403
    _no_secrets(receiver, fp)


def test_capacity_exhausted_once(
    service_factory: Callable, fresh_provider: FakeProvider, receiver: Receiver
) -> None:
    fp = fresh_provider
    for pol in fp.keys.values():  # one request per account and minute at the provider
        pol.limit = 1
    svc = _service(service_factory, fp, receiver)
    statuses = _ask(svc, 6)
    assert statuses.count(429) >= 2
    got = receiver.wait_for("capacity_exhausted")[0]
    assert got["details"]["model"] == "fake-small"
    states = {k["alias"]: k["state"] for k in got["details"]["keys"]}
    # each key's state as the pool saw it (cooling, or healthy but at the provider's limit)
    assert set(states) == {"a1", "a2", "b1"} and set(states.values()) <= {"cooling", "healthy"}
    assert "fake-small" in got["message"] and "429" in got["message"]
    _quiet()
    assert receiver.events().count("capacity_exhausted") == 1
    _no_secrets(receiver, fp)


def test_budget_80_and_100(
    service_factory: Callable, fresh_provider: FakeProvider, receiver: Receiver
) -> None:
    fp = fresh_provider
    svc = _service(
        service_factory,
        fp,
        receiver,
        upstreams=upstreams_for(fp, a1=PRICED, a2=PRICED, b1=PRICED),
        global_daily_budget_usd=0.2,
    )
    statuses = []
    for _ in range(30):  # each request costs a few cents: the budget is spent within 30
        statuses += _ask(svc, 1)
        if statuses[-1] == 429:
            break
    assert statuses[-1] == 429 and statuses.count(200) >= 2
    b80 = receiver.wait_for("budget_80")[0]
    b100 = receiver.wait_for("budget_100")[0]
    assert b80["details"]["budget_usd"] == 0.2 and b80["details"]["percent"] >= 80
    assert b100["details"]["refusing"] is True
    _ask(svc, 2)  # still refused: no new alerts for the same day
    _quiet()
    assert receiver.events().count("budget_80") == 1 and receiver.events().count("budget_100") == 1
    _no_secrets(receiver, fp)


def test_error_rate_needs_enough_requests_and_retries_after_500(
    service_factory: Callable,
    fresh_provider: FakeProvider,
    receiver: Receiver,
) -> None:
    fp = fresh_provider
    receiver.fail_first = 2  # the first two POSTs get a 500: the alert comes with the third
    svc = _service(service_factory, fp, receiver, alert_min_requests=6, breaker_threshold=100)
    assert _ask(svc, 1) == [200]
    for alias in ("a1", "a2", "b1"):
        fp.set_fault(alias, "status", status=500)
    assert _ask(svc, 1) == [502]  # one failure of two: under alert_min_requests, no alert
    _quiet()
    assert receiver.attempts == 0
    assert _ask(svc, 5) == [502] * 5
    got = receiver.wait_for("error_rate")[0]
    assert receiver.attempts == 3
    assert got["details"]["requests"] >= 6 and got["details"]["error_rate"] > 0.5
    _ask(svc, 3)
    _quiet()
    assert receiver.events() == ["error_rate"]
    status, _, raw = svc.request("GET", "admin/alerts", token="tok-admin")
    assert json.loads(raw)["alerts"][0]["delivery"] == {"127.0.0.1": "sent"}
    _no_secrets(receiver, fp)


def test_slack_format(
    service_factory: Callable, fresh_provider: FakeProvider, receiver: Receiver
) -> None:
    fp = fresh_provider
    ups = upstreams_for(fp)
    ups.append({"name": "zz", "base_url": fp.base_url, "api_key": "sk-test-zz-unknown012345"})
    svc = _service(
        service_factory,
        fp,
        receiver,
        upstreams=ups,
        alert_webhooks=[{"url": receiver.url, "format": "slack"}],
    )
    for _ in range(10):  # until the rotation has tried the unknown key
        _ask(svc, 1)
        if receiver.bodies:
            break
        time.sleep(0.1)
    deadline = time.monotonic() + 10
    while not receiver.bodies and time.monotonic() < deadline:
        time.sleep(0.05)
    assert receiver.bodies, "no alert"
    body = receiver.bodies[0]
    assert set(body) == {"text"} and "key_disabled" in body["text"] and "zz" in body["text"]
    assert "sk-test-zz" not in body["text"]


def test_bad_webhook_config_stops_startup(
    service_factory: Callable, fresh_provider: FakeProvider, receiver: Receiver
) -> None:
    with pytest.raises(RuntimeError, match="alert_webhooks"):
        _service(
            service_factory,
            fresh_provider,
            receiver,
            alert_webhooks=[{"url": "ftp://x", "format": "json"}],
        )


def test_two_replicas_send_one_alert(
    tmp_path: Any, fresh_provider: FakeProvider, receiver: Receiver, redis_url: str
) -> None:
    fp = fresh_provider
    prefix = f"rsqltest-{secrets.token_hex(4)}:"
    config = {
        "upstreams": upstreams_for(fp),
        "default_model": "fake-small",
        "max_wait_seconds": 0.5,
        "alert_webhooks": [receiver.url],
        "alert_retry_seconds": 0.2,
        "alert_min_requests": 3,
        "breaker_threshold": 100,
        "state_url": redis_url,
        "state_prefix": prefix,
        "health_check_seconds": 0.0,
    }
    reps = [start_service(tmp_path / f"r{i}", config, static_users=USERS) for i in range(2)]
    try:
        for alias in ("a1", "a2", "b1"):
            fp.set_fault(alias, "status", status=500)
        for svc in reps:  # both replicas see the error rate pass the threshold
            assert _ask(svc, 4) == [502] * 4
        receiver.wait_for("error_rate")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
            "already sent by another replica" in s.log() for s in reps
        ):
            time.sleep(0.1)
        assert sum("already sent by another replica" in s.log() for s in reps) == 1
        _quiet()
        assert receiver.events() == ["error_rate"]
        for svc in reps:  # one shared list of recent alerts
            status, _, raw = svc.request("GET", "admin/alerts", token="tok-admin")
            assert [a["event"] for a in json.loads(raw)["alerts"]] == ["error_rate"]
    finally:
        for svc in reps:
            svc.stop(9)
        import redis

        r = redis.Redis.from_url(redis_url)
        for key in r.scan_iter(match=prefix + "*", count=1000):
            r.delete(key)
