"""The handlers of the APIs callers speak besides OpenAI's chat completions: OpenAI's Responses
API and Anthropic's Messages API, for the Agents SDK, Codex, the ``anthropic`` SDK and Claude
Code; and ``inline``, the editor's completions, for the JupyterLab extension. Mixins like
``handlers``' own, mounted by both hosts (``routes``); each asks its API's layer above the engine
(``engine/apis``: ``translated``, ``inline.edge``; the host's ``ProxyContext`` holds them), which
answers on ``Engine.chat``, the one path every request takes.
"""

from __future__ import annotations

import json
from typing import Any

from ..engine import Caller, Engine, EngineError, Reply
from ..engine.apis.messages import answer as messages_answer
from ..engine.apis.responses import stream as responses_stream
from .base import AnsweringMixin, JSONEndpoint, JSONText, RSQLMixin, shutting_down


class ResponsesMixin(AnsweringMixin):
    """POST v1/responses (OpenAI's Responses API), a Response or its typed events."""

    async def ask(self, engine: Engine, body: Any, caller: Caller) -> Reply:
        return await self.rsql.translated.responses(body, caller, **self.request_options())

    def shutdown_event(self) -> bytes:
        err = shutting_down()
        return responses_stream.event(
            "error", {"code": err.code, "message": err.message, "param": None}
        )


class ResponseMixin(JSONEndpoint):
    """GET and DELETE v1/responses/{id}: the caller's own stored response."""

    async def get(self, response_id: str) -> None:
        await self._respond(response_id)

    async def delete(self, response_id: str) -> None:
        await self._respond(response_id)

    async def answer(self, caller: Caller, response_id: str) -> Any:
        translated = self.rsql.translated
        if self.request.method == "DELETE":
            return await translated.delete_response(caller, response_id)
        return JSONText(await translated.response(caller, response_id))


class MessagesErrors(RSQLMixin):
    """Errors in the shape of Anthropic's Messages API, for its clients (the ``anthropic`` SDK,
    Claude Code): ``{"type": "error", "error": {"type": ..., "message": ...}}``, and 529 only when
    every upstream is overloaded."""

    def write_proxy_error(self, exc: EngineError) -> None:
        body = messages_answer.error_body(exc)
        status = 529 if exc.code == "upstream_overloaded" else exc.status
        if status == 529:
            body["error"]["type"] = "overloaded_error"
        elif exc.code == "model_not_found":
            # a 400, where Anthropic answers 404: Claude Code prints its own guess for any 404
            # ("may not exist or you may not have access"), never our list of the models served
            status = 400
            body["error"]["type"] = "invalid_request_error"
        self.clear()
        self.set_status(status)
        for k, v in exc.headers.items():
            self.set_header(k, v)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))


class MessagesMixin(MessagesErrors, AnsweringMixin):
    """POST v1/messages (Anthropic's Messages API), a Message or its stream events."""

    async def ask(self, engine: Engine, body: Any, caller: Caller) -> Reply:
        return await self.rsql.translated.messages(body, caller, **self.request_options())

    def shutdown_event(self) -> bytes:
        err = shutting_down()
        return messages_answer.event(
            "error", {"error": {"type": "overloaded_error", "message": err.message}}
        )


class CountTokensMixin(MessagesErrors, JSONEndpoint):
    """POST v1/messages/count_tokens: the prompt's tokens as the proxy estimates them."""

    async def post(self) -> None:
        await self._respond()

    async def answer(self, caller: Caller) -> Any:
        engine = self.rsql.engine
        body = await self.json_body(caller)
        if isinstance(body, dict) and isinstance(body.get("model"), str):
            engine.check_model(await engine.access(caller), body["model"])
        return await self.rsql.translated.count_tokens(body, caller)


class InlineMixin(AnsweringMixin):
    """POST inline: one inline completion (cumulative text events, or JSON); GET inline:
    whether the caller's completions are on now, and why not (the editor's status item)."""

    async def ask(self, engine: Engine, body: Any, caller: Caller) -> Reply:
        return await self.rsql.inline.complete(body, caller, **self.request_options())

    async def get(self) -> None:
        try:
            caller = self.caller()
            await self.rsql.ready()
            self.write_json(await self.rsql.inline.status(caller))
        except EngineError as exc:
            self.write_proxy_error(exc)


API_ROUTES: list[tuple[str, type]] = [
    ("v1/responses", ResponsesMixin),
    ("v1/responses/([^/]+)", ResponseMixin),
    ("v1/messages", MessagesMixin),
    ("v1/messages/count_tokens", CountTokensMixin),
    ("inline", InlineMixin),
]
