"""The course log's tables in SQLite and PostgreSQL: rows written through the journaled writer
once each, read back alike (pages, students, notebooks, request ids), and each course's rows and
readings dropped past its own retention, those of a course no longer logged past the usage log's;
and the whole log through the hub service on PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_server_ext.engine import Caller, Outcome
from jupyter_server_ext.engine.accounting.course_rows import CourseRowLog
from jupyter_server_ext.engine.accounting.usage import UsageLog
from jupyter_server_ext.engine.courses.log import COLUMNS, CourseLog, CourseLogSpec
from jupyter_server_ext.engine.courses.transcript import add_text, begin
from jupyter_server_ext.store import open_store
from tests.helpers import upstreams_for
from tests.helpers.course_log import COURSE_LOGS, STATIC_USERS, TOKEN, client_text, question
from tests.helpers.fake_provider import FakeProvider

DAY = 86400.0
SPECS = {
    "stat101": CourseLogSpec("stat101", "stat101-staff", 120),
    "bio200": CourseLogSpec("bio200", "bio200-staff", 30),
}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/usage.sqlite"
        return
    yield request.getfixturevalue("pg_database")


def outcome(user: str, groups: tuple[str, ...], text: str, *, age_days: float = 0) -> Outcome:
    o = Outcome(
        f"req-{user}-{time.monotonic_ns()}",
        Caller(user, groups, client="magic"),
        "fake-small",
        time.time() - age_days * DAY,
        notebook=f"nb-{user}",  # the usage log's name for it; the course log keeps the path
        notebook_path=f"{user}.ipynb",
        cell="c1",
        prompt_tokens=10,
        completion_tokens=3,
    )
    # as the engine does: a transcript only for a caller in a logged course, of those courses
    logged = tuple(g for g in groups if g in SPECS)
    if logged:
        o.transcript = begin(
            logged, {"messages": [{"role": "user", "content": text}]}, "chat/completions"
        )
        add_text(o.transcript, "an answer to " + text)
    return o


async def test_rows_read_alike_and_each_course_keeps_them_its_own_days(database_url: str) -> None:
    store = open_store(database_url)
    usage = UsageLog(store)
    writer = CourseRowLog(
        store,  # both stores hold the course log beside the usage log
        retention_days={c: s.retention_days for c, s in SPECS.items()},
        others_days=90,
        width=len(COLUMNS),
        size_of=lambda r: 300,
        interval=3600,
    )
    log = CourseLog(SPECS, writer)
    await usage.start()
    await log.start()
    try:
        rows = [
            outcome("ann", ("stat101",), "new"),
            outcome("ann", ("stat101",), "old but kept", age_days=100),
            outcome("ben", ("stat101", "bio200"), "both"),
            outcome("cat", ("bio200",), "past bio200's 30 days", age_days=40),
            outcome("eve", ("chem",), "never logged"),
        ]
        for o in rows:
            log.record(o)
            log.record(o)  # a row sent twice is stored once
        # a course no longer logged: its old rows go after the usage log's 90 days
        writer.append((time.time() - 95 * DAY, "gone-1", "chem101", "zed", *[None] * 13))
        writer.append((time.time() - 5 * DAY, "kept-1", "chem101", "zed", *[None] * 13))
        await log.flush()
        page = await store.course_entries("stat101", since=0, limit=2)
        assert [e["student"] for e in page] == ["ben", "ann"]
        ts, rid = page[-1]["cursor"].split(":")
        rest = await store.course_entries("stat101", since=0, before=(float(ts), int(rid)), limit=2)
        assert [e["prompt"][0]["text"] for e in rest] == ["old but kept"]
        assert (
            rest[0]["answer"] == "an answer to old but kept" and rest[0]["notebook"] == "ann.ipynb"
        )
        students = await store.course_students("stat101", 0)
        assert {s["student"]: s["requests"] for s in students} == {"ann": 2, "ben": 1}
        books = await store.course_notebooks("bio200", 0, "ben")
        assert [(b["notebook"], b["requests"]) for b in books] == [("ben.ipynb", 1)]
        ids = [o.request_id for o in rows]
        found = await store.course_requests(ids, ["bio200"])
        assert sorted(r["user"] for r in found.values()) == ["ben", "cat"]
        # eve's group keeps no course log: her request is in none, whatever it is asked in
        everywhere = await store.course_requests(ids, None)
        assert rows[-1].request_id not in everywhere
        assert sorted(r["user"] for r in everywhere.values()) == ["ann", "ann", "ben", "cat"]
        old = (time.time() - 40 * DAY, "bioprof", "instructor", "bio200", "cat", None, "log", None)
        await store.course_read(old)
        await store.course_read(
            (time.time(), "prof", "instructor", "stat101", "ann", None, "log", None)
        )
        assert await writer.store_prune() == 3  # cat's row, its old reading, chem101's old row
        assert [e["student"] for e in await store.course_entries("bio200", since=0)] == ["ben"]
        assert [r["reader"] for r in await store.course_readings()] == ["prof"]
        assert (await store.course_requests(["gone-1", "kept-1"], None)).keys() == {"kept-1"}
        summary = await store.course_summaries(["stat101", "bio200"])
        assert (summary["stat101"]["students"], summary["stat101"]["requests"]) == (2, 3)
    finally:
        await log.close()
        await usage.close()


def test_the_course_log_through_the_service_on_postgresql(
    service_factory, pg_database: str, fresh_provider: FakeProvider
) -> None:
    svc = service_factory(
        {
            "upstreams": upstreams_for(fresh_provider),
            "default_model": "fake-small",
            "course_logs": COURSE_LOGS,
            "database_url": pg_database,
        },
        static_users=STATIC_USERS,
    )
    path, body = question("chat", "a question kept in PostgreSQL", True)
    status, head, raw = svc.request("POST", path, body, TOKEN["ann"])
    assert status == 200 and head["x-rsql-course-log"] == "stat101"
    status, _, page = svc.request("GET", "course/groups/stat101/log", None, TOKEN["prof"])
    entry = json.loads(page)["entries"][0]
    assert entry["request_id"] == head["x-request-id"]
    assert entry["answer"] == client_text("chat", raw, True)
    status, _, readings = svc.request("GET", "admin/course-readings", None, TOKEN["root"])
    assert [r["reader"] for r in json.loads(readings)["readings"]] == ["prof"]
