"""A chat completion that calls a tool, as OpenAI sends it: what a scripted model answers in
the agent and AI-tool tests. The fake provider streams such an answer as OpenAI streams one
(each call's id and name, then its arguments in fragments) when the request asks for a stream."""

from __future__ import annotations

import json
from typing import Any


def tool_call(
    name: str,
    args: dict[str, Any],
    call_id: str = "call_1",
    *,
    prompt: int = 50,
    completion: int = 10,
) -> dict[str, Any]:
    """The whole answer: one call of tool `name` with `args`, and its usage."""
    return tool_calls((name, args, call_id), prompt=prompt, completion=completion)


def tool_calls(
    *calls: tuple[str, dict[str, Any], str], prompt: int = 50, completion: int = 10
) -> dict[str, Any]:
    """The whole answer: the calls (name, arguments, id) at once, in this order (parallel
    tool calls), and its usage."""
    return {
        "id": "chatcmpl-tool",
        "object": "chat.completion",
        "created": 1,
        "model": "fake-small",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {"name": name, "arguments": json.dumps(args)},
                        }
                        for name, args, call_id in calls
                    ],
                },
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }
