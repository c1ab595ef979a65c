"""Issue 75 in the kernel, against a proxy that speaks the contract (tests/helpers/course_proxy.py):
tutor mode as %%ask, %ask_status, %%sql_ai and the chat panel say it; the course log's notice
with the first answer of a session; and what the kernel tells the frontend of the cells the
assistant writes (the provenance payload beside set_next_input, a proposal's request, the
channel for a click). The answers are hostile: a tutor's SQL never runs, whatever it holds,
and the admin's words reach the page as text. Twins against the real proxy:
tests/e2e/test_course_kernel_real_proxy.py."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from rsql_magic.client import ProxyClient
from rsql_magic.privacy import clear_cache
from rsql_magic.session import Provenance, Session
from rsql_magic.session.cells import PAYLOAD_SOURCE, CellChannel
from tests.helpers import require
from tests.helpers.course_proxy import COURSE_LOG, TUTOR, CourseProxy

WHOLE_QUERY = (
    "Steps: join customers to orders, filter 2024, sum per customer.\n\n"
    "```sql\nSELECT c.name, SUM(o.amount) AS total FROM customers c "
    "JOIN orders o ON o.customer_id = c.id WHERE o.year = 2024 GROUP BY c.name\n```"
)


@pytest.fixture
def proxy() -> Iterator[CourseProxy]:
    with CourseProxy() as p:
        yield p


@pytest.fixture
def ip(proxy: CourseProxy, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    """This process's shell with rsql_magic loaded, talking to the contract's proxy."""
    for k in ("RSQL_PROXY_URL", "RSQL_PROXY_TOKEN", "RSQL_MODEL", "RSQL_REPLAY", "JPY_PARENT_PID"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("RSQL_BATCH", "0")
    clear_cache()
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "rsql_magic")
    shell.run_line_magic("config", "RSQLMagic.stream = False")
    shell.run_line_magic("config", f"RSQLMagic.proxy_url = {proxy.url!r}")
    shell.run_line_magic("config", "RSQLMagic.proxy_token = 'tok-alice'")
    Session.of(shell).log_notice_shown = False
    shell.payload_manager.clear_payload()
    yield shell
    shell.run_line_magic("config", "RSQLMagic.proxy_url = None")
    shell.run_line_magic("config", "RSQLMagic.proxy_token = None")
    shell.run_line_magic("config", "RSQLMagic.stream = True")
    shell.payload_manager.clear_payload()
    for k in ("conn", "top", "_"):
        shell.user_ns.pop(k, None)
    clear_cache()


def run(shell: InteractiveShell, code: str) -> str:
    """Run a cell; what it showed (Markdown, else text), its error raised."""
    with capture_output() as cap:
        result = shell.run_cell(code)
    if result.error_in_exec is not None:
        raise result.error_in_exec
    return "\n".join(
        o.data.get("text/markdown") or o.data.get("text/plain", "") for o in cap.outputs
    )


def in_tutor_mode(proxy: CourseProxy, *, log: bool = True) -> None:
    proxy.tutor, proxy.tutor_header = dict(TUTOR), True
    if log:
        proxy.log, proxy.log_header = dict(COURSE_LOG), True


def test_ask_says_tutor_mode_with_the_admins_message_and_the_course_log_once_a_session(
    ip: InteractiveShell, proxy: CourseProxy
) -> None:
    in_tutor_mode(proxy)
    first = run(ip, "%%ask --no-data\nhow do I group by region?")
    assert (
        "Tutor mode (window stat101-weekdays, until 2026-11-27 17:00 UTC (2026-11-27 18:00 CET))"
        in first
    )
    assert "STAT 101" in first and "hints this week" in first
    assert "Your course staff can read your assistant conversations" in first
    assert "kept 120 days" in first and "tutor mode" in first.split("---")[-1]  # the footer
    second = run(ip, "%%ask --no-data\nand how do I sort it?")
    assert "Tutor mode" in second
    assert "course staff can read" not in second  # once per kernel session


def test_ask_status_shows_the_mode_its_rules_and_the_course_log(
    ip: InteractiveShell, proxy: CourseProxy
) -> None:
    in_tutor_mode(proxy)
    shown = run(ip, "%ask_status")
    assert "**Mode: tutor** (window stat101-weekdays" in shown
    assert "- **agent tools**: off" in shown and "- **inline completions**: names only" in shown
    assert "query with blanks; runs nothing" in shown
    assert "**Course log**: Your course staff can read your assistant conversations." in shown
    assert "stat101-staff; kept 120 days" in shown
    proxy.tutor = proxy.log = None
    clear_cache()
    shown = run(ip, "%ask_status")
    assert "- **mode**: normal" in shown and "- **course log**: off" in shown


def test_sql_ai_in_tutor_mode_shows_blanks_and_never_runs_even_a_whole_query(
    ip: InteractiveShell, proxy: CourseProxy
) -> None:
    """The model ignores the instruction and writes the whole query: it is shown with blanks
    where a student has to think, and it does not run. The control, outside tutor mode, runs
    the same answer: the statement trace shows it would have run."""
    conn = sqlite3.connect(":memory:")
    conn.executescript(
        "CREATE TABLE customers (id INTEGER, name TEXT);"
        "CREATE TABLE orders (id INTEGER, customer_id INTEGER, year INTEGER, amount REAL);"
        "INSERT INTO customers VALUES (1, 'acme'); INSERT INTO orders VALUES (1, 1, 2024, 9.5);"
    )
    ran: list[str] = []
    conn.set_trace_callback(ran.append)
    ip.user_ns["conn"] = conn
    proxy.answer = WHOLE_QUERY
    in_tutor_mode(proxy, log=False)
    shown = run(ip, "%%sql_ai conn -o top\ntop customers in 2024")
    assert "Do not write the finished query" in proxy.asked[-1]["messages"][0]["content"]
    assert "SUM(____)" in shown and "ON ____" in shown and "WHERE\n  ____" in shown
    assert "2024" not in shown.split("```sql")[1].split("```")[0]  # the filter is left out
    assert "this query was not run" in shown and "-o top: not set" in shown
    assert "top" not in ip.user_ns
    assert not [s for s in ran if "SUM(" in s.upper()], ran
    # control: the same answer outside tutor mode runs
    proxy.tutor, proxy.tutor_header = None, False
    clear_cache()
    run(ip, "%%sql_ai conn -o top\ntop customers in 2024")
    assert ip.user_ns["top"].to_dict("list") == {"name": ["acme"], "total": [9.5]}
    assert [s for s in ran if "SUM(" in s.upper()]


def test_a_tutor_answer_on_the_ordinary_path_stops_the_sql_loop_before_anything_runs(
    ip: InteractiveShell, proxy: CourseProxy
) -> None:
    """GET me said no tutor (a window that began since): the answer says X-RSQL-Mode: tutor."""
    conn = sqlite3.connect(":memory:")
    conn.executescript("CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1);")
    ran: list[str] = []
    conn.set_trace_callback(ran.append)
    ip.user_ns["conn"] = conn
    proxy.answer, proxy.tutor_header = "```sql\nSELECT a FROM t WHERE a > 0\n```", True
    shown = run(ip, "%%sql_ai conn -o top\nwhich a are positive?")
    assert "not run" in shown and "top" not in ip.user_ns
    assert not [s for s in ran if "a > 0" in s]


def test_the_admins_words_reach_the_page_as_text(ip: InteractiveShell, proxy: CourseProxy) -> None:
    in_tutor_mode(proxy)
    proxy.tutor["message"] = '<img src=x onerror="alert(1)"> [click](javascript:alert(2))'
    proxy.log["notice"] = "<script>alert(3)</script>\x1b[2K"
    shown = run(ip, "%%ask --no-data\nhello?") + run(ip, "%ask_status")
    # the words reached the page (the tutor message and the log's notice) ...
    assert 'onerror="alert(1)"' in shown and "alert(3)" in shown and "click" in shown, shown
    # ... as text
    assert "<img" not in shown and "<script" not in shown and "\x1b" not in shown
    # no link to follow: its brackets escaped, or written as entities
    assert re.search(r"(?<!\\)\[click(?<!\\)\]\(javascript:", shown) is None, shown


def test_code_put_in_the_next_cell_tells_the_frontend_who_wrote_it(
    ip: InteractiveShell, proxy: CourseProxy
) -> None:
    proxy.answer = "Like this:\n\n```python\ndf.groupby('region').revenue.sum()\n```"
    ip.rl_next_input = None
    run(ip, "%%ask --no-data --insert\nrevenue per region?")
    # a terminal shell keeps set_next_input's text itself; a kernel's is a payload beside ours
    # (the real kernel's reply: tests/e2e/test_course_kernel_real_proxy.py)
    ours = [p for p in ip.payload_manager.read_payload() if p["source"] == PAYLOAD_SOURCE]
    assert ours and ours[0]["text"] == ip.rl_next_input == "df.groupby('region').revenue.sum()"
    assert ours[0]["provenance"] == {
        "kind": "ask",
        "model": "fake-small",
        "request_id": list(proxy.served)[-1],
    }


def test_a_proposed_cell_names_the_request_whose_answer_proposed_it(
    ip: InteractiveShell, proxy: CourseProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rsql_magic.agent import tools as tools_mod
    from rsql_magic.agent.loop import Turn
    from rsql_magic.agent.proposal import PROPOSAL_MIME
    from rsql_magic.agent.tools import KernelTools
    from rsql_magic.client import ChatResult

    shown: list[Any] = []
    monkeypatch.setattr(tools_mod, "display", lambda obj, **kw: shown.append(obj))
    turn = Turn()
    turn.requests.append(ChatResult("", "fake-small", request_id="f00d" * 8))
    tools = KernelTools(Session.of(ip)).serving(turn)
    tools.call("propose_cell", {"code": "df.head()", "language": "python"})
    assert shown[0][PROPOSAL_MIME]["provenance"] == {
        "kind": "agent",
        "model": "fake-small",
        "request_id": "f00d" * 8,
    }


class FakeComm:
    """What comm.create_comm gives in a kernel: messages out, callbacks for what comes in."""

    def __init__(self, **_kw: Any) -> None:
        self.sent: list[dict[str, Any]] = []
        self.on_msg_cb: Any = None
        self.on_close_cb: Any = None
        self.closed = False

    def send(self, data: dict[str, Any]) -> None:
        self.sent.append(data)

    def on_msg(self, cb: Any) -> None:
        self.on_msg_cb = cb

    def on_close(self, cb: Any) -> None:
        self.on_close_cb = cb

    def reply(self, data: dict[str, Any]) -> None:
        self.on_msg_cb({"content": {"data": data}})

    def close(self) -> None:
        self.closed = True


def test_the_channel_inserts_only_once_the_frontend_answered_and_says_what_it_did(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import comm

    made: list[FakeComm] = []
    monkeypatch.setattr(comm, "create_comm", lambda **kw: made.append(FakeComm(**kw)) or made[-1])
    shell = type("Shell", (), {"kernel": object()})()
    channel = CellChannel(shell)
    heard: list[tuple[bool, str]] = []
    prov = Provenance("chat", "fake-small", "abc")
    assert not channel.insert("x = 1", below="c1", provenance=prov, done=lambda *a: heard.append(a))
    channel.open()
    channel.open()  # each panel anew: the first comm is closed, and its word counts no more
    old, c = made
    assert old.closed
    old.reply({"ready": True})
    assert not channel.ready
    assert not channel.insert("x = 1", below="c1", provenance=prov, done=lambda *a: heard.append(a))
    c.reply({"ready": True})
    assert channel.insert("x = 1", below="c1", provenance=prov, done=lambda *a: heard.append(a))
    assert c.sent[-1] == {
        "id": 1,
        "insert": {"code": "x = 1", "below": "c1", "provenance": prov.as_json()},
    }
    c.reply({"id": 1, "inserted": True})
    assert heard == [(True, "")]
    channel.insert("y", below=None, provenance=prov, done=lambda *a: heard.append(a))
    c.on_close_cb({})
    assert heard[-1] == (False, "the notebook closed the channel") and not channel.ready


def test_the_chat_panel_says_tutor_mode_keeps_agent_off_and_runs_no_sql(
    ip: InteractiveShell, proxy: CourseProxy
) -> None:
    require("ipywidgets", reason="the chat panel is ipywidgets")
    from rsql_magic.chat.panel import ChatPanel

    in_tutor_mode(proxy)
    proxy.tutor["message"] = '<img src=x onerror="alert(1)">hints only'
    proxy.answer = "Try this:\n\n```sql\nSELECT a FROM t WHERE ____\n```"
    panel = ChatPanel(ip, client=ProxyClient(proxy.url, "tok-alice"), refresh_usage=False)
    panel.refresh_usage()
    assert "Tutor mode (window stat101-weekdays" in panel.notice.value
    assert "course staff can read" in panel.notice.value
    assert "<img" not in panel.notice.value and "&lt;img" in panel.notice.value
    assert panel.agent_btn.disabled and not panel.agent_btn.value
    assert panel.send("what should I write?") and panel.wait(30)
    turn = panel.turns[-1]
    assert "tutor mode" in turn.footer.value
    assert "run" not in turn.buttons  # SQL from a tutor's answer does not run
    assert panel.run_sql(turn) is None and "Tutor mode" in panel.status.value
    # a terminal shell runs cells only: Insert goes next as from a running cell, marked
    # (a click in a kernel, with and without the frontend: tests/e2e/test_course_kernel_real_proxy.py)
    ip.payload_manager.clear_payload()
    assert panel.insert_code(turn)
    (ours,) = [p for p in ip.payload_manager.read_payload() if p["source"] == PAYLOAD_SOURCE]
    assert ours["provenance"]["kind"] == "chat" and ours["text"] == "SELECT a FROM t WHERE ____"


def test_the_mode_and_course_headers_are_read_only_as_one_word() -> None:
    """An answer's X-RSQL-Mode and X-RSQL-Course-Log are shown: anything but one plain word
    (markup, a long text) is no mode and no course at all."""
    from rsql_magic.client.answers import EngineHeaders, json_result

    body = b'{"model": "m", "choices": [{"message": {"content": "hi"}}]}'

    def read(mode: str, course: str) -> tuple[str | None, str | None]:
        headers = EngineHeaders({"X-RSQL-Mode": mode, "X-RSQL-Course-Log": course})
        res = json_result(200, body, headers, "m", None, 0.0)
        return res.mode, res.course_log

    assert read("tutor", "stat101") == ("tutor", "stat101")
    assert read("<b>tutor</b>", "stat 101; rm -rf") == (None, None)
    assert read("t" * 65, "") == (None, None)


def test_sql_ai_carries_the_course_logs_notice_with_the_sessions_first_answer(
    ip: InteractiveShell, proxy: CourseProxy
) -> None:
    conn = sqlite3.connect(":memory:")
    conn.executescript("CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1);")
    ip.user_ns["conn"] = conn
    proxy.log, proxy.log_header = dict(COURSE_LOG), True
    proxy.answer = "```sql\nSELECT a FROM t\n```"
    first = run(ip, "%%sql_ai conn\nall of a")
    assert "course staff can read" in first and "SELECT a FROM t" in first
    assert "course staff can read" not in run(ip, "%%sql_ai conn\nall of a, again")
