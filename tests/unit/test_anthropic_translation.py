"""OpenAI chat completions <-> Anthropic's Messages API (jupyter_server_ext/engine/providers).

Pure functions only: no server, no process. The shapes on Anthropic's side follow its
reference: the Messages API (https://docs.anthropic.com/en/api/messages), streaming
(https://docs.anthropic.com/en/docs/build-with-claude/streaming), errors
(https://docs.anthropic.com/en/api/errors), rate limits
(https://docs.anthropic.com/en/api/rate-limits), prompt caching
(https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching) and tool use
(https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/overview); on OpenAI's side the
chat completions reference (https://platform.openai.com/docs/api-reference/chat).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from jupyter_server_ext.engine.bodies.reading import scrub
from jupyter_server_ext.engine.bodies.streams import Collector, event_json
from jupyter_server_ext.engine.errors import BadRequest
from jupyter_server_ext.engine.upstreams.anthropic import (
    ANTHROPIC_VERSION,
    StreamTranslator,
    Untranslatable,
    chat_completion,
    messages_request,
    openai_error,
    rate_headers,
)
from jupyter_server_ext.engine.upstreams.buckets import Bucket, parse_duration

MODEL = "claude-sonnet-4-5"  # the provider's name
PUBLIC = "claude"  # the name the caller asked for
KEY = "sk-ant-api03-" + "Ab9_x-" * 15 + "AA"
# every top-level field the Messages API accepts (its reference); anything else is a 400
ANTHROPIC_FIELDS = {
    "model",
    "messages",
    "max_tokens",
    "system",
    "metadata",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "thinking",
    "service_tier",
}


def request(**fields: Any) -> dict[str, Any]:
    fields.setdefault("messages", [{"role": "user", "content": "How many rows?"}])
    return messages_request({"model": PUBLIC, **fields}, model=MODEL, default_max_tokens=1024)


def weather_call(call_id: str, city: str) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": json.dumps({"city": city})},
    }


WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


# -- requests ------------------------------------------------------------------------------


def test_the_version_sent_is_the_one_the_reference_documents() -> None:
    assert ANTHROPIC_VERSION == "2023-06-01"


def test_system_and_developer_messages_become_the_top_level_system_in_order() -> None:
    body = request(
        messages=[
            {"role": "system", "content": "You write SQL."},
            {"role": "user", "content": "Count the rows."},
            {"role": "developer", "content": [{"type": "text", "text": "Use DuckDB."}]},
            {"role": "user", "content": "Of orders."},
        ]
    )
    assert body["system"] == [
        {"type": "text", "text": "You write SQL."},
        {"type": "text", "text": "Use DuckDB."},
    ]
    # the two user messages around the developer message are one turn now
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Count the rows."},
                {"type": "text", "text": "Of orders."},
            ],
        }
    ]
    assert (
        request(
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
        )["system"]
        == "Be brief."
    )


def test_cache_control_on_a_part_a_tool_or_a_message_reaches_anthropic() -> None:
    mark = {"type": "ephemeral"}
    body = request(
        messages=[
            {
                "role": "system",
                "content": [{"type": "text", "text": "A long schema ...", "cache_control": mark}],
            },
            {
                "role": "user",
                "content": "First question",
                "cache_control": {"type": "ephemeral", "ttl": "1h"},
            },
        ],
        tools=[{**WEATHER_TOOL, "cache_control": mark}],
    )
    assert body["system"] == [{"type": "text", "text": "A long schema ...", "cache_control": mark}]
    assert body["messages"][0]["content"] == [
        {
            "type": "text",
            "text": "First question",
            "cache_control": {"type": "ephemeral", "ttl": "1h"},
        }
    ]
    assert body["tools"][0]["cache_control"] == mark


def test_images_are_sent_as_base64_or_url_sources_and_other_kinds_are_refused() -> None:
    body = request(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
                    },
                    {"type": "image_url", "image_url": {"url": "https://example.org/chart.jpg"}},
                ],
            }
        ]
    )
    assert body["messages"][0]["content"][1:] == [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.org/chart.jpg"}},
    ]
    with pytest.raises(Untranslatable) as err:
        request(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/svg+xml;base64,PHN2Zz4="},
                        }
                    ],
                }
            ]
        )
    assert err.value.param == "messages[0].content[0].image_url.url"
    assert "image/svg+xml" in err.value.message


def test_a_tool_call_round_trips_through_anthropic() -> None:
    """The caller's tools and its tool-call history reach Anthropic as tools, tool_use and
    tool_result blocks; Anthropic's tool_use comes back as the tool_calls the caller sends next."""
    history = [
        {"role": "user", "content": "Weather in Oslo and Lima?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [weather_call("toolu_1", "Oslo"), weather_call("toolu_2", "Lima")],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "4 C"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "19 C"}]},
        {"role": "user", "content": "Which is warmer?"},
    ]
    body = request(
        messages=history, tools=[WEATHER_TOOL], tool_choice="required", parallel_tool_calls=False
    )
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather in a city",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        }
    ]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Lima"}},
        ],
    }
    # both results and the question after them: one user turn, the results first (as Anthropic requires)
    assert body["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "4 C"},
            {
                "type": "tool_result",
                "tool_use_id": "toolu_2",
                "content": [{"type": "text", "text": "19 C"}],
            },
            {"type": "text", "text": "Which is warmer?"},
        ],
    }

    message = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "stop_reason": "tool_use",
        "content": [
            {"type": "text", "text": "Let me check."},
            {
                "type": "tool_use",
                "id": "toolu_3",
                "name": "get_weather",
                "input": {"city": "Quito"},
            },
        ],
        "usage": {"input_tokens": 50, "output_tokens": 20},
    }
    choice = chat_completion(message, model=PUBLIC, created=1)["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert (call["id"], call["type"], call["function"]["name"]) == (
        "toolu_3",
        "function",
        "get_weather",
    )
    assert json.loads(call["function"]["arguments"]) == {"city": "Quito"}
    again = request(
        messages=[
            *history,
            choice["message"],
            {"role": "tool", "tool_call_id": "toolu_3", "content": "12 C"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert again["messages"][3]["content"] == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_3", "name": "get_weather", "input": {"city": "Quito"}},
    ]


def test_tool_call_arguments_that_are_no_json_object_are_refused_naming_the_message() -> None:
    for arguments in ('{"city": "Oslo"', "[1, 2]"):
        call = {
            "id": "c1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": arguments},
        }
        with pytest.raises(Untranslatable) as err:
            request(
                messages=[
                    {"role": "user", "content": "?"},
                    {"role": "assistant", "tool_calls": [call]},
                ]
            )
        assert err.value.param == "messages[1].tool_calls[0].function.arguments"


def test_max_tokens_is_the_larger_of_the_callers_limits_else_the_default() -> None:
    assert request()["max_tokens"] == 1024  # Anthropic requires one
    assert request(max_tokens=50)["max_tokens"] == 50
    assert request(max_completion_tokens=80, max_tokens=50)["max_tokens"] == 80
    # 0 would ask Anthropic only to warm its cache: an empty answer, billed; a bug, not a request
    with pytest.raises(ValueError, match="default_max_tokens"):
        messages_request(
            {"messages": [{"role": "user", "content": "hi"}]}, model=MODEL, default_max_tokens=0
        )
    assert (
        messages_request(
            {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
            model=MODEL,
            default_max_tokens=0,
        )["max_tokens"]
        == 5
    )


def test_sampling_stop_user_and_stream_are_carried_over() -> None:
    body = request(
        temperature=0.2,
        top_p=0.9,
        stop="END",
        user="u-9f2",
        stream=True,
        stream_options={"include_usage": True},
    )
    assert {
        k: body[k] for k in ("temperature", "top_p", "stop_sequences", "metadata", "stream")
    } == {
        "temperature": 0.2,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-9f2"},
        "stream": True,
    }
    assert request(stop=["a;", "b;"])["stop_sequences"] == ["a;", "b;"]


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("none", False, {"type": "none"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ],
)
def test_tool_choice_maps_to_anthropics(
    choice: Any, parallel: Any, expected: dict[str, Any]
) -> None:
    assert (
        request(tools=[WEATHER_TOOL], tool_choice=choice, parallel_tool_calls=parallel)[
            "tool_choice"
        ]
        == expected
    )


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("n", 2, "n"),
        ("logprobs", True, "logprobs"),
        ("top_logprobs", 3, "top_logprobs"),
        ("response_format", {"type": "json_object"}, "response_format"),
        (
            "response_format",
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
            "response_format",
        ),
        ("logit_bias", {"1234": -100}, "logit_bias"),
        ("temperature", 1.5, "temperature"),
        ("stop", ["\n"], "stop"),
        ("functions", [{"name": "f", "parameters": {}}], "functions"),
        (
            "tool_choice",
            {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}},
            "tool_choice",
        ),
        ("tools", [{"type": "custom", "custom": {"name": "grammar"}}], "tools[0].type"),
        ("modalities", ["text", "audio"], "audio"),
    ],
)
def test_a_field_that_would_change_the_answer_is_refused_naming_it(
    field: str, value: Any, param: str
) -> None:
    fields = {field: value, **({"tools": [WEATHER_TOOL]} if field == "tool_choice" else {})}
    with pytest.raises(Untranslatable) as err:
        request(**fields)
    exc = err.value
    assert exc.param == param and isinstance(exc, ValueError) and isinstance(exc, BadRequest)
    assert exc.status == 400 and exc.to_json()["error"]["param"] == param and exc.message


def test_a_temperature_above_one_says_why_it_is_not_rescaled() -> None:
    with pytest.raises(Untranslatable, match="0 to 1"):
        request(temperature=1.2)


def test_fields_that_cannot_change_the_answer_are_dropped_and_nothing_unknown_is_sent() -> None:
    body = request(
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=0.5,
        stream_options={"include_usage": True},
        store=True,
        metadata={"team": "x"},
        n=1,
        logprobs=False,
        response_format={"type": "text"},
        service_tier="auto",
        prompt_cache_key="k",
        reasoning_effort="low",
        x_vendor_field=1,
    )
    assert set(body) <= ANTHROPIC_FIELDS
    assert set(body) == {"model", "max_tokens", "messages"} and body["model"] == MODEL


def test_an_empty_assistant_turn_and_empty_text_parts_are_left_out() -> None:
    # Anthropic refuses empty text blocks; OpenAI clients send content "" beside tool_calls
    body = request(
        messages=[
            {"role": "user", "content": "?"},
            {"role": "assistant", "content": "", "tool_calls": [weather_call("t1", "Oslo")]},
            {"role": "tool", "tool_call_id": "t1", "content": "4 C"},
            {"role": "assistant", "content": ""},
            {
                "role": "user",
                "content": [{"type": "text", "text": ""}, {"type": "text", "text": "Thanks"}],
            },
        ]
    )
    assert [t["role"] for t in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Oslo"}}
    ]
    assert body["messages"][2]["content"][1:] == [{"type": "text", "text": "Thanks"}]


# -- answers -------------------------------------------------------------------------------


def message_of(
    content: list[dict[str, Any]], stop_reason: str = "end_turn", **usage: int
) -> dict[str, Any]:
    return {
        "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 7, **usage},
    }


def test_a_message_becomes_a_chat_completion_with_its_cache_tokens_counted() -> None:
    message = message_of(
        [
            {"type": "thinking", "thinking": "Hmm.", "signature": "c2ln"},
            {"type": "text", "text": "SELECT "},
            {"type": "text", "text": "count(*)"},
        ],
        cache_creation_input_tokens=200,
        cache_read_input_tokens=3000,
    )
    out = chat_completion(message, model=PUBLIC, created=1700000000)
    assert (out["id"], out["object"], out["created"], out["model"]) == (
        "msg_013Zva2CMHLNnXjNJJKqJ2EF",
        "chat.completion",
        1700000000,
        PUBLIC,
    )
    # the thinking is not the answer
    assert out["choices"] == [
        {
            "index": 0,
            "logprobs": None,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": "SELECT count(*)", "refusal": None},
        }
    ]
    assert out["usage"] == {
        "prompt_tokens": 3210,
        "completion_tokens": 7,
        "total_tokens": 3217,
        "prompt_tokens_details": {"cached_tokens": 3000},
        "cache_creation_input_tokens": 200,
        "cache_read_input_tokens": 3000,
    }


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
def test_stop_reasons_become_finish_reasons(stop_reason: str, finish: str) -> None:
    out = chat_completion(
        message_of([{"type": "text", "text": "x"}], stop_reason), model=PUBLIC, created=1
    )
    assert out["choices"][0]["finish_reason"] == finish


# -- streams -------------------------------------------------------------------------------


def sse(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def anthropic_stream(message: dict[str, Any], *, split: int = 3) -> list[bytes]:
    """The events Anthropic streams for `message`, in the reference's order and shapes: text in
    pieces, a tool's input as partial JSON after an empty fragment, thinking then its signature,
    a ping after the first block's start, and message_delta's usage with output_tokens only."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events = [sse("message_start", {"type": "message_start", "message": start})]
    for i, block in enumerate(message["content"]):
        kind = block["type"]
        head = {
            "text": {"type": "text", "text": ""},
            "thinking": {"type": "thinking", "thinking": ""},
            "tool_use": {**block, "input": {}},
        }[kind]
        events.append(
            sse(
                "content_block_start",
                {"type": "content_block_start", "index": i, "content_block": head},
            )
        )
        if i == 0:
            events.append(sse("ping", {"type": "ping"}))
        if kind == "tool_use":
            raw = json.dumps(block["input"])
            deltas = [
                {"type": "input_json_delta", "partial_json": p} for p in ["", *pieces(raw, split)]
            ]
        elif kind == "text":
            deltas = [{"type": "text_delta", "text": p} for p in pieces(block["text"], split)]
        else:
            deltas = [
                {"type": "thinking_delta", "thinking": block["thinking"]},
                {"type": "signature_delta", "signature": block["signature"]},
            ]
        events += [
            sse("content_block_delta", {"type": "content_block_delta", "index": i, "delta": d})
            for d in deltas
        ]
        events.append(sse("content_block_stop", {"type": "content_block_stop", "index": i}))
    events.append(
        sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
    )
    events.append(sse("message_stop", {"type": "message_stop"}))
    return events


def pieces(text: str, n: int) -> list[str]:
    size = max(1, -(-len(text) // n))
    return [text[i : i + size] for i in range(0, len(text), size)]


def translate(events: list[bytes]) -> tuple[list[bytes], StreamTranslator]:
    translator = StreamTranslator(model=PUBLIC, created=1700000000)
    return [out for ev in events for out in translator.feed(ev)], translator


def test_a_stream_comes_out_as_openai_streams_with_include_usage() -> None:
    message = message_of([{"type": "text", "text": "Hello there"}], cache_read_input_tokens=40)
    out, translator = translate(anthropic_stream(message))
    assert out[-1] == b"data: [DONE]\n\n" and translator.done
    chunks = [c for c in map(event_json, out[:-1]) if c is not None]
    assert len(chunks) == len(out) - 1
    assert {(c["id"], c["object"], c["created"], c["model"]) for c in chunks} == {
        ("msg_013Zva2CMHLNnXjNJJKqJ2EF", "chat.completion.chunk", 1700000000, PUBLIC)
    }
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert all(c["usage"] is None for c in chunks[:-1])
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * (len(chunks) - 2) + [
        "stop"
    ]
    assert chunks[-2]["choices"][0]["delta"] == {}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == {
        "prompt_tokens": 50,
        "completion_tokens": 7,
        "total_tokens": 57,
        "prompt_tokens_details": {"cached_tokens": 40},
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 40,
    }
    assert (
        "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1]) == "Hello there"
    )


@pytest.mark.parametrize("split", [1, 2, 5])
def test_a_streamed_answer_adds_up_to_the_same_answer_unstreamed(split: int) -> None:
    message = message_of(
        [
            {"type": "thinking", "thinking": "The user wants two cities.", "signature": "c2ln"},
            {"type": "text", "text": "Checking both cities."},
            {
                "type": "tool_use",
                "id": "toolu_a",
                "name": "get_weather",
                "input": {"city": "Oslo", "units": "C"},
            },
            {"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {"city": "Lima"}},
        ],
        "tool_use",
        cache_creation_input_tokens=12,
    )
    out, translator = translate(anthropic_stream(message, split=split))
    collected = Collector()
    for ev in out:
        collected.feed(ev)
    assert collected.complete and translator.done
    streamed, whole = (
        collected.completion(),
        chat_completion(message, model=PUBLIC, created=1700000000),
    )
    for completion in (streamed, whole):  # arguments compared as JSON: their spacing is the model's
        for call in completion["choices"][0]["message"]["tool_calls"]:
            call["function"]["arguments"] = json.loads(call["function"]["arguments"])
    assert streamed["choices"] == whole["choices"]
    assert streamed["usage"] == whole["usage"] and streamed["id"] == whole["id"]


def test_a_tool_call_streamed_without_input_fragments_still_gets_its_arguments() -> None:
    message = message_of(
        [{"type": "tool_use", "id": "toolu_n", "name": "now", "input": {}}], "tool_use"
    )
    events = [ev for ev in anthropic_stream(message) if b"input_json_delta" not in ev]
    collected = Collector()
    for ev in translate(events)[0]:
        collected.feed(ev)
    [call] = collected.completion()["choices"][0]["message"]["tool_calls"]
    assert call["function"] == {"name": "now", "arguments": "{}"}


def test_message_delta_usage_is_cumulative_and_replaces_what_came_before() -> None:
    message = message_of([{"type": "text", "text": "ok"}], cache_read_input_tokens=5)
    events = anthropic_stream(message)
    # the newer shape: message_delta repeats the input counts, cumulative, beside output_tokens
    events[-2] = sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {
                "input_tokens": 10,
                "cache_creation_input_tokens": None,
                "cache_read_input_tokens": 5,
                "output_tokens": 9,
            },
        },
    )
    usage = event_json(translate(events)[0][-2])["usage"]  # type: ignore[index]
    assert (
        usage["prompt_tokens"],
        usage["completion_tokens"],
        usage["cache_read_input_tokens"],
    ) == (15, 9, 5)


def test_a_stream_whose_usage_cannot_be_read_ends_with_no_usage_not_zeros() -> None:
    """A count as text, or no usage at all: the usage chunk says null, which the engine charges
    as no usage (the reservation), where zeros made the answer free."""
    message = message_of([{"type": "text", "text": "ok"}])
    events = anthropic_stream(message)
    events[-2] = sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": "9"},
        },
    )
    assert event_json(translate(events)[0][-2])["usage"] is None  # type: ignore[index]
    bare = [ev for ev in anthropic_stream(message) if b'"usage"' not in ev]
    assert event_json(translate(bare)[0][-2])["usage"] is None  # type: ignore[index]
    assert chat_completion({**message, "usage": None}, model=PUBLIC, created=1)["usage"] is None


def test_an_error_event_becomes_an_openai_error_event_and_the_stream_is_not_done() -> None:
    events = anthropic_stream(message_of([{"type": "text", "text": "Half an answer"}]))[:5]
    events.append(
        sse(
            "error",
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        )
    )
    out, translator = translate(events)
    assert event_json(out[-1]) == {
        "error": {
            "message": "Overloaded",
            "type": "server_error",
            "param": None,
            "code": "overloaded",
        }
    }
    assert not translator.done and b"[DONE]" not in b"".join(out)


def test_pings_unknown_events_and_junk_say_nothing() -> None:
    translator = StreamTranslator(model=PUBLIC, created=1)
    for ev in (
        sse("ping", {"type": "ping"}),
        sse("future_event", {"type": "future_event"}),
        b": comment\n\n",
        b"event: message_start\ndata: {not json\n\n",
    ):
        assert translator.feed(ev) == []
    assert not translator.done


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "openai_type", "code"),
    [
        (400, "invalid_request_error", "invalid_request_error", "invalid_request"),
        (401, "authentication_error", "invalid_request_error", "invalid_api_key"),
        (402, "billing_error", "insufficient_quota", "insufficient_quota"),
        (403, "permission_error", "permission_error", "permission_denied"),
        (404, "not_found_error", "invalid_request_error", "not_found"),
        (413, "request_too_large", "invalid_request_error", "request_too_large"),
        (429, "rate_limit_error", "rate_limit_error", "rate_limit_exceeded"),
        (500, "api_error", "server_error", "server_error"),
        (504, "timeout_error", "server_error", "timeout"),
        (529, "overloaded_error", "server_error", "overloaded"),
    ],
)
def test_every_anthropic_error_type_maps_to_openais(
    status: int, kind: str, openai_type: str, code: str
) -> None:
    body = json.dumps(
        {
            "type": "error",
            "error": {"type": kind, "message": "Something went wrong."},
            "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy",
        }
    ).encode()
    assert json.loads(openai_error(status, body)) == {
        "error": {
            "message": "Something went wrong.",
            "type": openai_type,
            "param": None,
            "code": code,
        }
    }


def test_an_error_about_a_field_names_the_openai_field_and_an_unknown_model_is_model_not_found() -> (
    None
):
    def error(status: int, kind: str, message: str) -> dict[str, Any]:
        body = {"type": "error", "error": {"type": kind, "message": message}}
        return json.loads(openai_error(status, json.dumps(body).encode()))["error"]

    assert (
        error(400, "invalid_request_error", "stop_sequences: each stop sequence must be non-empty")[
            "param"
        ]
        == "stop"
    )
    assert (
        error(400, "invalid_request_error", "messages.3.content: Field required")["param"]
        == "messages"
    )
    assert error(404, "not_found_error", "model: claude-nope")["code"] == "model_not_found"
    assert error(418, "teapot_error", "no")["type"] == "invalid_request_error"  # a type added later
    assert error(503, "unavailable_error", "later")["type"] == "server_error"


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (413, b"<html><body>413 Request Entity Too Large</body></html>", "invalid_request_error"),
        (502, b"upstream connect error", "server_error"),
        (529, b"", "server_error"),
    ],
)
def test_an_error_body_that_is_no_json_still_gives_an_openai_error(
    status: int, body: bytes, kind: str
) -> None:
    error = json.loads(openai_error(status, body))["error"]
    assert (
        error["type"] == kind
        and f"HTTP {status}" in error["message"]
        and "<html>" not in error["message"]
    )


def test_no_key_text_reaches_the_caller() -> None:
    for text in (f"invalid x-api-key {KEY}", f"key {KEY[:20]}...{KEY[-4:]} revoked"):
        body = json.dumps(
            {"type": "error", "error": {"type": "authentication_error", "message": text}}
        ).encode()
        assert "Ab9_" not in openai_error(401, body).decode()
        assert "sk-ant" not in openai_error(401, text.encode()).decode()
        assert "sk-ant" not in scrub(text)  # the transport's own scrub covers Anthropic's keys


# -- rate limits ---------------------------------------------------------------------------

NOW = 1755780000.0  # 2025-08-21T12:40:00Z
HEADERS = {  # as api.anthropic.com sends them (2xx and 429 alike)
    "anthropic-ratelimit-requests-limit": "1000",
    "anthropic-ratelimit-requests-remaining": "999",
    "anthropic-ratelimit-requests-reset": "2025-08-21T12:40:00.06Z",
    "anthropic-ratelimit-tokens-limit": "96000",
    "anthropic-ratelimit-tokens-remaining": "96000",
    "anthropic-ratelimit-tokens-reset": "2025-08-21T12:40:59Z",
    "anthropic-ratelimit-input-tokens-limit": "80000",
    "anthropic-ratelimit-input-tokens-remaining": "79000",
    "anthropic-ratelimit-input-tokens-reset": "2025-08-21T12:40:45+00:00",
    "anthropic-ratelimit-output-tokens-limit": "16000",
    "anthropic-ratelimit-output-tokens-remaining": "16000",
    "anthropic-ratelimit-output-tokens-reset": "2025-08-21T12:41:00Z",
    "request-id": "req_011CSLsW7mFqvHHnzrKdKjAE",
}


def test_rate_headers_become_the_names_and_durations_the_pool_reads() -> None:
    out = rate_headers(HEADERS, NOW)
    assert out == {
        "x-ratelimit-limit-requests": "1000",
        "x-ratelimit-remaining-requests": "999",
        "x-ratelimit-reset-requests": "0.06s",
        # input-tokens has less left than tokens: the tighter one, with its own limit and reset
        "x-ratelimit-limit-tokens": "80000",
        "x-ratelimit-remaining-tokens": "79000",
        "x-ratelimit-reset-tokens": "45s",
    }
    bucket = Bucket((), ())
    bucket.observe_headers(out, 100.0)
    assert (bucket.prov_req_left, bucket.prov_tok_left) == (999, 79000)
    assert bucket.prov_req_reset == pytest.approx(
        100.06
    ) and bucket.prov_tok_reset == pytest.approx(145.0)


def test_used_up_output_tokens_hold_every_request_back_until_their_reset() -> None:
    out = rate_headers({**HEADERS, "anthropic-ratelimit-output-tokens-remaining": "0"}, NOW)
    assert (
        out["x-ratelimit-remaining-tokens"],
        parse_duration(out["x-ratelimit-reset-tokens"]),
    ) == ("0", 60.0)


def test_a_429s_retry_after_is_kept_in_seconds() -> None:
    assert rate_headers({"retry-after": "17"}, NOW) == {"retry-after": "17"}
    assert rate_headers({"Retry-After": "2.2"}, NOW) == {"retry-after": "3"}
    assert rate_headers({"retry-after": "Thu, 21 Aug 2025 12:40:30 GMT"}, NOW) == {
        "retry-after": "30"
    }


def test_unparsable_rate_headers_are_ignored_and_a_past_reset_is_now() -> None:
    out = rate_headers(
        {
            "anthropic-ratelimit-requests-limit": "lots",
            "anthropic-ratelimit-requests-remaining": "7",
            "anthropic-ratelimit-requests-reset": "2025-08-21T12:39:00Z",
            "anthropic-ratelimit-tokens-remaining": "10",
            "anthropic-ratelimit-tokens-reset": "2025-13-45T99:00:00Z",
            "retry-after": "soon",
        },
        NOW,
    )
    assert out == {
        "x-ratelimit-remaining-requests": "7",
        "x-ratelimit-reset-requests": "0s",
        "x-ratelimit-remaining-tokens": "10",
    }
    assert rate_headers({}, NOW) == {}
