"""Requests in the Responses and Messages APIs' shapes, answered on the engine's one path.

Each is turned into a chat-completions body at the edge (``apis.responses``, ``apis.messages``)
and handed to ``Engine.chat`` with the API it came by, so admission, budgets, entitlements,
windows, redaction, the cache, failover and the usage log treat it as any other request; the
chat answer, JSON or stream, is turned back into the API's own shape here.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from ..admission.hosted_tools import HostedTools, only_hosted
from ..admission.limiter import Admitted
from ..bodies import json_codec
from ..bodies.left_out import LeftOut
from ..bodies.request import count_files, estimate_tokens
from ..bodies.streams import event_json
from ..core import Engine
from ..courses.tutor import instruction_of, instruction_tokens
from ..errors import BadRequest
from ..interface import Caller, Reply
from .messages import answer as messages_answer
from .messages import request as messages_api
from .native import NATIVE_READERS
from .responses import answer as responses_answer
from .responses import request as responses_api
from .responses import stream as responses_stream
from .responses.stored import StoredResponses


class Translated:
    """The Responses and Messages APIs, a layer above the engine: each request is turned into a
    chat-completions body and answered by ``Engine.chat``, the one path."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        settings, limits = engine.settings, engine.settings.request_limits
        # which hosted tools run for whom (admission/hosted_tools.py)
        self.hosted = HostedTools(settings.hosted_tools)
        self.stored = StoredResponses(
            engine.state,
            settings.responses_ttl_seconds,
            settings.responses_per_user,
            settings.responses_per_user_bytes,
            max_bytes=limits.max_body_bytes,
            max_depth=limits.max_json_depth,
            max_containers=limits.max_json_containers,
            max_items=limits.max_json_items,
            run=engine.offload.run,
            at_rest=engine.redaction.at_rest if settings.redact_patterns else None,
        )

    def _native(self, api: str, body: dict[str, Any]) -> bool:
        model = body.get("model")
        return isinstance(model, str) and self.engine.speaks(api, model)

    def _chat_form(self, api: Any, body: Any, caller: Caller) -> tuple[dict[str, Any], LeftOut]:
        """`body` (of `api`: ``apis.responses.request`` or ``apis.messages.request``) in the chat
        form, for an upstream that speaks only chat: its hosted tools cannot run there, each
        dropped or refused as the admin says; what the answer needs and the chat form cannot carry
        is refused (``left_out``)."""
        left = LeftOut()
        chat = api.to_chat(body, left)
        for kind, where in left.hosted:
            refusal = self.hosted.not_run(kind, where, caller.groups, upstream_runs=False)
            if refusal is not None:
                raise refusal
            left.drop(kind)
        if left.hosted and not chat.get("tools"):
            raise only_hosted([k for k, _ in left.hosted])
        refusal = left.refusal()
        if refusal is not None:
            raise refusal
        return chat, left

    def _as_sent(
        self, api: Any, body: dict[str, Any], caller: Caller
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """`body` as it goes to an upstream that speaks its API, and the answer's header: each
        hosted tool goes on when it is offered to the caller, its calls capped at the provider
        where the API can say so, else it is dropped or refused as the admin says.

        The caps: Anthropic's web search and fetch each take their own ``max_uses`` (and web
        fetch a ``max_content_tokens``); the Responses API takes one ``max_tool_calls`` for all
        its built-in tools together, which any kind may spend whole, so it is the smallest
        ``max_calls`` of the kinds that run: each kind's cap then holds, and the request is
        reserved at that many calls of the dearest (``parsing``)."""
        found = api.hosted_tools_in(body)
        if not found:
            return body, {}
        left = LeftOut()
        tools = list(body.get("tools") or [])
        gone: set[tuple[int, ...]] = set()
        out, cap = dict(body), None
        for kind, path, tool in found:
            where = ".".join(f"tools[{i}]" for i in path) if path != (-1,) else "mcp_servers"
            if self.hosted.runs(kind, caller.groups, upstream_runs=True):
                setting = self.hosted.of(kind)
                cap = setting.max_calls if cap is None else min(cap, setting.max_calls)
                if api is messages_api and kind in ("web_search", "web_fetch"):
                    tools[path[0]] = _capped(tool, "max_uses", setting.max_calls)
                    if kind == "web_fetch" and setting.content_tokens:
                        tools[path[0]] = _capped(
                            tools[path[0]], "max_content_tokens", setting.content_tokens
                        )
                continue
            refusal = self.hosted.not_run(kind, where, caller.groups, upstream_runs=True)
            if refusal is not None:
                raise refusal
            left.drop(kind)
            gone.add(path)
        if (-1,) in gone:
            out.pop("mcp_servers", None)
        kept = []
        for i, tool in enumerate(tools):
            if (i,) in gone:
                continue
            if any(len(p) == 2 and p[0] == i for p in gone):  # a namespace's hosted tools
                inner = [u for j, u in enumerate(tool.get("tools") or []) if (i, j) not in gone]
                tool = {**tool, "tools": inner}
            kept.append(tool)
        if gone and len(gone) == len(found) and not kept:
            raise only_hosted([kind for kind, _, _ in found])
        if kept:
            out["tools"] = kept
        else:
            out.pop("tools", None)
            out.pop("tool_choice", None)
        if api is responses_api and cap is not None:  # OpenAI's cap on its built-in tools
            out = _capped(out, "max_tool_calls", cap)
        return out, left.header()

    # -- OpenAI's Responses API --------------------------------------------------------------

    async def responses(self, body: Any, caller: Caller, **kw: Any) -> Reply:
        """``POST v1/responses``: a Response object, or its typed events. A continuation
        (``previous_response_id``) is counted before its stored conversation is read, and that
        conversation is read as a request body would be (bounded, in the user's turn)."""
        if not isinstance(body, dict):
            raise BadRequest("request body must be a JSON object with 'model' and 'input'")
        previous = body.get("previous_response_id")
        if previous is not None and not isinstance(previous, str):
            raise BadRequest(
                "'previous_response_id' must be a string", extra={"param": "previous_response_id"}
            )
        # counted before its stored conversation is read: reading one is work a user could
        # otherwise ask for without end (a 429 first)
        counted = await self.engine.admit(caller) if previous is not None else None
        try:
            earlier = None
            if previous is not None:
                # read as a request body is (bounded, in the caller's turn)
                stored = await self.stored.conversation_json(caller.user, previous)
                earlier = await self.engine.decode_body(stored, caller)
            body = responses_api.expanded(body, earlier)
            store = body.get("store", True) is not False
            if self._native("responses", body):
                return await self._responses_native(body, caller, store, kw, counted)
            chat, left = self._chat_form(responses_api, body, caller)
            reply = await self.engine.chat(chat, caller, api="responses", counted=counted, **kw)
            reply.headers.update(left.header())
        except BaseException:
            if counted is not None:  # ended here unless the request's own end came first
                await counted.settle(0.0)
            raise
        rid, created = responses_api.new_id("resp"), int(time.time())

        async def keep(response: dict[str, Any]) -> None:
            if store:  # what the upstream saw, nothing more (reasoning items: none)
                seen = responses_api.seen_items(responses_api.conversation_of(body, response))
                await self.stored.put(caller.user, response, seen)

        if reply.events is None:
            response = responses_answer.response_of(body, _answer_of(reply), rid, created)
            await keep(response)
            # written by orjson: its echoed instructions may be long (responses_stream.event)
            reply.body, reply.answer = json_codec.dumps(response), response
            return reply
        translator = responses_stream.StreamTranslator(body, rid, reply.model, created)

        async def save() -> None:
            if translator.response["status"] in ("completed", "incomplete"):
                await keep(translator.response)

        reply.events = _translate(reply.events, translator, save)
        return reply

    async def _responses_native(
        self,
        body: dict[str, Any],
        caller: Caller,
        store: bool,
        kw: dict[str, Any],
        counted: Admitted | None,
    ) -> Reply:
        """A Responses request to an upstream that speaks the API: sent as it is, answered as
        the provider answers; what is stored is kept here (the provider keeps nothing): the
        items as sent, all of which the provider read."""
        sent, dropped = self._as_sent(responses_api, body, caller)
        reply = await self.engine.chat(
            sent,
            caller,
            endpoint="responses",
            api="responses",
            counted=counted,
            native_reader=NATIVE_READERS["responses"],
            **kw,
        )
        reply.headers.update(dropped)

        async def keep(response: Any) -> None:
            if store and isinstance(response, dict) and isinstance(response.get("id"), str):
                await self.stored.put(
                    caller.user, response, responses_api.conversation_of(body, response)
                )

        if reply.events is None:
            await keep(_answer_of(reply))
            return reply
        reply.events = _watch_completed(reply.events, keep)
        return reply

    async def response(self, caller: Caller, response_id: str) -> bytes:
        """``GET v1/responses/{id}``: the caller's own stored response, as its JSON text (read
        as written, never parsed), counted in the caller's windows before it is read."""
        async with self.engine.admitted(caller):
            return await self.stored.response_json(caller.user, response_id)

    async def delete_response(self, caller: Caller, response_id: str) -> dict[str, Any]:
        """``DELETE v1/responses/{id}``: the caller's own stored response, gone."""
        async with self.engine.admitted(caller):
            return await self.stored.delete(caller.user, response_id)

    # -- Anthropic's Messages API ------------------------------------------------------------

    async def messages(self, body: Any, caller: Caller, **kw: Any) -> Reply:
        """``POST v1/messages``: a Message, or Anthropic's stream events."""
        if isinstance(body, dict) and self._native("messages", body):
            # an Anthropic upstream: sent as it is (thinking, top_k, beta features kept)
            sent, dropped = self._as_sent(messages_api, body, caller)
            reply = await self.engine.chat(
                sent,
                caller,
                endpoint="messages",
                api="messages",
                native_reader=NATIVE_READERS["messages"],
                **kw,
            )
            reply.headers.update(dropped)
            return reply
        chat, left = self._chat_form(messages_api, body, caller)
        reply = await self.engine.chat(chat, caller, api="messages", **kw)
        reply.headers.update(left.header())
        if reply.events is None:
            message = messages_answer.message_of(_answer_of(reply), reply.model)
            reply.body, reply.answer = json_codec.dumps(message), message
            return reply
        estimate = estimate_tokens(chat["messages"], reply.model)
        translator = messages_answer.StreamTranslator(reply.model, estimate)
        reply.events = _translate(reply.events, translator, None)
        return reply

    async def count_tokens(self, body: Any, caller: Caller) -> dict[str, Any]:
        """``POST v1/messages/count_tokens``: the proxy's estimate of the prompt's tokens (the
        same it reserves for), without asking any provider. It costs nothing, but it is work a
        user could ask for without end, so it counts in their request windows as any request."""
        async with self.engine.admitted(caller):  # windows, concurrency
            if isinstance(body, dict) and "max_tokens" not in body:
                body = {**body, "max_tokens": 1}  # count_tokens takes no max_tokens
            left = LeftOut()
            req = self.engine.parse(messages_api.to_chat(body, left))
            req.prompt_tokens += left.tokens  # what the chat form could not read counts too
            access = await self.engine.access(caller)
            if access.tutor is not None:  # the course's instruction goes first in the request,
                # and a client (Claude Code) compacts by this count: it counts here too (counted
                # only: a conversation the tutor would refuse is the request's 400, not the count's)
                tutor = instruction_of(access.tutor.instruction)
                req.prompt_tokens += instruction_tokens(tutor, req.payload)
            await count_files(req, self.engine.offload.run, caller.user)
        return {"input_tokens": req.prompt_tokens}


def _answer_of(reply: Reply) -> Any:
    """A JSON reply's answer, as the engine read it, or decoded here (a cache hit's bytes)."""
    return reply.answer if reply.answer is not None else json_codec.loads(reply.body)


def _capped(obj: dict[str, Any], field: str, most: int) -> dict[str, Any]:
    """`obj` with `field` at most `most`: a smaller whole number the client asked for stays."""
    asked = obj.get(field)
    fewer = isinstance(asked, int) and not isinstance(asked, bool) and 0 < asked < most
    return {**obj, field: asked if fewer else most}


async def _watch_completed(
    events: AsyncGenerator[bytes, None], keep: Callable[[Any], Awaitable[None]]
) -> AsyncGenerator[bytes, None]:
    """A native Responses stream, passed on as it is; its final response kept (``keep``)."""
    try:
        async for raw in events:
            yield raw
            if b"response.completed" in raw or b"response.incomplete" in raw:
                obj = event_json(raw)
                if obj is not None and obj.get("type") in (
                    "response.completed",
                    "response.incomplete",
                ):
                    await keep(obj.get("response"))
    finally:
        await events.aclose()


async def _translate(
    events: AsyncGenerator[bytes, None],
    translator: Any,
    done: Callable[[], Awaitable[None]] | None,
) -> AsyncGenerator[bytes, None]:
    """The chat stream `events` through `translator` (a ``StreamTranslator`` of either API).
    Closing this closes `events`, so a client that leaves is charged as for any stream."""
    try:
        # the API's first events go out before any of `events`: closed here, `events` ends its
        # request all the same, for the engine starts a stream before handing it out
        # (``Replies.stream_reply``)
        for out in translator.start():
            yield out
        async for raw in events:
            obj = event_json(raw)
            if obj is None:
                continue  # [DONE], comments
            for out in translator.feed(obj):
                yield out
            if translator.done:  # it failed
                return
        for out in translator.close():
            yield out
        if done is not None:
            await done()
    finally:
        await events.aclose()
