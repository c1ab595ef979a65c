"""The course log through the hub service (`rsql-proxy`, static hub users) in front of the fake
OpenAI-compatible and Anthropic providers: every API's answer, JSON and streamed, translated and
sent as it came, and cache hits, logged with the prompt after redaction and the answer as the
provider sent it; the students told (GET me, X-RSQL-Course-Log); instructors reading their own
course only, per student and per notebook, every reading logged; and what a student or the wrong
instructor would try: reading another course's log, posing as an instructor, guessing request
ids, and a prompt that carries HTML and script into the course page (in Chromium too)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import PROVIDER_KEYS, child_env, upstreams_for
from tests.helpers.course_log import (
    COURSE_LOGS,
    STATIC_USERS,
    TOKEN,
    client_text,
    question,
)
from tests.helpers.fake_anthropic import FakeAnthropic
from tests.helpers.fake_anthropic import KeyPolicy as AnthropicKey
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import ProxyService, start_service

ANTHROPIC_KEY = "test-anthropic-key-course-log"
EMAIL = "ann.smith@uni.example.edu"
HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


@pytest.fixture(scope="module")
def anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic({ANTHROPIC_KEY: AnthropicKey("claude")}) as fake:
        yield fake


@pytest.fixture(scope="module")
def svc(
    provider: FakeProvider, anthropic: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyService]:
    """One service for the module: two logged courses, redaction of e-mail addresses."""
    key, _, account = PROVIDER_KEYS[2]
    upstreams = [
        *upstreams_for(provider),
        # the Responses API sent as it came, to an upstream that speaks it
        {
            "name": "native",
            "base_url": provider.base_url,
            "api_key": key,
            "account": account,
            "models": {"fake-native": "fake-small"},
            "responses_api": True,
        },
        {
            "name": "claude",
            "provider": "anthropic",
            "base_url": anthropic.base_url,
            "api_key": ANTHROPIC_KEY,
            "models": {"claude-small": "claude-fake-small"},
        },
    ]
    service = start_service(
        tmp_path_factory.mktemp("course_log"),
        {
            "upstreams": upstreams,
            "default_model": "fake-small",
            "course_logs": COURSE_LOGS,
            "redact_patterns": ["email"],
            "health_check_seconds": 0.0,
        },
        static_users=STATIC_USERS,
    )
    yield service
    service.stop()


def call(
    svc: ProxyService, method: str, path: str, user: str, body: Any = None, **headers: str
) -> tuple[int, dict[str, str], Any]:
    status, head, raw = svc.request(method, path, body, TOKEN[user], headers or None)
    try:
        return status, head, json.loads(raw)
    except ValueError:
        return status, head, raw


def ask(
    svc: ProxyService, user: str, api: str, text: str, stream: bool = False, **headers: str
) -> tuple[dict[str, str], str]:
    """`user` asks `text` on `api`: the answer's headers and the text the client read."""
    path, body = question(api, text, stream)
    status, head, raw = svc.request("POST", path, body, TOKEN[user], headers or None)
    assert status == 200, raw[:500]
    return head, client_text(api, raw, stream)


def entries(svc: ProxyService, reader: str, course: str, **query: Any) -> list[dict[str, Any]]:
    qs = urllib.parse.urlencode({"limit": 200, **query})
    status, _, body = call(svc, "GET", f"course/groups/{course}/log?{qs}", reader)
    assert status == 200, body
    return body["entries"]


def by_id(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["request_id"]: r for r in rows}


# -- what is logged --------------------------------------------------------------------------


def test_every_api_json_and_stream_is_logged_as_the_provider_saw_and_sent_it(
    svc: ProxyService,
) -> None:
    asked: dict[str, tuple[str, str, str]] = {}  # request id -> api, question, what ann read
    for api in (
        "chat",
        "completions",
        "responses",
        "responses-native",
        "messages",
        "messages-native",
    ):
        for stream in (False, True):
            text = f"why is my mean NaN, {api} {'stream' if stream else 'json'}? mail {EMAIL}"
            head, read = ask(svc, "ann", api, text, stream, **{"X-RSQL-Notebook": "hw1.ipynb"})
            assert head["x-rsql-course-log"] == "stat101", (api, stream, head)
            asked[head["x-request-id"]] = (api, text, read)
    rows = by_id(entries(svc, "prof", "stat101", student="ann", notebook="hw1.ipynb"))
    for rid, (api, text, read) in asked.items():
        row = rows[rid]
        assert (row["student"], row["notebook"], row["status"]) == ("ann", "hw1.ipynb", 200)
        said = "\n".join(m["text"] for m in row["prompt"])
        # the prompt as the provider got it: after redaction, the address never kept
        assert text.replace(EMAIL, "<email-1>") in said, (api, said)
        assert EMAIL not in said, (api, said)
        # the answer as the provider sent it: the client read the address mapped back into it,
        # the log keeps the placeholder the provider wrote
        assert row["answer"] == read.replace(EMAIL, "<email-1>"), (api, row["answer"], read)
        assert EMAIL in read or api == "completions", (api, read)
    apis = {r["api"] for r in rows.values() if r["request_id"] in asked}
    assert apis == {"chat", "completions", "responses", "messages"}


def test_every_answer_a_student_asked_for_at_once_is_logged(
    svc: ProxyService, provider: FakeProvider
) -> None:
    """``n: 2`` gets two answers; the log kept the first alone, so a student could ask for a
    hint and the whole solution in one request and the instructor saw the hint. Both are
    logged, JSON and streamed."""
    said = ("A hint: group first.", "The whole solution: df.groupby('region').sum()")
    asked = []
    for stream in (False, True):
        provider.script(
            {
                "id": "chatcmpl-two",
                "object": "chat.completion",
                "created": 1,
                "model": "fake-small",
                "choices": [
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                    for i, text in enumerate(said)
                ],
                "usage": {"prompt_tokens": 12, "completion_tokens": 20, "total_tokens": 32},
            }
        )
        body = {
            "model": "fake-small",
            "messages": [{"role": "user", "content": "hw2, question 3"}],
            "max_tokens": 50,
            "n": 2,
            "stream": stream,
        }
        status, head, raw = svc.request(
            "POST", "v1/chat/completions", body, TOKEN["ann"], {"X-RSQL-Notebook": "hw2.ipynb"}
        )
        assert status == 200, raw[:300]
        asked.append(head["x-request-id"])
    rows = by_id(entries(svc, "prof", "stat101", student="ann", notebook="hw2.ipynb"))
    for rid in asked:
        answer = rows[rid]["answer"]
        assert answer == f"[choice 1 of 2]\n{said[0]}\n\n[choice 2 of 2]\n{said[1]}", answer


def test_a_cache_hit_and_embeddings_are_logged_and_say_so(svc: ProxyService) -> None:
    path, body = question("chat", "what does groupby return?", False)
    body["temperature"] = 0
    ids = []
    for _ in range(2):
        status, head, raw = svc.request("POST", path, body, TOKEN["ann"])
        assert status == 200 and head["x-rsql-course-log"] == "stat101"
        ids.append((head["x-request-id"], head["x-rsql-cache"], client_text("chat", raw, False)))
    assert [c for _, c, _ in ids] == ["miss", "hit"]
    status, head, _ = svc.request(
        "POST", "v1/embeddings", {"model": "fake-small", "input": ["a", "b"]}, TOKEN["ann"]
    )
    assert status == 200 and head["x-rsql-course-log"] == "stat101"
    rows = by_id(entries(svc, "prof", "stat101", student="ann"))
    hit = rows[ids[1][0]]
    assert hit["answer"] == ids[1][2] and hit["prompt"][-1]["text"] == "what does groupby return?"
    assert rows[head["x-request-id"]]["answer"] == "[2 embeddings]"


def test_a_refused_request_is_logged_without_its_prompt(svc: ProxyService) -> None:
    """A request refused before its text was read (a malformed one) keeps no prompt; one the
    proxy admitted keeps its prompt, redacted, though no answer came (a model nobody serves)."""
    for name, extra in (("refused-model", {"max_tokens": -1}), ("no-such-model", {})):
        body = {"model": name, "messages": [{"role": "user", "content": "refused " + EMAIL}]}
        status, _, _ = svc.request("POST", "v1/chat/completions", {**body, **extra}, TOKEN["ann"])
        assert status == (400 if extra else 404)
    # an error carries no request id: each row is the one of its model
    rows = entries(svc, "prof", "stat101", student="ann")
    refused = next(r for r in rows if r["status"] == 400)  # never parsed: its model unknown
    unserved = next(r for r in rows if r["model"] == "no-such-model")
    assert (refused["status"], refused["prompt"], refused["answer"]) == (400, None, None)
    assert (unserved["status"], unserved["answer"]) == (404, None)
    assert unserved["prompt"] == [{"role": "user", "text": "refused <email-1>"}]
    page = svc.request("GET", "course/stat101/?student=ann", None, TOKEN["prof"])[2].decode()
    assert "No prompt was kept" in page and EMAIL not in page
    # the course log's journal and writer, as GET status shows the usage log's
    journal = call(svc, "GET", "status", "ann")[2]["course_log"]
    assert journal["spool"]["enabled"] and journal["dropped_rows"] == 0


def test_me_tells_a_logged_student_and_nobody_else(svc: ProxyService) -> None:
    me = call(svc, "GET", "me", "ann")[2]["course_log"]
    assert (me["group"], me["instructors"], me["retention_days"]) == (
        "stat101",
        "stat101-staff",
        120,
    )
    assert me["notice"].startswith("Your course staff can read your assistant conversations")
    assert "stat101-staff" in me["notice"] and "120 days" in me["notice"]
    both = call(svc, "GET", "me", "ben")[2]["course_log"]
    assert [g["group"] for g in both["groups"]] == ["stat101", "bio200"]
    assert "up to 120 days" in both["notice"] and "bio200-staff" in both["notice"]
    for user in ("dan", "prof", "root"):
        assert call(svc, "GET", "me", user)[2]["course_log"] is None, user
    head, _ = ask(svc, "dan", "chat", "not logged at all")
    assert "x-rsql-course-log" not in head


def test_a_student_in_two_logged_courses_is_logged_in_each(svc: ProxyService) -> None:
    head, _ = ask(svc, "ben", "chat", "ben asks in both courses")
    assert head["x-rsql-course-log"] == "stat101, bio200"
    rid = head["x-request-id"]
    assert rid in by_id(entries(svc, "prof", "stat101"))
    assert rid in by_id(entries(svc, "bioprof", "bio200"))
    head, _ = ask(svc, "cat", "chat", "cat asks in bio200 only")
    assert head["x-rsql-course-log"] == "bio200"
    assert head["x-request-id"] not in by_id(entries(svc, "prof", "stat101"))


def test_the_log_pages_and_filters_by_student_notebook_and_since(svc: ProxyService) -> None:
    for n in range(5):
        ask(svc, "ben", "chat", f"paging {n}", **{"X-RSQL-Notebook": "lab%202.ipynb"})
    seen, before = [], None
    while True:
        query = {"notebook": "lab 2.ipynb", "limit": 2, **({"before": before} if before else {})}
        status, _, page = call(
            svc, "GET", "course/groups/stat101/log?" + urllib.parse.urlencode(query), "prof"
        )
        assert status == 200 and len(page["entries"]) <= 2
        seen += [e["prompt"][-1]["text"] for e in page["entries"]]
        before = page["next"]
        if before is None:
            break
    assert seen == [f"paging {n}" for n in reversed(range(5))]
    assert entries(svc, "prof", "stat101", since="2999-01-01") == []
    assert call(svc, "GET", "course/groups/stat101/log?since=yesterday", "prof")[0] == 400
    students = call(svc, "GET", "course/groups/stat101/students", "prof")[2]["students"]
    assert {"ann", "ben"} <= {s["student"] for s in students}
    books = call(svc, "GET", "course/groups/stat101/notebooks?student=ben", "prof")[2]["notebooks"]
    assert {b["notebook"]: b["requests"] for b in books}["lab 2.ipynb"] == 5


# -- who reads it ----------------------------------------------------------------------------


def test_every_reading_is_logged_and_only_an_admin_lists_the_readings(svc: ProxyService) -> None:
    ask(svc, "ann", "chat", "a question to read", **{"X-RSQL-Notebook": "readings.ipynb"})
    entries(svc, "prof", "stat101", student="ann", notebook="readings.ipynb")
    call(svc, "POST", "course/requests", "prof", {"ids": ["nope-1"]})
    status, _, body = call(svc, "GET", "admin/course-readings?group=stat101", "root")
    assert status == 200
    asked, read = body["readings"][:2]
    assert (asked["reader"], asked["role"], asked["what"], asked["group"]) == (
        "prof",
        "instructor",
        "requests",
        "stat101",
    )
    assert json.loads(asked["detail"]) == {"found": 0, "ids": 1}
    assert (read["reader"], read["what"], read["group"], read["student"], read["notebook"]) == (
        "prof",
        "log",
        "stat101",
        "ann",
        "readings.ipynb",
    )
    assert read["time"].endswith("Z") and json.loads(read["detail"])["rows"] == 1
    for user in ("prof", "ann"):
        assert call(svc, "GET", "admin/course-readings", user)[0] == 403


def test_a_student_cannot_read_any_course_log(svc: ProxyService) -> None:
    ask(svc, "ann", "chat", "something ann would rather keep to herself")
    forged = {"X-RSQL-Groups": "stat101-staff", "X-Forwarded-User": "prof", "X-RSQL-Admin": "1"}
    for path in (
        "course/groups",
        "course/groups/stat101/log",
        "course/groups/stat101/log?student=ann",
        "course/groups/stat101/students",
        "course/groups/stat101/notebooks",
        "course/groups/bio200/log",
    ):
        for headers in ({}, forged):
            status, _, body = call(svc, "GET", path, "ann", **headers)
            assert status == 403 and body["error"]["code"] == "not_course_staff", (path, body)
    status, head, page = svc.request("GET", "course/stat101/", None, TOKEN["ann"])
    assert status == 403 and b"not among the" in page and b"something ann" not in page
    # a user named like the instructors' group is only a user
    assert call(svc, "GET", "course/groups/stat101/log", "stat101-staff")[0] == 403


def test_an_instructor_reads_only_their_own_course(svc: ProxyService) -> None:
    head, _ = ask(svc, "cat", "chat", "cat's question for bio200 staff only")
    status, _, body = call(svc, "GET", "course/groups", "prof")
    assert status == 200 and [g["group"] for g in body["groups"]] == ["stat101"]
    refused = [call(svc, "GET", f"course/groups/{c}/log", "prof") for c in ("bio200", "chem")]
    # a logged course not theirs and a course nobody logs get the same answer
    assert [(s, b["error"]["code"]) for s, _, b in refused] == [(403, "not_course_staff")] * 2
    assert refused[0][2]["error"]["message"] == refused[1][2]["error"]["message"]
    assert entries(svc, "prof", "stat101", student="cat") == []
    page = svc.request("GET", "course/bio200/", None, TOKEN["prof"])
    assert page[0] == 403 and b"cat&#x27;s question" not in page[2] and b"cat's" not in page[2]
    # an admin reads every course, and is told which do not exist
    assert head["x-request-id"] in by_id(entries(svc, "root", "bio200"))
    assert call(svc, "GET", "course/groups/chem/log", "root")[0] == 404


def test_a_guessed_request_id_tells_a_student_or_the_wrong_instructor_nothing(
    svc: ProxyService,
) -> None:
    ann = ask(svc, "ann", "chat", "ann's cell", **{"X-RSQL-Notebook": "hw2.ipynb"})[0][
        "x-request-id"
    ]
    dan = ask(svc, "dan", "chat", "dan's cell")[0]["x-request-id"]
    ids = {"ids": [ann, dan, "0" * 32]}
    assert call(svc, "POST", "course/requests", "ann", ids)[0] == 403  # her own, even
    status, _, mine = call(svc, "POST", "course/requests", "prof", ids)
    assert status == 200 and mine["unknown"] == [dan, "0" * 32]
    record = mine["requests"][ann]
    assert (record["user"], record["notebook"], record["api"], record["status"]) == (
        "ann",
        "hw2.ipynb",
        "chat",
        200,
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["time"])
    assert mine["requests"][dan] == "unknown"
    status, _, other = call(svc, "POST", "course/requests", "bioprof", ids)
    assert status == 200 and other["unknown"] == [ann, dan, "0" * 32]
    status, _, admin = call(svc, "POST", "course/requests", "root", ids)
    assert admin["unknown"] == ["0" * 32] and admin["requests"][dan]["user"] == "dan"
    assert call(svc, "POST", "course/requests", "prof", {"ids": "everything"})[0] == 400


# -- the course page -------------------------------------------------------------------------


def test_a_prompt_carrying_html_is_text_on_the_course_page(svc: ProxyService) -> None:
    rid = ask(svc, "ann", "chat", HOSTILE, **{"X-RSQL-Notebook": "x%3Cb%3E.ipynb"})[0][
        "x-request-id"
    ]
    status, head, raw = svc.request("GET", "course/stat101/?student=ann", None, TOKEN["prof"])
    page = raw.decode()
    assert status == 200 and head["content-type"].startswith("text/html")
    assert "script-src" not in head["content-security-policy"]  # default-src 'none': no script
    assert "default-src 'none'" in head["content-security-policy"]
    assert "<script" not in page and "<img" not in page and "<b>" not in page
    # the prompt itself, as text (the fake provider's answer repeats it: its block is apart)
    prompts = re.findall(r'<div class="said"><span class="role">user</span><pre>(.*?)</pre>', page)
    assert any("&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in t for t in prompts), prompts
    assert rid in page and "x&lt;b&gt;.ipynb" in page


def test_the_course_page_in_chromium_shows_hostile_text_as_text(
    chromium_browser: Any, svc: ProxyService
) -> None:
    from tests.helpers.browser import chromium

    ask(svc, "ann", "chat", HOSTILE + " in chromium")
    browser = chromium(chromium_browser)
    try:
        browser.set_extra_http_headers({"Authorization": f"Bearer {TOKEN['prof']}"})
        page = browser.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(svc.url + "course/", timeout=30_000)
        page.click("#courses a")  # stat101
        page.click("#students a:text-is('ann')")
        page.wait_for_selector("#log article")
        # the prompt's own block (the fake provider's answer, in its block, repeats it)
        shown = page.locator("#log .said:not(.answer) pre").all_text_contents()
        assert any("<script>window.__pwned = 1</script>" in t for t in shown), shown
        assert page.evaluate("window.__pwned") is None and dialogs == []
        assert page.locator("#log img").count() == 0
        # an admin's dashboard: the policy-window form starts a tutor window with its text
        browser.set_extra_http_headers({"Authorization": f"Bearer {TOKEN['root']}"})
        page.goto(svc.url + "admin/", timeout=30_000)
        form = page.locator("#window-form")
        assert form.locator("textarea[name=instruction]").is_hidden()
        form.locator("select[name=mode]").select_option("tutor")
        form.locator("input[name=name]").fill("course-log-tutor")
        form.locator("input[name=groups]").fill("nobody-here")
        form.locator("textarea[name=instruction]").fill("Ask one question back each time.")
        form.locator("button[type=submit]").click()
        page.wait_for_function(
            "document.getElementById('window-result').textContent.startsWith('started')"
        )
    finally:
        browser.close()
    status, _, body = call(svc, "GET", "admin/windows", "root")
    tutor = next(w for w in body["windows"] if w["name"] == "course-log-tutor")
    assert tutor["mode"] == "tutor" and tutor["active"]
    call(svc, "POST", "admin/windows/course-log-tutor/end", "root", {})


# -- the configuration -----------------------------------------------------------------------


def test_check_config_names_every_course_log_mistake(tmp_path: Path) -> None:
    cfg = tmp_path / "rsql_config.py"
    bad = {
        "stat101": {"instructors": "stat101", "retention_days": 0},
        "bio200": {"instructor": "bio-staff", "retention_days": 0.5},
        "": {"instructors": "x", "retention_days": 10},
        "chem": "chem-staff",
    }
    cfg.write_text(f"c.RSQLProxy.course_logs = {bad!r}\n")
    done = subprocess.run(
        [sys.executable, "-m", "jupyter_server_ext", "--check-config", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        cwd=tmp_path,
    )
    lines = [ln for ln in done.stderr.splitlines() if "course_logs" in ln]
    assert done.returncode == 2, done.stderr
    said = "\n".join(lines)
    for expected in (
        "course_logs['stat101']: field 'instructors' is the course's own group",
        "course_logs['stat101']: field 'retention_days' must be a whole number of days from 1 to 3650, got the int 0",
        "course_logs['bio200']: no field 'instructor'; did you mean 'instructors'?",
        "course_logs['bio200']: field 'instructors' is required",
        "got the float 0.5",
        "course_logs['']: the key is the students' hub group",
        "course_logs['chem']: expected {'instructors': 'GROUP', 'retention_days': DAYS}, got the str 'chem-staff'",
    ):
        assert expected in said, (expected, said)
