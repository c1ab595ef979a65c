"""`rsql-proxy`, the standalone service host: the same handlers, its own auth and lifecycle."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time

import openai
import pytest

from tests.helpers import upstreams_for
from tests.helpers.fake_provider import FakeProvider

pytestmark = pytest.mark.slow

USERS = {
    "svc-alice": {"name": "alice", "groups": ["students"]},
    "svc-bob": {"name": "bob", "groups": ["students"]},
    "svc-admin": {"name": "root", "admin": True},
}


def test_service_serves_the_same_api_under_a_prefix(
    service_factory, fresh_provider: FakeProvider
) -> None:
    svc = service_factory(
        {
            "upstreams": upstreams_for(fresh_provider),
            "default_model": "fake-small",
            "user_limits": ["2/minute"],
        },
        static_users=USERS,
        prefix="/services/rsql/",
    )
    assert svc.url.endswith("/services/rsql/")
    client = openai.OpenAI(base_url=svc.url + "v1", api_key="svc-alice", max_retries=0)
    r = client.chat.completions.create(
        model="fake-small", messages=[{"role": "user", "content": "hi"}]
    )
    assert r.choices[0].message.content == "Fake answer to: hi"
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model="fake-small", messages=[{"role": "user", "content": "a b"}], stream=True
        )
        if c.choices
    )
    assert streamed == "Fake answer to: a b"
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="fake-small", messages=[{"role": "user", "content": "x"}]
        )
    # bob's window is his own; the admin sees both in the usage log
    assert (
        svc.request(
            "POST",
            "v1/chat/completions",
            {"messages": [{"role": "user", "content": "x"}]},
            token="svc-bob",
        )[0]
        == 200
    )
    assert svc.request("GET", "admin/stats", token="svc-bob")[0] == 403
    # the admin's route works under the prefix, and their usage log holds both users
    deadline = time.monotonic() + 10
    while True:
        status, _, raw = svc.request("GET", "admin/stats", token="svc-admin")
        assert status == 200, raw
        users = {u["user"] for u in json.loads(raw)["by_user"]}
        if {"alice", "bob"} <= users or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert {"alice", "bob"} <= users, users
    assert svc.request("GET", "admin/stats", token="nope")[0] == 401
    assert svc.request("GET", "me", token=None)[0] == 401
    me = json.loads(svc.request("GET", "me", token="svc-alice")[2])
    assert me["user"] == "alice" and me["limits"][0]["used"] == 2


def test_a_service_with_no_hub_and_no_users_says_how_to_get_a_token(
    service_factory, fresh_provider: FakeProvider
) -> None:
    """Started by hand with no hub and no static users, every call is a 401: the start-up log
    says so and names the two ways out (a hub service, or static_users)."""
    bare = service_factory({"upstreams": upstreams_for(fresh_provider)})
    assert bare.request("GET", "me", token="anything")[0] == 401
    deadline = time.monotonic() + 15  # written once the engine is ready, just after listening
    while "rsql-proxy listening" not in bare.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = bare.log()
    assert "every request gets a 401" in log
    assert "configure_jupyterhub" in log and "c.RSQLProxyService.static_users" in log
    with_users = service_factory({"upstreams": upstreams_for(fresh_provider)}, static_users=USERS)
    deadline = time.monotonic() + 15
    while "rsql-proxy listening" not in with_users.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "every request gets a 401" not in with_users.log()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stops_promptly_and_flushes_the_usage_log(
    service_factory, fresh_provider: FakeProvider, sig: int
) -> None:
    svc = service_factory(
        {"upstreams": upstreams_for(fresh_provider), "default_model": "fake-small"},
        static_users=USERS,
    )
    ids = [
        svc.request(
            "POST",
            "v1/chat/completions",
            {"messages": [{"role": "user", "content": "x"}]},
            token="svc-alice",
        )[1]["x-request-id"]
        for _ in range(25)
    ]
    began = time.monotonic()
    assert svc.stop(sig) == 0
    # nothing in flight: no grace waited out, nor the 5 s the last connections get to close
    assert time.monotonic() - began < 3
    rows = (
        sqlite3.connect(svc.cwd / "rsql_usage.sqlite")
        .execute("SELECT request_id, user FROM usage")
        .fetchall()
    )
    assert {r[0] for r in rows} == set(ids) and {r[1] for r in rows} == {"alice"}
    assert "rsql-proxy stopped" in svc.log()


def test_bad_config_exits_with_a_message(tmp_path, fresh_provider: FakeProvider) -> None:
    cfg = tmp_path / "rsql_config.py"
    ups = upstreams_for(fresh_provider)
    ups[0]["token_limits"] = ["lots/minute"]
    cfg.write_text(f"c.RSQLProxy.upstreams = {ups!r}\n")
    done = subprocess.run(
        [sys.executable, "-m", "jupyter_server_ext", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "upstream 'a1': field 'token_limits': cannot parse limit 'lots/minute'" in done.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "jupyter_server_ext", "--config", str(tmp_path / "nope.py")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "no such file" in missing.stderr
