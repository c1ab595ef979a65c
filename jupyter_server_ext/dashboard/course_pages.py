"""The course pages: what an instructor (or an admin) reads of a logged course's conversations,
per student and per notebook, at ``course/`` and ``course/{group}/``.

Instructors are not admins: the pages let in any signed-in caller the course log lets read
(``handlers.courses.CourseReader``) and show anyone else a 403 page. Every prompt and answer
is hostile text: the pages are rendered on the server with every value escaped by the template
(tornado's ``xhtml_escape``), model text inside ``<pre>``, never as HTML, and a Content Security
Policy that lets no script run at all; links carry values only in their query strings. Each
view of a course's page is one reading, logged before the page is written.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from ..engine import EngineError
from ..engine.courses.log import notice
from ..handlers.courses import CourseReader, cursor_of, name_of, since_of
from .handlers import PageMixin

# no script, no frame, no plugin, no other origin: the pages are text, a form and links
PAGE_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
ENTRIES_A_PAGE = 25


class CoursePage(PageMixin):
    """A course page: the caller signed in (or sent to log in), the policy set."""

    def course_reader(self) -> CourseReader | None:
        caller = self.page_caller()
        if caller is None:
            return None
        self.set_header("Content-Security-Policy", PAGE_POLICY)
        self.set_header("Referrer-Policy", "no-referrer")  # the query names a student
        try:
            reader = CourseReader(self.rsql, caller, self.request.headers)
            reader.staff()
        except EngineError as exc:
            if exc.code == "not_course_staff":
                self.write_html("course_forbidden.html", 403, user=caller.user, root="../")
            else:
                self.write_proxy_error(exc)
            return None
        return reader


class CoursesPageMixin(CoursePage):
    """GET course/: the courses whose log the caller may read."""

    async def get(self) -> None:
        if not self.request.path.endswith("/"):  # relative links on the page need the slash
            self.redirect(self.request.path + "/")
            return
        reader = self.course_reader()
        if reader is None:
            return
        try:
            await self.rsql.ready()
            groups = await reader.groups()
        except EngineError as exc:
            self.write_proxy_error(exc)
            return
        quoted = [{**g, "href": urllib.parse.quote(g["group"], safe="") + "/"} for g in groups]
        self.write_html("courses.html", user=reader.caller.user, groups=quoted, root="../")


class CoursePageMixin(CoursePage):
    """GET course/{group}/?student=&notebook=&since=&before=: one course's students, notebooks
    and log."""

    async def get(self, group: str) -> None:
        if not self.request.path.endswith("/"):
            query = f"?{self.request.query}" if self.request.query else ""
            self.redirect(self.request.path + "/" + query)
            return
        reader = self.course_reader()
        if reader is None:
            return
        try:
            await self.rsql.ready()
            spec = reader.course(group)
            filters = {
                "student": name_of(self.get_query_argument("student", None), "student"),
                "notebook": name_of(self.get_query_argument("notebook", None), "notebook"),
                "since": self.get_query_argument("since", None) or None,
            }
            page = await reader.page(
                group,
                since=since_of(filters["since"]),
                student=filters["student"],
                notebook=filters["notebook"],
                before=cursor_of(self.get_query_argument("before", None)),
                limit=ENTRIES_A_PAGE,
            )
        except EngineError as exc:
            if exc.code == "not_course_staff":
                self.write_html(
                    "course_forbidden.html", 403, user=reader.caller.user, root="../../"
                )
            else:
                self.write_proxy_error(exc)
            return
        self.write_html(
            "course.html",
            user=reader.caller.user,
            spec=spec,
            told=notice([spec]),
            filters=filters,
            page=page,
            link=lambda **kw: link(filters, **kw),
            root="../../",
        )


def link(filters: dict[str, Any], **changes: Any) -> str:
    """The page's own address with its filters changed (a None drops one); values only in the
    query string, percent-encoded."""
    query = {k: v for k, v in {**filters, **changes}.items() if v}
    return "?" + urllib.parse.urlencode(query) if query else "./"


ROUTES: list[tuple[str, type]] = [
    ("course/?", CoursesPageMixin),
    ("course/([^/]+)/?", CoursePageMixin),
]
