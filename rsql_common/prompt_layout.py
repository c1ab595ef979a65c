"""Where the kernel's prompts keep what is stable: first the instructions (the system message),
then the live context, then the question, the last two in one user message joined at
``QUESTION``. A provider's prompt cache holds a prompt's start, so the next question of the same
session reads the instructions and the context from it; the proxy splits the user message there
to mark its stable part for a cache that caches only what is marked (Anthropic's)."""

from __future__ import annotations

__all__ = ["CONTEXT_HEAD", "QUESTION"]

CONTEXT_HEAD = "Context from my notebook session:\n\n"
QUESTION = "\n\nQuestion:\n"
