"""The chat panel's Agent switch, in-process (no kernel, no browser), against the loopback fake
provider: the turn's requests go out from the panel's worker, its tools run on the main thread,
its steps show as text, Stop ends it, and a proposed cell is never run.

Here the test's own thread is the kernel's main thread: ``panel.wait`` runs the tool calls
the worker hands over (in a kernel, the kernel's event loop does)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rsql_magic.client.answers import ChatResult
from tests.helpers import upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.kernels import chat_panel_for
from tests.helpers.shop import SHOP
from tests.helpers.tool_calls import tool_call

pytest.importorskip("anywidget")

HOSTILE = "<img src=x onerror=alert(1)><script>alert(2)</script><b>bold</b>"


@pytest.fixture
def panel(shell: Any, fresh_provider: FakeProvider) -> Iterator[Any]:
    """A panel with Agent on, and `conn`: a sqlite3 connection made on this (the main) thread,
    which refuses to be used from any other."""
    conn = sqlite3.connect(":memory:")
    conn.executescript(SHOP)
    shell.user_ns["conn"] = conn
    p = chat_panel_for(shell, fresh_provider)
    p.agent_btn.value = True
    ask = p.session.config.ask
    saved = ask.agent_max_steps, ask.agent_max_tokens
    try:
        yield p
    finally:
        if p.busy:
            p.stop()
            p.wait(10)
        ask.agent_max_steps, ask.agent_max_tokens = saved


def run_until(p: Any, done: Any, timeout: float = 20.0) -> None:
    """Let the panel's turn go on (its tools run in `p.wait`) until `done()`."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the turn did not get there in time"
        p.wait(0.02)


def tool_messages(fp: FakeProvider) -> list[dict[str, Any]]:
    return [m for m in fp.received[-1].body["messages"] if m.get("role") == "tool"]


def test_a_tool_call_runs_on_the_main_thread_and_the_footer_counts_the_turn(
    panel: Any, fresh_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rsql_magic.agent.tools import KernelTools

    threads: list[threading.Thread] = []
    real_call = KernelTools.call

    def spy(self: Any, name: str, arguments: Any) -> Any:
        threads.append(threading.current_thread())
        return real_call(self, name, arguments)

    monkeypatch.setattr(KernelTools, "call", spy)
    fresh_provider.script(
        tool_call("run_sql", {"connection": "conn", "sql": "SELECT COUNT(*) AS n FROM orders"}),
        "There are 4 orders.",
    )
    assert panel.send("How many orders are there?") and panel.wait(30)
    turn = panel.turns[-1]
    assert turn.state == "done", turn.error
    assert threads == [threading.main_thread()]
    # the sqlite3 connection (made on this thread) answered: from the worker it would refuse
    (result,) = tool_messages(fresh_provider)
    assert "ProgrammingError" not in result["content"] and "4" in result["content"]
    step = turn.agent.record.steps[0]
    assert not step.error and step.tool == "run_sql"
    # both requests are agent mode's, offer the tools, and carry the agent's system prompt
    first, second = fresh_provider.received[-2:]
    assert first.client == second.client == "agent"
    assert "run_sql" in {t["function"]["name"] for t in first.body["tools"]}
    assert any("call tools" in str(m["content"]) for m in first.body["messages"][:2])
    # the step and the answer are in the panel; the footer counts both requests' tokens
    assert "run_sql" in turn.agent.box.children[1].children[0].value
    assert "There are 4 orders." in turn.answer_html.value
    whole = turn.agent.record.result().usage
    assert len(turn.agent.record.requests) == 2
    assert whole["prompt_tokens"] > 50  # the first request alone says 50
    assert f"{whole['prompt_tokens']} → {whole['completion_tokens']} tokens" in turn.footer.value
    # the exchange is context for the next question, as a plain answer is
    assert panel.history[-1] == {"role": "assistant", "content": "There are 4 orders."}


def test_stop_ends_a_turn_that_keeps_calling_tools_and_the_request_in_flight(
    panel: Any, fresh_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    panel.session.config.ask.agent_max_steps = 40
    fresh_provider.script(*[tool_call("list_variables", {}, f"call_{i}") for i in range(40)])
    assert panel.send("Look at everything, forever.")
    turn = panel.turns[-1]
    run_until(panel, lambda: len(turn.agent.record.steps) >= 2)
    t0 = time.monotonic()
    panel.stop()
    assert panel.wait(5) and time.monotonic() - t0 < 3
    assert turn.state == "stopped" and turn.agent.record.ended == "stopped"
    assert len(fresh_provider.received) <= len(turn.agent.record.steps) + 1 < 40
    assert "stopped · " in turn.footer.value and "tokens" in turn.footer.value
    assert "Stopped." in panel.status.value and panel.history == []

    # a request that does not come back (a slow upstream): Stop ends the turn at once
    release = threading.Event()
    asked: list[str] = []

    answered = threading.Event()

    def slow_chat(*args: Any, **kw: Any) -> Any:
        asked.append(kw["client_kind"])
        release.wait(30)
        answered.set()
        return ChatResult("LATE: the answer after the stop", "fake-small")

    monkeypatch.setattr(panel.client(), "chat", slow_chat)
    try:
        assert panel.send("And again?")
        run_until(panel, lambda: asked == ["agent"])
        t0 = time.monotonic()
        panel.stop()
        assert panel.wait(5) and time.monotonic() - t0 < 3
        assert panel.turns[-1].state == "stopped" and not panel.busy
    finally:
        release.set()
    # the answer that comes after the stop is dropped: not shown, not in the history
    assert answered.wait(5)
    panel.wait(0.3)  # let the panel take in whatever it would
    late = panel.turns[-1]
    assert late.state == "stopped" and "LATE" not in late.answer_html.value
    assert panel.history == []


def test_markup_in_a_tool_result_and_its_arguments_is_shown_as_text(
    panel: Any, fresh_provider: FakeProvider
) -> None:
    panel.shell.user_ns["conn"].execute("UPDATE customers SET name = ? WHERE id = 1", (HOSTILE,))
    sql = 'SELECT name AS "<i>n</i>" FROM customers WHERE id = 1 -- <script>x</script>'
    fresh_provider.script(tool_call("run_sql", {"connection": "conn", "sql": sql}), "Seen.")
    assert panel.send("Who is customer 1?") and panel.wait(30)
    turn = panel.turns[-1]
    assert turn.state == "done", turn.error
    step = turn.agent.record.steps[0]
    assert "<script>alert(2)</script>" in step.result  # the model got the data as it is
    line, fold = turn.agent.steps[0].children
    shown = line.value + fold.children[0].value
    for live in ("<script", "<img", "<b>bold", "<i>n"):
        assert live not in shown
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in fold.children[0].value
    assert "&lt;i&gt;n&lt;/i&gt;" in line.value and "&lt;script&gt;x" in line.value
    assert fold.selected_index is None  # folded until the user opens it


def test_a_proposed_cell_shows_as_text_and_accept_never_runs_it(
    panel: Any, fresh_provider: FakeProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rsql_magic.agent.proposal as proposal_module

    ran: list[str] = []
    monkeypatch.setattr(panel.shell, "run_cell", lambda code, *a, **k: ran.append(code))
    target = tmp_path / "pwned"
    code = f"open({str(target)!r}, 'w').write('x')  # <b>accept me</b>"
    fresh_provider.script(
        tool_call("propose_cell", {"code": code, "language": "python"}), "I proposed a cell."
    )
    assert panel.send("Write a file for me.") and panel.wait(30)
    turn = panel.turns[-1]
    assert turn.state == "done", turn.error
    (view,) = turn.agent.tools.views
    assert view.widget in turn.agent.box.children  # in the panel, not the cell's output
    assert "&lt;b&gt;accept me&lt;/b&gt;" in view.code.value and "<b>accept" not in view.code.value
    assert not target.exists()
    # a click comes in a widget message, not a running cell: the code is offered to copy
    monkeypatch.setattr(proposal_module, "in_execute_request", lambda _shell: False)
    assert view.accept() is False
    assert view.proposal.accepted and view.copy_area.value == code
    time.sleep(0.2)
    assert not target.exists() and ran == []  # accepted, and still nothing ran
    assert view.reject() is False  # one decision per proposal


def test_a_tool_the_main_thread_does_not_take_in_time_does_not_run_on_the_worker() -> None:
    from rsql_magic.chat.main_thread_calls import HandOffFailed, MainThreadCalls

    calls = MainThreadCalls(start_timeout=0.3)
    ran: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            calls.call(lambda: ran.append(threading.current_thread().name))
        except HandOffFailed as e:
            errors.append(e)

    t = threading.Thread(target=worker)
    t.start()
    t.join(5)  # nobody pumps: the job is withdrawn, never run by the worker
    assert not t.is_alive() and ran == [] and calls.pending() == 0
    assert isinstance(errors[0], HandOffFailed) and errors[0].reason == "busy"
    assert calls.pump() == 0 and ran == []  # a late pump does not run it either


def test_a_window_that_turns_agent_mode_off_refuses_the_turn_and_plain_questions_go_on(
    shell: Any, jupyter_app_factory: Any, fresh_provider: FakeProvider
) -> None:
    from rsql_magic.chat.panel import ChatPanel
    from rsql_magic.client import ProxyClient
    from rsql_magic.privacy import clear_cache

    lab = {
        "name": "lab",
        "groups": ["students"],
        "mode": "custom",
        "models": ["*"],
        "agent": False,
        "message": "Lab: think first, then ask",
        "start": "2001-01-01T00:00:00Z",
        "end": "2999-01-01T00:00:00Z",
    }
    server = jupyter_app_factory(
        {
            "upstreams": upstreams_for(fresh_provider),
            "default_model": "fake-small",
            "policy_windows": [lab],
        },
        named_users=True,
    )
    clear_cache()
    p = ChatPanel(shell, client=ProxyClient(server.proxy_url, "tok-alice"), refresh_usage=False)
    p.agent_btn.value = True
    assert p.send("What is a join?") and p.wait(30)
    turn = p.turns[-1]
    assert turn.state == "error" and turn.error.status == 403
    assert "agent mode is off" in p.status.value and "Lab: think first" in p.status.value
    assert fresh_provider.received == []  # refused before anything was sent
    p.agent_btn.value = False  # plain questions stay on in the window
    fresh_provider.script("A join combines rows.")
    assert p.send("What is a join?") and p.wait(30)
    assert p.turns[-1].state == "done" and len(fresh_provider.received) == 1
    clear_cache()
