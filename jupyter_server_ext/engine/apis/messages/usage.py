"""What a Message, or its ``message_start`` and ``message_delta`` events, says it used, in the
chat form the engine settles (``bodies.usage``; Anthropic counts cached and written prompt
tokens apart), and the server tools' calls it shows: the reader of a Messages request sent as
it was (``apis.native``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...bodies.usage import count, kind_of

# the server tools of an Anthropic answer's ``server_tool_use`` blocks that run code: one
# container a request (``Message.container``), billed by its time whether or not the usage
# counts its calls
CODE_TOOLS = ("code_execution", "bash_code_execution", "text_editor_code_execution")


def calls_in_usage(server_tool_use: Any, blocks: Mapping[str, int] | None = None) -> dict[str, int]:
    """The hosted tools' calls an Anthropic usage's ``server_tool_use`` counts, by kind
    (``web_search_requests``, ``web_fetch_requests``, ...): the bill for each kind it counts.
    A kind it does not count (code execution) is charged the calls the answer's own
    ``server_tool_use`` blocks show (`blocks`: by tool name). A kind it counts is not: a search
    past ``max_uses`` shows a block whose result is an error (``max_uses_exceeded``), and
    Anthropic bills no search that errs. Code runs in one container, charged once."""
    calls: dict[str, int] = {}
    counted: set[str] = set()  # the kinds the usage gives a count of, 0 included
    if isinstance(server_tool_use, Mapping):
        for name, n in server_tool_use.items():
            if (
                isinstance(n, int)
                and not isinstance(n, bool)
                and n >= 0
                and name.endswith("_requests")
            ):
                kind = kind_of(name.removesuffix("_requests"))
                counted.add(kind)
                if n > 0:
                    calls[kind] = calls.get(kind, 0) + n
    for name, n in (blocks or {}).items():
        kind = "code_interpreter" if name in CODE_TOOLS else kind_of(name)
        if kind not in counted or kind == "code_interpreter":
            calls[kind] = max(calls.get(kind, 0), n)
    if calls.get("code_interpreter"):
        calls["code_interpreter"] = 1
    return calls


# a Message's counts, in the order the settlement adds them up (written, read, fresh, output)
COUNTS = (
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "input_tokens",
    "output_tokens",
)


def billed_counts(usage: Mapping[str, Any]) -> list[int] | None:
    """(written, read, fresh input, output) a Message's `usage` bills, every pass of it: those
    its ``iterations`` list besides the answer's own (``"type": "message"``), a compaction's
    summary, which the top-level counts leave out and Anthropic bills all the same (its
    compaction page: what is billed is the sum over the iterations). None when a count cannot
    be read (charged as no usage: the reservation)."""
    passes = [usage]
    iterations = usage.get("iterations")
    for it in iterations if isinstance(iterations, list) else ():
        if isinstance(it, Mapping) and it.get("type") != "message":
            passes.append(it)
    total = [0, 0, 0, 0]
    for one in passes:
        counts = [count(one.get(k)) for k in COUNTS]
        if None in counts:
            return None
        total = [t + (n or 0) for t, n in zip(total, counts, strict=True)]
    return total


class MessagesUsage:
    """A Message's usage, its stream's input usage (``message_start``) joined with the rest
    (``message_delta``), and the server tools it ran (``UsageReading``)."""

    def __init__(self) -> None:
        self.calls: dict[str, int] | None = None
        self._input: dict[str, Any] = {}  # a stream's input usage, from message_start
        self._blocks: dict[str, int] = {}  # the server_tool_use blocks, by tool name

    def wants(self, ev: bytes) -> bool:
        return b'"usage"' in ev or b'"server_tool_use"' in ev

    def read(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        kind = obj.get("type")
        if kind == "message_start":
            message = obj.get("message")
            started = message.get("usage") if isinstance(message, dict) else None
            self._input = dict(started) if isinstance(started, dict) else {}
            return None
        if kind == "content_block_start":
            self._server_tool(obj.get("content_block"))
            return None
        if kind == "message":
            for block in obj.get("content") or ():
                self._server_tool(block)
        usage = obj.get("usage")
        if not isinstance(usage, dict) or kind not in ("message", "message_delta"):
            return None
        both = {**self._input, **{k: v for k, v in usage.items() if v is not None}}
        counts = billed_counts(both)
        if counts is None:
            return None
        written, read, fresh, output = counts
        self.calls = calls_in_usage(both.get("server_tool_use"), self._blocks)
        usage = {
            "prompt_tokens": fresh + written + read,
            "completion_tokens": output,
            "cache_creation_input_tokens": written,
            "prompt_tokens_details": {"cached_tokens": read},
        }
        if isinstance(both.get("cache_creation"), dict):  # how long each write is kept
            usage["cache_creation"] = both["cache_creation"]
        return usage

    def _server_tool(self, block: Any) -> None:
        """A Message's ``server_tool_use`` block: a call the provider ran (and bills)."""
        if isinstance(block, dict) and block.get("type") == "server_tool_use":
            name = str(block.get("name") or "unknown")[:60]
            self._blocks[name] = self._blocks.get(name, 0) + 1
