"""The course a user is in, as ``GET me`` says (issue 75): :class:`Course`.

A course's rules are the proxy's, enforced there for every client: a tutor window puts the
course's tutoring instruction first in every request (``tutor``), and a course log keeps what
the students of a group ask and are answered, for their course staff (``course_log``). The
kernel only says so, in the user's words: ``%ask_status``, the chat panel, a banner over
answers in tutor mode, and the course log's notice with the first answer of each kernel session.

Every text here came from the proxy: bounded, one line, control characters out
(:func:`~rsql_magic.sanitize.plain_text`); what shows it still makes it safe for its medium.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..render import utc_text
from ..sanitize import plain_text

__all__ = ["Course", "CourseLog", "DEFAULT_LOG_NOTICE", "TutorMode", "course_of"]

# the notice when the proxy names a course log but no words of its own (an answer's header
# before GET me was read again)
DEFAULT_LOG_NOTICE = (
    "Your course staff can read your assistant conversations (what you ask and the answers)."
)
# what tutor mode means, for a student who has never met it
TUTOR_MEANS = "the assistant gives hints, questions and partial code, not whole solutions"
_MAX_TEXT = 600


def _text(value: Any, limit: int = _MAX_TEXT) -> str:
    """A value from the proxy as one bounded line of plain text ("" when not a string)."""
    if not isinstance(value, str):
        return ""
    return " ".join(plain_text(value).split())[:limit]


@dataclass(frozen=True)
class TutorMode:
    """The tutor window in force (``GET me``'s ``tutor``)."""

    window: str
    message: str  # the admin's words to students ("" when none)
    agent: bool  # agent mode's tools run in this window
    completions: bool  # the editor's completions offer names (False: none)
    ends_at: str  # ISO UTC, or ""
    ends_at_local: str  # in the admin's time zone, or ""

    @property
    def until(self) -> str:
        """``until 2026-11-23 18:00 UTC (19:00 CET)``, or "" when the window has no end."""
        if not self.ends_at:
            return ""
        local = f" ({self.ends_at_local})" if self.ends_at_local else ""
        return f"until {utc_text(self.ends_at)}{local}"

    def line(self) -> str:
        """One plain line: the mode, its window and end, and the admin's message."""
        head = f"Tutor mode (window {self.window or '?'}"
        head += f", {self.until})" if self.until else ")"
        said = self.message or f"in tutor mode {TUTOR_MEANS}."
        return f"{head}: {said}"

    def details(self) -> str:
        """What the mode changes besides the answers: agent tools and completions."""
        agent = "agent tools run" if self.agent else "agent tools are off"
        names = "completions offer names only" if self.completions else "completions are off"
        return f"{TUTOR_MEANS}; {agent}; {names}"


@dataclass(frozen=True)
class CourseLog:
    """The course log that keeps this user's conversations (``GET me``'s ``course_log``)."""

    group: str
    instructors: str
    retention_days: int | None
    notice: str

    def line(self) -> str:
        """The notice in plain words, with who reads and for how long it is kept."""
        kept = f", kept {self.retention_days} days" if self.retention_days else ""
        who = f"course staff: {self.instructors}" if self.instructors else "your course staff"
        return f"{self.notice} (course {self.group or '?'}; {who}{kept})"


@dataclass(frozen=True)
class Course:
    """What ``GET me`` says of the user's course: each part None when not in force."""

    tutor: TutorMode | None = None
    log: CourseLog | None = None


def course_of(me: Any) -> Course:
    """The course parts of a ``GET me`` answer (anything else, or an older proxy: none)."""
    if not isinstance(me, dict):
        return Course()
    return Course(_tutor(me.get("tutor")), _log(me.get("course_log")))


def _tutor(value: Any) -> TutorMode | None:
    if not isinstance(value, dict):
        return None
    return TutorMode(
        window=_text(value.get("window"), 120),
        message=_text(value.get("message")),
        agent=value.get("agent") is True,
        completions=value.get("completions") not in (False, None, "off"),
        ends_at=_text(value.get("ends_at"), 40),
        ends_at_local=_text(value.get("ends_at_local"), 80),
    )


def _log(value: Any) -> CourseLog | None:
    if not isinstance(value, dict):
        return None
    days = value.get("retention_days")
    return CourseLog(
        group=_text(value.get("group"), 120),
        instructors=_text(value.get("instructors"), 120),
        retention_days=days if isinstance(days, int) and not isinstance(days, bool) else None,
        notice=_text(value.get("notice")) or DEFAULT_LOG_NOTICE,
    )
