"""The editor's inline completions (``{proxy}inline``), a layer above the engine: the body read
and bounded (``apis.inline.completion``), asked of ``Engine.chat`` in the caller's "inline" rate
class, the answer made into the text to insert; and what the editor's status item shows."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from dataclasses import replace
from typing import Any

from ...admission.entitlements import check_feature, tutor_fields
from ...admission.limiter import Limiter
from ...admission.policy_windows import PolicyWindows
from ...admission.window_specs import PolicyWindow, iso_utc
from ...bodies.attribution import notebook_path
from ...bodies.streams import event_json
from ...core import Engine
from ...courses.tutor import MODE_HEADER, names_only
from ...errors import EngineError
from ...interface import Caller, Reply
from ...settings import InlineSettings
from .completion import (
    InlineRequest,
    answer_text,
    chat_body,
    clean,
    fim_body,
    parse,
)


def _delta_text(chunk: dict[str, Any]) -> str:
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return ""  # the usage chunk, keep-alives
    delta = choices[0].get("delta")
    text = delta.get("content") if isinstance(delta, dict) else choices[0].get("text")
    return text if isinstance(text, str) else ""


def _event(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _shown(raw: str, req: InlineRequest, tutor: bool, final: bool = True) -> str:
    """The text to insert: cleaned, and in tutor mode only the name at the cursor."""
    text = clean(raw, req.prefix, req.suffix, final=final)
    return names_only(text) if tutor else text


async def _stream(
    events: AsyncGenerator[bytes, None],
    req: InlineRequest,
    model: str,
    cached: bool,
    tutor: bool = False,
) -> AsyncGenerator[bytes, None]:
    """The upstream's chat or completion stream as cumulative cleaned text, then a done event.
    Closing this closes `events`: a client that goes away is charged as for any stream."""
    raw, shown = "", ""
    try:
        async for ev in events:
            obj = event_json(ev)
            if obj is None:
                continue
            if "error" in obj:  # the stream failed upstream: said once, then the end
                yield _event({"error": obj["error"]})
                return
            piece = _delta_text(obj)
            if not piece:
                continue
            raw += piece
            text = _shown(raw, req, tutor, final=False)
            if text != shown:
                shown = text
                yield _event({"text": text})
        text = _shown(raw, req, tutor)
        yield _event({"done": True, "text": text, "model": model, "cached": cached})
    finally:
        await events.aclose()


def _takes_models(window: PolicyWindow) -> bool:
    """Whether a window in force narrows the models (local-only, a custom window's list)."""
    return window.mode == "local-only" or (window.mode == "custom" and window.models is not None)


class InlineCompletions:
    """``{proxy}inline``: one completion on Engine.chat's path, in the caller's
    "inline" rate class (``Caller.client``, which only this edge sets), and what the editor's
    status item shows."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.settings: InlineSettings = engine.settings.inline
        self.windows: PolicyWindows = engine.windows
        self.limiter: Limiter = engine.limiter

    async def complete(self, body: Any, caller: Caller, **kw: Any) -> Reply:
        req = parse(body)
        if not kw.get("notebook") and req.notebook:  # the header wins; either is checked
            kw["notebook"] = notebook_path(req.notebook)
        fim = self.settings.fim
        upstream = fim_body(req, self.settings) if fim else chat_body(req, self.settings)
        reply = await self.engine.chat(
            upstream,
            replace(caller, client="inline"),
            endpoint="completions" if fim else "chat/completions",
            api="inline",
            **kw,
        )
        cached = reply.headers.get("X-RSQL-Cache") == "hit"
        # a tutor offers names, never whole statements: the engine says the mode was in force
        tutor = reply.headers.get(MODE_HEADER) == "tutor"
        if reply.events is None:
            answer = reply.answer
            if answer is None:  # a cache hit's bytes: the engine did not read them
                try:
                    answer = json.loads(reply.body)
                except ValueError:
                    pass
            text = _shown(answer_text(answer), req, tutor)
            shown = {"text": text, "model": reply.model, "cached": cached}
            reply.body, reply.answer = json.dumps(shown).encode(), shown
            reply.headers["Content-Type"] = "application/json"
            return reply
        reply.events = _stream(reply.events, req, reply.model, cached, tutor)
        return reply

    async def status(self, caller: Caller) -> dict[str, Any]:
        """``GET {proxy}inline``: whether the caller's completions are on now, and if not why
        (a policy window, the admin's switch, no model they may use, the budget spent)."""
        access = await self.engine.access(caller)
        model = self.settings.model or access.default_model
        # the tutor mode in force, which the status item shows (None outside one), and the course
        # log that keeps the caller's requests, which it tells them of (None when none does: a
        # student who uses only the editor is told there too)
        out: dict[str, Any] = {
            "model": model,
            "tutor": tutor_fields(access, self.windows.tz),
            "course_log": self._course_log(caller),
        }
        window, span = access.window, access.span
        # a window's end, so the editor asks again the moment it is over (not at its next poll)
        ends = self._window_end(span)
        if window is not None and span is not None and window.mode == "off":
            refused: EngineError = self.windows.refusal(window, span)
            return {**out, "on": False, "reason": "window", "message": refused.message, **ends}
        try:
            check_feature("inline", access, self.windows, caller.user)
        except EngineError as exc:
            if exc.code == "policy_window":
                return {**out, "on": False, "reason": "window", "message": exc.message, **ends}
            return {**out, "on": False, "reason": "off", "message": exc.message}
        if not model or not access.allows(model):
            if window is not None and span is not None and _takes_models(window):
                # local-only, or a custom window's model list: the window is why, until its end
                refused = self.windows.refusal(window, span, access.models)
                return {**out, "on": False, "reason": "window", "message": refused.message, **ends}
            why = (
                f"the completion model {model!r} is not among your models"
                if model
                else ("no completion model is configured and you have no default model")
            )
            return {**out, "on": False, "reason": "no_model", "message": why + "; ask your admin"}
        try:
            budget = (await self.limiter.snapshot(caller.user, caller.groups))["budget"]
            hub = await self.limiter.global_spend()
        except Exception:  # a state outage: the completion itself will say what is wrong
            budget = hub = None
        if budget is not None and budget["remaining_usd"] <= 0:
            spent = "today's budget is spent"
        elif hub is not None and hub[0] >= hub[1]:
            spent = "the hub's budget for today is spent"  # every request is refused, whoever asks
        else:
            spent = ""
        if spent:
            return {
                **out,
                "on": False,
                "reason": "budget",
                "message": f"{spent}; completions are back at {self.limiter.day_resets_at()}",
            }
        return {**out, "on": True, "reason": None, "message": f"completions by {model}"}

    def _course_log(self, caller: Caller) -> dict[str, str] | None:
        """The course whose log keeps the caller's requests and the notice they are shown."""
        logged = self.engine.replies.course_log.me(caller)
        if logged is None:
            return None
        courses = ", ".join(str(g["group"]) for g in logged["groups"])
        return {"course": courses, "notice": str(logged["notice"])}

    def _window_end(self, span: tuple[float, float] | None) -> dict[str, Any]:
        """``ends_at`` (UTC) and ``ends_in_s`` of the window in force: seconds from now, so a
        browser whose clock is off still asks again at the right moment."""
        if span is None:
            return {}
        left = max(0.0, span[1] - self.windows.clock())
        return {"ends_at": iso_utc(span[1]), "ends_in_s": round(left, 1)}
