"""Anthropic's Messages API, the answer's side: a chat answer as a Message (``message_of``), the
chat stream as Anthropic's events (``StreamTranslator``: ``message_start``,
``content_block_start`` / ``_delta`` / ``_stop``, ``message_delta`` with usage, ``message_stop``,
``ping``, ``error``), and an error in Anthropic's shape (``error_body``). The request's side:
``messages``. References: Anthropic's Messages API, streaming and errors pages."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from ...errors import EngineError, RateLimited
from ...upstreams.anthropic.request import tool_use_block
from ...upstreams.anthropic.stop_reasons import TO_ANTHROPIC
from ..chat import (
    CallIds,
    call_index,
    chunk_parts,
    cost,
    count,
    finish_of,
    first_choice,
    first_text,
    json_object,
    json_text,
    obj,
    seq,
)

# an HTTP status -> Anthropic's error type (docs.anthropic.com/en/api/errors)
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def new_id(prefix: str = "msg") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


# -- answer ----------------------------------------------------------------------------------


def usage_of(chat_usage: Any) -> dict[str, Any]:
    """Anthropic's usage from a chat answer's: its input_tokens exclude the cached prompt."""
    u = obj(chat_usage)
    prompt = count(u.get("prompt_tokens"))
    read = count(obj(u.get("prompt_tokens_details")).get("cached_tokens"))
    written = count(u.get("cache_creation_input_tokens"))
    read = count(u.get("cache_read_input_tokens")) or read
    out: dict[str, Any] = {
        "input_tokens": max(0, prompt - read - written),
        "output_tokens": count(u.get("completion_tokens")),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
    }
    if cost(u.get("cost_usd")) is not None:
        out["cost_usd"] = u["cost_usd"]
    return out


def call_block(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    """A chat tool call as a tool_use block; arguments that are not a JSON object (a model's
    slip, or a hostile one) are told as text, never passed on as a malformed call."""
    args = json_object(arguments)
    if args is None:
        shown = arguments if isinstance(arguments, str) else json_text(arguments) or "?"
        return {
            "type": "text",
            "text": f"[the model called tool {name!r} with arguments that are not a JSON object: "
            f"{shown[:200]}]",
        }
    return tool_use_block(call_id, name, args)


def message_of(answer: Any, model: str) -> dict[str, Any]:
    """The Message for a chat completion `answer` (whatever its fields hold)."""
    choice = first_choice(answer)
    message = obj(choice.get("message"))
    content: list[dict[str, Any]] = []
    said = first_text(message.get("content"), message.get("refusal"))
    if said:
        content.append({"type": "text", "text": said})
    ids = CallIds("toolu")
    for call in seq(message.get("tool_calls")):
        if isinstance(call, dict):
            fn = obj(call.get("function"))
            content.append(
                call_block(ids(call.get("id")), first_text(fn.get("name")), fn.get("arguments"))
            )
    stop = TO_ANTHROPIC.get(finish_of(choice) or "", "end_turn")
    if stop == "tool_use" and not any(b["type"] == "tool_use" for b in content):
        stop = "end_turn"
    return {
        "id": new_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage_of(obj(answer).get("usage")),
    }


def event(kind: str, payload: dict[str, Any]) -> bytes:
    return (
        f"event: {kind}\ndata: ".encode() + json.dumps({"type": kind, **payload}).encode() + b"\n\n"
    )


def error_body(exc: EngineError) -> dict[str, Any]:
    """An engine error in Anthropic's shape: {"type": "error", "error": {"type", "message"}}."""
    kind = ERROR_TYPES.get(exc.status) or (
        "api_error" if exc.status >= 500 else "invalid_request_error"
    )
    if isinstance(exc, RateLimited):
        kind = "rate_limit_error"
    return {"type": "error", "error": {"type": kind, "message": exc.message}}


UNREADABLE = "the upstream's answer could not be read"


@dataclass
class _Call:
    """A streamed tool call, held until it is whole: only then can its arguments be told to
    be a JSON object (a ``tool_use``) or not (text), as the JSON answer tells them."""

    id: Any = None
    name: str = ""
    pieces: list[str] = field(default_factory=list)


@dataclass
class StreamTranslator:
    """Chat-completion chunks in, Anthropic's stream events out (``start``, ``feed``,
    ``close``); ``message`` is the Message as it starts.

    Text streams as it comes. A tool call is held until it is whole (the answer's finish, text
    after it, or the end) and then sent as one block: a ``tool_use`` whose ``input_json_delta``
    is the arguments as a JSON object, or, when they are not one, the same text the JSON answer
    gives. A chunk's field of another type than the chat API's is skipped; a chunk nobody
    foresaw ends the stream with an ``error`` event, never an exception."""

    model: str
    input_estimate: int = 0
    message: dict[str, Any] = field(init=False)
    done: bool = False
    _block: int = -1  # the open content block's index
    _kind: str = ""  # its kind: "text", "tool_use" or "told" (a call told as text)
    _calls: dict[int, _Call] = field(default_factory=dict)  # chat tool-call index -> held call
    _sent: set[int] = field(default_factory=set)  # the indices of the calls already sent
    _tool_uses: int = 0
    _ids: CallIds = field(default_factory=lambda: CallIds("toolu"))
    _finish: str | None = None
    _usage: Any = None

    def __post_init__(self) -> None:
        self.message = {
            "id": new_id(),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.input_estimate, "output_tokens": 1},
        }

    def start(self) -> list[bytes]:
        return [event("message_start", {"message": self.message}), event("ping", {})]

    def _open(self, kind: str, block: dict[str, Any]) -> list[bytes]:
        out = self._close_block()
        self._block += 1
        self._kind = kind
        out.append(event("content_block_start", {"index": self._block, "content_block": block}))
        return out

    def _close_block(self) -> list[bytes]:
        if self._kind:
            self._kind = ""
            return [event("content_block_stop", {"index": self._block})]
        return []

    def feed(self, chunk: Any) -> list[bytes]:
        if self.done:
            return []
        try:
            return self._feed(obj(chunk))
        except Exception:  # the second wall: a shape nobody foresaw ends the stream cleanly
            return self.fail({"message": UNREADABLE})

    def _feed(self, chunk: dict[str, Any]) -> list[bytes]:
        read = chunk_parts(chunk)
        if read.error is not None:
            return self.fail(read.error)
        out: list[bytes] = []
        if read.usage:
            self._usage = read.usage
        for kind, value in read.parts:
            if kind == "text":
                if self._kind != "text":
                    out += self._send_calls()
                    out += self._open("text", {"type": "text", "text": ""})
                delta = {"type": "text_delta", "text": value}
                out.append(event("content_block_delta", {"index": self._block, "delta": delta}))
            elif kind == "call":
                self._hold(value)
            else:
                self._finish = value
                out += self._send_calls()
        return out

    def _hold(self, frag: Any) -> None:
        """Add a streamed fragment to its call (a fragment that cannot be placed is skipped)."""
        idx = call_index(frag) if isinstance(frag, dict) else None
        if idx is None or idx in self._sent:
            return
        fn = obj(frag.get("function"))
        call = self._calls.setdefault(idx, _Call())
        if call.id is None and isinstance(frag.get("id"), str) and frag["id"]:
            call.id = frag["id"]
        call.name = call.name or first_text(fn.get("name"))
        piece = fn.get("arguments")
        if isinstance(piece, str) and piece:
            call.pieces.append(piece)

    def _send_calls(self) -> list[bytes]:
        """The held calls, whole, each its own block."""
        out: list[bytes] = []
        for idx, call in self._calls.items():
            self._sent.add(idx)
            block = call_block(self._ids(call.id), call.name, "".join(call.pieces))
            if block["type"] == "tool_use":
                args = block["input"]
                out += self._open("tool_use", {**block, "input": {}})
                self._tool_uses += 1
                if args:
                    delta = {"type": "input_json_delta", "partial_json": json.dumps(args)}
                    out.append(event("content_block_delta", {"index": self._block, "delta": delta}))
            else:  # told as text, in a block of its own
                out += self._open("told", {"type": "text", "text": ""})
                delta = {"type": "text_delta", "text": block["text"]}
                out.append(event("content_block_delta", {"index": self._block, "delta": delta}))
        self._calls.clear()
        return out

    def close(self) -> list[bytes]:
        if self.done:
            return []
        try:
            out = self._send_calls() + self._close_block()
            stop = TO_ANTHROPIC.get(self._finish or "", "end_turn")
            if stop == "tool_use" and not self._tool_uses:
                stop = "end_turn"
            usage = usage_of(self._usage)
        except Exception:  # the second wall, as in feed
            return self.fail({"message": UNREADABLE})
        self.message.update(stop_reason=stop, usage=usage)
        out.append(
            event(
                "message_delta",
                {"delta": {"stop_reason": stop, "stop_sequence": None}, "usage": usage},
            )
        )
        out.append(event("message_stop", {}))
        self.done = True
        return out

    def fail(self, error: Any) -> list[bytes]:
        if self.done:
            return []
        self.done = True
        message = error.get("message") if isinstance(error, dict) else error
        body = {"type": "api_error", "message": str(message or "the answer broke off")[:1000]}
        return [event("error", {"error": body})]
