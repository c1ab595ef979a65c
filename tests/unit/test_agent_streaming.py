"""Agent mode's requests are streamed, through the real proxy (in-process Jupyter server) in
front of the loopback providers: the tool calls are put together from the stream's fragments
as the JSON answer has them, for an OpenAI-kind and an Anthropic-kind upstream; the chat
panel's Stop ends the step in flight at the proxy too (a dropped stream, billed for what was
streamed); and a step whose stream breaks mid-way fails with a clear error, in the panel and
in the cell.

Here the test's own thread is the kernel's main thread: ``panel.wait`` runs the tool calls
the worker hands over (in a kernel, the kernel's event loop does)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest
from IPython.utils.capture import capture_output

from tests.helpers import FAKE_KEY, upstreams_for
from tests.helpers.fake_anthropic import FakeAnthropic
from tests.helpers.fake_anthropic import KeyPolicy as AnthropicKey
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import InProcessJupyter
from tests.helpers.shop import SHOP
from tests.helpers.tool_calls import tool_call, tool_calls

pytest.importorskip("anywidget")

CLAUDE_KEY = "test-anthropic-key-agent"
COUNT_SQL = "SELECT COUNT(*) AS n FROM orders"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"the {name} tool",
            "parameters": {"type": "object", "properties": {"connection": {"type": "string"}}},
        },
    }
    for name in ("run_sql", "describe_frame")
]


@pytest.fixture
def claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic({CLAUDE_KEY: AnthropicKey("claude")}) as fake:
        yield fake


@pytest.fixture
def server(
    jupyter_app_factory: Any, fresh_provider: FakeProvider, claude: FakeAnthropic
) -> InProcessJupyter:
    anthropic_upstream = {
        "name": "claude",
        "provider": "anthropic",
        "base_url": claude.base_url,
        "api_key": CLAUDE_KEY,
        "models": {"claude-small": "claude-fake-small"},
    }
    return jupyter_app_factory(  # type: ignore[no-any-return]  # why: the factory is untyped
        {
            "upstreams": [*upstreams_for(fresh_provider), anthropic_upstream],
            "default_model": "fake-small",
            "admin_users": ["carol"],
            # a dropped stream is read on this long for its usage, then the upstream is closed
            "usage_drain_seconds": 0.5,
        },
        named_users=True,
    )


def panel_for(shell: Any, server: InProcessJupyter, model: str) -> Any:
    """A chat panel of alice's with Agent on, and `conn` (made on this, the main, thread)."""
    from rsql_magic.chat.panel import ChatPanel
    from rsql_magic.client import ProxyClient
    from rsql_magic.privacy import clear_cache

    conn = sqlite3.connect(":memory:")
    conn.executescript(SHOP)
    shell.user_ns["conn"] = conn
    clear_cache()  # alice's `me` (her policy), not an earlier test's proxy's
    client = ProxyClient(server.proxy_url, "tok-alice")
    p = ChatPanel(shell, client=client, refresh_usage=False, model=model)
    p.agent_btn.value = True
    return p


def activity(server: InProcessJupyter, rows: int) -> list[dict[str, Any]]:
    """alice's usage rows, newest first, once there are `rows` of them."""
    deadline = time.monotonic() + 10
    while True:
        status, _, raw = server.request("GET", "admin/users/alice/activity", token="tok-carol")
        assert status == 200, raw
        found: list[dict[str, Any]] = json.loads(raw)["activity"]
        if len(found) >= rows or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_streamed_tool_calls_are_those_of_the_json_answer_from_an_openai_upstream(
    server: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    from rsql_magic.client import ProxyClient

    answer = tool_calls(
        ("run_sql", {"connection": "conn", "sql": COUNT_SQL}, "call_a"),
        ("describe_frame", {"name": "sales", "note": 'é "quoted" {x}'}, "call_b"),
    )
    fresh_provider.script(answer)
    client = ProxyClient(server.proxy_url, "tok-alice")
    res = client.chat(
        [{"role": "user", "content": "How many orders?"}],
        model="fake-small",
        client_kind="agent",
        tools=TOOLS,
    )
    sent = fresh_provider.received[-1].body
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    # the calls as the JSON answer has them: ids, names, arguments whole, in order
    assert res.tool_calls == answer["choices"][0]["message"]["tool_calls"]
    assert res.usage["total_tokens"] == 60 and res.request_id


def test_streamed_tool_use_from_an_anthropic_upstream_runs_a_whole_agent_turn(
    shell: Any, server: InProcessJupyter, claude: FakeAnthropic
) -> None:
    from rsql_magic.client import ProxyClient

    args = {"connection": "conn", "sql": COUNT_SQL}
    claude.script(
        {
            "content": [
                {"type": "text", "text": "Let me count."},
                {"type": "tool_use", "name": "run_sql", "input": args},
                {"type": "tool_use", "name": "describe_frame", "input": {"name": "sales"}},
            ]
        }
    )
    res = ProxyClient(server.proxy_url, "tok-alice").chat(
        [{"role": "user", "content": "How many orders?"}],
        model="claude-small",
        client_kind="agent",
        tools=TOOLS,
    )
    assert claude.received[-1].body["stream"] is True  # streamed from the provider too
    # Anthropic's tool_use blocks, put together from content_block_start (id, name) and the
    # input_json_delta fragments: ids, names and the arguments as the model's JSON
    assert [c["function"]["name"] for c in res.tool_calls] == ["run_sql", "describe_frame"]
    assert [json.loads(c["function"]["arguments"]) for c in res.tool_calls] == [
        args,
        {"name": "sales"},
    ]
    assert all(c["id"].startswith("toolu_") and c["type"] == "function" for c in res.tool_calls)
    assert res.text == "Let me count."
    assert res.usage["prompt_tokens"] > 0 and res.usage["completion_tokens"] > 0

    # a whole turn in the panel: the call runs in the kernel, its result goes back as the
    # tool_result of that very tool_use (Anthropic refuses one that does not match)
    claude.script(
        {"content": [{"type": "tool_use", "name": "run_sql", "input": args}]},
        "There are 4 orders.",
    )
    panel = panel_for(shell, server, "claude-small")
    assert panel.send("How many orders are there?") and panel.wait(30)
    turn = panel.turns[-1]
    assert turn.state == "done", turn.error
    assert turn.answer == "There are 4 orders."
    step = turn.agent.record.steps[0]
    assert step.tool == "run_sql" and not step.error and "4" in step.result
    first, second = claude.received[-2:]
    assert first.body["stream"] is True and second.body["stream"] is True
    use = next(b for b in second.body["messages"][-2]["content"] if b["type"] == "tool_use")
    result = next(b for b in second.body["messages"][-1]["content"] if b["type"] == "tool_result")
    assert use["input"] == args and result["tool_use_id"] == use["id"]


def test_stop_ends_a_slowly_streaming_step_at_the_proxy_and_the_panel_says_what_it_cost(
    shell: Any, server: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    words = 60
    fresh_provider.word_delay = 0.2  # the answer trickles in: some 12 s of it
    fresh_provider.script(
        tool_call("list_variables", {}),
        " ".join(f"w{i}" for i in range(words)),
    )
    panel = panel_for(shell, server, "fake-small")
    assert panel.send("Look around, then tell me everything.")
    turn = panel.turns[-1]
    deadline = time.monotonic() + 20
    while len(fresh_provider.received) < 2 or fresh_provider.received[1].billed_tokens < 1:
        assert time.monotonic() < deadline and turn.state not in ("done", "error"), turn.error
        panel.wait(0.02)  # runs the first step's tool meanwhile
    slow = fresh_provider.received[1]
    started = slow.billed_tokens
    while slow.billed_tokens < started + 3:  # a few words of the answer are out
        assert time.monotonic() < deadline and turn.state not in ("done", "error"), turn.error
        panel.wait(0.02)

    t0 = time.monotonic()
    panel.stop()
    assert panel.wait(5) and time.monotonic() - t0 < 1.5  # the turn ends at once
    assert turn.state == "stopped" and turn.agent.record.ended == "stopped"
    # the panel says what the turn spent until then: the first step's request
    assert "stopped · " in turn.footer.value and "tokens" in turn.footer.value
    assert "Stopped." in panel.status.value

    # the proxy saw the client go: the step is a dropped stream (499), charged for what was
    # streamed, not a whole answer; once its drain is over, the upstream request is ended
    latest, first = activity(server, 2)[:2]
    assert first["client"] == latest["client"] == "agent" and first["status"] == 200
    assert latest["status"] == 499 and latest["error"] == "client_closed"
    assert latest["completion_tokens"] < words
    billed = slow.billed_tokens
    time.sleep(1.0)
    assert slow.billed_tokens == billed < started + words  # the provider generates no more


def test_a_step_whose_stream_breaks_mid_way_fails_with_a_clear_error_in_the_panel(
    shell: Any, server: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    broken = {**tool_call("run_sql", {"connection": "conn", "sql": COUNT_SQL}), "__cut_after__": 2}
    fresh_provider.script(tool_call("list_variables", {}), broken)
    panel = panel_for(shell, server, "fake-small")
    assert panel.send("How many orders are there?") and panel.wait(30)
    turn = panel.turns[-1]
    assert turn.state == "error"
    assert "broke off" in str(turn.error) and "broke off" in turn.answer_html.value
    assert "broke off" in panel.status.value
    # the half-sent call never ran: only the first step did
    assert [s.tool for s in turn.agent.record.steps] == ["list_variables"]
    assert len(fresh_provider.received) == 2


def test_a_step_whose_stream_breaks_mid_way_fails_the_ask_agent_cell(
    fresh_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    # the kernel straight to the fake provider, which speaks the proxy's API
    monkeypatch.setenv("RSQL_PROXY_URL", f"http://127.0.0.1:{fresh_provider.port}/")
    monkeypatch.setenv("RSQL_PROXY_TOKEN", FAKE_KEY)
    monkeypatch.setenv("RSQL_MODEL", "fake-small")
    monkeypatch.delenv("RSQL_REPLAY", raising=False)
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "rsql_magic")
    broken = {**tool_call("list_variables", {}), "__cut_after__": 2}
    fresh_provider.script(broken, "never asked")
    with capture_output():
        result = ip.run_cell("%%ask --agent\nWhat is there?")
    err = result.error_in_exec
    assert err is not None and "broke off" in str(err), err
    assert fresh_provider.received[-1].body["stream"] is True
    assert len(fresh_provider.received) == 1  # the turn ended there: no step ran


def test_stop_before_the_first_byte_ends_the_request_at_once(
    server: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    """A slow start (the provider thinks before its first token): no answer has begun, yet the
    hang-up ends the request, as the connection is held from the moment it is made."""
    import threading

    from rsql_magic.chat.stream import Hangup
    from rsql_magic.client import ProxyClient

    fresh_provider.latency = 3.0
    fresh_provider.script(tool_call("list_variables", {}))
    hangup = Hangup()
    ended: list[BaseException | None] = []

    def ask() -> None:
        try:
            ProxyClient(server.proxy_url, "tok-alice").chat(
                [{"role": "user", "content": "Look around."}],
                model="fake-small",
                client_kind="agent",
                tools=TOOLS,
                on_connect=hangup.attach,
                on_response=hangup.attach,
            )
            ended.append(None)
        except Exception as e:
            ended.append(e)

    worker = threading.Thread(target=ask)
    worker.start()
    deadline = time.monotonic() + 10
    while not fresh_provider.received:  # the request reached the provider, which is thinking
        assert time.monotonic() < deadline
        time.sleep(0.02)
    t0 = time.monotonic()
    hangup.hang_up()
    worker.join(5)
    assert not worker.is_alive() and time.monotonic() - t0 < 1.0
    hangup.release()
    assert ended and ended[0] is not None  # ended, not answered
    # the proxy saw the client go before any answer: a dropped request, billed as one
    (row,) = activity(server, 1)
    assert row["status"] == 499 and row["error"] == "client_closed"
