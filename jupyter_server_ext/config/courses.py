"""``c.RSQLProxy.course_logs``: the courses whose students' conversations their instructors may
read (issue 75; docs/admins/courses.md).

A base class of ``config.RSQLProxy``, as ``config.inline``'s is, so admins write it as every
other proxy setting; checked with the rest by ``RSQLProxy.engine_settings``, so
``--check-config`` and both hosts' start-up name every mistake, one line each.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from traitlets import Dict
from traitlets.config import Configurable

from ..engine.courses.log import MAX_RETENTION_DAYS, CourseLogSpec
from .problems import ConfigProblems

FIELDS = {
    "instructors": "the hub group whose members read the course's log",
    "retention_days": f"how many days a conversation is kept, a whole number from 1 to {MAX_RETENTION_DAYS}",
}
MAX_NAME_CHARS = 255  # JupyterHub's own bound on a group's name


def _name_problem(name: Any) -> str:
    """Why `name` cannot be a hub group's name ("" when it can)."""
    if not isinstance(name, str) or not name.strip():
        return "must be a hub group's name (a non-empty string)"
    if len(name) > MAX_NAME_CHARS:
        return f"is longer than {MAX_NAME_CHARS} characters"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name) or name != name.strip():
        return "holds control characters or spaces at its ends"
    if name == "*":
        return 'is "*", which names everyone, not one group'
    return ""


def _shown(value: Any) -> str:
    kind = type(value).__name__
    text = repr(value)
    return (
        f"the {kind} {text}" if len(text) <= 40 else f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"
    )


def parse_course_logs(raw: Mapping[Any, Any]) -> dict[str, CourseLogSpec]:
    """The logged courses of ``c.RSQLProxy.course_logs``; raises ConfigProblems naming, one line
    each, every course and field that is wrong."""
    problems: list[str] = []
    specs: dict[str, CourseLogSpec] = {}
    for course, entry in raw.items():
        where = (
            f"RSQLProxy.course_logs[{course!r}]"
            if isinstance(course, str)
            else ("RSQLProxy.course_logs")
        )
        bad = _name_problem(course)
        if bad:
            problems.append(
                f"{where}: the key is the students' hub group, and {_shown(course)} {bad}"
            )
            continue
        if not isinstance(entry, Mapping):
            problems.append(
                f"{where}: expected {{'instructors': 'GROUP', 'retention_days': DAYS}}, got "
                f"{_shown(entry)}"
            )
            continue
        before = len(problems)
        for name in entry:
            if name not in FIELDS:
                close = difflib.get_close_matches(str(name), FIELDS, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"fields: {', '.join(FIELDS)}"
                problems.append(f"{where}: no field {name!r}; {hint}")
        for name, what in FIELDS.items():
            if name not in entry:
                problems.append(f"{where}: field {name!r} is required: {what}")
        instructors, days = entry.get("instructors"), entry.get("retention_days")
        if "instructors" in entry:
            bad = _name_problem(instructors)
            if bad:
                problems.append(f"{where}: field 'instructors' {bad}")
            elif instructors == course:
                problems.append(
                    f"{where}: field 'instructors' is the course's own group: every student "
                    "would read every other student's conversations; name the staff's group"
                )
        if "retention_days" in entry and (
            isinstance(days, bool)
            or not isinstance(days, int)
            or not 1 <= days <= MAX_RETENTION_DAYS
        ):
            problems.append(
                f"{where}: field 'retention_days' must be a whole number of days from 1 to "
                f"{MAX_RETENTION_DAYS}, got {_shown(days)}"
            )
        if len(problems) == before:
            assert isinstance(days, int)  # checked above
            specs[course] = CourseLogSpec(course, str(instructors), days)
    if problems:
        raise ConfigProblems(problems)
    return specs


class CourseLogSettings(Configurable):
    """The courses whose students' conversations their instructors read."""

    course_logs = Dict(
        help="""Courses whose students' assistant conversations their instructors may read,
        keyed by the students' hub group: {"stat101": {"instructors": "stat101-staff",
        "retention_days": 120}}. Off by default (empty). For every request of a member of a
        logged group, on every API and from every client, the proxy keeps the prompt and the
        answer as the provider got and sent them (after redaction, each bounded in size), with
        the user, notebook, cell, model, time, request id, API and status; members of the
        "instructors" hub group (and admins) read it in the course page ({proxy}course/) and
        the course endpoints, and every reading is itself logged. Each student is told, in GET
        me ("course_log"), %ask_status, the chat panel and the X-RSQL-Course-Log header of every
        answer. Rows are deleted after "retention_days" (a whole number, 1 to 3650); a student
        in two logged groups is logged in each, and each group's instructors read its own copy.
        A group removed from here keeps its rows until the usage log's retention_days.""",
    ).tag(config=True)

    def course_log_specs(self) -> dict[str, CourseLogSpec]:
        """The logged courses, checked; raises ConfigProblems naming every mistake."""
        return parse_course_logs(self.course_logs)
