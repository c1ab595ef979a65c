"""Who may use which model, and when: entitlements per user and group, policy windows on a
controlled clock, and cost per notebook, over HTTP through the hub service's handlers (static
tokens stand in for hub users and their groups). A run-time window shared between replicas
through Redis: tests/e2e/test_policy_windows_redis.py."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import urllib.parse
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from jupyter_server_ext.config.proxy import RSQLProxy
from jupyter_server_ext.engine import ConfigError
from tests.helpers import upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.policy_proxy import Proxy, proxy_starter

ENTITLED = {
    "group:students": {"models": ["fake-small"], "default_model": "fake-small"},
    "group:tutors": {"models": ["fake-l*"]},
    "group:staff": {"default_model": "fake-large", "sql_default_model": "fake-small"},
}


@pytest.fixture
async def start_proxy(
    tmp_path: Path, fresh_provider: FakeProvider
) -> AsyncIterator[Callable[..., Any]]:
    async with proxy_starter(tmp_path, fresh_provider) as start:
        yield start


async def test_each_group_may_call_its_models_and_the_403_names_them(
    start_proxy, fresh_provider
) -> None:
    p = await start_proxy(limit_overrides=ENTITLED)
    status, body = await p.ask("tok-alice", "fake-large")
    assert status == 403
    err = body["error"]
    assert (err["code"], err["type"], err["param"]) == (
        "model_not_allowed",
        "permission_error",
        "model",
    )
    assert err["allowed_models"] == ["fake-small"] and "fake-small" in err["message"]
    assert fresh_provider.received == []  # refused before anything went upstream
    assert (await p.ask("tok-alice", "fake-small"))[0] == 200
    # several groups: what any of them allows (students' fake-small, tutors' fake-l*)
    assert [(await p.ask("tok-bob", m))[0] for m in ("fake-small", "fake-large")] == [200, 200]
    # no "models" for staff or for a user in no group: everything, as before
    assert (await p.ask("tok-carol", "fake-large"))[0] == 200
    assert (await p.ask("tok-dave", "fake-large"))[0] == 200


async def test_models_and_me_show_only_what_the_caller_may_use(start_proxy) -> None:
    p = await start_proxy(limit_overrides=ENTITLED)
    assert [m["id"] for m in (await p.call("GET", "v1/models", "tok-alice"))[1]["data"]] == [
        "fake-small"
    ]
    assert [m["id"] for m in (await p.call("GET", "v1/models", "tok-carol"))[1]["data"]] == [
        "fake-small",
        "fake-large",
    ]
    assert (await p.call("GET", "v1/models/fake-large", "tok-alice"))[0] == 404
    me = (await p.call("GET", "me", "tok-carol"))[1]
    assert (me["models"], me["default_model"], me["sql_default_model"], me["window"]) == (
        ["fake-small", "fake-large"],
        "fake-large",
        "fake-small",
        None,
    )
    # a request naming no model gets the caller's default
    status, body = await p.ask("tok-carol")
    assert status == 200 and body["model"] == "fake-large"
    assert (await p.ask("tok-alice"))[1]["model"] == "fake-small"


async def test_the_users_own_models_win_over_the_groups(start_proxy) -> None:
    p = await start_proxy(
        limit_overrides={**ENTITLED, "user:bob": {"models": ["fake-large"]}},
        allowed_models=["fake-small"],
    )
    assert [(await p.ask("tok-bob", m))[0] for m in ("fake-small", "fake-large")] == [403, 200]
    # allowed_models is everyone's unless a group or user names their own
    assert [(await p.ask("tok-dave", m))[0] for m in ("fake-small", "fake-large")] == [200, 403]
    assert (await p.call("GET", "me", "tok-bob"))[1]["default_model"] == "fake-large"


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (
            {"group:students": {"models": "fake-small", "default_model": "fake-large"}},
            "not among its own 'models'",
        ),
        ({"group:students": {"models": [3]}}, "list of model names"),
        ({"group:students": {"default_model": "gpt-nope"}}, "served by no upstream"),
        ({"group:students": {"modles": ["x"]}}, "unknown field 'modles'"),
    ],
)
def test_bad_entitlements_stop_start_up_naming_the_field(
    overrides: dict, needle: str, fresh_provider
) -> None:
    proxy = RSQLProxy(upstreams=upstreams_for(fresh_provider), limit_overrides=overrides)
    with pytest.raises(ConfigError, match=needle):
        proxy.engine_settings()


EXAM = {
    "name": "exam",
    "groups": ["students"],
    "start": "2027-01-15T09:00:00Z",
    "end": "2027-01-15T11:00:00Z",
    "mode": "off",
    "message": "No assistant during the exam.",
}


async def test_an_off_window_refuses_its_group_with_its_message_and_end(
    start_proxy, fresh_provider
) -> None:
    p = await start_proxy(policy_windows=[EXAM], admin_timezone="Europe/Berlin")
    assert (await p.ask("tok-alice"))[0] == 200  # 08:00 UTC: before the exam
    await p.step(3600)  # 09:00 UTC: it starts
    fresh_provider.reset()
    status, body = await p.ask("tok-alice")
    assert status == 403
    err = body["error"]
    assert err["code"] == "policy_window" and err["type"] == "permission_error"
    assert (
        "No assistant during the exam." in err["message"]
        and "2027-01-15 12:00 CET" in err["message"]
    )
    assert err["window"]["ends_at"] == "2027-01-15T11:00:00Z" and err["window"]["name"] == "exam"
    assert fresh_provider.received == []
    assert (await p.ask("tok-carol"))[0] == 200  # staff are not in the window
    me = (await p.call("GET", "me", "tok-alice"))[1]
    assert me["window"]["mode"] == "off" and me["models"] == []
    await p.step(2 * 3600)  # 11:00 UTC: over
    assert (await p.ask("tok-alice"))[0] == 200
    assert (await p.call("GET", "me", "tok-alice"))[1]["window"] is None


async def test_a_window_can_turn_agent_mode_off_and_leave_ask_on(
    start_proxy, fresh_provider
) -> None:
    """`"agent": false`: the window's users keep asking (%%ask, the chat panel), but a request
    from agent mode (%%ask --agent, client `agent`) is refused with the window's message,
    saying agent mode is off, before anything is sent."""
    lab = {
        "name": "lab",
        "groups": ["students"],
        "mode": "custom",
        "models": ["*"],
        "agent": False,
        "message": "Lab: think first, then ask",
        "start": "2027-01-15T07:00:00Z",
        "end": "2027-01-15T10:00:00Z",
    }
    p = await start_proxy(policy_windows=[lab])
    fresh_provider.reset()
    assert (await p.ask("tok-alice"))[0] == 200  # plain %%ask: on
    status, body = await p.ask("tok-alice", **{"X-RSQL-Client": "agent"})
    assert status == 403 and body["error"]["code"] == "policy_window"
    assert "agent mode is off" in body["error"]["message"]
    assert "Lab: think first" in body["error"]["message"]
    assert body["error"]["window"]["agent"] is False
    assert len(fresh_provider.received) == 1  # the refused one was never sent
    assert (await p.ask("tok-carol", **{"X-RSQL-Client": "agent"}))[0] == 200  # not in it
    await p.step(3 * 3600)  # over: agent mode is back
    assert (await p.ask("tok-alice", **{"X-RSQL-Client": "agent"}))[0] == 200
    with pytest.raises(ConfigError, match=r"\['agent'\]: true"):
        RSQLProxy(
            upstreams=upstreams_for(fresh_provider),
            policy_windows=[{**lab, "agent": "no"}],
        ).engine_settings()


async def test_agent_mode_can_be_off_for_a_group_or_for_everyone(
    start_proxy, fresh_provider
) -> None:
    """`"agent": false` in a group's limit_overrides (or agent_mode = False for all): that
    group's agent-mode requests are refused before anything is sent, plain %%ask stays on, and
    GET me says so (the kernel shows it); a user's own entry may turn it back on."""
    p = await start_proxy(
        limit_overrides={"group:students": {"agent": False}, "user:bob": {"agent": True}}
    )
    fresh_provider.reset()
    assert (await p.ask("tok-alice"))[0] == 200
    status, body = await p.ask("tok-alice", **{"X-RSQL-Client": "agent"})
    assert status == 403 and body["error"]["code"] == "agent_off"
    assert "agent mode is off for 'alice'" in body["error"]["message"]
    assert len(fresh_provider.received) == 1
    assert (await p.call("GET", "me", "tok-alice"))[1]["agent"] is False
    assert (await p.ask("tok-bob", **{"X-RSQL-Client": "agent"}))[
        0
    ] == 200  # a student, but his own
    assert (await p.ask("tok-carol", **{"X-RSQL-Client": "agent"}))[0] == 200
    assert (await p.call("GET", "me", "tok-carol"))[1]["agent"] is True
    with pytest.raises(ConfigError, match=r"\['agent'\]: true"):
        RSQLProxy(
            upstreams=upstreams_for(fresh_provider),
            limit_overrides={"group:students": {"agent": "no"}},
        ).engine_settings()
    everyone = await start_proxy(agent_mode=False)
    assert (await everyone.ask("tok-carol", **{"X-RSQL-Client": "agent"}))[0] == 403


async def test_a_custom_window_sets_models_and_a_budget_of_its_own(start_proxy) -> None:
    lab = {
        "name": "lab",
        "groups": ["*"],
        "mode": "custom",
        "models": ["fake-small"],
        "user_daily_budget_usd": 0.5,
        "message": "Lab hours: the small model only",
        "weekly": {"days": ["fri"], "start": "09:30", "end": "10:00", "timezone": "Europe/Berlin"},
    }
    p = await start_proxy(
        policy_windows=[lab], limit_overrides=ENTITLED, admin_timezone="Europe/Berlin"
    )
    assert (await p.ask("tok-carol", "fake-large"))[0] == 200  # 09:00 in Berlin: not yet
    await p.step(45 * 60)  # 09:45 Berlin
    status, body = await p.ask("tok-carol", "fake-large")
    assert status == 403 and body["error"]["code"] == "policy_window"
    assert (
        body["error"]["allowed_models"] == ["fake-small"]
        and "Lab hours" in body["error"]["message"]
    )
    me = (await p.call("GET", "me", "tok-carol"))[1]
    assert me["default_model"] == "fake-small" and me["budget"]["daily_usd"] == 0.5
    assert me["window"]["ends_at_local"] == "2027-01-15 10:00 CET"
    await p.step(7 * 86400)  # next Friday, same time: again
    assert (await p.ask("tok-carol", "fake-large"))[0] == 403
    await p.step(20 * 60)  # 10:05: over
    assert (await p.ask("tok-carol", "fake-large"))[0] == 200


async def test_admins_start_list_and_end_windows_at_run_time(start_proxy) -> None:
    p = await start_proxy(policy_windows=[EXAM])
    status, body = await p.call(
        "POST",
        "admin/windows",
        "tok-alice",
        {"name": "x", "groups": ["*"], "minutes": 5, "mode": "off"},
    )
    assert status == 403  # users cannot
    status, body = await p.call(
        "POST",
        "admin/windows",
        "tok-admin",
        {
            "name": "quiz",
            "groups": ["students"],
            "minutes": 30,
            "mode": "off",
            "message": "Quiz time",
        },
    )
    assert status == 200, body
    assert body["window"]["ends_at"] == "2027-01-15T08:30:00Z"
    assert (await p.ask("tok-alice"))[1]["error"]["message"].startswith("Quiz time")
    listed = (await p.call("GET", "admin/windows", "tok-admin"))[1]["windows"]
    assert [(w["name"], w["source"], w["active"]) for w in listed] == [
        ("exam", "config", False),
        ("quiz", "runtime", True),
    ]
    # a name in use, a bad mode, an end in the past: clear errors
    dup = await p.call(
        "POST",
        "admin/windows",
        "tok-admin",
        {"name": "quiz", "groups": ["*"], "minutes": 5, "mode": "off"},
    )
    assert dup[0] == 409 and dup[1]["error"]["code"] == "window_exists"
    bad = await p.call(
        "POST",
        "admin/windows",
        "tok-admin",
        {"name": "q2", "groups": ["*"], "minutes": 5, "mode": "of"},
    )
    assert bad[0] == 400 and "one of off, local-only, custom" in bad[1]["error"]["message"]
    nobody = await p.call(
        "POST", "admin/windows", "tok-admin", {"name": "q3", "minutes": 5, "mode": "off"}
    )
    assert nobody[0] == 400 and "'groups'" in nobody[1]["error"]["message"]
    assert (await p.call("POST", "admin/windows/quiz/end", "tok-admin", {}))[0] == 200
    assert (await p.ask("tok-alice"))[0] == 200
    missing = await p.call("POST", "admin/windows/nope/end", "tok-admin", {})
    assert missing[0] == 404 and "exam" in missing[1]["error"]["message"]
    # a configured window in force is ended until its end, and comes back no earlier
    await p.step(3600 + 60)
    assert (await p.ask("tok-alice"))[0] == 403
    ended = await p.call("POST", "admin/windows/exam/end", "tok-admin", {})
    assert ended[0] == 200 and ended[1]["until"] == "2027-01-15T11:00:00Z"
    assert (await p.ask("tok-alice"))[0] == 200


@pytest.mark.parametrize(
    ("window", "needle"),
    [
        ({**EXAM, "end": "2027-01-15T08:00:00Z"}, "must be after 'start'"),
        ({**EXAM, "groups": []}, "'groups'"),
        ({**EXAM, "start": "tomorrow"}, "ISO 8601"),
        ({**EXAM, "mode": "local-only"}, "needs a local model"),
        ({**EXAM, "models": ["x"]}, "only a 'custom' window"),
        (
            {
                "name": "w",
                "groups": ["*"],
                "mode": "off",
                "weekly": {"days": ["funday"], "start": "9:00", "end": "10:00"},
            },
            "days of the week",
        ),
    ],
)
def test_bad_windows_stop_start_up_naming_the_field(
    window: dict, needle: str, fresh_provider
) -> None:
    proxy = RSQLProxy(upstreams=upstreams_for(fresh_provider), policy_windows=[window])
    with pytest.raises(ConfigError, match=needle):
        proxy.engine_settings()


async def notebooks(p: Proxy, path: str, expect: int) -> list[dict[str, Any]]:
    """admin/notebooks once the usage log has written the rows (its writer runs every 0.5 s)."""
    for _ in range(50):
        rows = (await p.call("GET", path, "tok-admin"))[1]["notebooks"]
        if len(rows) >= expect:
            break
        await asyncio.sleep(0.1)
    return rows


async def test_usage_rows_carry_the_notebook_and_cell_and_me_cost_sums_them(
    start_proxy, tmp_path
) -> None:
    p = await start_proxy()
    path = "course/week 1/homework.ipynb"
    nb = urllib.parse.quote(path)
    for cell in ("cell-a", "cell-a", "cell-b"):
        assert (await p.ask("tok-alice", **{"X-RSQL-Notebook": nb, "X-RSQL-Cell": cell}))[0] == 200
    assert (await p.ask("tok-alice", **{"X-RSQL-Notebook": urllib.parse.quote("other.ipynb")}))[
        0
    ] == 200
    # a hostile cell id or a path with controls is dropped, not stored
    assert (
        await p.ask("tok-bob", **{"X-RSQL-Notebook": "%1b%5b31mx.ipynb", "X-RSQL-Cell": "<b>x</b>"})
    )[0] == 200
    status, cost = await p.call("GET", "me/cost?notebook=" + nb, "tok-alice")
    assert status == 200, cost
    assert cost["notebook"].startswith("nb-") and "homework" not in json.dumps(cost)
    assert (cost["today"]["requests"], cost["week"]["requests"]) == (3, 3)
    assert [(c["cell"], c["requests"]) for c in cost["cells"]] == [("cell-a", 2), ("cell-b", 1)]
    # another user's view of the same notebook is their own (none)
    assert (await p.call("GET", "me/cost?notebook=" + nb, "tok-bob"))[1]["week"]["requests"] == 0
    assert (await p.call("GET", "me/cost", "tok-alice"))[0] == 400
    rows = await notebooks(p, "admin/notebooks", 2)
    assert sorted((r["user"], r["requests"], r["cells"]) for r in rows) == [
        ("alice", 1, 0),
        ("alice", 3, 2),
    ]
    assert (await p.call("GET", "admin/notebooks", "tok-alice"))[0] == 403
    db = sqlite3.connect(tmp_path / "usage.sqlite")
    stored = db.execute("SELECT user, notebook, cell FROM usage WHERE user = 'bob'").fetchall()
    assert stored == [("bob", None, None)]


async def test_admins_may_opt_into_notebook_names(start_proxy) -> None:
    p = await start_proxy(notebook_names=True)
    await p.ask(
        "tok-alice", **{"X-RSQL-Notebook": urllib.parse.quote("week1.ipynb"), "X-RSQL-Cell": "c1"}
    )
    rows = await notebooks(p, "admin/notebooks?user=alice", 1)
    assert [r["notebook"] for r in rows] == ["week1.ipynb"]


async def test_no_endpoint_or_cached_answer_gets_past_an_entitlement_or_a_window(
    start_proxy, fresh_provider
) -> None:
    p = await start_proxy(limit_overrides=ENTITLED, cache_hits_count=False)
    forced = {"X-RSQL-Cache-Control": "cache"}
    # carol (staff) puts an answer for fake-large in the cache; alice may not have it
    assert (await p.ask("tok-carol", "fake-large", **forced))[0] == 200
    assert (await p.ask("tok-alice", "fake-large", **forced))[1]["error"][
        "code"
    ] == "model_not_allowed"
    legacy = await p.call(
        "POST", "v1/completions", "tok-alice", {"model": "fake-large", "prompt": "hi"}
    )
    assert legacy[0] == 403 and legacy[1]["error"]["code"] == "model_not_allowed"
    emb = await p.call("POST", "v1/embeddings", "tok-alice", {"model": "fake-large", "input": "hi"})
    assert emb[0] == 403 and emb[1]["error"]["code"] == "model_not_allowed"
    await p.call(
        "POST",
        "admin/windows",
        "tok-admin",
        {"name": "off", "groups": ["staff"], "minutes": 5, "mode": "off"},
    )
    fresh_provider.reset()
    for path, body in (
        (
            "v1/chat/completions",
            {"model": "fake-large", "messages": [{"role": "user", "content": "hi"}]},
        ),
        ("v1/completions", {"model": "fake-large", "prompt": "hi"}),
        ("v1/embeddings", {"model": "fake-large", "input": "hi"}),
    ):
        status, answer = await p.call("POST", path, "tok-carol", body, forced)
        assert (status, answer["error"]["code"]) == (403, "policy_window"), path
    assert fresh_provider.received == []
