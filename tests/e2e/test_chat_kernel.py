"""The chat panel's Python side in a real ipykernel, driven the way a browser drives it.

The test talks to the kernel over jupyter_client like a frontend: widget events are real
``comm_msg`` messages on the shell channel (a Button's ``click``, a Text's ``submit``, state
``update``s of the picker widgets), exactly what @jupyter-widgets sends from JupyterLab.
Answers come from the real proxy (a Jupyter server with the rsql extension) in front of the
loopback fake provider; what the provider received is checked, and so is the widget state the
kernel sent back on IOPub.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.helpers import require, upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.kernel_driver import KernelDriver
from tests.helpers.kernels import kernel_env, require_r
from tests.helpers.servers import JupyterServer

pytestmark = pytest.mark.slow

SETUP = r"""
import json, sqlite3
import pandas as pd
sales = pd.DataFrame({"region": ["north", "south"], "revenue_eur": [10.5, 20.0]})
people = pd.DataFrame({"person_id": [1, 2], "nickname": ["ann", "bob"]})
conn = sqlite3.connect(":memory:")
conn.execute("CREATE TABLE orders (order_id INTEGER PRIMARY KEY, customer TEXT, total REAL)")
conn.executemany("INSERT INTO orders VALUES (?, ?, ?)", [(1, "acme", 30.5), (2, "globex", 99.0), (3, "initech", 12.0)])
conn.commit()
"""

OPEN = r"""
%load_ext rsql_magic
%load_ext rsql_magic.chat
%config RSQLMagic.model = 'fake-small'
import rsql_magic
p = rsql_magic.chat()
display(p)
"""


def system_and_users(body: dict) -> tuple[str, list[dict]]:
    msgs = body["messages"]
    return msgs[0]["content"], msgs[1:]


def newest_message(body: dict) -> str:
    """The live context goes with the newest question, as %%ask sends it."""
    return body["messages"][-1]["content"]


def context_of(body: dict) -> str:
    """The live context alone, without the question it goes with (a column the question names
    must come from the context to be found here)."""
    context, found, _ = newest_message(body).partition("Question:\n")
    return context if found else ""


def question_of(content: str) -> str:
    return content.split("Question:\n", 1)[-1]


@pytest.fixture
def kernel(jupyter_proxy: JupyterServer, tmp_path: Path):
    require("ipywidgets", reason="the chat panel is ipywidgets")
    k = KernelDriver(kernel_env(jupyter_proxy.proxy_url, jupyter_proxy.token), tmp_path)
    try:
        k.run(SETUP)
        k.run(OPEN)
        yield k
    finally:
        k.close()


def test_send_stream_toggles_sql_insert_history(
    kernel: KernelDriver, fresh_provider: FakeProvider, jupyter_proxy: JupyterServer
) -> None:
    k = kernel
    ids = k.ids()
    assert k.value("list(p.frames.options)") == ["sales", "people"]
    assert [v for _, v in k.value("list(p.sql.options)")] == ["", "conn", "%frames"]
    assert k.value("p.r_box.disabled") is True  # no R session in this kernel

    # 1. pick the frame "people" only, type, press Enter (Chrome: submit, then the value)
    words = " ".join(f"w{i}" for i in range(80))
    fresh_provider.script(f"{words}\n\n```python\nprint(people.nickname.str.len().mean())\n```")
    k.update(ids["frames"], index=[1])
    k.submit(ids["input"])
    k.update(ids["input"], value="how long are the nicknames?")
    turn = k.wait_answer()
    assert turn["state"] == "done", turn
    assert turn["answer"].startswith(words) and "fake-small" in turn["footer"]
    assert "<code" in turn["html"] and "nickname" in turn["html"]  # Markdown rendered to HTML
    assert turn["input"] == "" and turn["busy"] is False and turn["stop_display"] == "none"
    body = fresh_provider.received[-1].body
    assert body["stream"] is True
    ctx = context_of(body)
    assert "DataFrame people" in ctx and "nickname" in ctx and "revenue_eur" not in ctx
    _, rest = system_and_users(body)
    assert len(rest) == 1 and question_of(rest[0]["content"]) == "how long are the nicknames?"
    # the answer streamed to the frontend: several partial states, then the final one
    k.drain()
    answer_id = k.value("p.turns[-1].answer_html.model_id")
    states = [s["value"] for s in k.updates_of(answer_id) if "value" in s]
    partial = [v for v in states if "▍" in v]
    assert len(partial) >= 2 and "▍" not in states[-1], states[:3]
    # usage line from GET me
    assert "requests: no limit" in turn["usage"] and "budget" in turn["usage"]
    # the proxy logged it with client kind "chat"
    user = k.value("p.last_me['user']")
    deadline = time.monotonic() + 10
    while True:
        _, _, raw = jupyter_proxy.request("GET", f"admin/users/{user}/activity?limit=5")
        rows = json.loads(raw)["activity"]
        if rows or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert rows and rows[0]["client"] == "chat"

    # 2. a SQL connection in the picker adds its schema; follow-up carries the history;
    #    sent with the Send button this time (the value arrives on blur, then the click)
    fresh_provider.script(
        "Top customers:\n\n```sql\nSELECT customer, total FROM orders ORDER BY total DESC\n```"
    )
    k.update(ids["frames"], index=[])
    k.update(ids["sql"], index=1)
    k.update(ids["input"], value="which customers spent most?")
    k.click(ids["send_btn"])
    turn = k.wait_answer()
    assert turn["state"] == "done" and set(turn["buttons"]) == {"copy", "insert", "run"}
    system, rest = system_and_users(fresh_provider.received[-1].body)
    ctx = context_of(fresh_provider.received[-1].body)
    assert "CREATE TABLE orders" in ctx and "customer" in ctx and "SQL" in system
    assert "DataFrame" not in ctx  # with SQL chosen, frames only when picked (as --sql)
    assert [m["role"] for m in rest] == ["user", "assistant", "user"]
    assert rest[0]["content"] == "how long are the nicknames?" and rest[1]["content"].startswith(
        words
    )

    # 3. run the SQL through %%sql_ai's checks; the DataFrame shows in the panel
    n_before = len(fresh_provider.received)
    k.click(turn["buttons"]["run"])
    out = k.value("p.turns[-1].extra.children[-1].value")
    assert "globex" in out and "99.0" in out and "acme" in out and "3 rows" in out
    assert k.value("_chat_df.to_dict('list')") == {
        "customer": ["globex", "acme", "initech"],
        "total": [99.0, 30.5, 12.0],
    }
    assert len(fresh_provider.received) == n_before  # valid SQL: no model call needed

    # 4. copy and insert. A click is a comm message: no cell to insert after, so the code is
    #    shown ready to copy; %ask_chat --insert (a cell) hands it to the frontend
    k.click(turn["buttons"]["copy"])
    sql_code = "SELECT customer, total FROM orders ORDER BY total DESC"
    assert k.value("p.turns[-1].code_area.value") == sql_code
    k.click(turn["buttons"]["insert"])
    # the click left no payload behind: the next cell's reply (whatever it is) would carry it
    reply, _ = k.run("1 + 1")
    assert not reply.get("payload"), reply.get("payload")
    assert "%ask_chat --insert" in k.value("p.turns[-1].code_note.value")
    reply, _ = k.run("%ask_chat --insert")
    nxt = [x for x in reply.get("payload", []) if x.get("source") == "set_next_input"]
    assert nxt and nxt[0]["text"] == sql_code

    # 5. the guard: a DROP answer is refused (asked again, refused again); the table stays
    fresh_provider.script("```sql\nDROP TABLE orders\n```", "```sql\nDROP TABLE orders\n```")
    k.update(ids["input"], value="remove the orders table")
    k.click(ids["send_btn"])
    turn = k.wait_answer()
    k.click(turn["buttons"]["run"])
    out = k.value("p.turns[-1].extra.children[-1].value")
    assert "Not run" in out and "refused" in out.lower()
    assert k.value("conn.execute('SELECT count(*) FROM orders').fetchone()[0]") == 3

    # 6. history trimmed to its budget, oldest first
    k.run("p.history_tokens = 60")
    k.update(ids["sql"], index=0)
    k.update(ids["input"], value="and now?")
    k.click(ids["send_btn"])
    k.wait_answer()
    _, rest = system_and_users(fresh_provider.received[-1].body)
    contents = [m["content"] for m in rest]
    assert "how long are the nicknames?" not in contents  # the oldest exchange went first
    assert question_of(contents[-1]) == "and now?"
    assert sum(len(c) for c in contents[:-1]) // 4 <= 60
    assert k.value("p.dropped_messages") >= 2

    # 7. Enter on a value synced earlier (blur) still sends; a blur alone does not
    n = len(fresh_provider.received)
    k.update(ids["input"], value="blurred, not sent")
    k.drain(1.0)
    assert len(fresh_provider.received) == n and k.value("len(p.turns)") == 4
    k.submit(ids["input"])  # Enter with no trailing value update: sent after the grace time
    deadline = time.monotonic() + 5
    while k.value("len(p.turns)") == 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    turn = k.wait_answer()
    assert turn["n"] == 5 and turn["state"] == "done"
    assert question_of(newest_message(fresh_provider.received[-1].body)) == "blurred, not sent"

    # 8. New chat forgets everything
    k.click(ids["new_btn"])
    assert k.value("[len(p.turns), len(p.history), len(p.log.children)]") == [0, 0, 0]
    fresh_provider.script("fresh start")
    k.update(ids["input"], value="hello again")
    k.click(ids["send_btn"])
    k.wait_answer()
    _, rest = system_and_users(fresh_provider.received[-1].body)
    assert len(rest) == 1 and question_of(rest[0]["content"]) == "hello again"


def test_enter_sends_the_question_whose_value_comes_late(
    kernel: KernelDriver, fresh_provider: FakeProvider
) -> None:
    """Enter on a busy kernel: the box's value comes after the submit by more than the panel's
    brief wait (seen in a loaded browser test: the question stayed in the box, never sent). It
    is sent when it comes, once; the box is cleared."""
    k = kernel
    ids = k.ids()
    fresh_provider.script("the late one")
    k.submit(ids["input"])
    time.sleep(1.0)  # past the 0.3 s the panel waits before sending the synced (empty) value
    k.update(ids["input"], value="a question typed before Enter")
    turn = k.wait_answer()
    assert turn["n"] == 1 and turn["state"] == "done" and turn["answer"] == "the late one"
    assert turn["input"] == ""
    asked = [m["content"] for m in fresh_provider.received[-1].body["messages"]]
    assert any("a question typed before Enter" in str(c) for c in asked), asked
    assert len(fresh_provider.received) == 1


def test_stop_ends_the_upstream_request(
    jupyter_server_factory, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    require("ipywidgets", reason="the chat panel is ipywidgets")
    # the provider bills what it generates, so the proxy reads a left stream on for its usage
    # (the bill rule), here for one second, then charges the prompt and what it read
    server = jupyter_server_factory(
        {
            "upstreams": upstreams_for(fresh_provider),
            "default_model": "fake-small",
            "user_concurrency": 2,
            "usage_drain_seconds": 1.0,
        }
    )
    k = KernelDriver(kernel_env(server.proxy_url, server.token), tmp_path)
    try:
        k.run(SETUP)
        k.run(OPEN)
        ids = k.ids()
        long = " ".join(f"w{i}" for i in range(3000))  # ~15 s of streaming at 5 ms a word
        fresh_provider.script(long)
        k.update(ids["input"], value="a very long answer please")
        k.click(ids["send_btn"])
        # streaming: the kernel still runs cells and widget events meanwhile
        deadline = time.monotonic() + 20
        while len(k.value("p.turns[-1].answer")) < 200:
            assert time.monotonic() < deadline
        t0 = time.monotonic()
        k.run("1 + 1")
        assert time.monotonic() - t0 < 1.0
        assert k.value("p.busy") is True and k.value("p.stop_btn.layout.display") == ""

        def in_flight() -> int:
            _, _, raw = server.request("GET", "me")
            return json.loads(raw)["concurrency"]["in_flight"]

        assert in_flight() == 1
        t_stop = time.monotonic()
        k.click(ids["stop_btn"])
        deadline = time.monotonic() + 5
        while k.value("p.busy"):
            assert time.monotonic() < deadline, "stop did not end the stream"
        assert time.monotonic() - t_stop < 3
        turn = k.last_turn()
        assert turn["state"] == "stopped" and "Stopped" in turn["status"]
        assert 0 < len(turn["answer"]) < len(long) and turn["stop_display"] == "none"
        # the proxy read on for usage_drain_seconds, then closed the upstream and released the
        # user's slot, well before the stream would have ended
        deadline = time.monotonic() + 5
        while in_flight() != 0:
            assert time.monotonic() < deadline, "the proxy still holds the stopped request"
            time.sleep(0.1)
        assert time.monotonic() - t_stop < 6
        assert k.value("len(p.history)") == 0  # a stopped answer is not context for later
        # and the panel takes the next question at once
        fresh_provider.script("short one")
        k.update(ids["input"], value="next")
        k.click(ids["send_btn"])
        assert k.wait_answer()["answer"] == "short one"
    finally:
        k.close()


def test_rate_limit_shows_in_the_panel(
    jupyter_server_factory, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    require("ipywidgets", reason="the chat panel is ipywidgets")
    server = jupyter_server_factory(
        # the fake provider's models have no price
        {
            "upstreams": upstreams_for(fresh_provider),
            "default_model": "fake-small",
            "user_limits": ["2/minute"],
            "user_daily_budget_usd": 5.0,
            "unpriced_models": "free",
        }
    )
    k = KernelDriver(kernel_env(server.proxy_url, server.token), tmp_path)
    try:
        k.run(SETUP)
        k.run(OPEN)
        ids = k.ids()
        k.update(ids["input"], value="first")
        k.click(ids["send_btn"])
        turn = k.wait_answer()
        assert "requests left: 1 of 2/minute" in turn["usage"], turn["usage"]
        assert "budget left: $" in turn["usage"] and "of $5.00 today" in turn["usage"]
        k.update(ids["input"], value="second")
        k.click(ids["send_btn"])
        turn = k.wait_answer()
        assert "requests left: 0 of 2/minute (resets " in turn["usage"]
        n = len(fresh_provider.received)
        k.update(ids["input"], value="third")
        k.click(ids["send_btn"])
        turn = k.wait_answer()
        assert len(fresh_provider.received) == n  # the proxy refused it before the upstream
        assert turn["state"] == "error"
        assert "Rate limited: user 2/minute reached; resets at " in turn["status"]
        assert " UTC; retry in " in turn["status"]
        assert "retry in" in turn["status"] and "Rate limited" in turn["html"]
        assert turn["input_disabled"] is False and turn["busy"] is False
        # the input stays usable: the next question goes out (and is refused again, cleanly)
        k.update(ids["input"], value="fourth")
        k.click(ids["send_btn"])
        turn = k.wait_answer()
        assert turn["n"] == 4 and turn["state"] == "error" and turn["input"] == ""
    finally:
        k.close()


def test_r_session_toggle(
    jupyter_proxy: JupyterServer, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    require("ipywidgets", reason="the chat panel is ipywidgets")
    require_r()
    k = KernelDriver(kernel_env(jupyter_proxy.proxy_url, jupyter_proxy.token), tmp_path)
    try:
        k.run(SETUP)
        k.run(OPEN)
        ids = k.ids()
        assert k.value("p.r_box.disabled") is True
        k.run("%load_ext rpy2.ipython")
        k.run("%R cars_r <- data.frame(speed = c(4, 7), brand = factor(c('a', 'b')))")
        k.click(ids["refresh_btn"])  # the R session appears in the panel
        assert k.value("p.r_box.disabled") is False
        k.update(ids["r_box"], value=True)
        k.update(ids["input"], value="summarise cars_r")
        k.click(ids["send_btn"])
        assert k.wait_answer()["state"] == "done"
        body = fresh_provider.received[-1].body
        ctx = context_of(body)
        assert "cars_r" in ctx and "factor" in ctx and "numeric" in ctx
        assert "write code in R" in system_and_users(body)[0]
    finally:
        k.close()
