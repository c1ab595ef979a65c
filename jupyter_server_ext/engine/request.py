"""Validation of an incoming chat-completions body, with errors that name the field."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import BadRequest

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


@dataclass
class ChatRequest:
    payload: dict[str, Any]  # what goes upstream (model filled in)
    model: str
    stream: bool
    wants_usage_chunk: bool  # the client itself asked for stream_options.include_usage
    prompt_tokens: int  # estimate
    max_tokens: int | None

    @property
    def reserve_tokens(self) -> int:
        return self.prompt_tokens + (self.max_tokens or 0)


def estimate_tokens(messages: list[dict[str, Any]]) -> int:
    """About four characters a token, plus a few per message for the role framing.

    Why not tiktoken: it downloads its vocabularies at run time, and providers' own tokenizers
    differ anyway; the estimate only sizes reservations, which are settled to real usage.
    """
    chars = 0
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    chars += len(part["text"])
        if m.get("tool_calls"):
            chars += len(json.dumps(m["tool_calls"]))
    return chars // 4 + 4 * len(messages) + 3


def parse_chat_request(body: Any, *, default_model: str, default_max_tokens: int) -> ChatRequest:
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object with 'model' and 'messages'")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list of {role, content} objects", extra={"param": "messages"})
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise BadRequest(f"messages[{i}] must be an object, got {type(m).__name__}", extra={"param": f"messages[{i}]"})
        role = m.get("role")
        if role not in ROLES:
            raise BadRequest(
                f"messages[{i}].role must be one of {sorted(ROLES)}, got {role!r}",
                extra={"param": f"messages[{i}].role"},
            )
        content = m.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise BadRequest(
                f"messages[{i}].content must be a string or a list of parts, got {type(content).__name__}",
                extra={"param": f"messages[{i}].content"},
            )
    model = body.get("model") or default_model
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required (no default model is configured)", extra={"param": "model"})
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest(f"'stream' must be true or false, got {stream!r}", extra={"param": "stream"})
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise BadRequest(f"'max_tokens' must be a positive integer, got {max_tokens!r}", extra={"param": "max_tokens"})
    temperature = body.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2
    ):
        raise BadRequest(f"'temperature' must be a number from 0 to 2, got {temperature!r}", extra={"param": "temperature"})
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise BadRequest("'stream_options' must be an object", extra={"param": "stream_options"})
    wants_usage = bool(stream_options and stream_options.get("include_usage"))

    payload = dict(body)
    payload["model"] = model
    payload.pop("user", None)  # we attribute users ourselves; providers need not see names
    if stream:
        # ask for the usage chunk so streamed requests are metered exactly; dropped again
        # before the client sees it unless the client asked for it too
        payload["stream_options"] = {**(stream_options or {}), "include_usage": True}
    return ChatRequest(
        payload=payload,
        model=model,
        stream=stream,
        wants_usage_chunk=wants_usage,
        prompt_tokens=estimate_tokens(messages),
        max_tokens=max_tokens if max_tokens is not None else default_max_tokens,
    )
