"""OpenAI's Responses API, the answer's side: a chat answer as a Response object
(``response_of``), its output items, status and usage; the stream's typed events read these
too (``responses_stream``). The request's side: ``responses``."""

from __future__ import annotations

from typing import Any

from ..chat import (
    CallIds,
    cost,
    count,
    finish_of,
    first_choice,
    first_text,
    json_text,
    obj,
    seq,
)
from .request import namespaced, new_id

# what the response object repeats of its request
_ECHOED = ("instructions", "max_output_tokens", "metadata", "parallel_tool_calls", "temperature")


def usage_of(chat_usage: Any) -> dict[str, Any]:
    u = obj(chat_usage)
    prompt, completion = count(u.get("prompt_tokens")), count(u.get("completion_tokens"))
    cached = count(obj(u.get("prompt_tokens_details")).get("cached_tokens"))
    reasoning = count(obj(u.get("completion_tokens_details")).get("reasoning_tokens"))
    out: dict[str, Any] = {
        "input_tokens": prompt,
        # what the prompt cache gave, and what was written to it (an Anthropic upstream's
        # count; OpenAI's API reference lists both, and its SDK's model requires both)
        "input_tokens_details": {
            "cached_tokens": min(cached, prompt),
            "cache_write_tokens": min(count(u.get("cache_creation_input_tokens")), prompt),
        },
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": min(reasoning, completion)},
        "total_tokens": prompt + completion,
    }
    if cost(u.get("cost_usd")) is not None:
        out["cost_usd"] = u["cost_usd"]
    return out


def status_of(finish: Any) -> tuple[str, dict[str, str] | None]:
    if finish == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def shell(request: dict[str, Any], response_id: str, model: str, created: int) -> dict[str, Any]:
    """A Response object for `request`, without its output: what every event repeats."""
    tools = request.get("tools") if isinstance(request.get("tools"), list) else []
    out: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": "in_progress",
        "error": None,
        "incomplete_details": None,
        "model": model,
        "output": [],
        "previous_response_id": request.get("previous_response_id"),
        "reasoning": request.get("reasoning") or {"effort": None, "summary": None},
        "store": request.get("store", True) is not False,
        "text": request.get("text") or {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": tools,
        "top_p": request.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": None,
        "user": None,
    }
    for name in _ECHOED:
        out[name] = request.get(name, {} if name == "metadata" else None)
    if out["parallel_tool_calls"] is None:
        out["parallel_tool_calls"] = True
    if out["temperature"] is None:
        out["temperature"] = 1.0
    return out


def call_item(
    name: str, call_id: str, arguments: str, names: dict[str, tuple[str, str]]
) -> dict[str, Any]:
    """A function_call output item; a namespaced function's chat name split back (`names`)."""
    item: dict[str, Any] = {
        "type": "function_call",
        "id": new_id("fc"),
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": "completed",
    }
    if name in names:
        item["namespace"], item["name"] = names[name]
    return item


def output_of(
    message: Any, finish: Any, names: dict[str, tuple[str, str]] | None = None
) -> list[dict[str, Any]]:
    """The output items of one chat answer's message: its text (or refusal), then its calls
    (whatever the message's fields hold: one of another type is skipped)."""
    message = obj(message)
    items: list[dict[str, Any]] = []
    done = "completed" if finish not in ("length", "content_filter") else "incomplete"
    text, refusal = first_text(message.get("content")), first_text(message.get("refusal"))
    if text or refusal:
        part = (
            {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            if text
            else {"type": "refusal", "refusal": refusal}
        )
        items.append(
            {
                "type": "message",
                "id": new_id("msg"),
                "status": done,
                "role": "assistant",
                "content": [part],
            }
        )
    ids = CallIds("call")
    for call in seq(message.get("tool_calls")):
        if not isinstance(call, dict):
            continue
        fn = obj(call.get("function"))
        arguments = fn.get("arguments")
        if not isinstance(arguments, str):  # an object some servers send: its JSON text
            arguments = (json_text(arguments) if isinstance(arguments, dict) else None) or ""
        items.append(
            call_item(first_text(fn.get("name")), ids(call.get("id")), arguments, names or {})
        )
    return items


def response_of(
    request: dict[str, Any], answer: Any, response_id: str, created: int
) -> dict[str, Any]:
    """The Response object for a chat completion `answer` to `request` (whatever the answer's
    fields hold)."""
    choice = first_choice(answer)
    finish = finish_of(choice)
    model = first_text(obj(answer).get("model"), request.get("model"))
    out = shell(request, response_id, model, created)
    out["status"], out["incomplete_details"] = status_of(finish)
    out["output"] = output_of(choice.get("message"), finish, namespaced(request.get("tools")))
    out["usage"] = usage_of(obj(answer).get("usage"))
    return out
