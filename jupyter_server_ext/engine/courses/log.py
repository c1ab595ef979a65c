"""The course log: what the students of a logged course (a hub group the admin names in
``c.RSQLProxy.course_logs``) asked the assistant and were answered, for the course's
instructors to read, with the students told (docs/admins/courses.md).

A student's request is transcribed where its answer is built (``replies``: the prompt as it
went upstream, after redaction; the answer as the provider sent it, before values are mapped
back), and its row is written by an ``on_outcome`` observer (``record``), one row per logged
course the student is in, through a journaled writer off the request path (the usage log's:
``accounting.course_rows``). A request refused before redaction has a row without its prompt.
Who may read a course's rows is ``auth.readable_courses``; the reading itself is logged by the
handlers (``handlers/courses.py``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..bodies import json_codec
from ..bodies.request import ChatRequest
from ..interface import Caller, Outcome, Transcript
from .transcript import answer_text, begin, read_answer

# every answer to a student of a logged course says which courses log it
COURSE_LOG_HEADER = "X-RSQL-Course-Log"
# the words every logged student is told, first in the notice of GET me
NOTICE = "Your course staff can read your assistant conversations"
MAX_RETENTION_DAYS = 3650  # ten years: the most a course log keeps a conversation

# a row of the course log, in the stores' column order (store/course_queries.py)
COLUMNS = (
    "ts",
    "request_id",
    "course",
    "user",
    "client",
    "api",
    "model",
    "notebook",
    "cell",
    "status",
    "error",
    "prompt",
    "prompt_cut",
    "answer",
    "answer_cut",
    "prompt_tokens",
    "completion_tokens",
)
PROMPT_COLUMN, ANSWER_COLUMN = COLUMNS.index("prompt"), COLUMNS.index("answer")


@dataclass(frozen=True, slots=True)
class CourseLogSpec:
    """One logged course, as the admin configured it."""

    course: str  # the students' hub group
    instructors: str  # the hub group whose members read the course's log
    retention_days: int  # how long a row is kept

    def view(self) -> dict[str, Any]:
        return {
            "group": self.course,
            "instructors": self.instructors,
            "retention_days": self.retention_days,
        }


class RowWriter(Protocol):
    """Where the rows go: a journaled writer (``accounting.course_rows.CourseRowLog``)."""

    @property
    def started(self) -> bool: ...
    def append(self, row: tuple[Any, ...]) -> None: ...
    async def start(self) -> None: ...
    async def flush(self) -> bool: ...
    async def close(self) -> None: ...
    def status(self) -> dict[str, Any]: ...


def notice(specs: list[CourseLogSpec]) -> str:
    """What a student of the courses `specs` is told, in plain words."""
    staff = " and ".join(
        f"the instructors of {s.course} (the hub group {s.instructors})" for s in specs
    )
    days = max(s.retention_days for s in specs)
    return (
        f"{NOTICE}: {staff} can read what you ask the assistant and what it answers, from any "
        f"notebook or tool, as the provider got them (after the proxy's redaction), for "
        f"{'up to ' if len({s.retention_days for s in specs}) > 1 else ''}{days} days. "
        "Reading it is logged."
    )


class CourseLog:
    """The logged courses (`specs`, by the students' hub group, in the admin's order) and the
    writer their rows go to (None: rows are not written, as in a unit test of the notice)."""

    def __init__(
        self,
        specs: Mapping[str, CourseLogSpec],
        writer: RowWriter | None = None,
    ) -> None:
        self.specs = dict(specs)
        self.writer = writer

    def courses_of(self, caller: Caller) -> tuple[str, ...]:
        """The logged courses `caller` is a student of, in the admin's order."""
        if not self.specs or not caller.groups:
            return ()
        return tuple(c for c in self.specs if c in caller.groups)

    def transcribe(
        self, caller: Caller, payload: Mapping[str, Any], endpoint: str
    ) -> Transcript | None:
        """A transcript for `caller`'s request (its payload as it goes upstream), or None when
        no logged course is theirs."""
        courses = self.courses_of(caller)
        return begin(courses, payload, endpoint) if courses else None

    def begin(
        self, outcome: Outcome, req: ChatRequest, headers: dict[str, str]
    ) -> Transcript | None:
        """Where an answer is built (``replies``): a logged student's request transcribed (its
        payload as it went upstream) onto `outcome`, and the answer's `headers` say so."""
        t = outcome.transcript  # begun once, where the engine had it first
        if t is None:
            t = self.transcribe(outcome.caller, req.payload, req.endpoint)
        if t is not None:
            outcome.transcript = t
            headers[COURSE_LOG_HEADER] = ", ".join(t.courses)
        return t

    def answered(
        self,
        outcome: Outcome,
        req: ChatRequest,
        headers: dict[str, str],
        answer: Any = None,
        *,
        body: bytes | None = None,
    ) -> None:
        """``begin``, for a whole answer: its JSON (`answer`, or the bytes of `body`) read."""
        t = self.begin(outcome, req, headers)
        if t is None:
            return
        if body is not None:
            try:
                answer = json_codec.loads(body)
            except ValueError:
                answer = None
        read_answer(t, answer, req.endpoint)

    def record(self, outcome: Outcome) -> None:
        """The request's row in each logged course of its caller's (an ``on_outcome`` hook)."""
        if not self.specs or self.writer is None:
            return
        t = outcome.transcript
        courses = t.courses if t is not None else self.courses_of(outcome.caller)
        if not courses:
            return
        prompt = json.dumps(t.prompt, ensure_ascii=False) if t is not None else None
        # none came (an upstream failure, the client gone first): no answer, not an empty one
        answer = (answer_text(t) or None) if t is not None else None
        for course in courses:
            self.writer.append(
                (
                    outcome.started,
                    outcome.request_id,
                    course,
                    outcome.caller.user,
                    outcome.caller.client,
                    outcome.api,
                    outcome.model,
                    outcome.notebook_path,
                    outcome.cell,
                    outcome.status,
                    outcome.error,
                    prompt,
                    t.prompt_cut if t is not None else 0,
                    answer,
                    t.answer_cut if t is not None else 0,
                    outcome.prompt_tokens,
                    outcome.completion_tokens,
                )
            )

    def me(self, caller: Caller) -> dict[str, Any] | None:
        """GET me's ``course_log``: the first logged course of the caller's (and every one in
        ``groups``) and the notice; None when none logs them."""
        specs = [self.specs[c] for c in self.courses_of(caller)]
        if not specs:
            return None
        return {
            **specs[0].view(),
            "notice": notice(specs),
            "groups": [s.view() for s in specs],
        }

    # -- the writer's life, with the host's ------------------------------------------------

    async def start(self) -> None:
        if self.writer is not None and not self.writer.started:
            await self.writer.start()

    async def flush(self) -> None:
        """Rows of requests just answered are in the store before a reading."""
        if self.writer is not None and self.writer.started:
            await self.writer.flush()

    async def close(self) -> None:
        if self.writer is not None:
            await self.writer.close()
