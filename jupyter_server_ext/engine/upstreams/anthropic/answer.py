"""Anthropic's answers, spoken as OpenAI's: a Message becomes a ``chat.completion``
(``chat_completion``) and Anthropic's stream becomes OpenAI's chunks event by event
(``StreamTranslator``), usage and stop reasons included. Pure functions, no I/O; the request
side, and the table of what each OpenAI field becomes, are in ``request``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ...bodies.reading import MAX_COUNT, read_json
from ...bodies.streams import DONE, sse
from ...bodies.usage import count
from .http import error_object
from .stop_reasons import TO_OPENAI

__all__ = ["StreamTranslator", "chat_completion"]


def _finish_reason(stop_reason: Any) -> str | None:
    if not isinstance(stop_reason, str) or not stop_reason:
        return None
    return TO_OPENAI.get(stop_reason, "stop")


def _openai_usage(u: Any) -> dict[str, Any] | None:
    """Anthropic usage -> OpenAI's. Anthropic's input_tokens leaves out the cached prompt, so the
    prompt is the sum of all three; its two cache counts are kept (as LiteLLM does) because a
    cache write is billed above the input price and a cache read below it. None when there is
    no usage or a count cannot be read (text, a negative number): the engine then charges the
    reservation, as for the same Message sent as it came (``apis.messages.usage``), never 0."""
    if not isinstance(u, Mapping):
        return None
    counts = [
        count(u.get(k))
        for k in (
            "input_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
            "output_tokens",
        )
    ]
    if None in counts:
        return None
    inp, write, read, out = (n or 0 for n in counts)
    prompt = inp + write + read
    shaped: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": out,
        "total_tokens": prompt + out,
        "prompt_tokens_details": {"cached_tokens": read},
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
    }
    # how long what was written is kept: a 5-minute write bills 1.25x input, an hour's 2x
    made = _dict(u.get("cache_creation"))
    if made:
        shaped["cache_creation"] = {
            k: _count(made.get(k))
            for k in ("ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens")
        }
    thinking = _dict(u.get("output_tokens_details")).get("thinking_tokens")
    if isinstance(thinking, int):
        shaped["completion_tokens_details"] = {"reasoning_tokens": thinking}
    return shaped


def _count(value: Any) -> int:
    # a count past any answer's (a 400-digit int parses) would overflow a price's float
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return min(value, MAX_COUNT)
    return 0


# What a provider sends is read, never trusted to hold what its API reference says: a field of
# another type reads as absent, so no answer can make the translation raise (an exception here
# would end the request as a 500, its slot counted at the provider)
def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def chat_completion(message: dict[str, Any], *, model: str, created: int) -> dict[str, Any]:
    """Anthropic Message object -> OpenAI chat.completion object, `model` = public name shown to the caller."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    content = message.get("content")
    for block in content if isinstance(content, list) else ():
        block = _dict(block)
        if block.get("type") == "text":
            texts.append(_text(block.get("text")))
        elif block.get("type") == "tool_use":
            calls.append(
                {
                    "id": _text(block.get("id")),
                    "type": "function",
                    "function": {
                        "name": _text(block.get("name")),
                        "arguments": json.dumps(_dict(block.get("input"))),
                    },
                }
            )
        # thinking, redacted_thinking and server-tool blocks have no place in an OpenAI answer
    reply: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts else None,
        "refusal": None,
    }
    if calls:
        reply["tool_calls"] = calls
    return {
        "id": _text(message.get("id")) or "msg_unknown",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": reply,
                "logprobs": None,
                "finish_reason": _finish_reason(message.get("stop_reason")),
            }
        ],
        "usage": _openai_usage(message.get("usage")),
    }


class StreamTranslator:
    """Anthropic's stream events -> OpenAI's chunks, as OpenAI streams with
    ``stream_options.include_usage``: a role chunk, content and tool-call fragments, a finish
    chunk, a usage chunk with no choices, then ``[DONE]``; ``"usage": null`` on every other chunk.

    The role chunk goes out at message_start, before it is known whether text follows, so it
    carries ``"content": ""`` as OpenAI's text answers do (a tool-call-only answer then
    rebuilds with ``""`` where its JSON form has null)."""

    def __init__(self, *, model: str, created: int) -> None:
        self.model = model
        self.created = created
        self.id = "msg_unknown"
        self._usage: dict[str, Any] = {}
        self._calls: dict[int, int] = {}  # Anthropic block index -> OpenAI tool_calls index
        self._inputs: dict[
            int, Any
        ] = {}  # tool blocks whose arguments are not sent yet: their start input
        self._finished = False
        self._done = False

    @property
    def done(self) -> bool:
        """[DONE] went out: the stream is whole (a stream cut or ended by an error is not)."""
        return self._done

    def feed(self, event: bytes) -> list[bytes]:
        """One Anthropic SSE event (b"event: ...\\ndata: {...}\\n\\n") -> zero or more OpenAI SSE
        events (b"data: {...}\\n\\n"), ending with b"data: [DONE]\\n\\n" after message_stop."""
        name, data = _parse_event(event)
        if data is None or self._done:
            return []
        kind = data.get("type") if isinstance(data.get("type"), str) else name
        handler = getattr(self, f"_on_{kind}", None) if kind in _EVENTS else None
        return handler(data) if handler is not None else []  # ping, and types added later

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return sse(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
                "usage": None,
            }
        )

    def _on_message_start(self, data: dict[str, Any]) -> list[bytes]:
        message = _dict(data.get("message"))
        self.id = _text(message.get("id")) or self.id
        self._take_usage(message.get("usage"))
        return [self._chunk({"role": "assistant", "content": "", "refusal": None})]

    def _on_content_block_start(self, data: dict[str, Any]) -> list[bytes]:
        block, index = _dict(data.get("content_block")), data.get("index")
        if block.get("type") == "text" and _text(block.get("text")):
            return [self._chunk({"content": block["text"]})]
        if block.get("type") != "tool_use" or not isinstance(index, int) or index in self._calls:
            return []
        call = self._calls[index] = len(self._calls)
        self._inputs[index] = _dict(block.get("input"))
        head = {
            "index": call,
            "id": _text(block.get("id")),
            "type": "function",
            "function": {"name": _text(block.get("name")), "arguments": ""},
        }
        return [self._chunk({"tool_calls": [head]})]

    def _on_content_block_delta(self, data: dict[str, Any]) -> list[bytes]:
        delta, index = _dict(data.get("delta")), data.get("index")
        if delta.get("type") == "text_delta" and _text(delta.get("text")):
            return [self._chunk({"content": delta["text"]})]
        if (
            delta.get("type") == "input_json_delta"
            and _text(delta.get("partial_json"))
            and isinstance(index, int)
            and index in self._calls
        ):
            self._inputs.pop(index, None)
            return [self._arguments(index, delta["partial_json"])]
        return []  # thinking, signature and citation deltas have no OpenAI form

    def _on_content_block_stop(self, data: dict[str, Any]) -> list[bytes]:
        index = data.get("index")
        if (
            isinstance(index, int) and index in self._inputs
        ):  # a call with no input fragments: its input as a whole, as the JSON form has it
            return [self._arguments(index, json.dumps(self._inputs.pop(index)))]
        return []

    def _arguments(self, index: int, text: str) -> bytes:
        return self._chunk(
            {"tool_calls": [{"index": self._calls[index], "function": {"arguments": text}}]}
        )

    def _on_message_delta(self, data: dict[str, Any]) -> list[bytes]:
        self._take_usage(data.get("usage"))
        reason = _dict(data.get("delta")).get("stop_reason")
        reason = reason if isinstance(reason, str) else None
        if not reason or self._finished:
            return []
        self._finished = True
        return [self._chunk({}, _finish_reason(reason))]

    def _on_message_stop(self, data: dict[str, Any]) -> list[bytes]:
        out = [] if self._finished else [self._chunk({}, "stop")]
        self._finished = self._done = True
        out.append(
            sse(
                {
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": _openai_usage(self._usage) if self._usage else None,
                }
            )
        )
        out.append(DONE)
        return out

    def _on_error(self, data: dict[str, Any]) -> list[bytes]:
        error = data.get("error")
        if not isinstance(error, dict):
            error = {}
        message = error.get("message")
        return [
            sse(
                {
                    "error": error_object(
                        str(error.get("type") or "api_error"),
                        message if isinstance(message, str) else "the stream failed",
                    )
                }
            )
        ]

    def _take_usage(self, u: Any) -> None:
        # message_delta's counts are cumulative: each one replaces what came before
        if isinstance(u, dict):
            self._usage.update({k: v for k, v in u.items() if v is not None})


_EVENTS = frozenset(
    (
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "error",
    )
)


def _parse_event(event: bytes) -> tuple[str, dict[str, Any] | None]:
    """(the event: name, the data: JSON object) of one SSE event; None for no JSON object."""
    name, data = "", []
    for line in event.replace(b"\r\n", b"\n").split(b"\n"):
        if line.startswith(b"event:"):
            name = line[6:].strip().decode("utf-8", "replace")
        elif line.startswith(b"data:"):
            data.append(line[6:] if line.startswith(b"data: ") else line[5:])
    obj = read_json(b"\n".join(data)) if data else None  # junk, or nested too deep: no event
    return name, obj if isinstance(obj, dict) else None
