"""The fake Anthropic (tests/helpers/fake_anthropic.py) answers as the published API does, over
real HTTP, and what the translation (engine/upstreams/anthropic/request.py) sends it is accepted.

References: the Messages API (https://docs.anthropic.com/en/api/messages), streaming
(https://docs.anthropic.com/en/docs/build-with-claude/streaming), errors
(https://docs.anthropic.com/en/api/errors), rate limits
(https://docs.anthropic.com/en/api/rate-limits), prompt caching
(https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching), models
(https://docs.anthropic.com/en/api/models-list).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from jupyter_server_ext.engine.bodies.streams import Collector
from jupyter_server_ext.engine.upstreams.anthropic import (
    ANTHROPIC_VERSION,
    StreamTranslator,
    chat_completion,
    messages_request,
    openai_error,
    rate_headers,
)
from tests.helpers.fake_anthropic import FakeAnthropic, KeyPolicy

pytestmark = pytest.mark.slow

KEY, LIMITED = "test-anthropic-key-main", "test-anthropic-key-limited"
MODEL = "claude-fake-small"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic({KEY: KeyPolicy("main"), LIMITED: KeyPolicy("limited", limit=2)}) as server:
        yield server


@pytest.fixture
def api(fake: FakeAnthropic) -> Iterator[httpx.Client]:
    fake.reset()
    headers = {"x-api-key": KEY, "anthropic-version": ANTHROPIC_VERSION}
    with httpx.Client(base_url=fake.base_url, headers=headers, timeout=10) as client:
        yield client


def to_anthropic(openai_body: dict[str, Any]) -> dict[str, Any]:
    return messages_request(openai_body, model=MODEL, default_max_tokens=256)


def events_of(api: httpx.Client, body: dict[str, Any]) -> tuple[list[bytes], bool]:
    """The SSE events of a streamed answer, and whether the body ended whole (not cut off)."""
    raw, whole = b"", True
    with api.stream("POST", "/v1/messages", json={**body, "stream": True}) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith(
            "text/event-stream"
        )
        try:
            for chunk in resp.iter_bytes():
                raw += chunk
        except httpx.HTTPError:  # the connection closed mid-body
            whole = False
    return [ev + b"\n\n" for ev in raw.split(b"\n\n") if ev.strip()], whole


def test_a_stream_follows_the_reference_and_adds_up_to_the_unstreamed_answer(
    api: httpx.Client,
) -> None:
    body = to_anthropic(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "How many rows has orders?"},
            ]
        }
    )
    answer = api.post("/v1/messages", json=body)
    assert answer.status_code == 200 and answer.headers["request-id"].startswith("req_")
    message = answer.json()
    assert (message["type"], message["role"], message["stop_reason"]) == (
        "message",
        "assistant",
        "end_turn",
    )
    assert "How many rows has orders?" in message["content"][0]["text"]

    events, whole = events_of(api, body)
    assert whole
    names = [ev.split(b"\n", 1)[0].removeprefix(b"event: ").decode() for ev in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}
    for name, ev in zip(names, events, strict=True):  # each event: line names its data's type
        assert json.loads(ev.split(b"data: ", 1)[1])["type"] == name

    translator, collected = StreamTranslator(model="claude", created=1), Collector()
    for ev in events:
        for out in translator.feed(ev):
            collected.feed(out)
    assert translator.done and collected.complete
    expected = chat_completion(message, model="claude", created=1)
    assert collected.completion()["choices"] == expected["choices"]
    assert collected.completion()["usage"] == expected["usage"]


def test_what_the_real_api_refuses_is_refused_alike_and_maps_to_openais_errors(
    api: httpx.Client,
) -> None:
    ok = to_anthropic({"messages": [{"role": "user", "content": "hi"}]})
    cases = [  # (headers, body, status, Anthropic's type, what the message says)
        ({"anthropic-version": ""}, ok, 400, "invalid_request_error", "anthropic-version"),
        ({"x-api-key": "test-anthropic-key-nobody"}, ok, 401, "authentication_error", "x-api-key"),
        (  # a system turn (taken at any position) holds text only
            {},
            {
                **ok,
                "messages": [
                    *ok["messages"],
                    {"role": "system", "content": [{"type": "tool_result", "tool_use_id": "x"}]},
                ],
            },
            400,
            "invalid_request_error",
            "does not match any of the expected tags: 'text'",
        ),
        (
            {},
            {**ok, "stream_options": {"include_usage": True}},
            400,
            "invalid_request_error",
            "Extra inputs",
        ),
        (
            {},
            {k: v for k, v in ok.items() if k != "max_tokens"},
            400,
            "invalid_request_error",
            "max_tokens: Field required",
        ),
        ({}, {**ok, "temperature": 1.5}, 400, "invalid_request_error", "temperature"),
        ({}, {**ok, "stop_sequences": ["\n"]}, 400, "invalid_request_error", "non-whitespace"),
        (
            {},
            {
                **ok,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": "toolu_x", "content": "1"}
                        ],
                    }
                ],
            },
            400,
            "invalid_request_error",
            "unexpected `tool_use_id`",
        ),
        ({}, {**ok, "model": "claude-nope"}, 404, "not_found_error", "model: claude-nope"),
    ]
    for headers, body, status, kind, says in cases:
        resp = api.post("/v1/messages", json=body, headers=headers)
        error = resp.json()
        assert (resp.status_code, error["type"], error["error"]["type"]) == (
            status,
            "error",
            kind,
        ), says
        assert (
            says in error["error"]["message"] and error["request_id"] == resp.headers["request-id"]
        )
        shaped = json.loads(openai_error(resp.status_code, resp.content))["error"]
        assert (
            set(shaped) == {"message", "type", "param", "code"}
            and shaped["message"] == error["error"]["message"]
        )


def test_a_cached_prefix_is_written_once_then_read(api: httpx.Client) -> None:
    schema = "CREATE TABLE orders (id INTEGER, total DECIMAL, placed DATE); " * 20

    def ask(question: str) -> dict[str, Any]:
        body = to_anthropic(
            {
                "messages": [
                    {
                        "role": "system",
                        "content": [
                            {"type": "text", "text": schema, "cache_control": {"type": "ephemeral"}}
                        ],
                    },
                    {"role": "user", "content": question},
                ]
            }
        )
        return chat_completion(
            api.post("/v1/messages", json=body).json(), model="claude", created=1
        )["usage"]

    first, second = ask("Total of all orders?"), ask("Orders placed today?")
    assert first["cache_creation_input_tokens"] > 0 and first["cache_read_input_tokens"] == 0
    assert second["cache_read_input_tokens"] == first["cache_creation_input_tokens"]
    assert second["cache_creation_input_tokens"] == 0
    assert second["prompt_tokens_details"]["cached_tokens"] == second["cache_read_input_tokens"]
    # the same prompt, billed apart
    assert second["prompt_tokens"] == pytest.approx(first["prompt_tokens"], abs=2)


def test_a_tool_call_round_trips_through_the_translation(
    fake: FakeAnthropic, api: httpx.Client
) -> None:
    fake.script(
        {"content": [{"type": "tool_use", "name": "get_weather", "input": {"city": "Oslo"}}]}
    )
    question = [{"role": "user", "content": "Weather in Oslo?"}]
    answer = api.post(
        "/v1/messages", json=to_anthropic({"messages": question, "tools": [WEATHER_TOOL]})
    ).json()
    reply = chat_completion(answer, model="claude", created=1)["choices"][0]
    assert reply["finish_reason"] == "tool_calls"
    call = reply["message"]["tool_calls"][0]
    result = {"role": "tool", "tool_call_id": call["id"], "content": "4 C and snowing"}

    follow_up = to_anthropic(
        {"messages": [*question, reply["message"], result], "tools": [WEATHER_TOOL]}
    )
    resp = api.post("/v1/messages", json=follow_up)
    assert resp.status_code == 200 and "4 C and snowing" in resp.json()["content"][0]["text"]
    # the control: without the tool's result the API refuses the conversation
    unanswered = to_anthropic(
        {
            "messages": [*question, reply["message"], {"role": "user", "content": "And?"}],
            "tools": [WEATHER_TOOL],
        }
    )
    refused = api.post("/v1/messages", json=unanswered)
    assert refused.status_code == 400 and "tool_result" in refused.json()["error"]["message"]


def test_limits_and_faults_look_as_they_do_on_the_real_api(
    fake: FakeAnthropic, api: httpx.Client
) -> None:
    body = to_anthropic({"messages": [{"role": "user", "content": "hi"}]})
    limited = {"x-api-key": LIMITED}
    first = api.post("/v1/messages", json=body, headers=limited)
    assert first.status_code == 200
    assert rate_headers(first.headers, time.time())["x-ratelimit-remaining-requests"] == "1"
    api.post("/v1/messages", json=body, headers=limited)
    refused = api.post("/v1/messages", json=body, headers=limited)
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "rate_limit_error"
    pool_sees = rate_headers(refused.headers, time.time())
    assert pool_sees["x-ratelimit-remaining-requests"] == "0" and int(pool_sees["retry-after"]) >= 1

    fake.set_fault("main", "overloaded", count=1)
    overloaded = api.post("/v1/messages", json=body)
    assert (overloaded.status_code, overloaded.json()["error"]["type"]) == (529, "overloaded_error")
    for kind in ("die_mid_stream", "error_event"):
        fake.set_fault("main", kind, count=1)
        translator = StreamTranslator(model="claude", created=1)
        events, whole = events_of(api, body)
        out = [o for ev in events for o in translator.feed(ev)]
        # part of an answer came, and it is known not whole
        assert out and not translator.done, kind
        assert whole == (kind == "error_event")
        if kind == "error_event":
            assert json.loads(out[-1][6:])["error"]["code"] == "overloaded"
    assert api.post("/v1/messages", json=body).status_code == 200  # the faults were one-off


def test_the_models_listing_checks_the_key_as_messages_do(
    fake: FakeAnthropic, api: httpx.Client
) -> None:
    listing = api.get("/v1/models", params={"limit": 1})
    assert listing.status_code == 200
    page = listing.json()
    assert page["data"] == [
        {
            "type": "model",
            "id": fake.model_ids[0],
            "display_name": "Claude Fake Small",
            "created_at": "2025-01-01T00:00:00Z",
        }
    ]
    assert (page["has_more"], page["first_id"], page["last_id"]) == (
        True,
        fake.model_ids[0],
        fake.model_ids[0],
    )
    assert (
        api.get("/v1/models", headers={"x-api-key": "test-anthropic-key-nobody"}).status_code == 401
    )
    fake.set_fault("main", "status", status=401)  # a revoked key is refused here too
    assert api.get("/v1/models").json()["error"]["type"] == "authentication_error"
