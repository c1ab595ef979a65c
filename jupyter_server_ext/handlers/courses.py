"""The course log's endpoints (``course/...``, ``admin/course-readings``): mixins both hosts
mount, as the admin endpoints in ``handlers.admin`` are.

A course's log is read by its instructors (members of the hub group the admin named for it in
``c.RSQLProxy.course_logs``) and by admins (``auth.readable_courses``); anyone else, and an
instructor asking for another course, gets one 403 that names what they may read, whether or
not the course they asked for is logged. Every reading that answers students' data is logged
first (who, when, which course, student and notebook); when that cannot be written, nothing is
shown. ``CourseReader`` is that logic, which the course page (``dashboard.course_pages``) reads
through too.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import time
from typing import Any

from ..auth import readable_courses
from ..engine import BadRequest, Caller, EngineError
from ..engine.courses.log import CourseLog, CourseLogSpec
from ..engine.errors import Forbidden, NotFound
from .base import JSONEndpoint, ProxyContext

log = logging.getLogger("rsql.proxy")

MAX_IDS = 500  # request ids one POST course/requests may ask about
MAX_FILTER_CHARS = 1024  # a student's or a notebook's name in a filter


def since_of(raw: str | None) -> float:
    """The `since` filter: an ISO 8601 date or time (UTC unless it says otherwise) or seconds
    since 1970; none: everything still kept."""
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        try:
            moment = datetime.datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
        except ValueError:
            value = math.nan
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=datetime.timezone.utc)
            value = moment.timestamp()
    if not math.isfinite(value):
        raise BadRequest(
            "query parameter 'since' must be an ISO 8601 date or time (2026-03-01, "
            f"2026-03-01T09:00Z) or seconds since 1970, got {raw[:60]!r}",
            extra={"param": "since"},
        )
    return value


def cursor_of(raw: str | None) -> tuple[float, int] | None:
    """The `before` of a page: the `cursor` of the last entry of the page before."""
    if not raw:
        return None
    ts, _, rid = raw.partition(":")
    try:
        cursor = (float(ts), int(rid))
    except ValueError:
        cursor = (math.nan, 0)
    if not math.isfinite(cursor[0]):
        raise BadRequest(
            "query parameter 'before' must be an entry's 'cursor' (as the last page gave it)",
            extra={"param": "before"},
        )
    return cursor


def name_of(raw: str | None, param: str) -> str | None:
    """A student's or a notebook's name to filter by (None: no filter)."""
    if raw is None:
        return None
    if not raw or len(raw) > MAX_FILTER_CHARS:
        raise BadRequest(
            f"query parameter {param!r} must be a name of 1 to {MAX_FILTER_CHARS} characters",
            extra={"param": param},
        )
    return raw


def refuse_cross_site(headers: Any) -> None:
    """A browser's request another site made with the reader's login cookie (an image, a frame,
    a script's fetch) reads nothing: else any page a teacher opens could log readings in their
    name. A link they follow to a course page (a navigation to a document) still opens it."""
    if headers.get("Authorization"):  # a token a client sent itself: no browser adds one
        return
    if headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none"):
        return
    if headers.get("Sec-Fetch-Mode") == "navigate" and headers.get("Sec-Fetch-Dest") == "document":
        return
    raise Forbidden(
        "the course log is not read by requests other sites make; open it from its own page",
        code="cross_site",
    )


class CourseReader:
    """One caller's readings of the course log: which courses they may read, and each reading
    of students' data logged before its rows are answered."""

    def __init__(self, ctx: ProxyContext, caller: Caller, headers: Any) -> None:
        refuse_cross_site(headers)
        self.caller = caller
        self.log: CourseLog = ctx.course_log
        self.engine = ctx.engine
        self.store = ctx.usage_store()
        self.courses = readable_courses(caller, self.log.specs)

    def staff(self) -> None:
        """Refuse a caller who may read no course's log (an admin may, even with none logged)."""
        if not self.courses and not self.caller.admin:
            raise self.refusal()

    def refusal(self) -> Forbidden:
        mine = ", ".join(self.courses) or "none"
        return Forbidden(
            f"user {self.caller.user!r} may not read this course log: a course's log is read "
            "by the hub group the admin names for it (its instructors) and by admins. Course "
            f"logs you may read: {mine}",
            code="not_course_staff",
        )

    def course(self, group: str) -> CourseLogSpec:
        """The logged course `group`, if the caller may read it; else the one 403 (the same for
        a course that is not logged: no one learns which are but admins)."""
        if group in self.courses:
            return self.log.specs[group]
        if self.caller.admin:
            raise NotFound(f"no course log for the group {group[:200]!r}", code="unknown_course")
        raise self.refusal()

    async def logged(
        self,
        course: str | None,
        what: str,
        *,
        student: str | None = None,
        notebook: str | None = None,
        **detail: Any,
    ) -> None:
        """Write the reading down; when the database does not take it, nothing is shown."""
        row = (
            time.time(),
            self.caller.user,
            "admin" if self.caller.admin else "instructor",
            course,
            student,
            notebook,
            what,
            json.dumps(detail, sort_keys=True) if detail else None,
        )
        try:
            await self.store.course_read(row)
        except Exception as exc:
            log.warning("a reading of the course log could not be logged: %s", type(exc).__name__)
            raise EngineError(
                "the course log is not shown: this reading of it could not be logged (the "
                "database is unreachable); try again",
                status=503,
                code="reading_not_logged",
            ) from None

    async def groups(self) -> list[dict[str, Any]]:
        """The courses the caller may read, each with its students, requests and last time."""
        self.staff()
        await self.log.flush()
        summaries = await self.store.course_summaries(list(self.courses))
        empty = {"students": 0, "requests": 0, "last": None}
        return [
            {**self.log.specs[c].view(), **{**empty, **summaries.get(c, {}), "group": c}}
            for c in self.courses
        ]

    async def students(self, group: str, since: float) -> list[dict[str, Any]]:
        self.course(group)
        await self.log.flush()
        rows: list[dict[str, Any]] = await self.store.course_students(group, since)
        await self.logged(group, "students", since=since, rows=len(rows))
        return rows

    async def notebooks(
        self, group: str, since: float, student: str | None
    ) -> list[dict[str, Any]]:
        self.course(group)
        await self.log.flush()
        rows: list[dict[str, Any]] = await self.store.course_notebooks(group, since, student)
        await self.logged(group, "notebooks", student=student, since=since, rows=len(rows))
        return rows

    async def entries(
        self,
        group: str,
        *,
        since: float,
        student: str | None,
        notebook: str | None,
        before: tuple[float, int] | None,
        limit: int,
    ) -> dict[str, Any]:
        """One page of the course's log, newest first, and the cursor of the next (None: the
        last page)."""
        self.course(group)
        await self.log.flush()
        rows = await self._entries(group, "log", since, student, notebook, before, limit)
        return {"entries": rows, "next": rows[-1]["cursor"] if len(rows) == limit else None}

    async def _entries(
        self,
        group: str,
        what: str,
        since: float,
        student: str | None,
        notebook: str | None,
        before: tuple[float, int] | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """A page of the log's entries, the reading logged as `what`."""
        rows: list[dict[str, Any]] = await self.store.course_entries(
            group, since=since, student=student, notebook=notebook, before=before, limit=limit
        )
        await self.logged(
            group,
            what,
            student=student,
            notebook=notebook,
            since=since,
            before=f"{before[0]!r}:{before[1]}" if before else None,
            rows=len(rows),
        )
        return rows

    async def page(
        self,
        group: str,
        *,
        since: float,
        student: str | None,
        notebook: str | None,
        before: tuple[float, int] | None,
        limit: int,
    ) -> dict[str, Any]:
        """What the course page shows, read as one reading: the students, the notebooks (of the
        student, when one is chosen) and a page of the log."""
        self.course(group)
        await self.log.flush()
        store = self.store
        students = await store.course_students(group, since)
        notebooks = await store.course_notebooks(group, since, student)
        rows = await self._entries(group, "page", since, student, notebook, before, limit)
        return {
            "students": students,
            "notebooks": notebooks,
            "entries": rows,
            "next": rows[-1]["cursor"] if len(rows) == limit else None,
        }

    async def requests(self, ids: list[str]) -> dict[str, Any]:
        """What the caller may see of each request id: an admin, any request (the course log's
        row, else the usage log's); an instructor, their courses' students' only."""
        self.staff()
        await self.log.flush()
        courses = None if self.caller.admin else list(self.courses)
        found: dict[str, dict[str, Any]] = await self.store.course_requests(ids, courses)
        if self.caller.admin:
            rest = [i for i in ids if i not in found]
            if rest:
                await self.engine.flush_usage()  # the rows of requests just answered are there
                found.update(await self.store.usage_requests(rest))
        # a reading in each course it could show (an instructor's every course; an admin's
        # courses of the rows found, and one for the rest)
        shown = {r["group"] for r in found.values() if r["group"]}
        courses_read = list(self.courses) if not self.caller.admin else [*sorted(shown), None]
        for course in courses_read:
            seen = [i for i, r in found.items() if r["group"] == course]
            await self.logged(course, "requests", ids=len(ids), found=len(seen))
        unknown = [i for i in ids if i not in found]
        return {
            "requests": {i: found.get(i, "unknown") for i in ids},
            "unknown": unknown,
        }


class CourseGroupsMixin(JSONEndpoint):
    """GET course/groups: the courses whose log the caller may read, with their sizes."""

    async def get(self) -> None:
        await self._respond()

    async def answer(self, caller: Caller) -> Any:
        return {"groups": await CourseReader(self.rsql, caller, self.request.headers).groups()}


class CourseStudentsMixin(JSONEndpoint):
    """GET course/groups/{group}/students?since=: per student, requests and notebooks."""

    async def get(self, group: str) -> None:
        await self._respond(group)

    async def answer(self, caller: Caller, group: str) -> Any:
        since = since_of(self.get_query_argument("since", None))
        reader = CourseReader(self.rsql, caller, self.request.headers)
        return {"group": group, "students": await reader.students(group, since)}


class CourseNotebooksMixin(JSONEndpoint):
    """GET course/groups/{group}/notebooks?since=&student=: per notebook, students and requests."""

    async def get(self, group: str) -> None:
        await self._respond(group)

    async def answer(self, caller: Caller, group: str) -> Any:
        since = since_of(self.get_query_argument("since", None))
        student = name_of(self.get_query_argument("student", None), "student")
        reader = CourseReader(self.rsql, caller, self.request.headers)
        return {"group": group, "notebooks": await reader.notebooks(group, since, student)}


class CourseLogMixin(JSONEndpoint):
    """GET course/groups/{group}/log?student=&notebook=&since=&limit=&before=: the prompts and
    answers, newest first, a page at a time."""

    async def get(self, group: str) -> None:
        await self._respond(group)

    async def answer(self, caller: Caller, group: str) -> Any:
        page = await CourseReader(self.rsql, caller, self.request.headers).entries(
            group,
            since=since_of(self.get_query_argument("since", None)),
            student=name_of(self.get_query_argument("student", None), "student"),
            notebook=name_of(self.get_query_argument("notebook", None), "notebook"),
            before=cursor_of(self.get_query_argument("before", None)),
            limit=self.int_arg("limit", 50, 1, 200),
        )
        return {"group": group, **page}


class CourseRequestsMixin(JSONEndpoint):
    """POST course/requests {"ids": [...]}: who asked each request, where and when (for the
    provenance check of assisted cells); ids not found, or not the caller's to see, "unknown"."""

    async def post(self) -> None:
        await self._respond()

    async def answer(self, caller: Caller) -> Any:
        reader = CourseReader(self.rsql, caller, self.request.headers)
        reader.staff()  # before the body is read: a student learns nothing from it
        body = await self.json_body(caller)
        ids = body.get("ids") if isinstance(body, dict) else None
        if (
            not isinstance(ids, list)
            or not 1 <= len(ids) <= MAX_IDS
            or not all(isinstance(i, str) and 0 < len(i) <= 200 for i in ids)
        ):
            raise BadRequest(
                f'send {{"ids": ["<X-Request-Id>", ...]}}: 1 to {MAX_IDS} request ids, each a '
                "string of at most 200 characters",
                extra={"param": "ids"},
            )
        return await reader.requests(list(dict.fromkeys(ids)))


class CourseReadingsMixin(JSONEndpoint):
    """GET admin/course-readings?group=&limit=&before=: who read which course's log, newest
    first (admins only)."""

    admin_only = True

    async def get(self) -> None:
        await self._respond()

    async def answer(self, caller: Caller) -> Any:
        group = name_of(self.get_query_argument("group", None), "group")
        before = self.int_arg("before", 0, 0, 2**62) or None
        limit = self.int_arg("limit", 100, 1, 1000)
        rows = await self.rsql.usage_store().course_readings(group, before, limit)
        return {"readings": rows, "next": rows[-1]["id"] if len(rows) == limit else None}


COURSE_ROUTES: list[tuple[str, type]] = [
    ("course/groups", CourseGroupsMixin),
    ("course/groups/([^/]+)/students", CourseStudentsMixin),
    ("course/groups/([^/]+)/notebooks", CourseNotebooksMixin),
    ("course/groups/([^/]+)/log", CourseLogMixin),
    ("course/requests", CourseRequestsMixin),
    ("admin/course-readings", CourseReadingsMixin),
]
