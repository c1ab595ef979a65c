"""Issue 75 in a real kernel through the real proxy: tutor mode as %%ask, %ask_status and
%%sql_ai say it (a standing tutor window for the group "students"), the course log's notice
with the first answer of a session, and what the kernel tells the frontend of the cells the
assistant writes (the provenance payload in the execute reply, the chat panel's channel).

One Jupyter server with the proxy serves the module (tok-alice and tok-bob are students,
tok-carol is staff); each test starts its own kernel, driven as JupyterLab drives one. The
unit twins, against a proxy that speaks the contract: tests/unit/test_course_kernel.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import require, upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.kernel_driver import KernelDriver
from tests.helpers.kernels import kernel_env
from tests.helpers.servers import JupyterServer, start_jupyter_server

pytestmark = pytest.mark.slow

INSTRUCTION = "You tutor STAT 101. Hints and questions only; never a whole solution."
TUTOR_WINDOW = {
    "name": "stat101-tutor",
    "mode": "tutor",
    "groups": ["students"],
    "always": True,
    "message": "STAT 101: the assistant tutors this term.",
    "instruction": INSTRUCTION,
}
COURSE_LOGS = {"students": {"instructors": "staff", "retention_days": 30}}
REQUEST_ID = re.compile(r"[A-Za-z0-9_.:-]{8,128}")
WHOLE_QUERY = (
    "1. Join customers to orders. 2. Keep 2024. 3. Sum per customer.\n\n```sql\n"
    "SELECT c.name, SUM(o.amount) AS total FROM customers c JOIN orders o "
    "ON o.customer_id = c.id WHERE o.year = 2024 GROUP BY c.name\n```"
)
SHOP = r"""
import sqlite3
ran = []
conn = sqlite3.connect(":memory:")
conn.executescript(
    "CREATE TABLE customers (id INTEGER, name TEXT);"
    "CREATE TABLE orders (id INTEGER, customer_id INTEGER, year INTEGER, amount REAL);"
    "INSERT INTO customers VALUES (1, 'acme'); INSERT INTO orders VALUES (1, 1, 2024, 9.5);")
conn.set_trace_callback(ran.append)
"""


@pytest.fixture(scope="module")
def course_server(
    provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[JupyterServer]:
    server = start_jupyter_server(
        tmp_path_factory.mktemp("course-kernel"),
        {
            "upstreams": upstreams_for(provider),
            "default_model": "fake-small",
            "policy_windows": [TUTOR_WINDOW],
            "course_logs": COURSE_LOGS,
        },
        named_users=True,
    )
    yield server
    server.stop()


@pytest.fixture
def kernel(course_server: JupyterServer, tmp_path: Path) -> Iterator[Any]:
    """A kernel of alice's, rsql_magic loaded, answers whole (not streamed)."""
    started: list[KernelDriver] = []

    def start(token: str = "tok-alice") -> KernelDriver:
        k = KernelDriver(kernel_env(course_server.proxy_url, token), tmp_path)
        started.append(k)
        k.run("import json\n%load_ext rsql_magic\n%config RSQLMagic.stream = False")
        return k

    yield start
    for k in started:
        k.close()


def shown(msgs: list[dict]) -> str:
    """What a cell showed: Markdown, else text, of its displays and streams."""
    out = []
    for m in msgs:
        if m["msg_type"] in ("display_data", "execute_result", "update_display_data"):
            data = m["content"]["data"]
            out.append(data.get("text/markdown") or data.get("text/plain", ""))
        elif m["msg_type"] == "stream":
            out.append(m["content"]["text"])
    return "\n".join(out)


def test_ask_in_tutor_mode_says_so_and_the_courses_instruction_reached_the_model_first(
    kernel: Any, fresh_provider: FakeProvider
) -> None:
    k = kernel()
    fresh_provider.script("What have you tried? Look at `groupby`.")
    _, msgs = k.run("%%ask --no-data\nGive me the code for revenue per region (alice 1).")
    text = shown(msgs)
    assert "Tutor mode (window stat101-tutor)" in text
    assert "STAT 101: the assistant tutors this term" in text
    assert "tutor mode" in text.split("---")[-1]  # the footer says it of this answer
    first = fresh_provider.received[-1].body["messages"][0]
    assert first["role"] == "system" and first["content"] == INSTRUCTION


def test_ask_status_shows_tutor_mode_for_a_student_and_normal_mode_for_staff(
    kernel: Any,
) -> None:
    _, msgs = kernel().run("%ask_status")
    text = shown(msgs)
    assert "**Mode: tutor** (window stat101-tutor" in text
    assert "- **agent tools**: off" in text and "query with blanks; runs nothing" in text
    _, msgs = kernel("tok-carol").run("%ask_status")
    assert "- **mode**: normal" in shown(msgs)


def test_sql_ai_in_tutor_mode_shows_blanks_and_runs_nothing_in_a_real_kernel(
    kernel: Any, fresh_provider: FakeProvider
) -> None:
    """The model writes the whole query despite the instruction: shown with blanks, not run
    (the connection's statement trace in the kernel holds no SELECT of it)."""
    k = kernel()
    k.run(SHOP)
    fresh_provider.script(WHOLE_QUERY)
    _, msgs = k.run("%%sql_ai conn -o top\nTop customers in 2024 (alice sql)")
    text = shown(msgs)
    assert "SUM(____)" in text and "this query was not run" in text
    assert k.value("'top' in globals()") is False
    assert k.value("[s for s in ran if 'SUM(' in s.upper()]") == []
    asked = fresh_provider.received[-1].body["messages"]
    assert asked[0]["content"] == INSTRUCTION  # the proxy's, first
    assert "Do not write the finished query" in asked[1]["content"]  # the kernel's, after it


def test_the_course_logs_notice_comes_with_the_first_answer_of_a_session_only(
    kernel: Any, fresh_provider: FakeProvider
) -> None:
    """Waits on the course log's part (GET me's course_log, X-RSQL-Course-Log)."""
    k = kernel()
    fresh_provider.script("Hint one.", "Hint two.")
    _, first = k.run("%%ask --no-data\nWhat is a join? (alice log 1)")
    _, second = k.run("%%ask --no-data\nWhat is a left join? (alice log 2)")
    assert "course staff can read" in shown(first).lower()
    assert "course staff can read" not in shown(second).lower()
    _, status = k.run("%ask_status")
    assert "**Course log**" in shown(status) and "kept 30 days" in shown(status)


def test_code_inserted_from_a_cell_rides_with_its_provenance_in_the_reply(
    kernel: Any, fresh_provider: FakeProvider
) -> None:
    k = kernel("tok-carol")
    code = "df.groupby('region')['revenue'].sum()"
    fresh_provider.script(f"Here:\n\n```python\n{code}\n```")
    reply, _ = k.run("%%ask --no-data --insert\nrevenue per region (carol insert)?")
    payload = reply["payload"]
    nxt = [p for p in payload if p["source"] == "set_next_input"]
    ours = [p for p in payload if p["source"] == "rsql_provenance"]
    assert nxt[0]["text"] == ours[0]["text"] == code
    assert ours[0]["provenance"]["kind"] == "ask"
    assert ours[0]["provenance"]["model"] == "fake-small"
    assert REQUEST_ID.fullmatch(ours[0]["provenance"]["request_id"])


def channel_open(k: KernelDriver) -> dict:
    """The kernel's comm_open of the rsql.cells channel, as the frontend sees it."""
    k.drain()
    opened = [
        m
        for m in k.iopub
        if m["msg_type"] == "comm_open" and m["content"]["target_name"] == "rsql.cells"
    ]
    assert opened, "the chat panel opened no channel to the frontend"
    return opened[-1]["content"]


def test_the_chat_panels_insert_goes_to_the_frontend_through_its_channel(
    kernel: Any, fresh_provider: FakeProvider
) -> None:
    """The test is the frontend: it answers the channel ready, takes the insert the click
    sends, and says it inserted the cell; the panel says so. A frontend that never answers
    (no extension) gets the code to copy."""
    require("ipywidgets", reason="the chat panel is ipywidgets")
    k = kernel("tok-carol")
    opened = "import rsql_magic\np = rsql_magic.chat(model='fake-small')\ndisplay(p)"
    k.run(opened, cell_id="home-cell-1")  # the notebook's cell the panel was opened from
    comm_id = channel_open(k)["comm_id"]
    k.comm(comm_id, {"ready": True})
    fresh_provider.script("Try:\n\n```python\nsales.revenue.sum()\n```")
    ids = k.ids()
    k.update(ids["input"], value="total revenue? (carol chat)")
    k.click(ids["send_btn"])
    turn = k.wait_answer()
    k.click(turn["buttons"]["insert"])
    k.drain()
    sent = [
        m["content"]["data"]
        for m in k.iopub
        if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id
    ]
    ask = sent[-1]
    assert ask["insert"]["code"] == "sales.revenue.sum()"
    assert ask["insert"]["provenance"]["kind"] == "chat"
    assert REQUEST_ID.fullmatch(ask["insert"]["provenance"]["request_id"])
    assert ask["insert"]["below"] == "home-cell-1" == k.value("p.home_cell")
    k.comm(comm_id, {"id": ask["id"], "inserted": True})
    assert "inserted as a new cell below the chat" in k.value("p.status.value")

    # a kernel whose frontend never answers the channel: the code to copy, and why
    other = kernel("tok-carol")
    other.run("import rsql_magic\nq = rsql_magic.chat(model='fake-small')\ndisplay(q)")
    fresh_provider.script("Try:\n\n```python\nsales.revenue.mean()\n```")
    other.run("assert q.send('mean revenue? (carol chat 2)') and q.wait(60)")
    button = other.value("q.turns[-1].buttons['insert'].model_id")
    other.click(button)
    assert "%ask_chat --insert" in other.value("q.turns[-1].code_note.value")
