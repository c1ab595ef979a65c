"""A chat answer (or one chunk of its stream) as an upstream sent it, read field by field.

The Responses and Messages edges turn the chat answer back into their own shapes. That answer
comes from whatever server the admin configured, self-hosted ones included, and its fields can
hold anything JSON can: a ``delta`` that is a string, ``choices: ["x"]``, a ``function`` that is
a string, a list as a tool call's ``index``, a count that is not a number. Each reader here
takes any JSON and gives back the type the translators expect (an empty one when the field is
not of it), so a field of another type is skipped, never an exception: a 500 for a JSON answer,
or a stream cut off without its terminal event.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from typing import Any

MAX_COUNT = 2**31 - 1  # the most tokens an answer is believed to report (as the transport reads)


def obj(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def seq(value: Any) -> list[Any]:
    """`value` if it is a JSON array, else an empty one."""
    return value if isinstance(value, list) else []


def first_text(*values: Any) -> str:
    """The first of `values` that is a non-empty string, or ""."""
    return next((v for v in values if isinstance(v, str) and v), "")


def count(value: Any) -> int:
    """A token count: a non-negative integer (a whole number, or its digits), at most
    ``MAX_COUNT``; 0 for anything else."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        value = int(value)
    if isinstance(value, float) and math.isfinite(value):
        value = int(value)
    if isinstance(value, int):
        return max(0, min(value, MAX_COUNT))
    return 0


def cost(value: Any) -> float | None:
    """A cost in dollars, when `value` is one (a finite, non-negative number)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        if math.isfinite(number) and number >= 0:
            return number
    return None


def first_choice(answer: Any) -> dict[str, Any]:
    """The first choice of a chat completion (the edges answer with one), or an empty one."""
    choices = seq(obj(answer).get("choices"))
    return obj(choices[0]) if choices else {}


def finish_of(choice: dict[str, Any]) -> str | None:
    reason = choice.get("finish_reason")
    return reason if isinstance(reason, str) and reason else None


def call_index(fragment: dict[str, Any]) -> int | None:
    """Which tool call a streamed fragment adds to: its ``index`` (none given: the first), or
    None when the index is not a whole number (the fragment cannot be placed)."""
    index = fragment.get("index")
    if index is None:
        return 0
    if isinstance(index, int) and not isinstance(index, bool):
        return index
    return None


def json_object(raw: Any) -> dict[str, Any] | None:
    """Tool-call arguments as the JSON object they should be, or None: text that is not JSON,
    JSON that is not an object, ``NaN`` or ``Infinity`` (no JSON client reads them), or nesting
    past what the decoder (or the encoder that writes the answer) can take. None or "" (a call
    with no arguments) is an empty object."""
    if raw is None:
        return {}
    if isinstance(raw, dict):
        raw = json_text(raw)
    if not isinstance(raw, str):
        return None
    try:
        parsed = json.loads(raw or "{}", parse_constant=_refuse)
        if isinstance(parsed, dict):
            json.dumps(parsed)  # the answer that carries it is written with the same encoder
            return parsed
    except (ValueError, TypeError, RecursionError):
        pass
    return None


def json_text(value: Any) -> str | None:
    """`value` as strict JSON text, or None when it cannot be (NaN, nesting past the encoder)."""
    try:
        return json.dumps(value, allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        return None


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


class CallIds:
    """Tool-call ids, one per call: an id an upstream sent twice (or none) is given a new one,
    so a client's answer to one call cannot be read as the answer to another."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.seen: set[str] = set()

    def __call__(self, given: Any) -> str:
        out = given if isinstance(given, str) and given and given not in self.seen else None
        if out is None:
            out = f"{self.prefix}_{uuid.uuid4().hex[:24]}"
        self.seen.add(out)
        return out


@dataclass(frozen=True)
class ChunkParts:
    """What one chat-completions stream chunk says, as every stream translator reads it: an
    error chunk, or the usage and, in order, choice 0's text, tool-call fragments and finish
    reason (``("text", str)``, ``("call", fragment)``, ``("finish", reason)``)."""

    error: Any = None
    usage: dict[str, Any] | None = None
    parts: tuple[tuple[str, Any], ...] = ()


def chunk_parts(chunk: dict[str, Any]) -> ChunkParts:
    """Read one chat chunk (a JSON object) into :class:`ChunkParts`; other choices than the
    first are left out (the Messages and Responses APIs have one answer)."""
    if chunk.get("error") is not None and not chunk.get("choices"):
        return ChunkParts(error=chunk["error"])
    usage = chunk["usage"] if obj(chunk.get("usage")) else None
    parts: list[tuple[str, Any]] = []
    for choice in seq(chunk.get("choices")):
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
            continue
        delta = obj(choice.get("delta"))
        text = first_text(delta.get("content"), delta.get("refusal"))
        if text:
            parts.append(("text", text))
        parts += [("call", frag) for frag in seq(delta.get("tool_calls"))]
        finish = finish_of(choice)
        if finish:
            parts.append(("finish", finish))
    return ChunkParts(None, usage, tuple(parts))
