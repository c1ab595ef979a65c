"""Issue 24, a hostile hub user: names that try to reach other users' state, and upstream
addresses kept out of clients' error texts. Over HTTP, in a Jupyter server in this process
(pytest-jupyter), memory state. The same attacks on Redis and on a real hub:
tests/e2e/test_abuse_identity_redis_and_hub.py."""

from __future__ import annotations

import json
import os
import time
import urllib.parse

import pytest

from tests.helpers import PROVIDER_KEYS, free_port, upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import InProcessJupyter

ASK = {"model": "fake-small", "messages": [{"role": "user", "content": "hello"}]}
PRICED = {"prices": {"fake-small": {"input": 1000.0, "output": 1000.0}}}  # $0.001 per token

# JupyterHub allows any character but '/' in a user name: each of these is a glob pattern, a
# key separator, or a prefix of another user's name
HOSTILE = {
    "tok-star": "*",
    "tok-bob": "bob",
    "tok-bobx": "bob:x",
    "tok-bqb": "b?b",
    "tok-class": "[ab]ob",
}
ADMIN = "tok-carol"


@pytest.fixture
def hostile_names(
    jupyter_app_factory, fresh_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> InProcessJupyter:
    server = jupyter_app_factory(
        {
            "upstreams": upstreams_for(fresh_provider, a1=PRICED, a2=PRICED, b1=PRICED),
            "default_model": "fake-small",
            "admin_groups": ["staff"],
            "user_limits": ["50/minute", "500/day"],
            "user_daily_budget_usd": 1000.0,
        },
        named_users=True,
    )
    # the test identity provider reads its users on every request
    monkeypatch.setenv("RSQL_TEST_TOKEN_USERS", json.dumps(token_users()))
    return server


def token_users(**more: str) -> dict[str, dict]:
    """The hostile names, the admin and `more` (token: name), as the test identity provider
    reads them."""
    names = {**HOSTILE, **more}
    users: dict[str, dict] = {tok: {"name": name, "groups": []} for tok, name in names.items()}
    users[ADMIN] = {"name": "carol", "groups": ["staff"]}
    return users


def spend(server: InProcessJupyter, token: str, n: int = 2) -> None:
    for _ in range(n):
        status, _, raw = server.request("POST", "v1/chat/completions", ASK, token=token)
        assert status == 200, raw


def usage(server: InProcessJupyter, token: str) -> tuple[list[int], float]:
    """What `GET me` tells the user: requests used per window, and dollars spent today."""
    status, _, raw = server.request("GET", "me", token=token)
    assert status == 200, raw
    me = json.loads(raw)
    return [w["used"] for w in me["limits"]], me["budget"]["spent_usd"]


def test_resetting_one_hostile_name_leaves_every_other_users_windows_and_budget(
    hostile_names: InProcessJupyter,
) -> None:
    for token in HOSTILE:
        spend(hostile_names, token)
    before = {token: usage(hostile_names, token) for token in HOSTILE}
    assert all(used == [2, 2] and spent > 0 for used, spent in before.values()), before
    for token, name in HOSTILE.items():
        status, _, raw = hostile_names.request(
            "POST", "admin/reset-limits", {"user": name}, token=ADMIN
        )
        assert status == 200, raw
        assert json.loads(raw)["reset"] == name
        after = {t: usage(hostile_names, t) for t in HOSTILE}
        assert after[token] == ([0, 0], 0.0), (
            f"resetting {name!r} left its own state: {after[token]}"
        )
        others = {HOSTILE[t]: after[t] for t in HOSTILE if t != token}
        assert others == {HOSTILE[t]: before[t] for t in HOSTILE if t != token}, (
            f"resetting {name!r} touched others"
        )
        spend(hostile_names, token)  # back as it was, for the next name's reset
        before[token] = usage(hostile_names, token)


def test_a_dead_upstreams_address_stays_out_of_the_clients_502(
    jupyter_app_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()  # nothing listens there: the connection is refused
    monkeypatch.setenv("RSQL_TEST_DEAD_KEY", "sk-dead-0123456789")
    server = jupyter_app_factory(
        {
            "upstreams": [
                {
                    "name": "private-gpu",
                    "base_url": f"http://127.0.0.1:{port}/v1",
                    "api_key_env": "RSQL_TEST_DEAD_KEY",
                    "models": ["fake-small"],
                }
            ],
            "default_model": "fake-small",
        }
    )
    status, _, raw = server.request("POST", "v1/chat/completions", ASK)
    body = raw.decode()
    assert status == 502, body
    assert "private-gpu" in body  # the client learns which upstream, by its alias
    assert str(port) not in body and "127.0.0.1" not in body, body
    assert "sk-dead" not in body
    # the admin still finds the address in the server's log, and never the key
    assert f"127.0.0.1:{port}" in server.log()
    assert "sk-dead" not in server.log()


def test_a_providers_error_that_quotes_the_key_reaches_the_client_without_it(
    jupyter_app_factory, fresh_provider: FakeProvider
) -> None:
    """Some providers' errors quote the key they were sent (a self-hosted server's "invalid
    key sk-..."): the error's words reach the caller, the key never."""
    server = jupyter_app_factory(
        {"upstreams": upstreams_for(fresh_provider), "default_model": "fake-small"}
    )
    fresh_provider.script(
        {
            "__status__": 400,
            "error": {
                "message": "Request rejected for the key {key}: bad field",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            },
        }
    )
    status, _, raw = server.request("POST", "v1/chat/completions", ASK)
    body = raw.decode()
    assert status == 400 and "Request rejected for the key" in body, body
    keys = [key for key, _, _ in PROVIDER_KEYS]
    assert fresh_provider.received[-1].status == 400  # the provider was asked, and quoted it
    assert not [k for k in keys if k in body], body


def test_the_admin_page_of_a_name_with_percent_signs_shows_that_user(
    hostile_names: InProcessJupyter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dashboard links to users/<encoded name>; a name that is itself percent-encoded text
    ("a%41", a valid hub user name) must not be decoded twice into another user's ("aA"):
    its heading, its rows (one request, where aA made two) and its JSON link are its own."""
    users = token_users(**{"tok-pct": "a%41", "tok-aa": "aA"})
    monkeypatch.setenv("RSQL_TEST_TOKEN_USERS", json.dumps(users))
    spend(hostile_names, "tok-pct", 1)
    spend(hostile_names, "tok-aa", 2)
    quoted = urllib.parse.quote("a%41", safe="")

    def activity(path: str, n: int) -> list[dict]:
        deadline = time.monotonic() + 10
        while True:  # the usage log writes in batches
            _, _, raw = hostile_names.request("GET", f"admin/users/{path}/activity", token=ADMIN)
            rows = json.loads(raw)["activity"]
            if len(rows) >= n or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)

    assert [r["user"] for r in activity("aA", 2)] == ["aA", "aA"]  # both in the log
    rows = activity(quoted, 1)
    assert [r["user"] for r in rows] == ["a%41"], rows
    status, _, raw = hostile_names.request(
        "GET", f"admin/users/{quoted}", token=ADMIN, headers={"Accept": "text/html"}
    )
    page = raw.decode()
    assert status == 200, raw
    assert '<span id="who">a%41</span>' in page
    assert page.count('<tr class="') == 1, page  # a%41's one request, not aA's two
    assert '<a href="a%2541/activity">JSON</a>' in page


def test_the_admin_page_of_a_name_made_of_markup_shows_it_as_text(
    hostile_names: InProcessJupyter, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "<img src=x onerror=alert(1)>\"'&"
    users = json.loads(os.environ["RSQL_TEST_TOKEN_USERS"])
    monkeypatch.setenv(
        "RSQL_TEST_TOKEN_USERS", json.dumps({**users, "tok-markup": {"name": name, "groups": []}})
    )
    spend(hostile_names, "tok-markup", 1)  # a row of theirs is on the page too
    status, _, raw = hostile_names.request(
        "GET",
        "admin/users/" + urllib.parse.quote(name, safe=""),
        token=ADMIN,
        headers={"Accept": "text/html"},
    )
    page = raw.decode()
    assert status == 200, page
    assert "<img" not in page, page
    assert '<span id="who">&lt;img src=x onerror=alert(1)&gt;&quot;&#x27;&amp;</span>' in page, page
    assert page.count("<tr") == 2  # the heading and the user's one request


# -- #35: every end-user identity field a provider reads is the proxy's ----------------------

IDENTITY_FIELDS = {
    "user": "victim-user",
    "safety_identifier": "victim-safety",
    "metadata": {"user_id": "victim-meta", "course": "stats101"},
}


@pytest.mark.parametrize("mode", ["none", "hash"])
async def test_a_caller_cannot_pose_as_another_user_to_any_provider(
    fresh_provider: FakeProvider, mode: str
) -> None:
    from jupyter_server_ext.engine import Caller, Engine, EngineSettings, parse_upstreams
    from jupyter_server_ext.state import MemoryState
    from tests.helpers.fake_anthropic import FakeAnthropic, KeyPolicy

    with FakeAnthropic({"test-anthropic-key-id": KeyPolicy("claude")}) as anthropic:
        claude = {
            "name": "claude",
            "provider": "anthropic",
            "base_url": anthropic.base_url,
            "api_key": "test-anthropic-key-id",
            "models": {"claude-small": "claude-fake-small"},
        }
        settings = EngineSettings(
            upstreams=parse_upstreams([*upstreams_for(fresh_provider), claude], {}),
            default_model="fake-small",
            forward_user=mode,
            health_check_seconds=0,
        )
        engine = Engine(settings, state=MemoryState())
        await engine.start()
        try:
            for model in ("fake-small", "claude-small"):
                body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
                await engine.chat({**body, **IDENTITY_FIELDS}, Caller("mallory"))
            expected = engine.user_id("mallory")
        finally:
            await engine.close()
        sent_openai = fresh_provider.received[-1].body
        sent_anthropic = anthropic.received[-1].body
    victim = ("victim-user", "victim-safety", "victim-meta")
    for sent in (sent_openai, sent_anthropic):
        assert not any(v in json.dumps(sent) for v in victim), sent
    if mode == "none":
        assert "user" not in sent_openai and "safety_identifier" not in sent_openai
        assert "user_id" not in (sent_anthropic.get("metadata") or {})
    else:
        assert sent_openai["user"] == sent_openai["safety_identifier"] == expected
        assert sent_anthropic["metadata"]["user_id"] == expected
    # metadata the provider does not read as identity passes as it was sent
    assert sent_openai["metadata"] == {"course": "stats101"}
