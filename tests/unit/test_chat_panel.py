"""The chat panel in-process (no kernel, no browser): quick checks of what it sends and shows.

The panel talks to the loopback fake provider directly (it speaks the same OpenAI API as the
proxy); the end-to-end runs through the proxy, a kernel and a browser are in
``tests/e2e/test_chat_kernel.py`` and ``tests/e2e/test_chat_browser.py``.
"""

from __future__ import annotations

import time
from typing import Any

from rsql_magic.client import ProxyError
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.kernels import chat_panel_for


def test_usage_line_and_rate_limit_text() -> None:
    from rsql_magic.chat.text import rate_limit_text, usage_line

    me = {
        "user": "alice",
        "groups": ["students"],
        "admin": False,
        "limits": [
            {
                "limit": "60/minute",
                "used": 60,
                "remaining": 0,
                "resets_in_seconds": 12.0,
                "resets_at": "2001-02-03T04:05:06Z",
                "window": "moving 60 s",
            },
            {
                "limit": "1000/day",
                "used": 60,
                "remaining": 940,
                "resets_in_seconds": 100.0,
                "resets_at": "2001-02-03T23:59:59Z",
                "window": "calendar day (UTC)",
            },
        ],
        "concurrency": None,
        "budget": {
            "daily_usd": 5.0,
            "spent_usd": 0.25,
            "remaining_usd": 4.75,
            "resets_at": "2001-02-04T00:00:00Z",
        },
    }
    assert usage_line(me) == (
        "alice · requests left: 0 of 60/minute (resets 2001-02-03 04:05 UTC), 940 of 1000/day"
        " · budget left: $4.75 of $5.00 today"
    )
    assert usage_line({"user": "bob", "limits": [], "budget": None}) == (
        "bob · requests: no limit · budget: none set"
    )
    e = ProxyError(
        429,
        "user 2/minute reached",
        limit="user 2/minute",
        retry_after=30,
        reset="2001-02-03T04:05:06Z",
    )
    assert rate_limit_text(e).startswith(
        "Rate limited: user 2/minute reached; resets at 2001-02-03 04:05 UTC; retry in 30 s."
    )


def test_turns_history_budget_and_actions(shell: Any, fresh_provider: FakeProvider) -> None:
    import pandas as pd

    shell.user_ns["trips"] = pd.DataFrame({"trip_id": [1, 2], "fare_usd": [3.5, 9.0]})
    p = chat_panel_for(shell, fresh_provider, history_tokens=40)
    assert "trips" in p.frames.options
    fresh_provider.script(
        "A" * 100 + "\n\n```python\ntrips.fare_usd.mean()\n```", "second answer", "third"
    )
    assert p.send("first question about trips?") and p.wait(30)
    first = p.turns[-1]
    assert first.state == "done" and set(first.buttons) == {"copy", "insert"}
    assert "DataFrame trips" in fresh_provider.received[-1].body["messages"][-1]["content"]
    # outside a cell's execute request (here: no kernel parent), insert shows the code instead
    p.show_code(first)
    assert first.code_area.value == "trips.fare_usd.mean()"
    assert p.send("second?") and p.wait(30)
    # the first exchange (~42 tokens) and the second (~6) are over the 40-token history
    # budget together: the oldest exchange is left out, the newer one stays
    assert p.send("third?") and p.wait(30)
    roles = [m["role"] for m in fresh_provider.received[-1].body["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    sent = fresh_provider.received[-1].body["messages"]
    assert sent[1]["content"] == "second?" and sent[2]["content"] == "second answer"
    assert p.dropped_messages == 2
    # a second send while one streams is refused with a note, not queued behind it
    fresh_provider.script(" ".join(["w"] * 2000))
    assert p.send("long one")
    assert p.send("impatient") is False and "still streaming" in p.status.value
    t0 = time.monotonic()
    p.stop()
    assert p.wait(5) and time.monotonic() - t0 < 3
    assert p.turns[-1].state == "stopped"
    p.new_chat()
    assert p.turns == [] and p.history == [] and p.log.children == ()


def test_run_sql_takes_only_a_block_and_asks_again_as_an_sql_client(
    shell: Any, fresh_provider: FakeProvider
) -> None:
    """The proxy maps redacted values back into a chat answer's prose, never into a block it reads
    as SQL, nor into an SQL client's answer: Run SQL must run nothing else."""
    import sqlite3

    conn = sqlite3.connect(":memory:")
    conn.executescript("CREATE TABLE t (e TEXT); INSERT INTO t VALUES ('x');")
    shell.user_ns["conn"] = conn
    p = chat_panel_for(shell, fresh_provider)
    p.sql.options = [("none", ""), ("conn", "conn")]
    p.sql.value = "conn"
    # each answer shows an sql block, or once did to a renderer; the grammar the proxy and
    # extract_sql share sees none, and would read the statement from the prose: no button,
    # and a call runs nothing
    for answer in (
        "~~~sql\nSELECT e FROM t WHERE e = 'ada@example.com';\n~~~",
        "```text\na ```\n```x\n```sql\nSELECT e FROM t WHERE e = 'ada@example.com';\n\n```",
        # extract_sql would take the bare block, not the sql block the answer shows first
        "```\ne\nada@example.com\n```\n~~~sql\nSELECT e FROM t WHERE e = 'ada@example.com';\n~~~",
        # nor the one after an sql block a control character hides from a raw reading
        "\x00~~~sql\nSELECT 1\n\x00~~~\n\n```sql\nSELECT e FROM t WHERE e = 'ada@example.com';\n```",
    ):
        fresh_provider.script(answer)
        assert p.send("who?") and p.wait(30)
        turn = p.turns[-1]
        assert "run" not in turn.buttons and "insert" in turn.buttons
        asked = len(fresh_provider.received)
        assert p.run_sql() is None
        assert "no SQL block" in p.status.value and turn.sql_result is None
        assert len(fresh_provider.received) == asked
    assert p.turns[-4].first_code("sql") is not None  # the tilde fence: shown as sql
    # a block that fails goes back to the model as an SQL client would ask
    fresh_provider.script("```sql\nSELECT nope FROM t\n```", "```sql\nSELECT e FROM t\n```")
    assert p.send("the e values?") and p.wait(30)
    assert fresh_provider.received[-1].client == "chat"
    assert "run" in p.turns[-1].buttons
    frame = p.run_sql()
    assert frame is not None and list(frame["e"]) == ["x"]
    assert fresh_provider.received[-1].client == "sql"
