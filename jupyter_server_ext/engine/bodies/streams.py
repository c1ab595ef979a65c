"""One answer in both of its shapes: a JSON completion and a stream of SSE chunks.

A cached answer must come back exactly as the provider gave it, whichever shape the new
request asks for, so both conversions live here and are each other's inverse:

- ``Collector`` rebuilds the JSON completion from stream chunks: every choice, the message
  (content, ``tool_calls`` merged by index, ``refusal``, any other field a provider adds),
  ``logprobs``, ``finish_reason``, top-level fields such as ``system_fingerprint``, and usage;
- ``chunks_of`` turns a completion into the chunks a provider would have streamed;
- ``shape_event`` makes one upstream chunk what the client asked for: the usage chunk and
  the ``"usage": null`` on every other chunk only when the client set ``include_usage``.

Chat completions (``chat.completion``) and legacy completions (``text_completion``) both.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from . import json_codec

DONE = b"data: [DONE]\n\n"

# what a chat stream chunk carries per choice, as opposed to the message it builds
_CHOICE_KEYS = ("index", "delta", "finish_reason", "logprobs")


def sse(obj: Any) -> bytes:
    return b"data: " + json_codec.dumps(obj) + b"\n\n"


def chat_error_event(message: str) -> bytes:
    """The event that ends a chat or legacy completion stream that broke off upstream (a
    request sent as it was in another API's shape carries that API's: ``apis.native``)."""
    return (
        b"data: "
        + json.dumps({"error": {"message": message, "type": "upstream_error"}}).encode()
        + b"\n\n"
    )


def event_json(ev: bytes) -> dict[str, Any] | None:
    """The JSON object of one `data: {...}` event (after its `event:` line, if it has one, as
    the Responses and Messages APIs send them), or None (comments, [DONE], junk)."""
    if not ev.startswith(b"data:"):
        at = ev.find(b"\ndata:")
        if at < 0:
            return None
        ev = ev[at + 1 :]
    data = ev[5:].lstrip(b" ")
    if not data.startswith(b"{"):
        return None
    try:
        obj = json_codec.loads(data)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def merge(acc: dict[str, Any], delta: dict[str, Any]) -> None:
    """Fold one streamed fragment into what came before: text fields are concatenated, lists
    of log-probabilities appended, tool calls merged by their index, anything else replaced
    (a null never erases a value already seen)."""
    for key, value in delta.items():
        old = acc.get(key)
        if key == "tool_calls" and isinstance(value, list):
            calls = old if isinstance(old, list) else acc.setdefault("tool_calls", [])
            if not isinstance(calls, list):
                calls = acc["tool_calls"] = []
            for part in value:
                if not isinstance(part, dict):
                    continue
                idx = part.get("index", len(calls))
                target = next((c for c in calls if c.get("index") == idx), None)
                if target is None:
                    calls.append(dict(part) if "index" in part else {"index": idx, **part})
                    _copy_nested(calls[-1])
                else:
                    merge(target, part)
        elif isinstance(value, str) and isinstance(old, str):
            acc[key] = old + value
        elif isinstance(value, list) and isinstance(old, list):
            old.extend(value)
        elif isinstance(value, dict) and isinstance(old, dict):
            merge(old, value)
        elif value is None and key in acc:
            continue
        elif isinstance(value, dict):
            acc[key] = {}
            merge(acc[key], value)
        elif isinstance(value, list):
            acc[key] = list(value)
        else:
            acc[key] = value


def _copy_nested(d: dict[str, Any]) -> None:
    # a fresh tool call must not share its dicts with the chunk it came from
    for k, v in list(d.items()):
        if isinstance(v, dict):
            d[k] = dict(v)


class Collector:
    """Rebuilds the JSON completion from the chunks of a stream, so it can be cached."""

    def __init__(self, legacy: bool = False) -> None:
        self.legacy = legacy
        self.top: dict[str, Any] = {}
        self.choices: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] | None = None
        self.done = False

    def feed(self, ev: bytes) -> None:
        if ev.startswith(b"data: [DONE]"):
            self.done = True
            return
        obj = event_json(ev)
        if obj is None or "error" in obj:
            return
        for key, value in obj.items():
            if key not in ("choices", "usage", "object") and value is not None:
                self.top[key] = value
        if isinstance(obj.get("usage"), dict):
            self.usage = obj["usage"]
        for choice in obj.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            idx = choice.get("index", 0)
            acc = self.choices.setdefault(
                idx, {"index": idx} if self.legacy else {"index": idx, "message": {}}
            )
            if self.legacy:
                merge(acc, {k: v for k, v in choice.items() if k != "index"})
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                merge(acc["message"], delta)
            for key, value in choice.items():
                if key not in ("index", "delta"):
                    merge(acc, {key: value})

    @property
    def complete(self) -> bool:
        """A whole answer: [DONE] came and every choice has its finish_reason."""
        return (
            self.done
            and bool(self.choices)
            and all(c.get("finish_reason") for c in self.choices.values())
        )

    def completion(self) -> dict[str, Any]:
        choices = []
        for idx in sorted(self.choices):
            choice = dict(self.choices[idx])
            choice.setdefault("logprobs", None)
            if not self.legacy:
                message = dict(choice["message"])
                message.setdefault("role", "assistant")
                message.setdefault("content", None)
                if "tool_calls" in message:
                    message["tool_calls"] = [
                        {k: v for k, v in call.items() if k != "index"}
                        for call in message["tool_calls"]
                    ]
                choice["message"] = message
            choices.append(choice)
        out = {
            "id": self.top.get("id"),
            "object": "text_completion" if self.legacy else "chat.completion",
            **{k: v for k, v in self.top.items() if k != "id"},
            "choices": choices,
        }
        if self.usage is not None:
            out["usage"] = self.usage
        return out


def chunks_of(completion: dict[str, Any], with_usage: bool) -> Iterator[bytes]:
    """The stream a provider sends for `completion`, ending in [DONE]; with `with_usage`
    (the client's include_usage) every chunk carries `"usage": null` and a last chunk the
    usage, as OpenAI sends them."""
    legacy = completion.get("object") == "text_completion"
    base = {k: v for k, v in completion.items() if k not in ("choices", "usage", "object")}
    base["object"] = "text_completion" if legacy else "chat.completion.chunk"
    extra = {"usage": None} if with_usage else {}

    def chunk(choice: dict[str, Any]) -> bytes:
        return sse({**base, "choices": [choice], **extra})

    for choice in completion.get("choices") or ():
        idx = choice.get("index", 0)
        if legacy:
            body = {k: v for k, v in choice.items() if k not in ("index", "finish_reason")}
            yield chunk({"index": idx, **body, "finish_reason": None})
            yield chunk(
                {
                    "index": idx,
                    "text": "",
                    "logprobs": None,
                    "finish_reason": choice.get("finish_reason"),
                }
            )
            continue
        message = dict(choice.get("message") or {})
        content = message.pop("content", None)
        calls = message.pop("tool_calls", None)
        refusal = message.pop("refusal", None)
        role = message.pop("role", "assistant")
        first: dict[str, Any] = {"role": role, "content": "" if content is not None else None}
        if "refusal" in (choice.get("message") or {}):
            first["refusal"] = None
        yield chunk({"index": idx, "delta": first, "logprobs": None, "finish_reason": None})
        if content or message:
            # the text, with its log-probabilities and any other field of the message
            delta = {**message, **({"content": content} if content else {})}
            yield chunk(
                {
                    "index": idx,
                    "delta": delta,
                    "logprobs": choice.get("logprobs"),
                    "finish_reason": None,
                }
            )
        elif choice.get("logprobs") is not None:
            yield chunk(
                {
                    "index": idx,
                    "delta": {},
                    "logprobs": choice.get("logprobs"),
                    "finish_reason": None,
                }
            )
        for i, call in enumerate(calls or ()):
            yield chunk(
                {
                    "index": idx,
                    "delta": {"tool_calls": [{"index": i, **call}]},
                    "logprobs": None,
                    "finish_reason": None,
                }
            )
        if refusal:
            yield chunk(
                {
                    "index": idx,
                    "delta": {"refusal": refusal},
                    "logprobs": None,
                    "finish_reason": None,
                }
            )
        yield chunk(
            {
                "index": idx,
                "delta": {},
                "logprobs": None,
                "finish_reason": choice.get("finish_reason"),
            }
        )
    if with_usage and completion.get("usage") is not None:
        yield sse({**base, "choices": [], "usage": completion["usage"]})
    yield DONE


def shape_event(obj: dict[str, Any], client_wants_usage: bool) -> dict[str, Any] | None:
    """A chunk as the client should see it: None drops it.

    The proxy asks every upstream for usage (to meter streams exactly); a client that did
    not ask gets neither the usage-only chunk nor the `"usage": null` the provider then puts
    on every other chunk.
    """
    if client_wants_usage:
        return obj
    if not obj.get("choices") and "usage" in obj and "error" not in obj:
        return None
    if "usage" in obj:
        obj = {k: v for k, v in obj.items() if k != "usage"}
    return obj
