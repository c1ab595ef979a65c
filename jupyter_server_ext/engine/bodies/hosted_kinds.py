"""The hosted tools' types as the providers' APIs name them, read as one kind each (what the
admin governs in ``c.RSQLProxy.hosted_tools``; ``admission.hosted_tools``)."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["chat_hosted_tools", "kind_of"]

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
