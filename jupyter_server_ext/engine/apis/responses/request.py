"""OpenAI's Responses API (``POST v1/responses``) onto chat completions, and back.

Pure functions, no I/O. ``to_chat`` turns a Responses request (with the conversation of its
``previous_response_id``, which the engine looks up: ``expanded``) into a chat-completions body,
a tolerant reader (``left_out``): a shape OpenAI's API accepts is never refused for its shape;
what the chat form cannot carry is dropped and named in the answer's ``x-rsql-dropped`` header,
or, when its loss would change the answer, refused naming it. ``responses_answer`` turns the
chat answer into a Response object; ``responses_stream`` turns the chat stream into the
Responses API's typed events. References: OpenAI's API reference for Responses and its
streaming events.

What each Responses field becomes:

==========================  ===================================================================
Responses                   chat completions
==========================  ===================================================================
instructions                a system message first (never carried over from a previous response)
input (string)              one user message
input: message items        messages; ``input_text`` / ``output_text`` -> text parts,
                            ``input_image`` (a URL) -> ``image_url``, ``input_file`` (inline
                            data) -> a ``file`` part, ``input_audio`` as it is; a file by id or
                            URL, an image by id, is refused (the model would not read it; an
                            upstream that speaks the API is reserved for them as an unseen PDF
                            or an image: ``left_out.fetched_file``); other parts: their text,
                            else dropped
input: function_call,       the assistant's ``tool_calls`` (calls in a row join one message):
custom_tool_call            function, or free-form ``custom`` calls
input: ..._call_output      a ``tool`` message (its text); the images and files it holds follow
                            the run of outputs as the user's
input: reasoning, a hosted  dropped: chat completions take no reasoning items, and no hosted
tool's calls, other items   tool ran here (``web_search_call``, ``mcp_call``, ...)
tools (function)            function tools (a namespace's qualified, free-form ``custom`` ones
                            as they are); built-in tools (web search, file search, code
                            interpreter, computer use, image generation, MCP, shells) are hosted
                            tools, which the chat form never carries: the edge runs, drops or
                            refuses each as the admin says (``admission.hosted_tools``)
tool_choice                 auto, none, required; one function
max_output_tokens           max_completion_tokens (an integer from 1; refused naming it)
text.format                 response_format (json_object, json_schema); text.verbosity: verbosity
reasoning.effort            reasoning_effort
temperature, top_p, top_logprobs, parallel_tool_calls, service_tier, prompt_cache_key, user,
safety_identifier, stream   as they are (``user`` and ``safety_identifier`` then the proxy's)
store, previous_response_id kept by the proxy (``stored``), never sent upstream: an upstream
                            that speaks the API gets ``store`` false and the whole conversation
                            (``native``)
metadata                    echoed in the response and kept with the stored one; no chat field
                            takes it. An upstream that speaks the API gets it as sent, as a chat
                            completion's goes on, but for ``user_id``: who a request is for is
                            the proxy's to say (``set_end_user``), as are ``user`` and
                            ``safety_identifier``
background, conversation,   refused: state at the provider or work done later, neither of which
prompt                      is offered here
any other field             dropped (``truncation``, ``include``, ``max_tool_calls``, fields new
                            to the API)
==========================  ===================================================================
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from ...bodies.left_out import LeftOut, fetched_file, fetched_image
from ...bodies.usage import kind_of
from ...errors import BadRequest

# state kept at the provider, or work done later: nothing here holds either, and without it
# the answer would mean something else
_REFUSED_FIELDS = ("background", "conversation", "prompt")
_PASSED = (
    "temperature",
    "top_p",
    "top_logprobs",
    "parallel_tool_calls",
    "service_tier",
    "prompt_cache_key",
    "user",
    "safety_identifier",
    "stream",
)


MAX_TOKENS = 2**31 - 1  # the largest answer limit the chat form takes


def _bad(message: str, param: str) -> BadRequest:
    return BadRequest(message, extra={"param": param})


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


# -- request ---------------------------------------------------------------------------------


# the fields ``to_chat`` reads or the proxy keeps itself; every other one is dropped (named in
# x-rsql-dropped): ``truncation``, ``include``, ``max_tool_calls``, fields new to the API
_READ = frozenset(
    (*_REFUSED_FIELDS, *_PASSED, "model", "instructions", "input", "max_output_tokens", "tools")
    + ("tool_choice", "text", "reasoning", "metadata", "store", "previous_response_id")
)


def to_chat(body: Any, left: LeftOut | None = None) -> dict[str, Any]:
    """A Responses request (its ``previous_response_id`` resolved: ``expanded``) as a
    chat-completions body. Raises ``BadRequest`` naming a field that is wrong in OpenAI's API
    too; what the chat form cannot carry goes into `left` (``left_out``)."""
    left = left if left is not None else LeftOut()
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object with 'model' and 'input'")
    for name in _REFUSED_FIELDS:
        if body.get(name) not in (None, False):
            raise _bad(f"'{name}' is not offered through this proxy", name)
    for name in body:
        if name not in _READ:
            left.drop(name, body[name])
    chat: dict[str, Any] = {}
    if "model" in body:
        chat["model"] = body["model"]
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise _bad("'instructions' must be a string", "instructions")
        messages.append({"role": "system", "content": instructions})
    messages += input_messages(body.get("input"), left)
    chat["messages"] = messages
    for name in _PASSED:
        if name in body:
            chat[name] = body[name]
    cap = body.get("max_output_tokens")
    if cap is not None:
        if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= MAX_TOKENS:
            raise _bad(
                f"'max_output_tokens' must be an integer from 1 to {MAX_TOKENS}",
                "max_output_tokens",
            )
        chat["max_completion_tokens"] = cap
    if body.get("tools") is not None:
        chat["tools"] = _tools(body["tools"], left)
        if not chat["tools"]:  # only hosted tools: none the chat form carries
            del chat["tools"]
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(body["tool_choice"])
    _text(body.get("text"), chat)
    reasoning = body.get("reasoning")
    if reasoning is not None:
        if not isinstance(reasoning, dict):
            raise _bad('\'reasoning\' must be an object like {"effort": "low"}', "reasoning")
        if reasoning.get("effort") is not None:
            chat["reasoning_effort"] = reasoning["effort"]
    if chat.get("stream"):
        chat["stream_options"] = {"include_usage": True}
    return chat


def input_messages(value: Any, left: LeftOut | None = None) -> list[dict[str, Any]]:
    """The chat messages of a Responses ``input``: a string, or a list of items; what they
    cannot carry goes into `left`."""
    left = left if left is not None else LeftOut()
    if value is None:
        raise _bad("'input' is required: a string or a list of items", "input")
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise _bad("'input' must be a string or a list of items", "input")
    out: list[dict[str, Any]] = []
    # images and files tool outputs returned: after the run of outputs they belong to (a chat
    # upstream takes nothing between an assistant's tool calls and their results)
    returned: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise _bad(f"{where} must be an object", where)
        kind = item.get("type", "message")
        if kind in ("function_call_output", "custom_tool_call_output"):
            message, extra = _call_output(item, where, left)
            out.append(message)
            returned += extra
            continue
        if returned:
            out.append({"role": "user", "content": returned})
            returned = []
        if kind == "message":
            out.append(_message(item, where, left))
        elif kind == "function_call":
            _join_call(out, _function_call(item, where))
        elif kind == "custom_tool_call":  # a free-form tool's call: chat completions has them too
            _join_call(out, _custom_call(item, where))
        else:
            # the model's earlier reasoning, a hosted tool's earlier call (web_search_call, ...),
            # and item types new to us: nothing a chat upstream reads
            left.drop(str(kind)[:40], item)
    if returned:
        out.append({"role": "user", "content": returned})
    return out


def _join_call(out: list[dict[str, Any]], call: dict[str, Any]) -> None:
    """`call` into the conversation: calls in a row join one assistant message."""
    last = out[-1] if out else None
    if last is not None and last["role"] == "assistant" and "tool_calls" in last:
        last["tool_calls"].append(call)
    elif last is not None and last["role"] == "assistant" and last.get("content"):
        last["tool_calls"] = [call]
    else:
        out.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _custom_call(item: dict[str, Any], where: str) -> dict[str, Any]:
    name, call_id, text = item.get("name"), item.get("call_id"), item.get("input", "")
    for key, value in (("name", name), ("call_id", call_id), ("input", text)):
        if not isinstance(value, str) or (key != "input" and not value):
            raise _bad(f"{where}.{key} must be a string", f"{where}.{key}")
    return {"id": call_id, "type": "custom", "custom": {"name": name, "input": text}}


def _message(item: dict[str, Any], where: str, left: LeftOut) -> dict[str, Any]:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise _bad(
            f"{where}.role must be user, assistant, system or developer, got {str(role)[:20]!r}",
            f"{where}.role",
        )
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise _bad(f"{where}.content must be a string or a list of parts", f"{where}.content")
    parts = [
        p
        for p in (_part(part, f"{where}.content[{j}]", left) for j, part in enumerate(content))
        if p is not None
    ]
    if role == "assistant":  # chat's assistant content is text only
        return {"role": role, "content": "".join(p.get("text", "") for p in parts)}
    return {"role": role, "content": parts}


def _part(part: Any, where: str, left: LeftOut | None = None) -> dict[str, Any] | None:
    """A content part in its chat form; None when it is left out (``left``)."""
    left = left if left is not None else LeftOut()
    if not isinstance(part, dict):
        raise _bad(f"{where} must be an object", where)
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        text = part.get("text")
        if not isinstance(text, str):
            raise _bad(f"{where}.text must be a string", f"{where}.text")
        return {"type": "text", "text": text}
    if kind == "refusal":
        return {"type": "text", "text": str(part.get("refusal") or "")}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            left.lose(
                f"{where}.image_url",
                "an image is sent to this model as its URL or a data: URL in 'image_url' (no "
                "file ids: no upstream here holds your files)",
            )
            # an upstream that speaks the API reads it by its file id, and bills it as an image
            return fetched_image()
        image: dict[str, Any] = {"url": url}
        if part.get("detail") in ("low", "high", "auto"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        data = part.get("file_data")
        if not isinstance(data, str) or not data:
            left.lose(
                f"{where}.file_data",
                "a file is sent to this model inline, as 'file_data' (no file ids or URLs: the "
                "model would not read it)",
            )
            # an upstream that speaks the API fetches it (file_url, file_id) and bills its
            # pages: reserved as an unseen PDF
            return fetched_file()
        file = {"file_data": data}
        if isinstance(part.get("filename"), str):
            file["filename"] = part["filename"]
        return {"type": "file", "file": file}
    if kind == "input_audio" and isinstance(part.get("input_audio"), dict):
        return {"type": "input_audio", "input_audio": part["input_audio"]}
    if isinstance(part.get("text"), str):  # a part new to us that says something
        left.drop(str(kind)[:40])
        return {"type": "text", "text": part["text"]}
    left.drop(str(kind)[:40], part)
    return None


def _function_call(item: dict[str, Any], where: str) -> dict[str, Any]:
    name, call_id, arguments = item.get("name"), item.get("call_id"), item.get("arguments", "")
    for key, value in (("name", name), ("call_id", call_id), ("arguments", arguments)):
        if not isinstance(value, str) or (key != "arguments" and not value):
            raise _bad(f"{where}.{key} must be a string", f"{where}.{key}")
    if isinstance(item.get("namespace"), str) and item["namespace"]:
        name = item["namespace"] + NAMESPACE_SEPARATOR + str(name)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _call_output(
    item: dict[str, Any], where: str, left: LeftOut
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A tool's output as a ``tool`` message, and the images and files it returned: a chat
    tool message holds text, so they follow it as the user's (as a Messages tool result's do);
    each read as any content part, so an upstream that speaks the API is reserved for them."""
    call_id, output = item.get("call_id"), item.get("output")
    if not isinstance(call_id, str) or not call_id:
        raise _bad(f"{where}.call_id must be a string", f"{where}.call_id")
    extra: list[dict[str, Any]] = []
    if isinstance(output, list):  # parts: their text, and what else they hold
        texts = []
        for j, p in enumerate(output):
            read = _part(p, f"{where}.output[{j}]", left)
            if read is None:
                continue
            if read["type"] == "text":
                texts.append(read["text"])
            else:
                extra.append(read)
        output = "".join(texts)
    if not isinstance(output, str):
        raise _bad(f"{where}.output must be a string", f"{where}.output")
    return {"role": "tool", "tool_call_id": call_id, "content": output}, extra


NAMESPACE_SEPARATOR = "__"  # a namespaced tool's name in chat form: "<namespace>__<name>"


def namespaced(tools: Any) -> dict[str, tuple[str, str]]:
    """The chat names of the functions in `tools`' namespaces -> (namespace, name)."""
    out = {}
    for tool in tools if isinstance(tools, list) else []:
        if isinstance(tool, dict) and tool.get("type") == "namespace":
            ns = str(tool.get("name") or "")
            for inner in tool.get("tools") or []:
                name = str(inner.get("name") or "") if isinstance(inner, dict) else ""
                out[ns + NAMESPACE_SEPARATOR + name] = (ns, name)
    return out


def _tools(tools: Any, left: LeftOut, where_: str = "tools") -> list[dict[str, Any]]:
    """Function, namespace and free-form tools in their chat form; any other type is a hosted
    tool (``hosted_tools``), which no chat form carries: noted in `left` for the edge."""
    if not isinstance(tools, list):
        raise _bad(f"'{where_}' must be a list", where_)
    out = []
    for i, tool in enumerate(tools):
        where = f"{where_}[{i}]"
        kind = tool.get("type") if isinstance(tool, dict) else None
        if not isinstance(kind, str):
            raise _bad(f"{where} must be a tool object with a 'type'", f"{where}.type")
        if kind == "namespace":  # a group of functions: each one, its name qualified
            ns = tool.get("name")
            if not isinstance(ns, str) or not ns:
                raise _bad(f"{where}.name is required", f"{where}.name")
            for inner in _tools(tool.get("tools") or [], left, f"{where}.tools"):
                body = inner[inner["type"]]
                body["name"] = ns + NAMESPACE_SEPARATOR + body["name"]
                out.append(inner)
            continue
        if kind == "function":
            name = tool.get("name")
            if not isinstance(name, str) or not name:
                raise _bad(f"{where}.name is required", f"{where}.name")
            fn: dict[str, Any] = {"name": name}
            for key in ("description", "parameters", "strict"):
                if tool.get(key) is not None:
                    fn[key] = tool[key]
            out.append({"type": "function", "function": fn})
        elif kind == "custom":  # a free-form tool: chat completions has the same
            out.append({"type": "custom", "custom": {k: v for k, v in tool.items() if k != "type"}})
        else:
            left.hosted.append((kind_of(kind), where))
    return out


def hosted_tools_in(body: Any) -> list[tuple[str, tuple[int, ...], dict[str, Any]]]:
    """The hosted tools a Responses request offers: (kind, where in ``tools``: its index, or a
    namespace's index and its own, the tool). A namespace groups functions, but one holding a
    hosted tool is governed as any (a provider may run it)."""
    tools = body.get("tools") if isinstance(body, dict) else None
    found: list[tuple[str, tuple[int, ...], dict[str, Any]]] = []
    for i, t in enumerate(tools if isinstance(tools, list) else []):
        if not isinstance(t, dict) or not isinstance(t.get("type"), str):
            continue
        if t["type"] == "namespace":
            inner = t.get("tools")
            for j, u in enumerate(inner if isinstance(inner, list) else []):
                if isinstance(u, dict) and isinstance(u.get("type"), str) and _hosted(u["type"]):
                    found.append((kind_of(u["type"]), (i, j), u))
        elif _hosted(t["type"]):
            found.append((kind_of(t["type"]), (i,), t))
    return found


def _hosted(tool_type: str) -> bool:
    return tool_type not in ("function", "namespace", "custom")


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = choice.get("name")
        if isinstance(name, str) and name:
            return {"type": "function", "function": {"name": name}}
    raise _bad(
        f"'tool_choice' {json.dumps(choice)[:60]} cannot be served: send 'auto', 'none', "
        '\'required\' or {"type": "function", "name": ...}',
        "tool_choice",
    )


def _text(text: Any, chat: dict[str, Any]) -> None:
    if text is None:
        return
    if not isinstance(text, dict):
        raise _bad('\'text\' must be an object like {"format": {"type": "text"}}', "text")
    if text.get("verbosity") is not None:
        chat["verbosity"] = text["verbosity"]
    fmt = text.get("format")
    if fmt is None:
        return
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return
    if kind == "json_object":
        chat["response_format"] = {"type": "json_object"}
        return
    if kind == "json_schema":
        name, schema = fmt.get("name"), fmt.get("schema")
        if not isinstance(name, str) or not isinstance(schema, dict):
            raise _bad(
                "'text.format' of type json_schema needs a 'name' and a 'schema' object",
                "text.format",
            )
        spec = {"name": name, "schema": schema}
        for key in ("strict", "description"):
            if fmt.get(key) is not None:
                spec[key] = fmt[key]
        chat["response_format"] = {"type": "json_schema", "json_schema": spec}
        return
    raise _bad(
        f"'text.format' {str(kind)[:40]!r} is not a format: send text, json_object or json_schema",
        "text.format.type",
    )


# -- the conversation a later previous_response_id continues ---------------------------


def input_items(value: Any) -> list[Any]:
    """A request's ``input`` as a list of items (a string is one user message)."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return list(value) if isinstance(value, list) else []


def expanded(body: dict[str, Any], earlier: list[Any] | None) -> dict[str, Any]:
    """`body` continuing the conversation `earlier` (the items of its ``previous_response_id``):
    those items, then its own input, and no ``previous_response_id`` left for anyone to read."""
    if earlier is None:
        return body
    out = {k: v for k, v in body.items() if k != "previous_response_id"}
    if "input" not in body:
        raise _bad("'input' is required: a string or a list of items", "input")
    out["input"] = [*earlier, *input_items(body["input"])]
    return out


def conversation_of(body: dict[str, Any], response: dict[str, Any]) -> list[Any]:
    """The items a later ``previous_response_id`` continues: everything this request sent but
    its instructions (never carried over), then what the response said."""
    return [*input_items(body.get("input")), *(response.get("output") or [])]


def seen_items(items: list[Any]) -> list[dict[str, Any]]:
    """`items` (already read by ``input_messages``) as the chat form carried them upstream: each
    item with the fields ``to_chat`` reads and nothing else; reasoning items, which no chat
    message carries, left out. What is stored for a later ``previous_response_id`` is what the
    provider saw and billed, so a conversation cannot grow for free (issue 53)."""
    out: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "message":
            out.append(_seen_message(item))
        elif kind == "function_call":
            call = {k: item[k] for k in ("call_id", "name", "arguments") if k in item}
            if isinstance(item.get("namespace"), str) and item["namespace"]:
                call["namespace"] = item["namespace"]
            out.append({"type": "function_call", **call})
        elif kind == "custom_tool_call":
            fields = ("call_id", "name", "input")
            out.append({"type": kind, **{k: item[k] for k in fields if k in item}})
        elif kind in ("function_call_output", "custom_tool_call_output"):
            output = _call_output(item, "item", LeftOut())[0]["content"]
            out.append({"type": kind, "call_id": item["call_id"], "output": output})
    return out


def _seen_message(item: dict[str, Any]) -> dict[str, Any]:
    role, content = item.get("role"), item.get("content")
    if isinstance(content, list):
        parts = [p for p in (_part(part, "item") for part in content) if p is not None]
        if role == "assistant":  # chat's assistant content is text only
            content = "".join(p.get("text", "") for p in parts)
        else:
            content = [_seen_part(p) for p in parts]
    return {"type": "message", "role": role, "content": content}


def _seen_part(part: dict[str, Any]) -> dict[str, Any]:
    """A chat content part (``_part``'s) back as the Responses part it was read from."""
    if part["type"] == "text":
        return {"type": "input_text", "text": part["text"]}
    if part["type"] == "input_audio":
        return part
    if part["type"] == "image_url":
        return {
            "type": "input_image",
            **{k: v for k, v in part["image_url"].items() if k != "url"},
            "image_url": part["image_url"]["url"],
        }
    return {"type": "input_file", **part["file"]}
