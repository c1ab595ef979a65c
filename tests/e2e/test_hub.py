"""End to end on a real JupyterHub: configurable-http-proxy, DummyAuthenticator, the proxy as a
hub-managed service set up by configure_jupyterhub, and a kernel in a spawned server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

import pytest

from tests.helpers import child_env, http
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.kernels import run_cells
from tests.helpers.servers import Hub

pytestmark = pytest.mark.slow


ASK = {"messages": [{"role": "user", "content": "hello from the hub"}]}


def test_users_are_known_by_their_hub_identity(hub: Hub) -> None:
    alice, bob, carla = (hub.token_for(u) for u in ("alice", "bob", "carla"))
    assert hub.service("GET", "me", alice)[1]["user"] == "alice"
    assert hub.service("GET", "me", carla)[1] == {
        **hub.service("GET", "me", carla)[1],
        "user": "carla",
        "admin": True,
    }
    # each user's limit is their own
    assert [hub.service("POST", "v1/chat/completions", alice, ASK)[0] for _ in range(4)] == [
        200,
        200,
        200,
        429,
    ]
    assert hub.service("POST", "v1/chat/completions", bob, ASK)[0] == 200
    # users cannot read others' activity nor any admin endpoint; the hub admin can
    for path in ("admin/users/bob/activity", "admin/stats", "admin/upstreams", "metrics"):
        assert hub.service("GET", path, alice)[0] == 403, path
        assert hub.service("GET", path, carla)[0] == 200, path
    deadline = time.monotonic() + 10
    while True:
        status, body = hub.service("GET", "admin/users/alice/activity", carla)
        if len(body["activity"]) == 4 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert [r["status"] for r in body["activity"]].count(429) == 1


def test_bad_and_expired_tokens_get_401(hub: Hub) -> None:
    assert hub.service("GET", "me", "not-a-token")[0] == 401
    assert hub.service("GET", "me", None)[0] == 401
    # a token that worked stops working once it expires, though the service had it cached (the
    # hub's answers are kept `hub_cache_seconds`, 2 s here): expiry + the cache + room
    short = hub.token_for("dora", expires_in=3)
    expires = time.monotonic() + 3
    status, body = hub.service("POST", "v1/chat/completions", short, ASK)
    assert status == 200, body
    time.sleep(max(0.0, expires - time.monotonic()) + 2 + 1)
    status, body = hub.service("POST", "v1/chat/completions", short, ASK)
    assert status == 401 and "token" in body["error"]["message"]


def test_a_scoped_hub_token_works_from_scripts_outside_a_notebook(
    hub: Hub, provider: FakeProvider
) -> None:
    """A token made through the hub's REST API with only the service's scope: what a user
    puts into the openai SDK, R or jupyter-ai outside their server (docs/users/clients.md, "Clients outside
    a notebook")."""
    import shutil

    import openai

    token = hub.token_for("frank", scopes=["access:services!service=rsql"], expires_in=3600)
    base = hub.url + "services/rsql/v1"
    client = openai.OpenAI(base_url=base, api_key=token, max_retries=0)
    r = client.chat.completions.create(
        model="fake-small", messages=[{"role": "user", "content": "from a script"}]
    )
    assert r.choices[0].message.content == "Fake answer to: from a script"
    assert "fake-small" in [m.id for m in client.models.list().data]
    # a token without the scope is refused as an authenticated caller who may not (403),
    # an unknown one as unauthenticated (401), with the SDK's matching error classes
    other = hub.token_for("frank", scopes=["read:users:name!user=frank"])
    with pytest.raises(openai.PermissionDeniedError):
        openai.OpenAI(base_url=base, api_key=other, max_retries=0).models.list()
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=base, api_key="not-a-token", max_retries=0).models.list()
    if shutil.which("Rscript"):
        # base R (libcurl) only: R packages such as httr2 cannot be assumed here
        script = (
            f'con <- url("{base}/models", headers = c(Authorization = paste("Bearer", "{token}")));'
            "cat(readLines(con, warn = FALSE)); close(con)"
        )
        out = subprocess.run(
            ["Rscript", "-e", script], capture_output=True, text=True, timeout=60, env=child_env()
        )
        assert out.returncode == 0, out.stderr
        assert "fake-small" in [m["id"] for m in json.loads(out.stdout)["data"]]


def test_kernel_in_a_spawned_server_asks_with_no_user_setup(
    hub: Hub, provider: FakeProvider
) -> None:
    erin = hub.token_for("erin")
    status, _ = hub.api("POST", "users/erin/server")
    assert status in (201, 202), hub.log()[-3000:]
    deadline = time.monotonic() + 120
    while True:
        _, model = hub.api("GET", "users/erin")
        if (model.get("servers") or {}).get("", {}).get("ready"):
            break
        assert time.monotonic() < deadline, hub.log()[-5000:]
        time.sleep(0.5)
    provider.reset()
    results = asyncio.run(
        run_cells(
            hub.url + "user/erin/",
            erin,
            [
                "import os; print(os.environ['RSQL_PROXY_URL'])",
                "%load_ext rsql_magic",
                "%ask_status",
                "%%ask\nHow do I count rows per group in pandas?",
                "import pandas as pd\npeople = pd.DataFrame({'email': ['erin@uni.example.org'], "
                "'note': ['write to dean@uni.example.org']})",
                "%%ask --df people\nWhat is in people?",
            ],
        )
    )
    assert all(r["error"] is None for r in results), results
    assert results[0]["outputs"][0].strip() == f"http://127.0.0.1:{hub.svc_port}/services/rsql/"
    assert "erin" in "".join(results[2]["outputs"])
    asked = [r for r in provider.received if "count rows per group" in json.dumps(r.body)]
    assert len(asked) == 1
    assert "Fake answer to:" in "".join(results[3]["outputs"])
    # the admin's context policy and redaction: no email leaves for the provider
    private = [
        json.dumps(r.body) for r in provider.received if "What is in people" in json.dumps(r.body)
    ]
    assert len(private) == 1 and "(values withheld by policy)" in private[0]
    assert "@uni.example.org" not in private[0] and "<email-1>" in private[0]
    # the kernel's environment holds no provider key
    env_dump = asyncio.run(
        run_cells(hub.url + "user/erin/", erin, ["import os; print(dict(os.environ))"])
    )
    assert "sk-test" not in "".join(env_dump[0]["outputs"])


def test_a_hub_users_kernel_runs_the_openai_and_anthropic_sdks_with_no_key(
    hub: Hub, provider: FakeProvider
) -> None:
    """configure_jupyterhub(..., ai_tools=True): a spawned server's kernels find the service and
    the server's own hub token in the SDKs' variables; answers are billed to that user."""
    ada = hub.token_for("ada")
    status, _ = hub.api("POST", "users/ada/server")
    assert status in (201, 202), hub.log()[-3000:]
    _until(
        lambda: (hub.api("GET", "users/ada")[1].get("servers") or {}).get("", {}).get("ready"),
        120,
        hub.log()[-5000:],
    )
    provider.reset()
    cells = [
        "import os, openai, anthropic\n"
        "print(os.environ['OPENAI_BASE_URL'], os.environ['ANTHROPIC_BASE_URL'])",
        "print(openai.OpenAI().chat.completions.create(model='fake-small', "
        "messages=[{'role': 'user', 'content': 'from ada via openai'}]).choices[0].message.content)",
        "print(anthropic.Anthropic().messages.create(model='fake-small', max_tokens=20, "
        "messages=[{'role': 'user', 'content': 'from ada via anthropic'}]).content[0].text)",
        "print('sk-test' in str(dict(os.environ)))",
    ]
    results = asyncio.run(run_cells(hub.url + "user/ada/", ada, cells))
    assert all(r["error"] is None for r in results), results
    service = f"http://127.0.0.1:{hub.svc_port}/services/rsql"
    assert results[0]["outputs"][0].split() == [service + "/v1", service]
    assert "Fake answer to: from ada via openai" in "".join(results[1]["outputs"])
    assert "Fake answer to: from ada via anthropic" in "".join(results[2]["outputs"])
    assert results[3]["outputs"][0].strip() == "False"  # a token of the user's, no provider key
    carla = hub.token_for("carla")

    def billed() -> list:
        return hub.service("GET", "admin/users/ada/activity", carla)[1]["activity"]

    _until(lambda: len(billed()) >= 2, 15, "ada's two requests in the usage log")
    rows = billed()
    assert {r["api"] for r in rows[:2]} == {"chat", "messages"}


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _until(check, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


def test_groups_decide_models_and_windows_for_a_hub_user_and_their_kernel(
    hub: Hub, provider: FakeProvider
) -> None:
    """Two hub groups (students: the small model; staff: both, the large one by default), an
    exam window for students that starts on the clock and that the admin ends early, a quiz
    window that ends on the clock, a spawned student's kernel told about the exam in the cell,
    and a move between groups that takes effect within the service's hub cache time (2 s
    here)."""
    stu, carla = hub.token_for("stu"), hub.token_for("carla")
    me = hub.service("GET", "me", stu)[1]
    assert (me["groups"], me["models"], me["default_model"]) == (
        ["students"],
        ["fake-small"],
        "fake-small",
    )
    status, body = hub.service("POST", "v1/chat/completions", stu, {**ASK, "model": "fake-large"})
    assert status == 403 and body["error"]["code"] == "model_not_allowed"
    assert [m["id"] for m in hub.service("GET", "v1/models", stu)[1]["data"]] == ["fake-small"]
    # the student's own server, ready before the exam starts
    assert hub.api("POST", "users/stu/server")[0] in (201, 202), hub.log()[-3000:]
    _until(
        lambda: (hub.api("GET", "users/stu")[1].get("servers") or {}).get("", {}).get("ready"),
        120,
        hub.log()[-5000:],
    )
    start = time.time() + 4
    window = {
        "name": "exam",
        "groups": ["students"],
        "start": _iso(start),
        "end": _iso(start + 25),
        "mode": "off",
        "message": "Exam in progress: no assistant.",
    }
    status, body = hub.service("POST", "admin/windows", carla, window)
    assert status == 200, body
    assert body["window"]["ends_at_local"].endswith(("CET", "CEST"))  # the admin's zone, beside UTC
    assert hub.service("POST", "v1/chat/completions", stu, ASK)[0] == 200  # not yet
    time.sleep(max(0.0, start + 0.5 - time.time()))
    status, body = hub.service("POST", "v1/chat/completions", stu, ASK)
    assert status == 403 and body["error"]["code"] == "policy_window", body
    assert body["error"]["window"]["ends_at"] == _iso(start + 25)
    # staff: no window
    assert hub.service("POST", "v1/chat/completions", hub.token_for("prof"), ASK)[0] == 200
    # in the student's kernel: the window's message and its end in the cell, and in %ask_status
    cells = [
        "%load_ext rsql_magic",
        "try:\n    get_ipython().run_cell_magic('ask', '', 'How do I join two tables?')\n"
        "except Exception as e:\n    print('raised:', e)",
        "%ask_status",
    ]
    results = asyncio.run(run_cells(hub.url + "user/stu/", stu, cells))
    asked, status_out = "".join(results[1]["outputs"]), "".join(results[2]["outputs"])
    assert "Exam in progress: no assistant." in asked, results
    assert "exam" in status_out and "Exam in progress" in status_out, status_out
    assert not [r for r in provider.received if "join two tables" in json.dumps(r.body)]
    # the admin ends it early: the student may ask again at once (still refused just before,
    # whatever time the kernel above took of the window's 25 s)
    assert hub.service("POST", "v1/chat/completions", stu, ASK)[0] == 403
    status, body = hub.service("POST", "admin/windows/exam/end", carla, {})
    assert status == 200, body
    assert hub.service("POST", "v1/chat/completions", stu, ASK)[0] == 200
    # a short quiz that starts now and ends on the clock (the exam had to leave room for the
    # kernel above on a busy machine; waiting out its 25 s would only cost time)
    now = time.time()
    quiz = {**window, "name": "quiz", "start": _iso(now), "end": _iso(now + 4)}
    status, body = hub.service("POST", "admin/windows", carla, quiz)
    assert status == 200, body
    status, body = hub.service("POST", "v1/chat/completions", stu, ASK)
    assert status == 403 and body["error"]["window"]["ends_at"] == _iso(now + 4), body
    time.sleep(max(0.0, int(now + 4) + 0.5 - time.time()))
    status, body = hub.service("POST", "v1/chat/completions", stu, ASK)
    assert status == 200, body
    # stu moves from students to staff: within the hub cache time the large model is theirs
    assert hub.api("POST", "groups/staff/users", {"users": ["stu"]})[0] == 200
    assert hub.api("DELETE", "groups/students/users", {"users": ["stu"]})[0] == 200
    _until(
        lambda: hub.service("GET", "me", stu)[1]["models"] == ["fake-small", "fake-large"],
        10,
        "the move to staff did not reach the service",
    )
    status, body = hub.service("POST", "v1/chat/completions", stu, {"messages": ASK["messages"]})
    assert status == 200 and body["model"] == "fake-large"  # staff's default
    hub.api("DELETE", "users/stu/server")


def test_a_hub_users_inline_completions_go_to_the_service_as_them(
    hub: Hub, provider: FakeProvider
) -> None:
    """The editor asks the user's own server (`/user/erin/rsql/inline`); the server passes it on
    to the hub service with its hub token, as its kernels ask, so the admin's model, limits and
    usage log hold. The server's own proxy (the local model here) never answers it, nor any
    request for a model sent to the server itself."""
    erin = hub.token_for("erin")
    status, _ = hub.api("POST", "users/erin/server")
    assert status in (201, 202, 400), hub.log()[-3000:]  # 400: already running
    _until(
        lambda: (hub.api("GET", "users/erin")[1].get("servers") or {}).get("", {}).get("ready"),
        120,
        "erin's server",
    )
    base = hub.url + "user/erin/rsql/inline"
    status, _, raw = http("GET", base, None, f"token {erin}")
    assert status == 200, hub.log()[-4000:]
    state = json.loads(raw)
    assert state["on"] is True and state["model"] == "fake-small"  # the service's model
    provider.reset()
    provider.script("revenue")
    ask = {"prefix": "sales.", "stream": False, "context": {"frames": [{"name": "sales"}]}}
    status, _, raw = http("POST", base, ask, f"token {erin}")
    assert status == 200, raw
    assert json.loads(raw)["text"] == "revenue"
    assert len(provider.received) == 1 and "frame sales" in json.dumps(provider.received[0].body)
    # another hub identity let into erin's server would be billed as erin: refused
    status, _, raw = http("POST", base, ask, f"token {hub.admin_token}")
    assert status == 403 and len(provider.received) == 1, raw
    # a client pointed at erin's server itself, not at the service: its own proxy (the local
    # model here) answers nothing, on no API, so the hub's limits and windows hold
    chat = {"model": "fake-small", "messages": [{"role": "user", "content": "hi"}]}
    for api in ("chat/completions", "messages"):
        status, _, raw = http("POST", f"{hub.url}user/erin/rsql/v1/{api}", chat, f"token {erin}")
        assert status == 403, raw
        assert "/services/rsql/" in json.loads(raw)["error"]["message"], raw
    assert len(provider.received) == 1


def _erins_server(hub: Hub) -> str:
    status, _ = hub.api("POST", "users/erin/server")
    assert status in (201, 202, 400), hub.log()[-3000:]  # 400: already running
    _until(
        lambda: (hub.api("GET", "users/erin")[1].get("servers") or {}).get("", {}).get("ready"),
        120,
        "erin's server",
    )
    return hub.url + "user/erin/rsql/inline"


def test_a_dropped_inline_completion_ends_at_the_service_before_the_first_token(
    hub: Hub, provider: FakeProvider
) -> None:
    """Typing aborts completions whose model has not answered yet. The user's server closes its
    request to the service at once, so the service sees its client gone (499, charged what the
    provider bills, as any dropped stream) instead of streaming the answer to a server that
    waited for its first token with nobody left to read it."""
    import socket
    import urllib.parse

    erin, carla = hub.token_for("erin"), hub.token_for("carla")
    base = _erins_server(hub)
    url = urllib.parse.urlsplit(base)

    def rows() -> list[dict]:  # this test's completions' rows (earlier ones may still arrive)
        found = hub.service("GET", "admin/users/erin/activity", carla)[1]["activity"]
        return [r for r in found if r["api"] == "inline" and r["ts"] >= started]

    started = time.time()
    provider.reset()
    provider.script("region", "region")
    provider.latency = 4.0  # the model's first byte
    try:
        held = []
        for i in range(2):
            body = json.dumps({"prefix": f"sales.{i}.{time.time()}"}).encode()
            s = socket.create_connection((url.hostname, url.port), timeout=10)
            s.sendall(
                f"POST {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
                f"Authorization: token {erin}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            held.append(s)
        _until(lambda: len(provider.received) == 2, 20, "both completions at the provider")
        for s in held:
            s.close()
    finally:
        provider.latency = 0.0
    _until(lambda: len(rows()) >= 2, 30, "the two dropped completions' usage rows")
    dropped = rows()
    assert [(r["status"], r["error"]) for r in dropped] == [(499, "client_closed")] * 2, dropped
    assert all(r["prompt_tokens"] > 0 for r in dropped)  # what the provider billed (unpriced)
    provider.script("revenue")
    status, _, raw = http("POST", base, {"prefix": "sales.", "stream": False}, f"token {erin}")
    assert status == 200 and json.loads(raw)["text"] == "revenue", raw


def test_the_forward_route_bounds_the_body_and_never_shows_the_servers_token(
    hub: Hub, provider: FakeProvider
) -> None:
    """Over 1 MiB the user's server refuses (413) before the service sees it; the service's own
    bound (4 MiB) and its cheap reading of names hold for a client that asks it directly; and
    no answer carries the server's hub token."""
    from pathlib import Path

    erin = hub.token_for("erin")
    base = _erins_server(hub)
    tokens = set()  # the server's own hub token, from its environment
    for path in Path("/proc").glob("[0-9]*/environ"):
        try:
            raw_env = path.read_bytes().decode().split("\0")
            env = dict(v.split("=", 1) for v in raw_env if "=" in v)
        except (OSError, UnicodeDecodeError):
            continue
        if env.get("JUPYTERHUB_USER") == "erin" and env.get("JUPYTERHUB_API_TOKEN"):
            tokens.add(env["JUPYTERHUB_API_TOKEN"])
    assert tokens, "erin's server's environment"
    provider.reset()
    answers = [http("GET", base, None, f"token {erin}")]
    answers.append(http("POST", base, b"x" * (2**20 + 1), f"token {erin}"))
    assert answers[-1][0] == 413 and provider.received == []
    provider.script("revenue")
    answers.append(http("POST", base, {"prefix": "sales.", "stream": False}, f"token {erin}"))
    assert answers[-1][0] == 200, answers[-1]
    for status, headers, raw in answers:
        shown = json.dumps(headers) + raw.decode(errors="replace")
        assert not any(t in shown for t in tokens) and "authorization" not in headers, status
    # a body of lists as names (within the service's 4 MiB and 20,000 JSON containers),
    # straight to the service: answered, the lists left out, never turned into text
    junk = ["a" * 700]
    frames = [{"name": f"f{i}", "columns": [junk] * 99 + ["ok"]} for i in range(50)]
    big = {"prefix": "x", "context": {"frames": frames}, "stream": False}
    assert 3 * 2**20 < len(json.dumps(big)) < 4 * 2**20
    provider.script("x")
    status, body = hub.service("POST", "inline", erin, big)
    assert status == 200, body
    prompt = provider.received[-1].body["messages"][-1]["content"]
    assert "frame f0 (frame): ok" in prompt and "[" not in prompt
