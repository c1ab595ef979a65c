"""Usage log, admin endpoints and metrics, over HTTP in a Jupyter server in this process
(pytest-jupyter). The usage log on a real server's SIGTERM: tests/e2e/test_admin_shutdown.py."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from tests.helpers import upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import InProcessJupyter

PRICED = {"prices": {"fake-small": {"input": 1000.0, "output": 1000.0}}}
ADMIN_GETS = [
    "admin/stats?hours=24",
    "admin/errors?limit=5",
    "admin/users/alice/activity?limit=5",
    "admin/upstreams",
    "metrics",
]
ADMIN_POSTS = [("admin/reset-limits", {"user": "alice"}), ("admin/upstreams/health-check", {})]


@pytest.fixture
def hub_like(jupyter_app_factory, fresh_provider: FakeProvider) -> InProcessJupyter:
    """alice and bob are students; carol is staff, and staff are admins."""
    return jupyter_app_factory(
        {
            "upstreams": upstreams_for(fresh_provider, a1=PRICED, a2=PRICED, b1=PRICED),
            "default_model": "fake-small",
            "admin_groups": ["staff"],
            "user_limits": ["4/minute"],
            "limit_overrides": {"group:staff": {"user_limits": ["100/minute"]}},
            "log_prompts": False,
        },
        named_users=True,
    )


def get(server: InProcessJupyter, path: str, token: str | None) -> tuple[int, dict]:
    status, headers, raw = server.request("GET", path, token=token)
    if headers.get("content-type", "").startswith("application/json"):
        return status, json.loads(raw)
    return status, {"text": raw.decode()}


def wait_rows(server: InProcessJupyter, user: str, n: int) -> list[dict]:
    deadline = time.monotonic() + 10
    while True:
        _, body = get(server, f"admin/users/{user}/activity?limit=100", "tok-carol")
        if len(body["activity"]) >= n or time.monotonic() > deadline:
            return body["activity"]
        time.sleep(0.2)


def test_endpoint_authorization(hub_like: InProcessJupyter) -> None:
    for path in ("me", "status"):
        assert get(hub_like, path, "tok-alice")[0] == 200
        assert get(hub_like, path, None)[0] == 401
        assert get(hub_like, path, "tok-nobody")[0] == 401
    assert get(hub_like, "me", "tok-alice")[1]["user"] == "alice"
    assert get(hub_like, "me", "tok-bob")[1]["user"] == "bob"  # each sees only their own
    for path in ADMIN_GETS:
        assert get(hub_like, path, "tok-alice")[0] == 403, path
        assert get(hub_like, path, "tok-bob")[0] == 403, path
        assert get(hub_like, path, None)[0] == 401, path
        assert get(hub_like, path, "tok-carol")[0] == 200, path
    for path, body in ADMIN_POSTS:
        assert hub_like.request("POST", path, body, token="tok-alice")[0] == 403
        assert hub_like.request("POST", path, body, token=None)[0] == 401
        assert hub_like.request("POST", path, body, token="tok-carol")[0] == 200
    status, body = get(hub_like, "admin/stats", "tok-alice")
    assert "not an rsql admin" in body["error"]["message"]


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("admin/stats?hours=abc", "'hours' must be a number"),
        ("admin/stats?hours=0", "above 0"),
        ("admin/stats?hours=-5", "above 0"),
        ("admin/errors?limit=ten", "'limit' must be an integer"),
        ("admin/errors?limit=0", "from 1 to 1000"),
        ("admin/users/alice/activity?limit=100000", "from 1 to 1000"),
    ],
)
def test_malformed_query_parameters_are_400s(
    hub_like: InProcessJupyter, path: str, needle: str
) -> None:
    status, body = get(hub_like, path, "tok-carol")
    assert status == 400
    assert needle in body["error"]["message"]


def test_reset_limits_needs_a_clear_body(hub_like: InProcessJupyter) -> None:
    for bad in ({}, {"user": ""}, {"user": "a", "all": True}, [1]):
        status, _, raw = hub_like.request("POST", "admin/reset-limits", bad, token="tok-carol")
        assert status == 400, bad
    assert hub_like.request("POST", "admin/reset-limits", b"{oops", token="tok-carol")[0] == 400


def test_usage_rows_match_what_was_sent(
    hub_like: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    answers = []
    for client in ("magic", "sql", "chat"):
        status, headers, raw = hub_like.request(
            "POST",
            "v1/chat/completions",
            {"messages": [{"role": "user", "content": f"from {client}"}]},
            token="tok-alice",
            headers={"X-RSQL-Client": client},
        )
        assert status == 200
        answers.append((client, headers, json.loads(raw)))
    for _ in range(2):  # 4/minute: the fifth request is refused and logged too
        hub_like.request(
            "POST",
            "v1/chat/completions",
            {"messages": [{"role": "user", "content": "x"}]},
            token="tok-alice",
        )
    rows = wait_rows(hub_like, "alice", 5)
    assert len(rows) == 5
    by_id = {r["request_id"]: r for r in rows}
    for client, headers, body in answers:
        row = by_id[headers["x-request-id"]]
        assert row["client"] == client
        assert row["user"] == "alice" and row["model"] == "fake-small"
        assert row["upstream"] == headers["x-rsql-upstream"]
        assert row["prompt_tokens"] == body["usage"]["prompt_tokens"]
        assert row["completion_tokens"] == body["usage"]["completion_tokens"]
        assert row["cost_usd"] == pytest.approx(body["usage"]["cost_usd"])
        assert row["status"] == 200 and row["error"] is None and row["cache_hit"] is False
        assert row["latency_ms"] >= row["overhead_ms"] >= 0
    refused = [r for r in rows if r["status"] == 429]
    assert len(refused) == 1 and refused[0]["error"] == "rate_limit_exceeded"
    # errors and stats see the same rows
    _, errors = get(hub_like, "admin/errors?limit=10", "tok-carol")
    assert refused[0]["request_id"] in {e["request_id"] for e in errors["errors"]}
    _, stats = get(hub_like, "admin/stats?hours=1", "tok-carol")
    assert stats["requests"] == 5 and stats["succeeded"] == 4 and stats["success_rate"] == 0.8
    assert stats["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in rows), abs=1e-6)
    assert stats["by_user"][0]["user"] == "alice" and stats["by_user"][0]["requests"] == 5
    assert (
        stats["latency_ms"]["p50"] is not None
        and stats["latency_ms"]["p99"] >= stats["latency_ms"]["p50"]
    )
    assert [m["model"] for m in stats["by_model"]] == ["fake-small"]


def test_prompts_are_not_stored_unless_asked(hub_like: InProcessJupyter) -> None:
    hub_like.request(
        "POST",
        "v1/chat/completions",
        {"messages": [{"role": "user", "content": "my secret question"}]},
        token="tok-bob",
    )
    wait_rows(hub_like, "bob", 1)
    hub_like.stop()
    db = Path(hub_like.env["JUPYTER_DATA_DIR"]) / "rsql" / "usage.sqlite"
    rows = sqlite3.connect(db).execute("SELECT user, prompt FROM usage").fetchall()
    assert rows == [("bob", None)]


def test_log_prompts_stores_them(
    jupyter_app_factory, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    db = tmp_path / "usage.sqlite"
    server = jupyter_app_factory(
        {
            "upstreams": upstreams_for(fresh_provider),
            "default_model": "fake-small",
            "log_prompts": True,
            "database_url": f"sqlite:///{db}",
        }
    )
    server.request(
        "POST", "v1/chat/completions", {"messages": [{"role": "user", "content": "keep this"}]}
    )
    server.stop()
    (prompt,) = sqlite3.connect(db).execute("SELECT prompt FROM usage").fetchone()
    assert json.loads(prompt) == [{"role": "user", "content": "keep this"}]


def test_status_upstreams_and_reset(
    hub_like: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    fresh_provider.set_fault("b1", "status", status=500)
    for i in range(15):  # two users: one user's failures alone never open a breaker
        hub_like.request(
            "POST",
            "v1/chat/completions",
            {"messages": [{"role": "user", "content": "x"}]},
            token=("tok-carol", "tok-alice", "tok-bob")[i % 3],
        )
    _, status = get(hub_like, "status", "tok-alice")
    assert status["upstreams"]["breaker-open"] == 1 and status["upstreams"]["healthy"] == 2
    assert status["state"] == {"backend": "memory", "reachable": True}
    assert status["database"] == {"backend": "sqlite", "reachable": True}
    _, ups = get(hub_like, "admin/upstreams", "tok-carol")
    b1 = next(u for u in ups["upstreams"] if u["alias"] == "b1")
    assert b1["state"] == "breaker-open" and b1["account"] == "acct-b"
    assert [e["error"] for e in b1["recent_errors"]] == ["HTTP 500"] * 3
    assert "sk-" not in json.dumps(ups) and "sk-" not in json.dumps(status)
    # reset-limits gives alice her window back
    for _ in range(4):
        hub_like.request(
            "POST",
            "v1/chat/completions",
            {"messages": [{"role": "user", "content": "y"}]},
            token="tok-alice",
        )
    assert (
        hub_like.request(
            "POST",
            "v1/chat/completions",
            {"messages": [{"role": "user", "content": "y"}]},
            token="tok-alice",
        )[0]
        == 429
    )
    assert (
        hub_like.request("POST", "admin/reset-limits", {"user": "alice"}, token="tok-carol")[0]
        == 200
    )
    assert (
        hub_like.request(
            "POST",
            "v1/chat/completions",
            {"messages": [{"role": "user", "content": "y"}]},
            token="tok-alice",
        )[0]
        == 200
    )


def test_metrics_count_what_happened(hub_like: InProcessJupyter) -> None:
    for _ in range(5):
        hub_like.request(
            "POST",
            "v1/chat/completions",
            {"messages": [{"role": "user", "content": "m"}]},
            token="tok-bob",
        )
    hub_like.request(
        "POST",
        "v1/chat/completions",
        {"temperature": 0, "messages": [{"role": "user", "content": "c"}]},
        token="tok-carol",
    )
    hub_like.request(
        "POST",
        "v1/chat/completions",
        {"temperature": 0, "messages": [{"role": "user", "content": "c"}]},
        token="tok-carol",
    )
    status, body = get(hub_like, "metrics", "tok-carol")
    text = body["text"]
    ok = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("rsql_requests_total{") and 'status="200"' in line
    )
    assert ok == 6  # 4 of bob's + carol's miss + carol's hit
    assert 'rsql_limiter_rejections_total{limit="user 4/minute"} 1.0' in text
    assert 'rsql_cache_lookups_total{result="hit"} 1.0' in text
    assert 'rsql_upstream_state{state="healthy",upstream="a1"} 1.0' in text
    assert "rsql_proxy_overhead_seconds_bucket" in text and "rsql_tokens_total" in text
    assert "bob" not in text and "carol" not in text and "sk-" not in text
    # the serving process's own figures: its CPU over the requests above is its cost a request
    # (prometheus_client reads them from /proc: Linux only; the collections everywhere)
    assert 'python_gc_collections_total{generation="0"}' in text
    if Path("/proc/self/stat").exists():
        cpu = [ln for ln in text.splitlines() if ln.startswith("process_cpu_seconds_total ")]
        assert len(cpu) == 1 and float(cpu[0].split()[1]) > 0, cpu
        assert "process_resident_memory_bytes " in text
