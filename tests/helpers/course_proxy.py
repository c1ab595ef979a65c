"""A proxy that speaks issue 75's contract (/tmp/cc/contract75.md) and nothing more, in the
test's process: ``GET me`` with ``tutor`` and ``course_log``, chat answers with ``X-Request-Id``,
``X-RSQL-Mode: tutor`` and ``X-RSQL-Course-Log``, and ``POST course/requests``. The kernel's
and rsql-provenance's unit tests stand on it; their end-to-end twins use the real proxy."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.helpers.loopback import LoopbackServer

TUTOR = {
    "window": "stat101-weekdays",
    "message": "STAT 101: the assistant gives hints this week, not answers.",
    "agent": False,
    "completions": "names",
    "ends_at": "2026-11-27T17:00:00Z",
    "ends_at_local": "2026-11-27 18:00 CET",
}
COURSE_LOG = {
    "group": "stat101",
    "instructors": "stat101-staff",
    "retention_days": 120,
    "notice": "Your course staff can read your assistant conversations.",
}


@dataclass
class ServedRequest:
    """One request as the course log keeps it."""

    user: str
    notebook: str | None
    cell: str | None
    model: str
    time: str
    api: str = "chat"
    status: int = 200


@dataclass
class CourseProxy(LoopbackServer):
    """The contract's proxy. ``answer``: the next chat answer's text; ``tutor`` and ``log``:
    what GET me says (None: not in force); ``tutor_header`` / ``log_header``: what answers say.
    ``served``: the course log, by request id; ``readers``: which tokens may read whose
    requests (None: all, an admin)."""

    answer: str = "Try `df.groupby(...)`."
    tutor: dict[str, Any] | None = None
    log: dict[str, Any] | None = None
    tutor_header: bool = False
    log_header: bool = False
    user: str = "alice"
    model: str = "fake-small"
    served: dict[str, ServedRequest] = field(default_factory=dict)
    readers: dict[str, set[str] | None] = field(default_factory=dict)
    asked: list[dict[str, Any]] = field(default_factory=list)  # chat bodies, in order
    thread_name = "course-proxy"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/me", self._me)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/course/requests", self._requests)

    async def _me(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "user": self.user,
                "models": [self.model],
                "default_model": self.model,
                "tutor": self.tutor,
                "course_log": self.log,
            }
        )

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.asked.append(body)
        rid = secrets.token_hex(16)
        self.served[rid] = ServedRequest(
            self.user,
            request.headers.get("X-RSQL-Notebook"),
            request.headers.get("X-RSQL-Cell"),
            self.model,
            "2026-11-23T10:00:00Z",
        )
        headers = {"X-Request-Id": rid, "X-RSQL-Cost-USD": "0.00010000"}
        if self.tutor_header:
            headers["X-RSQL-Mode"] = "tutor"
        if self.log_header and self.log:
            headers["X-RSQL-Course-Log"] = self.log["group"]
        answer = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": self.answer},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }
        return web.json_response(answer, headers=headers)

    async def _requests(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if token not in self.readers:
            return web.json_response({"error": {"message": "not an instructor"}}, status=403)
        may = self.readers[token]
        ids = (await request.json()).get("ids") or []
        out: dict[str, Any] = {}
        for rid in ids:
            s = self.served.get(rid)
            if s is None or (may is not None and s.user not in may):
                out[rid] = "unknown"
            else:
                out[rid] = dict(s.__dict__)
        return web.Response(text=json.dumps({"requests": out}), content_type="application/json")
