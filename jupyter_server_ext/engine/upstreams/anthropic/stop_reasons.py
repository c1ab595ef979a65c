"""Why an answer ended, in both wire formats: Anthropic's ``stop_reason`` and OpenAI's
``finish_reason``, declared once for both directions (an Anthropic upstream's answers read as chat
completions, and the Messages API's clients answered from chat: ``apis.messages.answer``)."""

from __future__ import annotations

__all__ = ["TO_ANTHROPIC", "TO_OPENAI"]

# (stop_reason, finish_reason); each side's first pair is the way that side is translated:
# pause_turn (a server tool's long turn cut short) reads as an ended answer, a full context
# window as a length stop, a legacy function_call as a tool use
_PAIRS = (
    ("end_turn", "stop"),
    ("max_tokens", "length"),
    ("tool_use", "tool_calls"),
    ("refusal", "content_filter"),
    ("stop_sequence", "stop"),
    ("pause_turn", "stop"),
    ("model_context_window_exceeded", "length"),
    ("tool_use", "function_call"),
)
TO_OPENAI: dict[str, str] = {}
TO_ANTHROPIC: dict[str, str] = {}
for _anthropic, _openai in _PAIRS:
    TO_OPENAI.setdefault(_anthropic, _openai)
    TO_ANTHROPIC.setdefault(_openai, _anthropic)
