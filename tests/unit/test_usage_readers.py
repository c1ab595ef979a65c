"""Each API's answer read into the usage the engine settles (``bodies.usage``; a request carries
its API's reader, ``ChatRequest.usage_reader``): the counts a user is charged for, from the
shapes each provider's API reference gives, JSON and streamed; what cannot be read is None
(charged the reservation, never free). Settlement through the engine: test_abuse_provider_billing,
test_hosted_tools, test_api_messages, test_api_responses."""

from __future__ import annotations

import json
from typing import Any

from jupyter_server_ext.engine.apis.messages.usage import MessagesUsage
from jupyter_server_ext.engine.apis.native import native_request
from jupyter_server_ext.engine.apis.responses.usage import ResponsesUsage
from jupyter_server_ext.engine.bodies.request import parse_chat_request
from jupyter_server_ext.engine.bodies.usage import ChatUsage, UsageReading


def read_stream(reader: UsageReading, events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last usage a stream's events say, reading only those the reader wants (as the
    engine does: ``wants`` on the raw event first)."""
    found = None
    for event in events:
        if reader.wants(json.dumps(event).encode()):
            found = reader.read(event) or found
    return found


def test_a_chat_answer_is_read_as_it_is_with_groqs_executed_tools_by_kind() -> None:
    reader = ChatUsage()
    answer = {
        "choices": [
            {
                "message": {
                    "content": "x",
                    "executed_tools": [{"type": "browser_search"}, {"type": "code_interpreter"}],
                }
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
    }
    usage = reader.read(answer)
    assert usage is answer["usage"]  # the dict itself: its cost is written into it
    assert not reader.wants(b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n')
    assert reader.calls == {"web_search": 1, "code_interpreter": 1}
    # a count that is no whole number: unreadable, so charged as no usage (the reservation)
    assert reader.read({"usage": {"prompt_tokens": "10", "completion_tokens": 3}}) is None
    groq = {"x_groq": {"usage": {"prompt_tokens": 1, "completion_tokens": 2}}}
    assert reader.read(groq) == {"prompt_tokens": 1, "completion_tokens": 2}


def test_a_messages_stream_joins_its_start_and_delta_and_counts_cache_apart() -> None:
    reader = MessagesUsage()
    start = {
        "type": "message_start",
        "message": {
            "usage": {
                "input_tokens": 20,
                "cache_creation_input_tokens": 100,
                "cache_read_input_tokens": 500,
                "output_tokens": 1,
            }
        },
    }
    tool = {
        "type": "content_block_start",
        "content_block": {"type": "server_tool_use", "name": "web_search"},
    }
    delta = {
        "type": "message_delta",
        "usage": {"output_tokens": 40, "server_tool_use": {"web_search_requests": 1}},
    }
    usage = read_stream(reader, [start, tool, delta])
    assert usage == {
        "prompt_tokens": 620,  # fresh, written and read: all of the prompt
        "completion_tokens": 40,
        "cache_creation_input_tokens": 100,
        "prompt_tokens_details": {"cached_tokens": 500},
    }
    assert reader.calls == {"web_search": 1}
    # the events that say nothing of usage are not read at all (most of a stream's)
    text = b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{}}\n\n'
    assert not reader.wants(text) and not MessagesUsage().wants(b'data: {"type":"ping"}\n\n')


def test_code_a_message_ran_is_one_container_whether_or_not_its_usage_counts_it() -> None:
    reader = MessagesUsage()
    message = {
        "type": "message",
        "content": [
            {"type": "server_tool_use", "name": "bash_code_execution"},
            {"type": "server_tool_use", "name": "text_editor_code_execution"},
        ],
        "usage": {"input_tokens": 5, "output_tokens": 5},
    }
    assert reader.read(message) is not None
    assert reader.calls == {"code_interpreter": 1}
    assert MessagesUsage().read({"type": "message", "usage": {"input_tokens": -1}}) is None


def test_a_search_that_erred_past_max_uses_is_not_charged_the_usage_is_the_bill() -> None:
    """A third search past ``max_uses`` shows its ``server_tool_use`` block, its result the error
    ``max_uses_exceeded``; the usage counts the two Anthropic bills (no errored search is
    billed). Where the usage counts no kind of a block, the blocks are what was run."""
    search = {"type": "server_tool_use", "name": "web_search", "input": {"query": "q"}}
    erred = {"type": "web_search_tool_result_error", "error_code": "max_uses_exceeded"}
    message = {
        "type": "message",
        "content": [
            search,
            {"type": "web_search_tool_result", "content": []},
            search,
            {"type": "web_search_tool_result", "content": []},
            search,
            {"type": "web_search_tool_result", "content": erred},
        ],
        "usage": {
            "input_tokens": 5,
            "output_tokens": 5,
            "server_tool_use": {"web_search_requests": 2},
        },
    }
    reader = MessagesUsage()
    assert reader.read(message) is not None
    assert reader.calls == {"web_search": 2}
    # every search erred: the usage says 0, and 0 is charged
    none = {**message, "usage": {**message["usage"], "server_tool_use": {"web_search_requests": 0}}}
    reader = MessagesUsage()
    assert reader.read(none) is not None and reader.calls == {}
    # a usage without the count: the three blocks
    bare = {**message, "usage": {"input_tokens": 5, "output_tokens": 5}}
    reader = MessagesUsage()
    assert reader.read(bare) is not None and reader.calls == {"web_search": 3}


def test_a_compactions_pass_that_the_top_level_usage_leaves_out_is_counted() -> None:
    """Anthropic's compaction page: the top-level counts are the answer's pass alone; the
    summary's pass is in ``usage.iterations``, and billed. Its example: 23,000 in and 1,000 out
    at the top, a compaction of 180,000 in and 3,500 out beside it (charged $0.084 of the $0.68
    billed on Sonnet before). An iteration whose counts cannot be read makes the whole usage
    unreadable: the reservation, never the smaller figure."""
    iterations = [
        {"type": "compaction", "input_tokens": 180_000, "output_tokens": 3_500},
        {"type": "message", "input_tokens": 23_000, "output_tokens": 1_000},
    ]
    message = {
        "type": "message",
        "content": [{"type": "compaction", "content": "Summary: ..."}],
        "usage": {"input_tokens": 23_000, "output_tokens": 1_000, "iterations": iterations},
    }
    usage = MessagesUsage().read(message)
    assert usage is not None
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (203_000, 4_500)
    # streamed: the iterations come with the closing delta
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 23_000}}}
    delta = {"type": "message_delta", "usage": {"output_tokens": 1_000, "iterations": iterations}}
    streamed = read_stream(MessagesUsage(), [start, delta])
    assert streamed is not None and streamed["prompt_tokens"] == 203_000
    broken = [{"type": "compaction", "input_tokens": "many", "output_tokens": 3_500}]
    message["usage"] = {"input_tokens": 23_000, "output_tokens": 1_000, "iterations": broken}
    assert MessagesUsage().read(message) is None


def test_a_response_caps_cached_tokens_at_its_prompt_and_counts_containers_apart() -> None:
    reader = ResponsesUsage()
    completed = {
        "type": "response.completed",
        "response": {
            "output": [
                {"type": "web_search_call"},
                {"type": "code_interpreter_call", "container_id": "cntr_a"},
                {"type": "code_interpreter_call", "container_id": "cntr_a"},
                {"type": "code_interpreter_call", "container_id": "cntr_b"},
                {"type": "message"},
            ],
            "usage": {
                "input_tokens": 50,
                "output_tokens": 7,
                "input_tokens_details": {"cached_tokens": 90},  # more than the prompt: capped
            },
        },
    }
    usage = read_stream(reader, [{"type": "response.created", "response": {}}, completed])
    assert usage == {
        "prompt_tokens": 50,
        "completion_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 50},
    }
    assert reader.calls == {"web_search": 1, "code_interpreter": 2}
    delta = b'data: {"type":"response.output_text.delta","delta":"usage"}\n\n'
    assert reader.wants(delta)  # the word in an answer's text: read, and found no usage
    assert reader.read({"type": "response.output_text.delta", "delta": "usage"}) is None
    assert not reader.wants(b'data: {"type":"response.output_text.delta","delta":"hi"}\n\n')


def test_a_request_carries_the_reader_of_its_apis_answers() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    chat = parse_chat_request(body, default_model="m", default_max_tokens=64)
    assert isinstance(chat.usage_reader(), ChatUsage)
    sent = {"model": "m", "messages": body["messages"], "max_tokens": 5}
    assert isinstance(native_request("messages", sent, chat).usage_reader(), MessagesUsage)
    sent = {"model": "m", "input": "hi"}
    assert isinstance(native_request("responses", sent, chat).usage_reader(), ResponsesUsage)
