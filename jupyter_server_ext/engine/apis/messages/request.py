"""Anthropic's Messages API (``POST v1/messages``) onto chat completions: the request's side.

Pure functions, no I/O: ``to_chat`` turns a Messages request into a chat-completions body, a
tolerant reader (``left_out``): a shape Anthropic's API accepts is never refused for its shape;
what the chat form cannot carry is dropped and named, or, when its loss would change the
answer, refused naming it. The answer's side (a Message, the stream's events, errors):
``messages_answer``. References: Anthropic's Messages API page.

The chat form is the one the engine, and the upstreams of every kind, read: an Anthropic
upstream gets the request as it came (``native``); its chat form is still read, for the bounds
and the estimate.

What each Messages field becomes:

===========================  ===================================================================
Messages                     chat completions
===========================  ===================================================================
system (string or blocks)    a system message (text parts, ``cache_control`` kept)
messages: a system turn      a system message at its own position (Anthropic takes them anywhere
                             in ``messages``; Claude Code sends its environment so)
messages: text blocks        text parts (``cache_control`` kept)
image (base64, url)          ``image_url`` (a data: URL, or the URL); by file id: refused (an
                             Anthropic upstream, which reads it, is reserved for an image)
document (base64 PDF, text,  a ``file`` part, or its text, or its own blocks; by URL or file
content)                     id: refused (the model would not read it; an Anthropic upstream is
                             reserved for an unseen PDF: ``left_out.fetched_file``); a source of
                             another type: refused, as no price can be reserved for it
search_result                its title, source and text, as text
tool_use (assistant)         the assistant's ``tool_calls``, the input as JSON arguments
tool_result (user)           a ``tool`` message (its text); images in it follow as a user message
thinking, redacted_thinking  dropped: earlier reasoning only the model that wrote it can read
a hosted tool's past blocks  dropped (``server_tool_use``, ``web_search_tool_result``, ...)
other blocks                 their text when they have one, else dropped
tools (input_schema)         function tools (``cache_control`` kept); Anthropic's own tools (web
                             search, code execution, bash, text editor, computer) are hosted
                             tools, which the chat form never carries: the edge runs, drops or
                             refuses each as the admin says (``admission.hosted_tools``)
tool_choice                  auto, any -> required, none, tool -> one function;
                             ``disable_parallel_tool_use`` -> parallel_tool_calls false
max_tokens (required)        max_completion_tokens
stop_sequences               stop
temperature, top_p, stream   as they are
metadata.user_id             set by the proxy (``forward_user``), never the caller's
mcp_servers                  the MCP connector: a hosted tool, as above
any other field              dropped (``top_k``, ``thinking``, ``service_tier``, ``container``,
                             ``context_management``, fields new to the API)
===========================  ===================================================================

Dropped names go back in the answer's ``x-rsql-dropped`` header.
"""

from __future__ import annotations

import json
from typing import Any

from ...bodies.left_out import LeftOut, fetched_file, fetched_image
from ...bodies.usage import kind_of
from ...errors import BadRequest

MAX_TOKENS = 2**31 - 1  # the largest answer limit the chat form takes
# the fields ``to_chat`` reads; every other one is dropped (named in x-rsql-dropped)
READ = frozenset(
    (
        "model",
        "max_tokens",
        "messages",
        "system",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "tools",
        "tool_choice",
        "metadata",
        "mcp_servers",
    )
)
# an assistant's blocks of a hosted tool's earlier calls: nothing a chat upstream can read
HOSTED_BLOCKS = ("server_tool_use", "mcp_tool_use", "mcp_tool_result", "container_upload")


def _bad(message: str, param: str) -> BadRequest:
    return BadRequest(message, extra={"param": param})


# -- request ---------------------------------------------------------------------------------


def to_chat(body: Any, left: LeftOut | None = None) -> dict[str, Any]:
    """A Messages request as a chat-completions body; ``BadRequest`` names a field that is
    wrong in Anthropic's API too. What the chat form cannot carry goes into `left`."""
    left = left if left is not None else LeftOut()
    if not isinstance(body, dict):
        raise BadRequest(
            "request body must be a JSON object with 'model', 'max_tokens' and 'messages'"
        )
    max_tokens = body.get("max_tokens")
    if (
        isinstance(max_tokens, bool)
        or not isinstance(max_tokens, int)
        or not 1 <= max_tokens <= MAX_TOKENS
    ):
        raise _bad(f"'max_tokens' is required: an integer from 1 to {MAX_TOKENS}", "max_tokens")
    if body.get("mcp_servers"):  # the provider's MCP connector: a hosted tool
        left.hosted.append(("mcp", "mcp_servers"))
    for name in body:
        if name not in READ:
            left.drop(name, body[name])
    chat: dict[str, Any] = {"max_completion_tokens": max_tokens}
    if "model" in body:
        chat["model"] = body["model"]
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system is not None:
        messages.append({"role": "system", "content": _system(system, "system", left)})
    turns = body.get("messages")
    if not isinstance(turns, list) or not turns:
        raise _bad("'messages' must be a non-empty list of {role, content} turns", "messages")
    for i, turn in enumerate(turns):
        messages += _turn(turn, f"messages[{i}]", left)
    chat["messages"] = messages
    for name in ("temperature", "top_p", "stream"):
        if name in body:
            chat[name] = body[name]
    stop = body.get("stop_sequences")
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise _bad("'stop_sequences' must be a list of strings", "stop_sequences")
        if stop:
            chat["stop"] = stop
    if body.get("tools"):
        chat["tools"] = _tools(body["tools"], left)
        if not chat["tools"]:  # only hosted tools: none the chat form carries
            del chat["tools"]
    choice = body.get("tool_choice")
    if choice is not None:
        _tool_choice(choice, chat)
    if chat.get("stream"):
        chat["stream_options"] = {"include_usage": True}
    return chat


def _system(system: Any, where: str, left: LeftOut) -> str | list[dict[str, Any]]:
    """System text: a string, or its text blocks (``cache_control`` kept; others dropped)."""
    if isinstance(system, str):
        return system
    if not isinstance(system, list):
        raise _bad(f"'{where}' must be a string or a list of text blocks", where)
    parts = []
    for j, block in enumerate(system):
        if not isinstance(block, dict):
            raise _bad(f"{where}[{j}] must be a block object", f"{where}[{j}]")
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            parts.append(_with_cache({"type": "text", "text": block["text"]}, block))
        else:
            left.drop(f"{where.split('[')[0]}:{block.get('type')}", block)
    return parts


def _with_cache(part: dict[str, Any], block: dict[str, Any]) -> dict[str, Any]:
    if isinstance(block.get("cache_control"), dict):
        part["cache_control"] = block["cache_control"]
    return part


def _turn(turn: Any, where: str, left: LeftOut) -> list[dict[str, Any]]:
    if not isinstance(turn, dict):
        raise _bad(f"{where} must be an object", where)
    role, content = turn.get("role"), turn.get("content")
    if role == "system":  # Anthropic takes system turns at any position: kept at theirs
        return [{"role": "system", "content": _system(content, f"{where}.content", left)}]
    if role not in ("user", "assistant"):
        raise _bad(
            f"{where}.role must be user, assistant or system, got {str(role)[:20]!r}",
            f"{where}.role",
        )
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise _bad(f"{where}.content must be a string or a list of blocks", f"{where}.content")
    if role == "assistant":
        return [_assistant(content, where, left)]
    return _user(content, where, left)


def _assistant(blocks: list[Any], where: str, left: LeftOut) -> dict[str, Any]:
    text: list[str] = []
    calls = []
    for j, block in enumerate(blocks):
        here = f"{where}.content[{j}]"
        if not isinstance(block, dict):
            raise _bad(f"{here} must be a block object", here)
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            text.append(block["text"])
        elif kind == "tool_use":
            calls.append(_tool_use(block, here))
        elif (
            kind in ("thinking", "redacted_thinking")
            or kind in HOSTED_BLOCKS
            or (isinstance(kind, str) and kind.endswith("_tool_result"))
        ):
            left.drop(str(kind), block)  # earlier reasoning; a hosted tool's earlier call
        elif isinstance(block.get("text"), str):  # a block new to us that says something
            text.append(block["text"])
        else:
            left.drop(str(kind)[:40], block)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        message["tool_calls"] = calls
    elif message["content"] is None:
        message["content"] = ""
    return message


def _tool_use(block: dict[str, Any], where: str) -> dict[str, Any]:
    call_id, name, args = block.get("id"), block.get("name"), block.get("input", {})
    if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
        raise _bad(f"{where}: a tool_use block needs its 'id' and 'name'", where)
    if not isinstance(args, dict):
        raise _bad(f"{where}.input must be an object", f"{where}.input")
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args)},
    }


def _user(blocks: list[Any], where: str, left: LeftOut) -> list[dict[str, Any]]:
    """A user turn: its tool results first (each a tool message), then what else it says."""
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        here = f"{where}.content[{j}]"
        if not isinstance(block, dict):
            raise _bad(f"{here} must be a block object", here)
        if block.get("type") == "tool_result":
            message, images = _tool_result(block, here, left)
            results.append(message)
            parts += images
        else:
            parts += _block(block, here, left)
    out = list(results)
    if parts:
        out.append({"role": "user", "content": parts})
    return out


def _block(block: dict[str, Any], where: str, left: LeftOut) -> list[dict[str, Any]]:
    """A user block as chat content parts (none when it is left out: ``left``)."""
    kind = block.get("type")
    if kind == "text":
        if not isinstance(block.get("text"), str):
            raise _bad(f"{where}.text must be a string", f"{where}.text")
        return [_with_cache({"type": "text", "text": block["text"]}, block)]
    raw = block.get("source")
    source: dict[str, Any] = raw if isinstance(raw, dict) else {}
    stype, data = source.get("type"), source.get("data")
    if kind == "image":
        if stype == "base64" and isinstance(data, str):
            url = f"data:{source.get('media_type', 'image/png')};base64,{data}"
        elif stype == "url" and isinstance(source.get("url"), str):
            url = source["url"]
        elif stype == "file":
            left.lose(
                f"{where}.source",
                "an image by file id cannot reach a model that is not Anthropic's; send it "
                "as base64 or a URL",
            )
            # an Anthropic upstream reads it, and bills it as an image: reserved as one
            return [_with_cache(fetched_image(), block)]
        else:
            raise _unknown_source(where, kind, stype)
        return [_with_cache({"type": "image_url", "image_url": {"url": url}}, block)]
    if kind == "document":
        if stype == "base64" and isinstance(data, str):
            media = source.get("media_type", "application/pdf")
            file = {
                "filename": str(block.get("title") or "document.pdf"),
                "file_data": f"data:{media};base64,{data}",
            }
            return [_with_cache({"type": "file", "file": file}, block)]
        if stype == "text" and isinstance(data, str):
            return [_with_cache({"type": "text", "text": data}, block)]
        if stype == "content":  # the document's own blocks, inline (text and images)
            inner = source.get("content")
            if isinstance(inner, str):
                return [_with_cache({"type": "text", "text": inner}, block)]
            if not isinstance(inner, list):
                raise _bad(
                    f"{where}.source.content must be a string or a list of blocks",
                    f"{where}.source.content",
                )
            parts = []
            for k, b in enumerate(inner):
                if not isinstance(b, dict):
                    raise _bad(f"{where}.source.content[{k}] must be a block object", where)
                parts += _block(b, f"{where}.source.content[{k}]", left)
            return parts
        if stype in ("url", "file"):
            left.lose(
                f"{where}.source",
                "a document by URL or file id would not be read by a model that is not "
                "Anthropic's; send it as base64 PDF or plain text",
            )
            # the provider fetches it and bills its pages: reserved as an unseen PDF
            return [_with_cache(fetched_file(), block)]
        raise _unknown_source(where, kind, stype)
    if kind == "search_result":  # a source the model may cite: its text, with where it is from
        texts = [
            b["text"]
            for b in block.get("content") or []
            if isinstance(b, dict) and isinstance(b.get("text"), str)
        ]
        head = " - ".join(str(block[k]) for k in ("title", "source") if block.get(k))
        text = "\n".join([head, *texts]).strip()
        return [_with_cache({"type": "text", "text": text}, block)]
    if isinstance(block.get("text"), str):  # a block new to us that says something
        left.drop(str(kind)[:40])
        return [_with_cache({"type": "text", "text": block["text"]}, block)]
    left.drop(str(kind)[:40], block)  # container_upload, and what is new to us
    return []


def _unknown_source(where: str, kind: Any, stype: Any) -> BadRequest:
    """The 400 for a source the proxy cannot price: what the provider would fetch or read from
    it, and bill, is unknown here, so no reservation could hold it."""
    shown = json.dumps(stype)[:40]
    return _bad(
        f"{where}.source.type {shown} is not one the proxy can price for an {kind}: send it as "
        "base64, text, a URL or a file id",
        f"{where}.source.type",
    )


def _tool_result(
    block: dict[str, Any], where: str, left: LeftOut
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise _bad(f"{where}.tool_use_id is required", f"{where}.tool_use_id")
    content = block.get("content", "")
    images: list[dict[str, Any]] = []
    if isinstance(content, list):
        texts = []
        for k, part in enumerate(content):
            if not isinstance(part, dict):
                raise _bad(f"{where}.content[{k}] must be a block object", f"{where}.content[{k}]")
            for read in _block(part, f"{where}.content[{k}]", left):
                if read["type"] == "text":
                    texts.append(read["text"])
                else:  # a chat tool message holds text: an image or a file follows it
                    images.append(read)
        content = "\n".join(texts)
    if not isinstance(content, str):
        raise _bad(f"{where}.content must be a string or a list of blocks", f"{where}.content")
    if block.get("is_error") is True:
        content = f"Error: {content}"
    return {"role": "tool", "tool_call_id": call_id, "content": content}, images


def _tools(tools: Any, left: LeftOut) -> list[dict[str, Any]]:
    """Client tools (an ``input_schema``) as function tools; Anthropic's own tools (web search,
    code execution, a computer, bash, ...) are hosted tools (``hosted_tools``), which no chat
    form carries: noted in `left` for the edge."""
    if not isinstance(tools, list):
        raise _bad("'tools' must be a list", "tools")
    out = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise _bad(f"{where} must be an object", where)
        kind = tool.get("type", "custom")
        if kind not in ("custom", None):
            left.hosted.append((kind_of(str(kind)), where))
            continue
        name, schema = tool.get("name"), tool.get("input_schema")
        if not isinstance(name, str) or not name or not isinstance(schema, dict):
            raise _bad(f"{where} needs a 'name' and an 'input_schema' object", where)
        fn: dict[str, Any] = {"name": name, "parameters": schema}
        if isinstance(tool.get("description"), str):
            fn["description"] = tool["description"]
        out.append(_with_cache({"type": "function", "function": fn}, tool))
    return out


def hosted_tools_in(body: Any) -> list[tuple[str, tuple[int, ...], dict[str, Any]]]:
    """The hosted tools a Messages request offers: (kind, where: its index in ``tools``, or
    (-1,) for the MCP connector's ``mcp_servers``, the tool)."""
    tools = body.get("tools") if isinstance(body, dict) else None
    found: list[tuple[str, tuple[int, ...], dict[str, Any]]] = [
        (kind_of(str(t["type"])), (i,), t)
        for i, t in enumerate(tools if isinstance(tools, list) else [])
        if isinstance(t, dict) and t.get("type", "custom") not in ("custom", None)
    ]
    if isinstance(body, dict) and body.get("mcp_servers"):
        found.append(("mcp", (-1,), {"type": "mcp_servers"}))
    return found


def _tool_choice(raw: Any, chat: dict[str, Any]) -> None:
    choice: dict[str, Any] = raw if isinstance(raw, dict) else {}
    kind, name = choice.get("type"), choice.get("name")
    if kind in ("auto", "none"):
        chat["tool_choice"] = kind
    elif kind == "any":
        chat["tool_choice"] = "required"
    elif kind == "tool" and isinstance(name, str) and name:
        chat["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        raise _bad(
            f"'tool_choice' {json.dumps(raw)[:60]} is not a tool choice: send auto, any, none "
            'or {"type": "tool", "name": ...}',
            "tool_choice",
        )
    if choice.get("disable_parallel_tool_use") is True and "tools" in chat:
        chat["parallel_tool_calls"] = False
