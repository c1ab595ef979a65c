"""Issue 24, a hostile hub user, against real processes: user names that try to reach other
users' state in Redis (reset by the admin CLI as a subprocess), a hub user named like a
service, and another hub identity in a user's own Jupyter server (a real JupyterHub and its
single-user server). The memory-state twin: tests/unit/test_abuse_identity.py."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.helpers import REPO, child_env, http, upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import Hub

pytestmark = pytest.mark.slow

ASK = {"model": "fake-small", "messages": [{"role": "user", "content": "hello"}]}
PRICED = {"prices": {"fake-small": {"input": 1000.0, "output": 1000.0}}}  # $0.001 per token

# JupyterHub allows any character but '/' in a user name: glob patterns, the key separator, and
# a prefix of another user's name
HOSTILE = {
    "tok-star": "*",
    "tok-bob": "bob",
    "tok-bobx": "bob:x",
    "tok-bqb": "b?b",
    "tok-class": "[ab]ob",
}


def spend(svc: Any, token: str, n: int = 2) -> None:
    for _ in range(n):
        status, _, raw = svc.request("POST", "v1/chat/completions", ASK, token=token)
        assert status == 200, raw


def me(svc: Any, token: str) -> dict:
    status, _, raw = svc.request("GET", "me", token=token)
    assert status == 200, raw
    return json.loads(raw)


def usage(svc: Any, token: str) -> tuple[list[int], float]:
    """What `GET me` tells the user: requests used per window, and dollars spent today."""
    body = me(svc, token)
    return [w["used"] for w in body["limits"]], body["budget"]["spent_usd"]


def admin_cli(svc: Any, *args: str) -> subprocess.CompletedProcess:
    env = child_env(RSQL_PROXY_URL=svc.url, RSQL_PROXY_TOKEN="tok-admin")
    return subprocess.run(
        [sys.executable, "-m", "jupyter_server_ext", "admin", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )


def test_resetting_one_hostile_name_in_redis_leaves_every_other_users_state(
    service_factory: Callable,
    fresh_provider: FakeProvider,
    redis_url: str,
    redis_prefix: str,
) -> None:
    users: dict[str, Any] = {tok: {"name": name, "groups": []} for tok, name in HOSTILE.items()}
    users["tok-admin"] = {"name": "root", "groups": [], "admin": True}
    svc = service_factory(
        {
            "upstreams": upstreams_for(fresh_provider, a1=PRICED, a2=PRICED, b1=PRICED),
            "default_model": "fake-small",
            "user_limits": ["50/minute", "500/day"],
            "user_daily_budget_usd": 1000.0,
            "user_concurrency": 4,
            "state_url": redis_url,
            "state_prefix": redis_prefix,
            "health_check_seconds": 0.0,
        },
        static_users=users,
    )
    for token in HOSTILE:
        spend(svc, token)
    before = {token: usage(svc, token) for token in HOSTILE}
    assert all(used == [2, 2] and spent > 0 for used, spent in before.values()), before
    for token, name in HOSTILE.items():
        p = admin_cli(svc, "reset-limits", name)
        assert p.returncode == 0, p.stderr
        after = {t: usage(svc, t) for t in HOSTILE}
        assert after[token] == ([0, 0], 0.0), (
            f"resetting {name!r} left its own state: {after[token]}"
        )
        others = {HOSTILE[t]: after[t] for t in HOSTILE if t != token}
        assert others == {HOSTILE[t]: before[t] for t in HOSTILE if t != token}, (
            f"resetting {name!r} touched others"
        )
        spend(svc, token)
        before[token] = usage(svc, token)
    # and "every user" still means every user
    p = admin_cli(svc, "reset-limits", "--all")
    assert p.returncode == 0, p.stderr
    assert all(usage(svc, t) == ([0, 0], 0.0) for t in HOSTILE)


SERVICE_USERS = {
    "tok-grader": {"name": "grader", "kind": "service"},  # the hub service `grader`
    "tok-impostor": {"name": "service:grader", "groups": []},  # a hub user who took that name
    "tok-admin": {"name": "root", "groups": [], "admin": True},
}


def test_a_hub_user_named_like_a_service_shares_nothing_with_it(
    service_factory: Callable, fresh_provider: FakeProvider
) -> None:
    svc = service_factory(
        {
            "upstreams": upstreams_for(fresh_provider),
            "default_model": "fake-small",
            "user_limits": ["2/minute"],
            "admin_users": ["service/grader"],
            "health_check_seconds": 0.0,
        },
        static_users=SERVICE_USERS,
    )
    # the impostor spends its own window, not the service's
    spend(svc, "tok-impostor")
    assert svc.request("POST", "v1/chat/completions", ASK, token="tok-impostor")[0] == 429
    assert svc.request("POST", "v1/chat/completions", ASK, token="tok-grader")[0] == 200
    # and is no admin where the service is one
    grader, impostor = me(svc, "tok-grader"), me(svc, "tok-impostor")
    assert (grader["user"], grader["admin"]) == ("service/grader", True)
    assert (impostor["user"], impostor["admin"]) == ("service:grader", False)
    assert svc.request("GET", "admin/stats", token="tok-impostor")[0] == 403
    assert svc.request("GET", "admin/stats", token="tok-grader")[0] == 200


def test_the_old_service_form_in_admin_users_stops_start_up(
    service_factory: Callable, fresh_provider: FakeProvider
) -> None:
    # 'service:grader' is a name any hub user may take: the proxy says what to write instead
    with pytest.raises(RuntimeError) as err:
        service_factory(
            {
                "upstreams": upstreams_for(fresh_provider),
                "default_model": "fake-small",
                "admin_users": ["service:grader"],
            },
            static_users=SERVICE_USERS,
        )
    assert "service/grader" in str(err.value)


def _spawn(hub: Hub, user: str) -> None:
    status, _ = hub.api("POST", f"users/{user}/server")
    assert status in (201, 202, 400), hub.log()[-3000:]  # 400: already running
    deadline = time.monotonic() + 120
    while True:
        _, model = hub.api("GET", f"users/{user}")
        if (model.get("servers") or {}).get("", {}).get("ready"):
            return
        assert time.monotonic() < deadline, hub.log()[-5000:]
        time.sleep(0.5)


def test_another_hub_identity_in_a_users_server_is_not_its_owner(hub: Hub) -> None:
    """JupyterHub lets identities other than the owner into a user's server (shared access in
    JupyterHub 5, services holding access:servers), each with a token of its own; the hub's
    identity provider marks all of them token-authenticated. Here the hub's `tester` service
    (access:servers) calls erin's proxy."""
    erin = hub.token_for("erin")
    _spawn(hub, "erin")
    base = hub.url + "user/erin/rsql/"

    def call(method: str, path: str, token: str, body: Any = None) -> tuple[int, dict]:
        status, _, raw = http(method, base + path, body, f"token {token}")
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, {"raw": raw.decode(errors="replace")}

    status, owner = call("GET", "me", erin)
    assert status == 200, owner
    assert (owner["user"], owner["admin"]) == ("erin", True)
    status, other = call("GET", "me", hub.admin_token)
    assert status == 200, other
    assert (other["user"], other["admin"]) == ("service/tester", False)
    assert call("GET", "admin/stats", hub.admin_token)[0] == 403
    assert call("POST", "admin/reset-limits", hub.admin_token, {"all": True})[0] == 403
