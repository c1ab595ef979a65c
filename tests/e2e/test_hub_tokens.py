"""The key a hub user's AI tools are given (``configure_jupyterhub(..., ai_tools=True)``), on a
real JupyterHub: a client that ignores the base URL sends it to the provider's own host (issue
53), so it must open the proxy and nothing else, and live no longer than the server it was made
for."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from tests.helpers import http, upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.kernels import run_cells
from tests.helpers.servers import Hub

pytestmark = pytest.mark.slow

SCOPE = "access:services!service=rsql"


def _until(check, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


def _server_env(user: str) -> dict[str, str]:
    """The environment of `user`'s running single-user server (its kernels inherit it)."""
    for path in Path("/proc").glob("[0-9]*/environ"):
        try:
            raw = path.read_bytes().decode().split("\0")
        except (OSError, UnicodeDecodeError):
            continue
        env = dict(v.split("=", 1) for v in raw if "=" in v)
        cmdline = Path(path.parent, "cmdline").read_bytes()
        if env.get("JUPYTERHUB_USER") == user and b"jupyterhub.singleuser" in cmdline:
            return env
    return {}


def _spawned(hub: Hub, user: str) -> dict[str, str]:
    hub.token_for(user)  # creates the user
    status, _ = hub.api("POST", f"users/{user}/server")
    assert status in (201, 202), hub.log()[-3000:]
    _until(
        lambda: (hub.api("GET", f"users/{user}")[1].get("servers") or {}).get("", {}).get("ready"),
        120,
        hub.log()[-5000:],
    )
    env: dict[str, str] = {}
    _until(lambda: env.update(_server_env(user)) or bool(env), 10, f"{user}'s server process")
    return env


def _stopped(hub: Hub, user: str) -> None:
    assert hub.api("DELETE", f"users/{user}/server")[0] in (202, 204)
    _until(lambda: not hub.api("GET", f"users/{user}")[1].get("servers"), 60, f"{user} stopped")


def _hub_api(hub: Hub, method: str, path: str, token: str, body: object = None) -> int:
    return http(method, hub.url + "hub/api/" + path, body, f"token {token}")[0]


def test_the_key_a_users_ai_tools_get_reaches_the_proxy_and_nothing_else(
    hub: Hub, provider: FakeProvider
) -> None:
    env = _spawned(hub, "gwen")
    key = env["OPENAI_API_KEY"]
    assert env["ANTHROPIC_API_KEY"] == key
    # the proxy answers it, billed to gwen
    status, models = hub.service("GET", "v1/models", key)
    assert status == 200 and models["data"], models
    assert hub.service("GET", "me", key)[1]["user"] == "gwen"
    # gwen's own server refuses it: no files, no kernels, no terminals for whoever holds it
    for path in ("api/contents", "api/kernels", "api/terminals"):
        status = http("GET", hub.url + f"user/gwen/{path}", None, f"token {key}")[0]
        assert status in (401, 403), (path, status)
    # the hub knows it as a token with the service's scope alone (and what that implies: who
    # gwen is, for the service to tell)
    status, _, raw = http("GET", hub.url + "hub/api/user", None, f"token {key}")
    identify = {"read:users:name!user=gwen", "read:users:groups!user=gwen"}
    assert status == 200 and set(json.loads(raw)["scopes"]) - identify == {SCOPE}, raw
    # and lets it do none of what the server's own token does
    activity = {"last_activity": "2030-01-01T00:00:00Z", "servers": {}}
    assert _hub_api(hub, "POST", "users/gwen/activity", key, activity) == 403
    assert _hub_api(hub, "POST", "users/gwen/tokens", key, {"note": "more"}) == 403
    assert _hub_api(hub, "DELETE", "users/gwen/server", key) == 403
    # every base-URL variable the common clients read points at the proxy too
    service = f"http://127.0.0.1:{hub.svc_port}/services/rsql"
    assert env["OPENAI_BASE_URL"] == env["OPENAI_API_BASE"] == service + "/v1"
    assert env["ANTHROPIC_BASE_URL"] == env["ANTHROPIC_API_URL"] == service
    _stopped(hub, "gwen")


def test_a_servers_ai_key_ends_with_the_server_and_never_piles_up(
    hub: Hub, provider: FakeProvider
) -> None:
    first = _spawned(hub, "hana")["OPENAI_API_KEY"]
    assert hub.service("GET", "v1/models", first)[0] == 200

    def ai_tokens() -> list[dict]:  # hana's tokens that open the service and nothing else
        status, body = hub.api("GET", "users/hana/tokens")
        assert status == 200, body
        identify = {"read:users:name!user=hana", "read:users:groups!user=hana"}
        return [t for t in body["api_tokens"] if set(t["scopes"]) - identify == {SCOPE}]

    made = ai_tokens()
    assert len(made) == 1 and made[0]["expires_at"], made  # it expires even if nothing ends it
    _stopped(hub, "hana")
    assert ai_tokens() == []
    # the service stops believing it once its cache of the hub's answer lapses (2 s here)
    _until(lambda: hub.service("GET", "v1/models", first)[0] == 401, 15, "the old key still works")
    second = _spawned(hub, "hana")["OPENAI_API_KEY"]
    assert second != first and hub.service("GET", "v1/models", second)[0] == 200
    assert len(ai_tokens()) == 1
    _stopped(hub, "hana")


def test_a_hub_users_server_never_hands_its_own_hub_token_to_ai_tools(
    jupyter_server_factory, provider: FakeProvider
) -> None:
    """``c.RSQLProxy.ai_environment`` in a server a hub spawned: the only key it has is the
    server's hub token, which opens the whole server; it sets nothing and says to use the
    hub's ``ai_tools`` (above), whose key opens the service alone."""
    server = jupyter_server_factory(
        {
            "upstreams": upstreams_for(provider),
            "default_model": "fake-small",
            "ai_environment": True,
        },
        env={"JUPYTERHUB_API_TOKEN": "the-servers-hub-token"},
    )
    cell = (
        "import os; print(sorted(k for k in os.environ if k.startswith(('OPENAI_', 'ANTHROPIC_'))))"
    )
    results = asyncio.run(run_cells(server.url, server.token, [cell]))
    assert results[0]["error"] is None, results
    ours = sorted(k for k in os.environ if k.startswith(("OPENAI_", "ANTHROPIC_")))
    assert results[0]["outputs"][0].strip() == str(ours)  # only what the server inherited
    assert "configure_jupyterhub(..., ai_tools=True)" in server.log()
