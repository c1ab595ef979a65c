"""What an answer says it used, in the chat form the engine settles: a token count read as an
upstream reported it (``count``), a chat completion's or chunk's usage (``usage_of``), and the
reader a request settles its answer with (``UsageReading``; a request carries its own,
``ChatRequest.usage_reader``): a chat answer's here (``ChatUsage``), a Response's and a
Message's with their APIs (``apis.responses.usage``, ``apis.messages.usage``).

The hosted tools' types as the providers' APIs name them, read as one kind each (``kind_of``,
``chat_hosted_tools``: what the admin governs in ``c.RSQLProxy.hosted_tools``;
``admission.hosted_tools``), as a request asks for them and an answer counts their calls.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

# -- the hosted tools' kinds

# tool types of the providers' APIs -> kind; a dated suffix (web_search_20250305) or _preview
# is read off first
_ALIASES = {
    "web_search": "web_search",
    "browser_search": "web_search",  # Groq's, on chat completions
    "web_fetch": "web_fetch",
    "file_search": "file_search",
    "code_interpreter": "code_interpreter",
    "code_execution": "code_interpreter",
    "bash_code_execution": "code_interpreter",
    "text_editor_code_execution": "code_interpreter",
    "image_generation": "image_generation",
    "mcp": "mcp",
    "computer_use": "computer_use",
    "computer": "computer_use",
    "local_shell": "shell",
    "shell": "shell",
    "bash": "shell",
    "apply_patch": "apply_patch",
    "text_editor": "text_editor",
    "str_replace_editor": "text_editor",
    "str_replace_based_edit_tool": "text_editor",
    "memory": "memory",
    "tool_search_tool_regex": "tool_search",
    "tool_search_tool_bm25": "tool_search",
    "tool_search": "tool_search",
}
_DATED = re.compile(r"(_preview)?(_\d{4}_?\d{2}_?\d{2})?(_preview)?$")


def kind_of(tool_type: str) -> str:
    """The kind of a hosted tool's type as an API names it; an unknown type is its own kind
    (never offered unless an admin names it, so dropped or refused as the default says)."""
    bare = _DATED.sub("", tool_type.strip().lower())
    return _ALIASES.get(bare, bare or "unknown")


# a chat completion's own tool types: the client runs them
CHAT_CLIENT_TOOLS = ("function", "custom")


def chat_hosted_tools(body: Any) -> list[tuple[str, int]]:
    """The hosted tools a chat completion offers: (kind, its index in ``tools``; -1 for
    ``web_search_options``, OpenAI's web search on its search models). Any tool type but a
    function or a free-form one is a provider's: Groq runs ``browser_search``,
    ``code_interpreter`` and remote ``mcp`` servers on chat completions."""
    if not isinstance(body, dict):
        return []
    tools = body.get("tools")
    found = [
        (kind_of(t["type"]), i)
        for i, t in enumerate(tools if isinstance(tools, list) else [])
        if isinstance(t, dict)
        and isinstance(t.get("type"), str)
        and t["type"] not in CHAT_CLIENT_TOOLS
    ]
    if body.get("web_search_options") is not None:
        found.append(("web_search", -1))
    return found


# -- what an answer says it used

_MAX_COUNT = 2**31 - 1  # the most tokens one answer is believed to report


def count(value: Any) -> int | None:
    """A token count an upstream reported: 0 when absent, a non-negative whole number, or None
    when it is anything else (text, a list, a negative number). An answer whose counts are
    unreadable is charged as one that reported nothing, its reservation: never a 500 (a
    server's odd answer is no reason to fail the user's request), never free."""
    if value is None:
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_COUNT:
        return value
    return None


def usage_of(obj: dict[str, Any]) -> dict[str, Any] | None:
    """A chat completion's or chunk's usage (Groq's under ``x_groq``), the dict itself so its
    cost can be added to it; None unless both counts are readable."""
    groq = obj.get("x_groq")
    usage = obj.get("usage") or (groq.get("usage") if isinstance(groq, dict) else None)
    if not isinstance(usage, dict):
        return None
    if count(usage.get("prompt_tokens")) is None or count(usage.get("completion_tokens")) is None:
        return None
    return usage


class UsageReading(Protocol):
    """Reads one answer, JSON or stream event by event, into the chat form's usage (prompt and
    completion tokens, cached and written prompt tokens), and the hosted tools' calls it shows
    (`calls`, by kind; None while the answer has said nothing of them)."""

    calls: dict[str, int] | None

    def wants(self, ev: bytes) -> bool:
        """Whether a stream's event `ev` may say something ``read`` takes."""
        ...

    def read(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """The usage `obj` (an answer, or one event of its stream) says, or None."""
        ...


class ChatUsage:
    """A chat completion's or its chunks' usage, and the hosted tools' calls its
    ``executed_tools`` show (Groq's built-in tools)."""

    def __init__(self) -> None:
        self.calls: dict[str, int] | None = None

    def wants(self, ev: bytes) -> bool:
        return b'"usage"' in ev or b'"executed_tools"' in ev

    def read(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        for choice in obj.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            said = choice.get("message") or choice.get("delta")
            tools = said.get("executed_tools") if isinstance(said, dict) else None
            if not isinstance(tools, list):
                continue
            calls = self.calls if self.calls is not None else {}
            for tool in tools:
                if isinstance(tool, dict):
                    kind = kind_of(str(tool.get("type") or "unknown").split(".")[0])
                    calls[kind] = calls.get(kind, 0) + 1
            self.calls = calls
        return usage_of(obj)
