"""The course log's tables and statements, shared by the SQLite and PostgreSQL stores: its rows
(``engine.courses.log.COLUMNS``, one per course and request) and the readings of it (who read
which course's log, when, and what of it). Statements use `?` placeholders and name the user
column and the tables through ``{user}``, ``{log}`` and ``{reads}``; each store fills them in
(PostgreSQL quotes "user" and numbers its placeholders)."""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from typing import Any

from ..engine.courses.log import COLUMNS as COURSE_COLUMNS

# the types a PostgreSQL batch insert gives each column's array (the rest are text)
PG_TYPES = {
    "ts": "float8",
    "status": "int4",
    "prompt_cut": "int4",
    "answer_cut": "int4",
    "prompt_tokens": "int4",
    "completion_tokens": "int4",
}
READING_COLUMNS = ("ts", "reader", "role", "course", "student", "notebook", "what", "detail")


def schema(*, log: str, reads: str, user: str, key: str, real: str) -> str:
    """The two tables and their indexes; `key`: the id column's type, `real`: a float's."""
    return f"""
CREATE TABLE IF NOT EXISTS {log} (
  id {key}, ts {real} NOT NULL, request_id TEXT NOT NULL, course TEXT NOT NULL,
  {user} TEXT NOT NULL, client TEXT, api TEXT, model TEXT, notebook TEXT, cell TEXT,
  status INTEGER, error TEXT, prompt TEXT, prompt_cut INTEGER, answer TEXT, answer_cut INTEGER,
  prompt_tokens INTEGER, completion_tokens INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS {log}_request ON {log} (course, request_id);
CREATE INDEX IF NOT EXISTS {log}_course_ts ON {log} (course, ts);
CREATE INDEX IF NOT EXISTS {log}_student_ts ON {log} (course, {user}, ts);
CREATE INDEX IF NOT EXISTS {log}_request_id ON {log} (request_id);
CREATE TABLE IF NOT EXISTS {reads} (
  id {key}, ts {real} NOT NULL, reader TEXT NOT NULL, role TEXT NOT NULL, course TEXT,
  student TEXT, notebook TEXT, what TEXT NOT NULL, detail TEXT
);
CREATE INDEX IF NOT EXISTS {reads}_ts ON {reads} (ts);
"""


def placeholders(n: int) -> str:
    return ", ".join("?" * n)


# what a reading of the log returns: the row's id, then its columns as written
# (``engine.courses.log.COLUMNS``) but the course, which the reader named; the student by the
# store's own column for it
ENTRY_FIELDS = (
    "id",
    *("{user}" if c == "user" else c for c in COURSE_COLUMNS if c != "course"),
)


def entries_sql(*, student: bool, notebook: bool, after: bool) -> tuple[str, list[str]]:
    """One page of a course's log, newest first, and the order its arguments go in (course,
    since, then each filter given, then the cursor's ts twice and id, then the limit)."""
    where, args = ["course = ?", "ts >= ?"], ["course", "since"]
    if student:
        where.append("{user} = ?")
        args.append("student")
    if notebook:
        where.append("notebook = ?")
        args.append("notebook")
    if after:
        where.append("(ts < ? OR (ts = ? AND id < ?))")
        args += ["before_ts", "before_ts", "before_id"]
    sql = (
        f"SELECT {', '.join(ENTRY_FIELDS)} FROM {{log}} WHERE {' AND '.join(where)} "
        "ORDER BY ts DESC, id DESC LIMIT ?"
    )
    return sql, [*args, "limit"]


FAILED = "SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END)"
STUDENTS_SQL = (
    f"SELECT {{user}}, COUNT(*), COUNT(DISTINCT notebook), {FAILED}, MIN(ts), MAX(ts) "
    "FROM {log} WHERE course = ? AND ts >= ? GROUP BY {user} ORDER BY MAX(ts) DESC LIMIT ?"
)


def notebooks_sql(student: bool) -> str:
    only = "AND {user} = ? " if student else ""
    return (
        "SELECT notebook, COUNT(DISTINCT {user}), COUNT(*), MAX(ts) FROM {log} "
        f"WHERE course = ? AND ts >= ? {only}GROUP BY notebook ORDER BY MAX(ts) DESC LIMIT ?"
    )


def courses_sql(n: int) -> str:
    return (
        "SELECT course, COUNT(DISTINCT {user}), COUNT(*), MAX(ts) FROM {log} "
        f"WHERE course IN ({placeholders(n)}) GROUP BY course"
    )


def requests_sql(ids: int, courses: int | None) -> str:
    """The rows of request ids `ids` (in `courses` only, when given)."""
    only = f" AND course IN ({placeholders(courses)})" if courses is not None else ""
    return (
        "SELECT request_id, course, {user}, notebook, cell, model, ts, api, status FROM {log} "
        f"WHERE request_id IN ({placeholders(ids)}){only}"
    )


def usage_requests_sql(ids: int) -> str:
    return (
        "SELECT request_id, NULL, {user}, notebook, cell, model, ts, api, status FROM {usage} "
        f"WHERE request_id IN ({placeholders(ids)})"
    )


def readings_sql(course: bool, before: bool) -> str:
    where = [w for w, on in (("course = ?", course), ("id < ?", before)) if on]
    return (
        f"SELECT id, {', '.join(READING_COLUMNS)} FROM {{reads}} "
        f"{'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY id DESC LIMIT ?"
    )


def prune_sql(table: str, n: int, *, others: bool) -> str:
    """Rows of one course older than a time (``others``: of every course but the `n` given)."""
    if not others:
        return f"DELETE FROM {table} WHERE course = ? AND ts < ?"
    kept = f"course IS NULL OR course NOT IN ({placeholders(n)})" if n else "TRUE"
    return f"DELETE FROM {table} WHERE ({kept}) AND ts < ?"


# -- rows into the answers' shapes ----------------------------------------------------------


def iso(ts: float | None) -> str | None:
    """A time as ISO 8601 in UTC ("2026-03-02T14:05:09Z")."""
    if ts is None:
        return None
    moment = datetime.datetime.fromtimestamp(float(ts), datetime.timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def entry(row: Sequence[Any]) -> dict[str, Any]:
    (rid, ts, request_id, user, client, api, model, notebook, cell, status, error) = row[:11]
    prompt, prompt_cut, answer, answer_cut, prompt_tokens, completion_tokens = row[11:17]
    try:
        messages = json.loads(prompt) if prompt else None
    except ValueError:
        messages = None
    return {
        "id": rid,
        "cursor": f"{float(ts)!r}:{rid}",
        "time": iso(ts),
        "request_id": request_id,
        "student": user,
        "client": client,
        "api": api,
        "model": model,
        "notebook": notebook,
        "cell": cell,
        "status": status,
        "error": error,
        "prompt": messages if isinstance(messages, list) else None,
        "prompt_cut": prompt_cut or 0,
        "answer": answer,
        "answer_cut": answer_cut or 0,
        "tokens": {"prompt": prompt_tokens or 0, "completion": completion_tokens or 0},
    }


def student(row: Sequence[Any]) -> dict[str, Any]:
    user, requests, notebooks, failed, first, last = row
    return {
        "student": user,
        "requests": requests,
        "notebooks": notebooks,
        "errors": failed or 0,
        "first": iso(first),
        "last": iso(last),
    }


def notebook(row: Sequence[Any]) -> dict[str, Any]:
    name, students, requests, last = row
    return {"notebook": name, "students": students, "requests": requests, "last": iso(last)}


def course_summary(row: Sequence[Any]) -> dict[str, Any]:
    course, students, requests, last = row
    return {"group": course, "students": students, "requests": requests, "last": iso(last)}


def request(row: Sequence[Any]) -> dict[str, Any]:
    request_id, course, user, nb, cell, model, ts, api, status = row
    return {
        "request_id": request_id,
        "group": course,
        "user": user,
        "notebook": nb,
        "cell": cell,
        "model": model,
        "time": iso(ts),
        "api": api,
        "status": status,
    }


def reading(row: Sequence[Any]) -> dict[str, Any]:
    rid, ts, reader, role, course, who, nb, what, detail = row
    return {
        "id": rid,
        "time": iso(ts),
        "reader": reader,
        "role": role,
        "group": course,
        "student": who,
        "notebook": nb,
        "what": what,
        "detail": detail,
    }


class CourseLogQueries:
    """The course log's reads, for both stores: each store runs the statements
    (``course_query``) and writes a reading (``course_read``); this shapes what the
    endpoints and pages answer (``engine.accounting.course_rows.CourseLogStore``)."""

    async def course_query(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    async def course_read(self, row: tuple[Any, ...]) -> None:
        raise NotImplementedError

    async def course_entries(
        self,
        course: str,
        *,
        since: float,
        student: str | None = None,
        notebook: str | None = None,
        before: tuple[float, int] | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """One page of `course`'s log, newest first; `before`: the (ts, id) of the last row of
        the page before."""
        sql, order = entries_sql(
            student=student is not None, notebook=notebook is not None, after=before is not None
        )
        values: dict[str, Any] = {
            "course": course,
            "since": since,
            "student": student,
            "notebook": notebook,
            "before_ts": before[0] if before else None,
            "before_id": before[1] if before else None,
            "limit": limit,
        }
        return [entry(r) for r in await self.course_query(sql, [values[k] for k in order])]

    async def course_students(
        self, course: str, since: float, limit: int = 500
    ) -> list[dict[str, Any]]:
        """Per student of `course`: requests, notebooks, failures, first and last time."""
        return [student(r) for r in await self.course_query(STUDENTS_SQL, (course, since, limit))]

    async def course_notebooks(
        self, course: str, since: float, who: str | None = None, limit: int = 500
    ) -> list[dict[str, Any]]:
        """Per notebook of `course` (of one student's, `who`): students, requests, last time."""
        args = (course, since, who, limit) if who is not None else (course, since, limit)
        return [notebook(r) for r in await self.course_query(notebooks_sql(who is not None), args)]

    async def course_summaries(self, courses: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Students, requests and the last time, per course of `courses` that has rows."""
        if not courses:
            return {}
        rows = await self.course_query(courses_sql(len(courses)), tuple(courses))
        return {r[0]: course_summary(r) for r in rows}

    async def course_requests(
        self, ids: Sequence[str], courses: Sequence[str] | None
    ) -> dict[str, dict[str, Any]]:
        """The course log's rows of request `ids`, by id (in `courses` only, when given; None:
        in any); a request logged in two courses is answered once."""
        if not ids or courses == []:
            return {}
        args = (*ids, *(courses or ()))
        sql = requests_sql(len(ids), len(courses) if courses is not None else None)
        return {r[0]: request(r) for r in await self.course_query(sql, args)}

    async def usage_requests(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The usage log's rows of request `ids`, by id: for an admin, any request."""
        if not ids:
            return {}
        return {
            r[0]: request(r) for r in await self.course_query(usage_requests_sql(len(ids)), ids)
        }

    async def course_readings(
        self, course: str | None = None, before: int | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The readings of the course log, newest first (of one course's, when given)."""
        args = [a for a in (course, before) if a is not None]
        sql = readings_sql(course is not None, before is not None)
        return [reading(r) for r in await self.course_query(sql, (*args, limit))]
