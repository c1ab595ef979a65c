"""Every translator, fed arbitrary JSON in every field (hypothesis).

A request that gets past the proxy's own checks (``parse_chat_request``) must be either turned
into the provider's form, JSON a provider can read, or refused with a 400 naming the field
(``Untranslatable`` / ``BadRequest``): never another exception, which would be a 500 for the
user and, before #35, a slot counted at the provider's window for everyone. The same for the
edges that take the Responses and Messages APIs in, and for the answers of Anthropic's API,
which the proxy reads back whatever a provider (or a man in the middle of a misconfigured
upstream) sends.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator
from typing import Any

from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message as AnthropicMessage
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from openai import omit
from openai._models import construct_type_unchecked
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response as OpenAIResponse
from openai.types.responses import ResponseStreamEvent

from jupyter_server_ext.engine import parse_upstreams
from jupyter_server_ext.engine.apis.messages import answer as messages_answer
from jupyter_server_ext.engine.apis.messages import request as messages_api
from jupyter_server_ext.engine.apis.responses import answer as responses_answer
from jupyter_server_ext.engine.apis.responses import request as responses_api
from jupyter_server_ext.engine.apis.responses import stream as responses_stream
from jupyter_server_ext.engine.bodies.reading import MAX_COUNT, read_json
from jupyter_server_ext.engine.bodies.request import parse_chat_request
from jupyter_server_ext.engine.errors import BadRequest, Untranslatable, UpstreamFailure
from jupyter_server_ext.engine.upstreams import anthropic
from jupyter_server_ext.engine.upstreams.kinds import (
    AnthropicKind,
    AzureKind,
    GeminiKind,
    OpenAIKind,
)
from jupyter_server_ext.engine.upstreams.transport.protocol import (
    anonymized,
    with_public_model,
)
from tests.helpers.fake_anthropic import validate

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**6), max_value=10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
PROFILE = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much]
)

CHAT: dict[str, Any] = {
    "model": "claude-x",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {
                    "type": "text",
                    "text": "What is in this picture?",
                    "cache_control": {"type": "ephemeral"},
                },
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "look", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "a cat"},
        {"role": "user", "content": "And now?"},
    ],
    "tools": [{"type": "function", "function": {"name": "look", "parameters": {"type": "object"}}}],
    "tool_choice": "auto",
    "stop": ["END"],
    "temperature": 0.5,
    "top_p": 0.9,
    "user": "rsql-abc",
}
# where arbitrary JSON goes: every field the translators read, and one they do not know
CHAT_PATHS = [
    ("model",),
    ("messages",),
    ("messages", 0),
    ("messages", 0, "role"),
    ("messages", 0, "content"),
    ("messages", 1),
    ("messages", 1, "name"),
    ("messages", 1, "content", 0),
    ("messages", 1, "content", 0, "type"),
    ("messages", 1, "content", 1),
    ("messages", 1, "content", 1, "type"),
    ("messages", 2),
    ("messages", 4, "content"),
    ("temperature",),
    ("max_tokens",),
    ("max_completion_tokens",),
    ("stream",),
    ("presence_penalty",),
    ("frequency_penalty",),
    ("tools", 0, "function", "cache_control"),
    ("messages", 1, "content"),
    ("messages", 1, "content", 0, "text"),
    ("messages", 1, "content", 0, "cache_control"),
    ("messages", 1, "content", 1, "image_url"),
    ("messages", 1, "content", 1, "image_url", "url"),
    ("messages", 1, "content", 1, "file"),
    ("messages", 1, "cache_control"),
    ("messages", 2, "content"),
    ("messages", 2, "tool_calls"),
    ("messages", 2, "tool_calls", 0),
    ("messages", 2, "tool_calls", 0, "id"),
    ("messages", 2, "tool_calls", 0, "type"),
    ("messages", 2, "tool_calls", 0, "function"),
    ("messages", 2, "tool_calls", 0, "function", "name"),
    ("messages", 2, "tool_calls", 0, "function", "arguments"),
    ("messages", 2, "function_call"),
    ("messages", 2, "refusal"),
    ("messages", 3, "content"),
    ("messages", 3, "tool_call_id"),
    ("tools",),
    ("tools", 0),
    ("tools", 0, "type"),
    ("tools", 0, "function"),
    ("tools", 0, "function", "name"),
    ("tools", 0, "function", "parameters"),
    ("tools", 0, "function", "description"),
    ("tools", 0, "function", "strict"),
    ("tools", 0, "cache_control"),
    ("tool_choice",),
    ("parallel_tool_calls",),
    ("stop",),
    ("top_p",),
    ("n",),
    ("logprobs",),
    ("top_logprobs",),
    ("response_format",),
    ("logit_bias",),
    ("functions",),
    ("function_call",),
    ("audio",),
    ("modalities",),
    ("web_search_options",),
    ("user",),
    ("safety_identifier",),
    ("metadata",),
    ("seed",),
    ("reasoning_effort",),
    ("stream_options",),
    ("prediction",),
    ("something_new",),
]
KINDS = [OpenAIKind(), AzureKind(), GeminiKind(), AnthropicKind()]


def put(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    node: Any = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return out


@PROFILE
@given(path=st.sampled_from(CHAT_PATHS), value=JSON)
# the review's two, and what a search of more examples than run here found
@example(path=("messages", 1, "content", 1, "image_url"), value="https://example.org/a.png")
@example(path=("stop",), value=7)
@example(path=("tool_choice",), value={"type": "function", "function": "look"})
@example(path=("messages", 2, "tool_calls", 0, "id"), value=None)
@example(path=("messages", 2, "tool_calls", 0, "id"), value="call.1 2")
@example(path=("tools", 0, "function", "name"), value="look up")
@example(path=("tools", 0, "cache_control"), value=5)
@example(path=("messages", 1, "content", 0, "cache_control"), value="ephemeral")
@example(path=("top_p",), value=5)
def test_every_kind_translates_or_refuses_naming_the_field(
    path: tuple[Any, ...], value: Any
) -> None:
    body = put(CHAT, path, value)
    try:
        req = parse_chat_request(body, default_model="claude-x", default_max_tokens=64)
    except BadRequest:
        assume(False)  # refused by the proxy's own checks: no translator sees it
        return
    for kind in KINDS:
        try:
            sent = kind.body(req.payload, "chat/completions", "claude-provider-x", 64)
        except Untranslatable as exc:
            assert exc.param and exc.status == 400, exc
            continue
        json.dumps(sent)  # what goes upstream is JSON
        if isinstance(kind, AnthropicKind):
            # ... and a body Anthropic takes (its published checks, as the fake makes them),
            # but for a conversation whose tool results answer no call: the caller's to mend,
            # told by Anthropic's own 400
            why = validate({k: v for k, v in sent.items() if k != "stream"})
            unpaired = (
                "`tool_use` ids were found without `tool_result` blocks",
                "unexpected `tool_use_id` found in `tool_result` blocks",
            )
            assert why is None or any(m in why for m in unpaired), (why, sent)


RESPONSES: dict[str, Any] = {
    "model": "m",
    "instructions": "Be brief.",
    "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
    ],
    "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
    "text": {"format": {"type": "text"}, "verbosity": "low"},
    "reasoning": {"effort": "low"},
    "temperature": 0.5,
    "top_p": 0.9,
    "user": "u",
    "metadata": {"k": "v"},
}
RESPONSES_PATHS = [
    ("instructions",),
    ("input",),
    ("input", 0),
    ("input", 0, "role"),
    ("input", 0, "content"),
    ("input", 0, "content", 0),
    ("input", 0, "content", 0, "type"),
    ("input", 0, "content", 0, "text"),
    ("input", 1, "name"),
    ("input", 1, "arguments"),
    ("input", 1, "namespace"),
    ("input", 2, "output"),
    ("input", 2, "type"),
    ("tools",),
    ("tools", 0),
    ("tools", 0, "type"),
    ("tools", 0, "name"),
    ("tool_choice",),
    ("text",),
    ("text", "format"),
    ("reasoning",),
    ("max_output_tokens",),
    ("reasoning", "effort"),
    ("text", "verbosity"),
    ("temperature",),
    ("top_p",),
    ("top_logprobs",),
    ("parallel_tool_calls",),
    ("stream",),
    ("user",),
    ("safety_identifier",),
    ("metadata",),
    ("store",),
    ("background",),
    ("something_new",),
]
MESSAGES: dict[str, Any] = {
    "model": "m",
    "max_tokens": 64,
    "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}],
        },
    ],
    "tools": [{"name": "f", "input_schema": {"type": "object"}}],
    "tool_choice": {"type": "auto"},
    "stop_sequences": ["END"],
    "temperature": 0.5,
    "top_p": 0.9,
}
MESSAGES_PATHS = [
    ("system",),
    ("system", 0),
    ("system", 0, "text"),
    ("messages", 0, "content"),
    ("messages", 0, "content", 0),
    ("messages", 0, "content", 0, "type"),
    ("messages", 1, "content", 0, "input"),
    ("messages", 1, "content", 0, "id"),
    ("messages", 2, "content", 0, "content"),
    ("messages", 2, "content", 0, "is_error"),
    ("tools",),
    ("tools", 0),
    ("tools", 0, "input_schema"),
    ("tool_choice",),
    ("stop_sequences",),
    ("max_tokens",),
    ("metadata",),
    ("thinking",),
    ("temperature",),
    ("top_p",),
    ("stream",),
    ("mcp_servers",),
    ("tools", 0, "type"),
    ("tool_choice", "disable_parallel_tool_use"),
]


def field_name(path: tuple[Any, ...]) -> str:
    """A path as the APIs' errors name a field: ``input[0].content[0].text``."""
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else f".{step}" if out else str(step)
    return out


def assert_names_the_field(exc: BadRequest, path: tuple[Any, ...]) -> None:
    """The 400 names, in the caller's API (not the chat form it was translated into), the field
    the value was put in, or one beside it in the same object (a ``type`` changed makes
    another field of that object the missing one); and its message says so too, for the APIs
    whose errors carry no ``param`` (Anthropic's)."""
    assert exc.status == 400, exc
    param = exc.extra.get("param")
    assert isinstance(param, str) and param, exc
    where = field_name(path[:-1]) if len(path) > 1 else field_name(path)
    assert param.startswith(where), (param, path, exc.message)
    root = field_name(path[:1])
    assert root in exc.message, (exc.message, path)


@PROFILE
@given(path=st.sampled_from(RESPONSES_PATHS), value=JSON)
def test_the_responses_api_edge_translates_or_refuses_naming_the_field(
    path: tuple[Any, ...], value: Any
) -> None:
    try:
        chat = responses_api.to_chat(put(RESPONSES, path, value))
        parse_chat_request(chat, default_model="m", default_max_tokens=64)
    except BadRequest as exc:
        assert_names_the_field(exc, path)
        return
    json.dumps(chat)


@PROFILE
@given(path=st.sampled_from(MESSAGES_PATHS), value=JSON)
def test_the_messages_api_edge_translates_or_refuses_naming_the_field(
    path: tuple[Any, ...], value: Any
) -> None:
    try:
        chat = messages_api.to_chat(put(MESSAGES, path, value))
        parse_chat_request(chat, default_model="m", default_max_tokens=64)
    except BadRequest as exc:
        assert_names_the_field(exc, path)
        return
    json.dumps(chat)


MESSAGE: dict[str, Any] = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-provider-x",
    "content": [
        {"type": "thinking", "thinking": "hm", "signature": "s"},
        {"type": "text", "text": "Hello"},
        {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}},
    ],
    "stop_reason": "tool_use",
    "usage": {"input_tokens": 5, "output_tokens": 3, "cache_creation_input_tokens": 0},
}
ANSWER_PATHS = [
    ("content",),
    ("content", 0),
    ("content", 1),
    ("content", 1, "text"),
    ("content", 2, "input"),
    ("content", 2, "name"),
    ("stop_reason",),
    ("usage",),
    ("usage", "input_tokens"),
    ("usage", "cache_creation_input_tokens"),
    ("model",),
    ("id",),
]


@PROFILE
@given(path=st.sampled_from(ANSWER_PATHS), value=JSON)
def test_anthropics_answers_are_read_whatever_their_fields_hold(
    path: tuple[Any, ...], value: Any
) -> None:
    answer = AnthropicKind().answer(json.dumps(put(MESSAGE, path, value)).encode(), "public-x")
    json.loads(answer)


@PROFILE
@given(
    event=st.sampled_from(
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
            "error",
            "ping",
            "other",
        ]
    ),
    value=JSON,
    key=st.sampled_from(["message", "content_block", "delta", "usage", "index", "error"]),
)
def test_anthropics_stream_events_are_read_whatever_they_hold(
    event: str, value: Any, key: str
) -> None:
    translator = anthropic.StreamTranslator(model="public-x", created=1)
    start = {
        "type": "message_start",
        "message": {"id": "m", "model": "x", "usage": {"input_tokens": 1}},
    }
    for obj in (start, {"type": event, key: value}):
        raw = f"event: {obj['type']}\ndata: {json.dumps(obj)}\n\n".encode()
        for out in translator.feed(raw):
            assert out.startswith(b"data: ")


# -- what a provider sends back, whatever its shape ----------------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000  # JSON Python's decoder cannot read (RecursionError)
BODIES = st.one_of(JSON.map(lambda v: json.dumps(v).encode()), st.binary(max_size=64))


@PROFILE
@given(body=BODIES)
@example(body=DEEP)
@example(body=b'{"content": "text", "usage": {"output_tokens": ' + b"9" * 400 + b"}}")
def test_anthropics_answers_of_any_shape_are_read_or_a_failure_of_the_key(body: bytes) -> None:
    try:
        answer = AnthropicKind().answer(body, "public-x")
    except UpstreamFailure as fail:  # the key's failure: failover, a 502 at worst
        assert fail.kind == "server"
        return
    parsed = read_json(answer)
    if isinstance(parsed, dict) and "choices" in parsed:
        # None: a count that cannot be read (a word, past any answer's), charged as no usage
        # is (the reservation), as the same Message sent as it came
        usage = parsed["usage"]
        assert usage is None or all(
            0 <= usage[k] <= MAX_COUNT for k in ("prompt_tokens", "completion_tokens")
        )


EVENT_NAMES = [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "error",
    "ping",
]
EVENTS = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(EVENT_NAMES), JSON).map(
            lambda e: f"event: {e[0]}\ndata: {json.dumps(e[1])}\n\n".encode()
        ),
        st.tuples(st.sampled_from(EVENT_NAMES), JSON).map(
            lambda e: f"data: {json.dumps({'type': e[0], 'index': 0, 'x': e[1]})}\n\n".encode()
        ),
        st.binary(max_size=40),
        st.just(b"event: ping\ndata: " + DEEP + b"\n\n"),
    ),
    max_size=8,
)


@PROFILE
@given(events=EVENTS)
def test_anthropics_streams_of_any_events_are_read_event_by_event(events: list[bytes]) -> None:
    translator = anthropic.StreamTranslator(model="public-x", created=1)
    for raw in events:
        for out in translator.feed(raw):
            assert out.startswith(b"data: ")
            assert out == b"data: [DONE]\n\n" or isinstance(read_json(out[6:]), dict)


HEADERS = st.dictionaries(
    st.sampled_from(
        [
            "retry-after",
            "retry-after-ms",
            "x-ratelimit-remaining-requests",
            "anthropic-ratelimit-requests-limit",
            "anthropic-ratelimit-requests-remaining",
            "anthropic-ratelimit-requests-reset",
            "anthropic-ratelimit-tokens-remaining",
            "anthropic-ratelimit-input-tokens-reset",
            "anthropic-ratelimit-output-tokens-remaining",
        ]
    ),
    st.one_of(st.text(max_size=30), st.sampled_from(["1e400", "-5", "nan", "2026-13-01T00:00Z"])),
    max_size=5,
)
ERROR_BODIES = st.one_of(
    BODIES,
    JSON.map(lambda v: json.dumps({"error": v}).encode()),
    JSON.map(lambda v: json.dumps([{"error": {"status": "X", "details": v}}]).encode()),
    JSON.map(
        lambda v: json.dumps({"type": "error", "error": {"type": v, "message": "m"}}).encode()
    ),
)


@PROFILE
@given(status=st.sampled_from([400, 401, 403, 404, 413, 429, 500, 529]), body=ERROR_BODIES)
@example(status=429, body=DEEP)
@example(status=400, body=b'{"error": ' + DEEP + b"}")
@example(status=429, body=b'[{"error": {"status": "RESOURCE_EXHAUSTED", "details": 5}}]')
def test_every_kinds_error_answers_are_read_whatever_the_provider_sends(
    status: int, body: bytes
) -> None:
    for kind in KINDS:
        assert isinstance(kind.error(status, body), bytes)
        for headers in ({}, {"retry-after": "3"}):
            wait = kind.retry_after(headers, body)
            assert wait is None or 0 <= wait < float("inf")


@PROFILE
@given(headers=HEADERS)
def test_every_kinds_rate_limit_headers_are_read_whatever_they_hold(
    headers: dict[str, str],
) -> None:
    for kind in KINDS:
        limits = kind.limits(headers, 1.8e9)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in limits.items())
        wait = kind.retry_after(headers, b"")
        assert wait is None or 0 <= wait < float("inf")


AZURE_FILTER = (
    b'data: {"choices": [], "created": 0, "id": "", "model": "", "object": "", '
    b'"prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]}\n\n'
)


@PROFILE
@given(
    events=st.lists(
        st.one_of(
            JSON.map(lambda v: b"data: " + json.dumps(v).encode() + b"\n\n"),
            st.fixed_dictionaries(
                {"id": st.just("c1"), "object": st.sampled_from(["chat.completion.chunk"])},
                optional={"choices": JSON, "model": JSON, "prompt_filter_results": JSON},
            ).map(lambda v: b"data: " + json.dumps(v).encode() + b"\n\n"),
            st.binary(max_size=30),
            st.just(AZURE_FILTER),
        ),
        max_size=6,
    )
)
def test_azures_streams_are_read_whatever_they_hold_and_its_filter_chunk_never_passes(
    events: list[bytes],
) -> None:
    async def source() -> AsyncIterator[bytes]:
        for event in events:
            yield event

    async def read() -> list[bytes]:
        return [event async for event in AzureKind().stream(source(), "public-x")]

    out = asyncio.run(read())
    assert AZURE_FILTER not in out
    assert len(out) == len(events) - events.count(AZURE_FILTER)


# -- the public name, in answers and in errors ---------------------------------------------

ANSWERS = st.fixed_dictionaries(
    {"id": st.text(max_size=5), "model": st.text(max_size=20)},
    optional={
        "choices": JSON,
        "content": st.lists(
            st.fixed_dictionaries(
                {
                    "type": st.just("tool_use"),
                    "input": st.fixed_dictionaries(
                        {"model": st.text(max_size=10)}, optional={"other": JSON}
                    ),
                }
            ),
            max_size=2,
        ),
        "message": st.fixed_dictionaries({"model": st.text(max_size=10)}, optional={"x": JSON}),
        "metadata": JSON,
    },
)


@PROFILE
@given(
    answer=ANSWERS,
    public=st.text(max_size=20),
    form=st.sampled_from([b"%s", b"data: %s\n\n", b"event: message_start\ndata: %s\n\n"]),
)
def test_the_answers_own_model_becomes_the_public_name_and_nothing_else_changes(
    answer: dict[str, Any], public: str, form: bytes
) -> None:
    data = form % json.dumps(answer).encode()
    out = with_public_model(data, public)
    at = out.find(b"{")
    assert out[:at] == data[: data.find(b"{")]  # the event's lines are kept
    expected = copy.deepcopy(answer)
    expected["model"] = public
    if "message" in expected:
        expected["message"]["model"] = public
    assert json.loads(out[at:]) == expected  # tool inputs, texts, metadata as they came


SPEC_NAMES = st.dictionaries(
    st.text("abcdefg", min_size=1, max_size=8),  # public names
    st.text("xyz019-.", min_size=3, max_size=12),  # the provider's: no public name holds one
    min_size=1,
    max_size=4,
)
WORDS = st.lists(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=10))


@PROFILE
@given(names=SPEC_NAMES, words=WORDS, data=st.data())
def test_no_provider_side_name_is_left_in_an_error_text(
    names: dict[str, str], words: list[str], data: st.DataObject
) -> None:
    upstream = {
        "name": "u",
        "base_url": "https://api.example.org/v1",
        "api_key": "test-key-" + "k" * 20,
        "models": names,
    }
    spec = parse_upstreams([upstream], {})[0]
    parts = [data.draw(st.sampled_from([*names.values(), w])) for w in words]
    message = " ".join(["model", *parts, "in organization org-AbCdEfGh1234 at api.example.org"])
    text = anonymized(json.dumps({"error": {"message": message}}), spec)
    said = json.loads(text)["error"]["message"]  # still JSON
    assert "org-AbCdEfGh1234" not in said and "api.example.org" not in said
    assert not [provider for provider in names.values() if provider in said]


# -- the chat answers the Responses and Messages edges read back ----------------------------
#
# A self-hosted server's chunks reach the edge translators as it sent them. Whatever JSON a
# field holds, each chunk is read or skipped: never an exception (a 500, or a stream cut off
# with no terminal event), and what the client gets is a stream its own SDK reads to the end.

CHUNKS: list[dict[str, Any]] = [
    {"id": "c", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
    {"id": "c", "choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}]},
    {
        "id": "c",
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"a": '},
                        }
                    ]
                },
            }
        ],
    },
    {
        "id": "c",
        "choices": [
            {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}}
        ],
    },
    {
        "id": "c",
        "choices": [{"index": 0, "delta": {"refusal": None}, "finish_reason": "tool_calls"}],
    },
    {
        "id": "c",
        "choices": [],
        "usage": {
            "prompt_tokens": 5,
            "completion_tokens": 3,
            "prompt_tokens_details": {"cached_tokens": 1},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    },
]
ANSWER: dict[str, Any] = {
    "id": "c",
    "model": "m",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hello",
                "refusal": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"a": 1}'},
                    }
                ],
            },
            "finish_reason": "tool_calls",
        }
    ],
    "usage": CHUNKS[-1]["usage"],
}


def paths_of(value: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every field of `value` (and every element of its lists), containers included."""
    out = [here] if here else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths_of(v, (*here, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths_of(v, (*here, i))
    return out


ODD = st.one_of(
    JSON,
    st.sampled_from(
        ["x", ["x"], [0], [{"index": [1]}], {"a": 1}, -1, 10**30, 1.5, True, "12", "many"]
    ),
)


@st.composite
def odd_chunks(draw: st.DrawFn) -> list[dict[str, Any]]:
    """The stream above with arbitrary JSON in a few of its fields, or a chunk replaced whole."""
    chunks = copy.deepcopy(CHUNKS)
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(chunks) - 1))
        paths = paths_of(chunks[i])
        if not paths or draw(st.integers(0, 9)) == 0:
            chunks[i] = draw(st.dictionaries(st.sampled_from(["choices", "usage", "x"]), ODD))
            continue
        chunks[i] = put(chunks[i], draw(st.sampled_from(paths)), draw(ODD))
    return chunks


def events_of(raw: list[bytes]) -> list[dict[str, Any]]:
    """The stream's events, each checked as SSE: ``event: <type>`` then its JSON data."""
    out = []
    for ev in raw:
        head, _, data = ev.partition(b"\ndata: ")
        assert ev.endswith(b"\n\n") and head.startswith(b"event: "), ev
        obj = json.loads(data)
        assert head[7:].decode() == obj["type"], ev
        out.append(obj)
    return out


@PROFILE
@given(chunks=odd_chunks())
@example(chunks=[{"choices": [{"delta": "x"}]}])
@example(chunks=[{"choices": ["x"]}])
@example(chunks=[{"choices": [{"delta": {"tool_calls": [{"function": "f"}]}}]}])
@example(chunks=[{"choices": [{"delta": {"tool_calls": [{"index": [1]}]}}]}])
@example(chunks=[{"choices": [], "usage": {"prompt_tokens": "many"}}])
@example(chunks=[{"choices": [{"finish_reason": ["stop"]}]}])
@example(chunks=[{"choices": [{"delta": {"tool_calls": 5}}]}])
def test_the_messages_edge_reads_any_chat_stream_into_events_the_anthropic_sdk_reads(
    chunks: list[dict[str, Any]],
) -> None:
    translator = messages_answer.StreamTranslator(model="m", input_estimate=3)
    raw = translator.start()
    for chunk in chunks:
        raw += translator.feed(chunk)
    raw += translator.close()
    assert not [ev for ev in raw if messages_answer.UNREADABLE.encode() in ev]  # read, not walled
    events = events_of(raw)
    assert [e["type"] for e in events].count("message_stop") == 1
    assert events[-1]["type"] == "message_stop"
    snapshot = None
    bufs: dict[int, bytes] = {}
    for ev in events:  # the SDK's own reading, as messages.stream does it
        snapshot = accumulate_event(event=ev, current_snapshot=snapshot, json_bufs=bufs)  # type: ignore[arg-type]
    assert snapshot is not None
    for block in snapshot.content:
        if block.type == "tool_use":
            assert isinstance(block.input, dict) and isinstance(block.name, str)
    usage = events[-2]["usage"]
    assert all(isinstance(n, int) and 0 <= n for n in usage.values())


@PROFILE
@given(chunks=odd_chunks(), broken=st.booleans())
@example(chunks=[{"choices": [{"delta": "x"}]}], broken=False)
@example(chunks=[{"choices": ["x"]}], broken=False)
@example(chunks=[{"choices": [{"delta": {"tool_calls": [{"function": "f"}]}}]}], broken=False)
@example(chunks=[{"choices": [{"delta": {"tool_calls": [{"index": [1]}]}}]}], broken=False)
@example(chunks=[{"choices": [], "usage": {"prompt_tokens": "many"}}], broken=False)
@example(chunks=[{"choices": [], "usage": {"prompt_tokens_details": "x"}}], broken=True)
def test_the_responses_edge_reads_any_chat_stream_into_events_the_openai_sdk_reads(
    chunks: list[dict[str, Any]], broken: bool
) -> None:
    request = {"model": "m", "input": "hi", "tools": RESPONSES["tools"]}
    translator = responses_stream.StreamTranslator(request, "resp_1", "m", created=1)
    raw = translator.start()
    for chunk in chunks:
        raw += translator.feed(chunk)
    if broken:  # the upstream broke off: the engine's error chunk
        raw += translator.feed({"error": {"message": "the upstream stream broke off"}})
    raw += translator.close()
    assert not [ev for ev in raw if responses_stream.UNREADABLE.encode() in ev]
    events = events_of(raw)
    ends = ("response.completed", "response.incomplete", "response.failed")
    assert [e["type"] in ends for e in events].count(True) == 1 and events[-1]["type"] in ends
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    for ev in events:  # the SDK's own reading, as responses.stream does it
        state.handle_event(construct_type_unchecked(type_=ResponseStreamEvent, value=ev))  # type: ignore[arg-type]
    final = events[-1]["response"]
    if final["status"] != "failed":
        usage = final["usage"]
        assert all(
            isinstance(usage[k], int) and usage[k] >= 0 for k in ("input_tokens", "output_tokens")
        )
        assert state._completed_response is not None


@PROFILE
@given(path=st.sampled_from(paths_of(ANSWER)), value=ODD)
@example(path=("choices",), value=["x"])
@example(path=("choices",), value={"0": 1})
@example(path=("choices", 0, "message", "tool_calls", 0, "function"), value="f")
@example(path=("usage", "prompt_tokens"), value="many")
@example(path=("choices", 0, "finish_reason"), value=["stop"])
@example(path=("choices", 0, "message", "tool_calls", 0, "function", "arguments"), value="[" * 5000)
def test_a_chat_answer_of_any_shape_becomes_a_message_and_a_response(
    path: tuple[Any, ...], value: Any
) -> None:
    answer = put(ANSWER, path, value)
    message = messages_answer.message_of(answer, "m")
    AnthropicMessage.model_validate(json.loads(json.dumps(message)))
    request = {"model": "m", "input": "hi", "tools": RESPONSES["tools"]}
    response = responses_answer.response_of(request, answer, "resp_1", 1)
    OpenAIResponse.model_validate(json.loads(json.dumps(response)))
    for block in message["content"]:
        assert block["type"] == "text" or isinstance(block["input"], dict)
