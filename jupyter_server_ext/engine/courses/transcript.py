"""What the course log keeps of a request: its prompt as the provider got it (after the proxy's
redaction, the course's instruction included) and the answer's text as the provider sent it,
read from every API's shape, JSON or streamed, each within a bound.

The prompt is kept as a list of ``{"role", "text"}`` (an image, a file or a tool's definition
named, not kept); a long conversation keeps its newest messages, each cut at
``MESSAGE_CHARS``, all together at most ``PROMPT_CHARS``, and a first entry of role ``cut``
says what was left out. The answer keeps its first ``ANSWER_CHARS`` characters (its text, then
its tool calls as ``[tool call name(arguments)]``); ``answer_cut`` counts the rest. A request
that asks for several answers (``n``, or a batch of prompts) keeps each, headed ``[choice 2 of
3]``: a student reads them all. Pure: nothing here reads a clock or a store.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..bodies.streams import event_json
from ..interface import Transcript

PROMPT_CHARS = 64_000  # a prompt's text kept, its newest messages first
MESSAGE_CHARS = 16_000  # one message's text kept (its start)
ANSWER_CHARS = 64_000  # an answer's text and tool calls kept (their start)


def _json_text(value: Any) -> str:
    try:
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return ""


def _part_text(part: Any) -> str:
    """One content part or block of any API as text: its text, a tool call or result, or the
    name of what it is (an image, a file, audio) where its content is not text."""
    if isinstance(part, str):
        return part
    if not isinstance(part, dict):
        return ""
    kind = str(part.get("type") or "")
    if kind in ("text", "input_text", "output_text") or (not kind and "text" in part):
        text = part.get("text")
        return text if isinstance(text, str) else ""
    if kind in ("tool_use", "function_call", "server_tool_use"):
        args = part.get("input", part.get("arguments"))
        return f"[tool call {part.get('name')}({_json_text(args)})]"
    if kind in ("tool_result", "function_call_output"):
        out = part.get("content", part.get("output"))
        return _content_text(out) if not isinstance(out, str) else out
    if kind in ("thinking", "redacted_thinking", "reasoning"):
        return ""
    return f"[{kind[:40] or 'part'}]"


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(t for t in map(_part_text, content) if t)
    return "" if content is None else _part_text(content)


def _chat_message(msg: Any) -> dict[str, str]:
    if not isinstance(msg, dict):
        return {"role": "unknown", "text": ""}
    text = _content_text(msg.get("content"))
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict):
            text += f"\n[tool call {fn.get('name')}({_json_text(fn.get('arguments'))})]"
    return {"role": str(msg.get("role") or "unknown")[:20], "text": text}


def _messages_of(payload: Mapping[str, Any], endpoint: str) -> list[dict[str, str]]:
    """Every message of a request, in order, as role and text."""
    if endpoint == "completions":
        prompt = payload.get("prompt")
        texts = prompt if isinstance(prompt, list) else [prompt]
        out = [{"role": "prompt", "text": _json_text(t)} for t in texts if t is not None]
        if payload.get("suffix"):
            out.append({"role": "suffix", "text": _json_text(payload["suffix"])})
        return out
    if endpoint == "embeddings":
        given = payload.get("input")
        items = given if isinstance(given, list) else [given]
        if all(isinstance(i, int) for i in items):  # one input of token ids
            return [{"role": "input", "text": f"[{len(items)} token ids]"}]
        return [
            {"role": "input", "text": i if isinstance(i, str) else f"[{len(i)} token ids]"}
            for i in items
            if isinstance(i, str | list)
        ]
    out = []
    if endpoint == "responses":
        if payload.get("instructions"):
            out.append({"role": "system", "text": _content_text(payload["instructions"])})
        given = payload.get("input")
        if isinstance(given, str):
            return [*out, {"role": "user", "text": given}]
        for item in given if isinstance(given, list) else ():
            if isinstance(item, dict) and ("role" in item or item.get("type") == "message"):
                out.append(_chat_message(item))
            else:
                out.append({"role": "tool", "text": _part_text(item)})
        return out
    if endpoint == "messages" and payload.get("system"):
        out.append({"role": "system", "text": _content_text(payload["system"])})
    given = payload.get("messages")
    return out + [_chat_message(m) for m in (given if isinstance(given, list) else ())]


def prompt_of(payload: Mapping[str, Any], endpoint: str) -> tuple[list[dict[str, str]], int]:
    """The prompt of a request to `endpoint` (its payload as it goes upstream) as the course log
    keeps it, and the characters left out."""
    messages = _messages_of(payload, endpoint)
    kept: list[dict[str, str]] = []
    room, cut, left_out = PROMPT_CHARS, 0, 0
    for msg in reversed(messages):  # the newest first: the student's question is the last
        text = msg["text"]
        if room <= 0:
            cut += len(text)
            left_out += 1
            continue
        keep = min(len(text), MESSAGE_CHARS, room)
        if keep < len(text):
            cut += len(text) - keep
            text = text[:keep] + f" [... {len(msg['text']) - keep} characters not kept]"
        room -= keep
        kept.append({"role": msg["role"], "text": text})
    kept.reverse()
    if left_out:
        kept.insert(0, {"role": "cut", "text": f"[{left_out} earlier messages not kept]"})
    return kept, cut


def begin(courses: tuple[str, ...], payload: Mapping[str, Any], endpoint: str) -> Transcript:
    """A request's transcript, its prompt read from what goes upstream."""
    prompt, cut = prompt_of(payload, endpoint)
    return Transcript(courses, prompt, cut)


MAX_CHOICES = 128  # the most choices a request may ask for (``bodies.request``): no more kept
MAX_CALLS = 64  # tool calls kept of one answer, all its choices together


def add_text(t: Transcript, text: str, choice: int = 0) -> None:
    """More of choice `choice`'s text, kept within ``ANSWER_CHARS`` (all choices together)."""
    if not text:
        return
    if choice not in t.answer and len(t.answer) >= MAX_CHOICES:
        t.answer_cut += len(text)
        return
    room = ANSWER_CHARS - t.answer_chars
    if room < len(text):
        t.answer_cut += len(text) - max(room, 0)
        text = text[: max(room, 0)]
    if text:
        t.answer.setdefault(choice, []).append(text)
        t.answer_chars += len(text)


def add_call(t: Transcript, index: int, name: str | None, arguments: str, choice: int = 0) -> None:
    """A tool call the answer makes (or more of its arguments, streamed), within the bound."""
    call = t.calls.get((choice, index))
    if call is None:
        if len(t.calls) >= MAX_CALLS:  # a stream of indexes without end keeps no more
            t.answer_cut += len(arguments)
            return
        call = t.calls[choice, index] = ["", ""]
        t.answer_chars += 16  # what "[tool call ()]" adds
    if name:
        call[0] = name[:200]
    room = ANSWER_CHARS - t.answer_chars
    if room < len(arguments):
        t.answer_cut += len(arguments) - max(room, 0)
        arguments = arguments[: max(room, 0)]
    call[1] += arguments
    t.answer_chars += len(arguments)


def answer_text(t: Transcript) -> str:
    """The answer as the course log keeps it: its text, then its tool calls; each choice so,
    headed with its number, where the request asked for several."""
    calls: dict[int, str] = {}
    for (choice, _), (name, args) in sorted(t.calls.items()):
        calls[choice] = calls.get(choice, "") + f"\n[tool call {name}({args})]"
    choices = sorted({*t.answer, *calls})
    parts = []
    for choice in choices:
        text = "".join(t.answer.get(choice, ())) + calls.get(choice, "")
        if choices != [0]:
            text = f"[choice {choice + 1} of {choices[-1] + 1}]\n{text}"
        parts.append(text)
    return "\n\n".join(parts)


# -- the answer, in each API's shape --------------------------------------------------------


def read_answer(t: Transcript, obj: Any, endpoint: str) -> None:
    """A whole JSON answer of `endpoint` (a chat completion, a legacy completion, embeddings, a
    Response, a Message) into `t`."""
    if not isinstance(obj, dict):
        return
    if endpoint == "embeddings":
        data = obj.get("data")
        add_text(t, f"[{len(data) if isinstance(data, list) else 0} embeddings]")
    elif endpoint == "responses":
        for n, item in enumerate(obj.get("output") or ()):
            _response_item(t, n, item)
    elif endpoint == "messages":
        for n, block in enumerate(obj.get("content") or ()):
            if isinstance(block, dict) and block.get("type") in ("tool_use", "server_tool_use"):
                add_call(t, n, str(block.get("name")), _json_text(block.get("input")))
            else:
                add_text(t, _part_text(block))
    else:
        for n, choice in _choices(obj):
            said = choice.get("message")
            if isinstance(said, dict):
                _chat_said(t, said, n)
            elif isinstance(choice.get("text"), str):
                add_text(t, choice["text"], n)


def read_event(t: Transcript, ev: bytes, endpoint: str) -> None:
    """One streamed event of `endpoint` into `t` (those that carry none of the answer do
    nothing)."""
    obj = event_json(ev)
    if obj is None:
        return
    if endpoint == "responses":
        kind = obj.get("type")
        if kind == "response.output_text.delta" and isinstance(obj.get("delta"), str):
            add_text(t, obj["delta"])
        elif kind == "response.output_item.done":
            item = obj.get("item")
            if isinstance(item, dict) and item.get("type") != "message":
                _response_item(t, int(obj.get("output_index") or 0), item)
        return
    if endpoint == "messages":
        kind, index = obj.get("type"), obj.get("index")
        at = index if isinstance(index, int) else 0
        if kind == "content_block_start":
            block = obj.get("content_block")
            if isinstance(block, dict) and block.get("type") in ("tool_use", "server_tool_use"):
                add_call(t, at, str(block.get("name")), "")
        elif kind == "content_block_delta" and isinstance(obj.get("delta"), dict):
            delta = obj["delta"]
            if isinstance(delta.get("text"), str):
                add_text(t, delta["text"])
            elif isinstance(delta.get("partial_json"), str):
                add_call(t, at, None, delta["partial_json"])
        return
    for n, choice in _choices(obj):
        delta = choice.get("delta")
        if isinstance(delta, dict):
            _chat_said(t, delta, n)
        elif isinstance(choice.get("text"), str):  # a legacy completion's chunk
            add_text(t, choice["text"], n)


def _choices(obj: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """An answer's (or a chunk's) choices, each with its index: a batch of prompts or `n`
    answers has several, a stream's chunk carries one or more of them."""
    choices = obj.get("choices")
    found = []
    for n, choice in enumerate(choices if isinstance(choices, list) else ()):
        if isinstance(choice, dict):
            index = choice.get("index", n)
            ok = isinstance(index, int) and not isinstance(index, bool) and index >= 0
            found.append((index if ok else n, choice))
    return found


def _chat_said(t: Transcript, said: dict[str, Any], choice: int = 0) -> None:
    """A chat message or a streamed delta: its text (a refusal, an audio answer's transcript
    too) and its tool calls."""
    for key in ("content", "refusal"):
        if isinstance(said.get(key), str | list):
            add_text(t, _content_text(said[key]), choice)
    audio = said.get("audio")
    if isinstance(audio, dict) and isinstance(audio.get("transcript"), str):
        add_text(t, audio["transcript"], choice)
    for n, call in enumerate(said.get("tool_calls") or ()):
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict):
            index = call.get("index", n)
            name = fn.get("name")
            args = fn.get("arguments")
            add_call(
                t,
                index if isinstance(index, int) else n,
                name if isinstance(name, str) else None,
                args if isinstance(args, str) else "",
                choice,
            )


def _response_item(t: Transcript, index: int, item: Any) -> None:
    if not isinstance(item, dict):
        return
    if item.get("type") == "message":
        add_text(t, _content_text(item.get("content")))
    elif item.get("type") == "function_call":
        add_call(t, index, str(item.get("name")), _json_text(item.get("arguments")))
    elif item.get("type") not in ("reasoning", None):
        add_text(t, f"[{str(item['type'])[:40]}]")
