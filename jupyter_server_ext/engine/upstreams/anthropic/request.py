"""A chat request spoken to an Anthropic upstream: the request's side.

Pure functions, no I/O: an OpenAI request body becomes a Messages body (``messages_request``).
The answers are read back in ``answer`` (a Message into a ``chat.completion``, the stream's
events into OpenAI's chunks), errors and rate-limit headers in ``http``; the package re-exports
all three as its interface. References: the Messages API
(docs.anthropic.com/en/api/messages), streaming, errors, rate limits, prompt caching and tool
use; on the other side OpenAI's chat completions reference.

What each OpenAI field becomes. A field is dropped silently only when leaving it out cannot
change what the answer means; a field Anthropic cannot express that would change it is refused
(``Untranslatable``: a 400 naming the field), so no caller gets an answer to a question it did
not ask.

=================================  ===========================================================
OpenAI field                       Anthropic
=================================  ===========================================================
model                              ``model`` argument: the provider-side name
messages                           system / developer -> ``system``; user, assistant, tool ->
                                   ``messages`` (rules below)
max_completion_tokens, max_tokens  ``max_tokens``: the larger; else the default (required)
stop                               ``stop_sequences``; an empty or whitespace-only sequence is
                                   refused (Anthropic refuses it too)
temperature                        passed; above 1 refused (Anthropic's range is 0 to 1)
top_p                              passed; outside 0 to 1 refused
tools                              function tools: name, description, parameters ->
                                   input_schema, strict, cache_control; other kinds, and
                                   names Anthropic's pattern refuses, refused
tool_choice                        auto, required -> any, none, a function -> tool;
                                   any other form refused
parallel_tool_calls: false         ``tool_choice.disable_parallel_tool_use``
user (else safety_identifier)      ``metadata.user_id``
stream                             passed
n                                  1 dropped; more refused (one answer per request)
logprobs, top_logprobs             off dropped; asked for refused (no log-probabilities)
response_format                    text dropped; json_object, json_schema refused (the
                                   answer would not be held to the format)
logit_bias                         empty dropped; any bias refused (it bans or forces tokens,
                                   and OpenAI token ids mean nothing to Claude)
functions, function_call           refused: the deprecated form of tools
audio, modalities with audio       refused: no audio
web_search_options                 refused: Anthropic's web search is a billed server tool
stream_options                     dropped: Anthropic's stream always carries usage
seed, presence_penalty,            dropped: sampling hints that promise nothing about the
frequency_penalty,                 answer's content
reasoning_effort, verbosity
metadata, store, service_tier,     dropped: about OpenAI's service, not the answer
prompt_cache_key, prediction
anything else                      dropped: Anthropic refuses unknown fields
=================================  ===========================================================

Messages. System and developer messages, wherever they stand, join the top-level ``system``
in order (text only). Text parts become text blocks and empty ones are left out (Anthropic
refuses empty text blocks); ``image_url`` parts become image blocks (a ``data:`` URL a base64
source, an http(s) URL a url source); a base64 PDF ``file`` part a document block; assistant
``tool_calls`` become ``tool_use`` blocks (the arguments JSON parsed: invalid JSON is refused,
naming the message, and so is an id Anthropic's pattern refuses); ``tool`` messages become
``tool_result`` blocks in a user turn. Turns of one role in a row are merged into one, so
consecutive tool results, and the user message after them, make one user turn with the results
first, as Anthropic requires. ``cache_control`` on a part, a tool or a message (then on its last
block) is passed through, when it is an object. A conversation ending in an assistant message
is sent as is: Anthropic continues that text.

Whatever JSON a field holds, the translation gives a body Anthropic takes, or refuses with
``Untranslatable`` naming the field (a string ``image_url``, an integer ``stop``, a
``cache_control`` that is no object): a request that raised here was a 500 whose slot counted
at the provider's window (#35), and one Anthropic refuses still counts there.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ...errors import Untranslatable

__all__ = ["ANTHROPIC_VERSION", "Untranslatable", "messages_request", "tool_use_block"]

ANTHROPIC_VERSION = "2023-06-01"  # the anthropic-version header value sent

_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")  # Anthropic's pattern for a tool's name
_TOOL_ID = re.compile(r"[A-Za-z0-9_-]+")  # Anthropic's pattern for a tool_use id
_DATA_URL = re.compile(r"data:([^;,]+)((?:;[^;,]*)*),(.*)\Z", re.S)


# -- request -------------------------------------------------------------------------------


def tool_use_block(call_id: Any, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """A tool call as Anthropic's ``tool_use`` block (its arguments already a JSON object), in
    a request to an Anthropic upstream and in an answer to a client of the Messages API alike
    (``apis.messages.answer``)."""
    return {"type": "tool_use", "id": call_id, "name": name, "input": arguments}


def messages_request(
    payload: dict[str, Any], *, model: str, default_max_tokens: int
) -> dict[str, Any]:
    """OpenAI chat.completions body -> Anthropic Messages body for provider-side model `model`."""
    _refuse_unexpressible(payload)
    system, turns = _conversation(payload.get("messages") or [])
    body: dict[str, Any] = {"model": model, "max_tokens": _max_tokens(payload, default_max_tokens)}
    if system is not None:
        body["system"] = system
    body["messages"] = turns
    _sampling(payload, body)
    _tools(payload, body)
    user = payload.get("user") or payload.get("safety_identifier")
    if isinstance(user, str) and user:
        body["metadata"] = {"user_id": user}
    if payload.get("stream"):
        body["stream"] = True
    return body


def _refuse_unexpressible(p: dict[str, Any]) -> None:
    n = p.get("n")
    if n is not None and n != 1:
        raise Untranslatable(
            f"'n' is {n}: Anthropic's Messages API gives one answer per request; "
            "send n=1 and ask again for more answers",
            "n",
            code="unsupported_value",
        )
    for name in ("logprobs", "top_logprobs"):
        if p.get(name):
            raise Untranslatable(
                f"'{name}' cannot be served: Anthropic's Messages API gives no log-probabilities",
                name,
            )
    fmt = p.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else fmt
    if fmt is not None and kind != "text":
        raise Untranslatable(
            f"'response_format' {str(kind)[:40]!r} cannot be served: Anthropic's Messages "
            "API would not hold the answer to it; ask for JSON in the prompt instead",
            "response_format",
            code="unsupported_value",
        )
    if p.get("logit_bias"):
        raise Untranslatable(
            "'logit_bias' cannot be served: its token ids are OpenAI's, and Anthropic's "
            "Messages API has no token biases",
            "logit_bias",
        )
    for name in ("functions", "function_call"):
        if p.get(name) is not None:
            raise Untranslatable(
                f"'{name}' is OpenAI's deprecated form of tools; send 'tools' and "
                "'tool_choice' instead",
                name,
            )
    modalities = p.get("modalities")
    if p.get("audio") is not None or (isinstance(modalities, list) and "audio" in modalities):
        raise Untranslatable("audio output cannot be served by Anthropic's Messages API", "audio")
    if p.get("web_search_options") is not None:
        raise Untranslatable(
            "'web_search_options' cannot be served through this upstream", "web_search_options"
        )


def _max_tokens(p: dict[str, Any], default: int) -> int:
    # both may come; a provider may honour either, so the larger one (as request.py reserves)
    given = [
        v
        for v in (p.get("max_completion_tokens"), p.get("max_tokens"))
        if isinstance(v, int) and not isinstance(v, bool)
    ]
    if not given and default < 1:
        # Anthropic reads max_tokens 0 as "only warm the prompt cache": an empty answer, billed
        raise ValueError(f"default_max_tokens must be at least 1, got {default}")
    return max(given) if given else default


def _number(p: dict[str, Any], name: str) -> float | None:
    value = p.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise Untranslatable(f"'{name}' must be a number", name, code="unsupported_value")
    return value


def _sampling(p: dict[str, Any], body: dict[str, Any]) -> None:
    temperature = _number(p, "temperature")
    if temperature is not None:
        if temperature > 1:
            raise Untranslatable(
                f"'temperature' is {temperature}: Anthropic accepts 0 to 1 (OpenAI's 0 to 2 is another "
                "scale, so it is not rescaled); send a value from 0 to 1",
                "temperature",
                code="unsupported_value",
            )
        body["temperature"] = temperature
    top_p = _number(p, "top_p")
    if top_p is not None:
        if not 0 <= top_p <= 1:
            raise Untranslatable(
                f"'top_p' is {top_p}: it is a probability, from 0 to 1",
                "top_p",
                code="unsupported_value",
            )
        body["top_p"] = top_p
    stop = p.get("stop")
    if stop is None:
        return
    if not isinstance(stop, str | list):
        raise Untranslatable(
            "'stop' must be a string or a list of strings", "stop", code="unsupported_value"
        )
    sequences = [stop] if isinstance(stop, str) else list(stop)
    for seq in sequences:
        if not isinstance(seq, str) or not seq.strip():
            raise Untranslatable(
                f"'stop' holds {seq!r:.40}: Anthropic refuses stop sequences that are "
                "empty or only whitespace",
                "stop",
                code="unsupported_value",
            )
    if sequences:
        body["stop_sequences"] = sequences


def _tools(p: dict[str, Any], body: dict[str, Any]) -> None:
    tools = p.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise Untranslatable("'tools' must be a list of function tools", "tools")
    if tools:
        body["tools"] = [_tool(t, i) for i, t in enumerate(tools)]
    choice = _tool_choice(p.get("tool_choice"), p.get("parallel_tool_calls"))
    if choice is not None and "tools" in body:  # with no tools there is nothing to choose
        body["tool_choice"] = choice


def _tool(tool: Any, i: int) -> dict[str, Any]:
    where = f"tools[{i}]"
    kind = tool.get("type", "function") if isinstance(tool, dict) else None
    if kind != "function":
        raise Untranslatable(
            f"{where}: only function tools can be sent to Anthropic, got {str(kind)[:40]!r}",
            f"{where}.type",
            code="unsupported_value",
        )
    fn = tool.get("function")
    name = fn.get("name") if isinstance(fn, dict) else None
    if not isinstance(name, str) or not name:
        raise Untranslatable(f"{where}.function.name is required", f"{where}.function.name")
    if not _TOOL_NAME.fullmatch(name):
        raise Untranslatable(
            f"{where}.function.name {name[:40]!r}: Anthropic takes tool names of 1 to 128 "
            "letters, digits, '_' and '-'",
            f"{where}.function.name",
            code="unsupported_value",
        )
    schema = fn.get("parameters") if isinstance(fn.get("parameters"), dict) else {}
    out: dict[str, Any] = {"name": name, "input_schema": {"type": "object", **schema}}
    if isinstance(fn.get("description"), str):
        out["description"] = fn["description"]
    if fn.get("strict") is True:
        out["strict"] = True
    cache = _cache_control(tool, where) or _cache_control(fn, f"{where}.function")
    if cache:
        out["cache_control"] = cache
    return out


def _cache_control(holder: dict[str, Any], where: str) -> dict[str, Any] | None:
    """`holder`'s cache_control: an object (Anthropic's ``{"type": "ephemeral"}``), or None."""
    cache = holder.get("cache_control")
    if not cache:
        return None
    if not isinstance(cache, dict):
        raise Untranslatable(
            f'{where}.cache_control must be an object such as {{"type": "ephemeral"}}',
            f"{where}.cache_control",
            code="unsupported_value",
        )
    return cache


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    out: dict[str, Any] | None
    if choice is None:
        out = None
    elif choice in ("auto", "none"):
        out = {"type": choice}
    elif choice == "required":
        out = {"type": "any"}
    elif (
        isinstance(choice, dict)
        and choice.get("type") == "function"
        and isinstance(choice.get("function"), dict)
        and isinstance(choice["function"].get("name"), str)
    ):
        out = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise Untranslatable(
            f"'tool_choice' {json.dumps(choice)[:60]} cannot be served: Anthropic takes "
            "'auto', 'required', 'none' or one named function",
            "tool_choice",
            code="unsupported_value",
        )
    if parallel is False and (out is None or out["type"] != "none"):
        out = {**(out or {"type": "auto"}), "disable_parallel_tool_use": True}
    return out


# -- messages ------------------------------------------------------------------------------


def _conversation(
    messages: list[Any],
) -> tuple[str | list[dict[str, Any]] | None, list[dict[str, Any]]]:
    """(the top-level system, the turns) of an OpenAI conversation."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        role = m.get("role")
        if role in ("system", "developer"):
            system.extend(_with_cache(_parts(m.get("content"), f"messages[{i}]", ("text",)), m, i))
            continue
        if role == "user":
            content: str | list[dict[str, Any]] = _user_content(m, i)
        elif role == "assistant":
            content = _assistant_content(m, i)
        elif role == "tool":
            role, content = "user", _with_cache([_tool_result(m, i)], m, i)
        else:
            raise Untranslatable(
                f"messages[{i}].role {str(role)[:20]!r} cannot be sent to Anthropic; "
                "send tool results as 'tool' messages",
                f"messages[{i}].role",
            )
        if content:  # an empty assistant turn says nothing, and Anthropic refuses empty content
            _append(turns, role, content)
    if not system:
        return None, turns
    if len(system) == 1 and "cache_control" not in system[0]:
        return system[0]["text"], turns
    return system, turns


def _append(turns: list[dict[str, Any]], role: str, content: str | list[dict[str, Any]]) -> None:
    if not turns or turns[-1]["role"] != role:
        turns.append({"role": role, "content": content})
        return
    # one turn per role in a row: tool results first, then what follows, in order
    prev = turns[-1]["content"]
    turns[-1]["content"] = _blocks(prev) + _blocks(content)


def _blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _with_cache(blocks: list[dict[str, Any]], m: dict[str, Any], i: int) -> list[dict[str, Any]]:
    """A message-level cache_control (as LiteLLM accepts it) marks the message's last block."""
    cache = _cache_control(m, f"messages[{i}]")
    if cache and blocks:
        blocks[-1] = {**blocks[-1], "cache_control": cache}
    return blocks


def _user_content(m: dict[str, Any], i: int) -> str | list[dict[str, Any]]:
    content = m.get("content")
    if isinstance(content, str) and not m.get("cache_control"):
        return content
    return _with_cache(_parts(content, f"messages[{i}]", ("text", "image_url", "file")), m, i)


def _assistant_content(m: dict[str, Any], i: int) -> str | list[dict[str, Any]]:
    if m.get("function_call") is not None:
        raise Untranslatable(
            f"messages[{i}].function_call is OpenAI's deprecated form of tool_calls; "
            "send tool_calls",
            f"messages[{i}].function_call",
        )
    content, calls = m.get("content"), m.get("tool_calls") or []
    if not isinstance(calls, list):
        raise Untranslatable(
            f"messages[{i}].tool_calls must be a list of tool calls", f"messages[{i}].tool_calls"
        )
    if isinstance(content, str) and not calls and not m.get("cache_control"):
        return content
    blocks = _parts(content, f"messages[{i}]", ("text", "refusal"))
    blocks += [_tool_use(call, f"messages[{i}].tool_calls[{j}]") for j, call in enumerate(calls)]
    return _with_cache(blocks, m, i)


def _parts(content: Any, where: str, allowed: tuple[str, ...]) -> list[dict[str, Any]]:
    """Content blocks of an OpenAI message's content (a string or a list of parts)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    out = []
    for j, part in enumerate(content):
        kind = part.get("type")
        here = f"{where}.content[{j}]"
        if kind not in allowed:
            raise Untranslatable(
                f"{here}: a {str(kind)[:30]!r} part cannot be sent to Anthropic here "
                f"(accepted: {', '.join(allowed)})",
                f"{here}.type",
                code="unsupported_value",
            )
        block = _part(part, kind, here)
        if block is not None:
            cache = _cache_control(part, here)
            if cache:
                block["cache_control"] = cache
            out.append(block)
    return out


def _part(part: dict[str, Any], kind: str, where: str) -> dict[str, Any] | None:
    if kind in ("text", "refusal"):
        text = part.get(kind)
        return {"type": "text", "text": text} if isinstance(text, str) and text else None
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else None
        return {"type": "image", "source": _image_source(url, f"{where}.image_url.url")}
    file = part.get("file")
    data = file.get("file_data") if isinstance(file, dict) else None  # a PDF as a data: URL only
    m = _DATA_URL.match(data) if isinstance(data, str) else None
    if m is None or m.group(1).lower() != "application/pdf" or ";base64" not in m.group(2):
        raise Untranslatable(
            f"{where}: only a PDF sent as a base64 data: URL in file_data can be sent to "
            "Anthropic (no file ids)",
            f"{where}.file",
            code="unsupported_value",
        )
    return {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": m.group(3)},
    }


def _image_source(url: Any, param: str) -> dict[str, Any]:
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        return {"type": "url", "url": url}
    m = _DATA_URL.match(url) if isinstance(url, str) else None
    if m is None or ";base64" not in m.group(2):
        raise Untranslatable(
            "an image must be an http(s) URL or a base64 data: URL", param, code="unsupported_value"
        )
    media = m.group(1).lower()
    if media not in _IMAGE_TYPES:
        raise Untranslatable(
            f"image type {media[:40]!r} cannot be sent to Anthropic (accepted: "
            f"{', '.join(_IMAGE_TYPES)})",
            param,
            code="unsupported_value",
        )
    return {"type": "base64", "media_type": media, "data": m.group(3)}


def _tool_use(call: Any, where: str) -> dict[str, Any]:
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict) or call.get("type", "function") != "function":
        raise Untranslatable(f"{where}: only function tool calls can be sent to Anthropic", where)
    raw = fn.get("arguments") or "{}"
    try:
        args = json.loads(raw)
    except (TypeError, ValueError):
        args = None
    if not isinstance(args, dict):  # Anthropic's tool input is a JSON object
        raise Untranslatable(
            f"{where}.function.arguments is not a JSON object, so it cannot be sent to "
            f"Anthropic as the tool call's input: {str(raw)[:60]!r}",
            f"{where}.function.arguments",
        )
    call_id, name = call.get("id"), fn.get("name")
    if not isinstance(call_id, str) or not _TOOL_ID.fullmatch(call_id):
        raise Untranslatable(
            f"{where}.id must be a string of letters, digits, '_' and '-', as Anthropic's tool "
            f"call ids are: got {json.dumps(call_id)[:40]}",
            f"{where}.id",
            code="unsupported_value",
        )
    if not isinstance(name, str) or not name:
        raise Untranslatable(f"{where}.function.name is required", f"{where}.function.name")
    return tool_use_block(call_id, name, args)


def _tool_result(m: dict[str, Any], i: int) -> dict[str, Any]:
    call_id = m.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise Untranslatable(
            f"messages[{i}].tool_call_id is required: Anthropic pairs every tool result "
            "with its call",
            f"messages[{i}].tool_call_id",
        )
    out: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    content = m.get("content")
    if isinstance(content, str):
        if content:
            out["content"] = content
    elif content:
        out["content"] = _parts(content, f"messages[{i}]", ("text",))
    return out
