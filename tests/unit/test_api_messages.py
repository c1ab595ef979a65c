"""Anthropic's Messages API through the proxy, with the real `anthropic` SDK as the client, over
HTTP in a Jupyter server in this process: in front of the fake OpenAI-compatible provider
(translated both ways) and of the fake Anthropic (where the system blocks, ``cache_control``
and tools reach it, and a cache write is charged at its price).

Errors come back in Anthropic's own shape and statuses, so the SDK raises the class it would
raise for Anthropic itself; the request is held to the same limits as any other.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import anthropic
import pytest

from tests.helpers import upstreams_for
from tests.helpers.fake_anthropic import FakeAnthropic
from tests.helpers.fake_anthropic import KeyPolicy as AnthropicKey
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import InProcessJupyter

CLAUDE_KEY = "test-anthropic-key-messages"
CLAUDE_PRICE = {"input": 1.0, "output": 5.0, "cache_write": 2.0}
PRICED = {"prices": {"fake-small": {"input": 1.0, "output": 1.0}}}
DEAR = {"prices": {"fake-small": {"input": 10.0, "output": 10.0}}}  # $0.00001 a token
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
HELLO_MESSAGES = [{"role": "user", "content": "Count to ten."}]
PIXEL = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()


def tool_call(name: str, arguments: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-tool",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "fake-small",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_7",
                            "type": "function",
                            "function": {"name": name, "arguments": arguments},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28},
    }


@pytest.fixture
def claude() -> Any:
    with FakeAnthropic({CLAUDE_KEY: AnthropicKey("claude")}) as fake:
        yield fake


@pytest.fixture
def server(
    jupyter_app_factory, fresh_provider: FakeProvider, claude: FakeAnthropic
) -> InProcessJupyter:
    anthropic_upstream = {
        "name": "claude",
        "provider": "anthropic",
        "base_url": claude.base_url,
        "api_key": CLAUDE_KEY,
        "models": {"claude-small": "claude-fake-small"},
        "prices": {"claude-small": CLAUDE_PRICE},
    }
    return jupyter_app_factory(
        {
            "upstreams": [
                *upstreams_for(fresh_provider, a1=PRICED, a2=PRICED, b1=PRICED),
                anthropic_upstream,
            ],
            "default_model": "fake-small",
            "admin_users": ["carol"],
            "limit_overrides": {
                "group:students": {"models": ["fake-small"], "user_limits": ["4/minute"]},
            },
        },
        named_users=True,
    )


def client(server: InProcessJupyter, key: str) -> anthropic.Anthropic:
    # the SDK sends its key as x-api-key, and the API root without /v1
    return anthropic.Anthropic(base_url=server.proxy_url.rstrip("/"), api_key=key, max_retries=0)


def activity(server: InProcessJupyter, user: str, rows: int = 1) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        status, _, raw = server.request("GET", f"admin/users/{user}/activity", token="tok-carol")
        assert status == 200, raw
        found = json.loads(raw)["activity"]
        if len(found) >= rows or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_a_message_with_a_system_prompt_is_answered_and_billed_under_its_api(
    server: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    message = client(server, "tok-alice").messages.create(
        model="fake-small",
        max_tokens=50,
        system="You answer briefly.",
        messages=[{"role": "user", "content": "What is a median?"}],
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].text == "Fake answer to: What is a median?"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    sent = fresh_provider.received[-1].body
    assert sent["messages"][0] == {"role": "system", "content": "You answer briefly."}
    assert sent["max_completion_tokens"] == 50
    row = activity(server, "alice")[0]
    assert row["api"] == "messages" and row["status"] == 200 and row["cost_usd"] > 0


def test_a_tool_round_trip_and_an_image(
    server: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    claude = client(server, "tok-alice")
    fresh_provider.script(tool_call("get_weather", '{"city": "Lyon"}'))
    question = {
        "role": "user",
        "content": [
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/png", "data": PIXEL},
            },
            {"type": "text", "text": "Weather where this was taken, Lyon?"},
        ],
    }
    first = claude.messages.create(
        model="fake-small", max_tokens=50, tools=[WEATHER], messages=[question]
    )
    assert first.stop_reason == "tool_use"
    use = first.content[0]
    assert use.type == "tool_use" and use.name == "get_weather" and use.input == {"city": "Lyon"}
    sent = fresh_provider.received[-1].body
    assert sent["messages"][0]["content"][0] == {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{PIXEL}"},
    }
    assert sent["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]
    fresh_provider.script("Sunny in Lyon.")
    result = {"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 24 C"}
    second = claude.messages.create(
        model="fake-small",
        max_tokens=50,
        tools=[WEATHER],
        messages=[
            question,
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [result]},
        ],
    )
    assert second.content[0].text == "Sunny in Lyon."
    turns = fresh_provider.received[-1].body["messages"]
    assert turns[1]["tool_calls"][0]["id"] == use.id
    assert turns[2] == {"role": "tool", "tool_call_id": use.id, "content": "sunny, 24 C"}


def test_a_stream_arrives_as_anthropics_events_with_usage(server: InProcessJupyter) -> None:
    with client(server, "tok-alice").messages.stream(
        model="fake-small", max_tokens=50, messages=[{"role": "user", "content": "Stream, please"}]
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert "content_block_delta" in kinds or "text" in kinds
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert final.content[0].text == "Fake answer to: Stream, please"
    assert final.usage.output_tokens > 0 and final.stop_reason == "end_turn"


def test_a_streamed_tool_call_arrives_as_input_json(
    server: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    fresh_provider.script(tool_call("get_weather", '{"city": "Paris"}'))
    with client(server, "tok-alice").messages.stream(
        model="fake-small",
        max_tokens=50,
        tools=[WEATHER],
        messages=[{"role": "user", "content": "Paris?"}],
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[-1].type == "tool_use" and final.content[-1].input == {"city": "Paris"}
    # as Anthropic streams it: the block opens with an empty input, which comes as JSON deltas
    start = next(
        e for e in events if e.type == "content_block_start" and e.content_block.type == "tool_use"
    )
    assert start.content_block.input == {}
    deltas = [
        e.delta.partial_json
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
    ]
    assert json.loads("".join(deltas)) == {"city": "Paris"}, deltas


def test_count_tokens_estimates_without_asking_a_provider(
    server: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    counted = client(server, "tok-alice").messages.count_tokens(
        model="fake-small", messages=[{"role": "user", "content": "word " * 400}]
    )
    assert 400 <= counted.input_tokens <= 700
    assert fresh_provider.received == []


def test_an_anthropic_upstream_gets_the_system_blocks_and_cache_marks_and_a_write_is_charged_its_price(
    server: InProcessJupyter, claude: FakeAnthropic
) -> None:
    doc = "The sales table has columns id, region, amount and day. " * 40
    system = [
        {"type": "text", "text": "You help with SQL."},
        {"type": "text", "text": doc, "cache_control": {"type": "ephemeral"}},
    ]
    raw = client(server, "tok-carol").messages.with_raw_response.create(
        model="claude-small",
        max_tokens=20,
        system=system,
        tools=[WEATHER],
        stop_sequences=["END"],
        messages=[{"role": "user", "content": "Which column holds money?"}],
    )
    message = raw.parse()
    sent = claude.received[-1]
    assert sent.body["system"] == system
    assert sent.body["stop_sequences"] == ["END"]
    assert sent.body["tools"][0]["input_schema"] == {"type": "object", **WEATHER["input_schema"]}
    assert sent.cache_write > 0
    assert message.usage.cache_creation_input_tokens == sent.cache_write
    # a 5-minute write (no ttl): Anthropic's 1.25x input, as the price names only an hour's
    expected = (
        message.usage.input_tokens * 1.0
        + sent.cache_write * 1.25
        + message.usage.output_tokens * 5.0
    ) / 1e6
    assert float(raw.headers["x-rsql-cost-usd"]) == pytest.approx(expected, rel=1e-6)


# -- errors, in Anthropic's shape --------------------------------------------------------------


def test_errors_come_back_as_anthropic_sends_them(server: InProcessJupyter) -> None:
    ask = {"model": "fake-small", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(anthropic.AuthenticationError) as auth:
        client(server, "not-a-token").messages.create(**ask)
    assert auth.value.body["type"] == "error"
    assert auth.value.body["error"]["type"] == "authentication_error"
    bob = client(server, "tok-bob")
    with pytest.raises(anthropic.PermissionDeniedError) as denied:  # students: fake-small only
        bob.messages.create(**{**ask, "model": "claude-small"})
    assert denied.value.body["error"]["type"] == "permission_error"
    with pytest.raises(anthropic.BadRequestError) as bad:
        bob.messages.create(
            model="fake-small", max_tokens=20, messages=[{"role": "robot", "content": "x"}]
        )
    assert "messages[0].role" in bad.value.body["error"]["message"]
    for _ in range(4):
        bob.messages.create(**ask)
    with pytest.raises(anthropic.RateLimitError) as limited:
        bob.messages.create(**ask)
    assert limited.value.body["error"]["type"] == "rate_limit_error"
    assert int(limited.value.response.headers["retry-after"]) >= 1


def test_tool_arguments_that_are_not_json_are_told_as_text(
    server: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    fresh_provider.script(tool_call("get_weather", "{city: Lyon"))
    message = client(server, "tok-alice").messages.create(
        model="fake-small",
        max_tokens=50,
        tools=[WEATHER],
        messages=[{"role": "user", "content": "Lyon?"}],
    )
    assert [block.type for block in message.content] == ["text"]
    assert "not a JSON object" in message.content[0].text
    assert message.stop_reason == "end_turn"


# -- an Anthropic upstream: the request goes as it was sent ----------------------------------

THOUGHT = {"type": "thinking", "thinking": "The user wants a count.", "signature": "sig-abc123"}


def test_an_anthropic_upstream_gets_the_request_as_sent_thinking_and_all(
    server: InProcessJupyter, claude: FakeAnthropic
) -> None:
    claude.script({"content": [THOUGHT, {"type": "text", "text": "42 rows."}]})
    history = [
        {"role": "user", "content": "How many rows?"},
        {"role": "assistant", "content": [THOUGHT, {"type": "text", "text": "Let me count."}]},
        {"role": "user", "content": "And now?"},
    ]
    body = {
        "model": "claude-small",
        "max_tokens": 2048,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "extra_body": {"top_k": 5},
        "metadata": {"user_id": "someone-else"},
        "messages": history,
    }
    claude_client = client(server, "tok-carol")
    message = claude_client.messages.create(
        **body, extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"}
    )
    sent = claude.received[-1]
    # everything the client sent reaches Anthropic: thinking, its signature, top_k, the beta
    assert sent.body["thinking"] == body["thinking"] and sent.body["top_k"] == 5
    assert sent.body["messages"][1]["content"][0] == THOUGHT
    assert sent.headers.get("anthropic-beta") == "interleaved-thinking-2025-05-14"
    # ... but whom it is for is the proxy's to say, never the caller's
    assert sent.body["metadata"]["user_id"] != "someone-else"
    assert sent.body["model"] == "claude-fake-small"
    # and the answer comes back as Anthropic gave it, its thinking and signature whole
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].signature == "sig-abc123"
    claude.script({"content": [THOUGHT, {"type": "text", "text": "Streamed."}]})
    with claude_client.messages.stream(**body) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "thinking" and final.content[0].signature == "sig-abc123"
    assert final.content[1].text == "Streamed."
    rows = activity(server, "carol", 2)
    assert [r["api"] for r in rows[:2]] == ["messages", "messages"]
    assert all(r["cost_usd"] > 0 and r["upstream"] == "claude" for r in rows[:2])


def test_a_stream_sent_as_it_was_that_breaks_off_ends_with_anthropics_error_event(
    server: InProcessJupyter, claude: FakeAnthropic
) -> None:
    """A Messages stream to an Anthropic upstream, sent as it was, whose connection drops
    mid-answer: the stream the client reads ends with an error event in Anthropic's shape, which
    its SDK raises as an API error, and the request is logged a 502 under its API."""
    claude.script("one two three four five six seven eight nine ten")
    claude.set_fault("claude", "die_mid_stream", count=1)
    # top_k: a field only a request sent as it was keeps (the translated path drops it)
    body = {
        "model": "claude-small",
        "max_tokens": 64,
        "messages": HELLO_MESSAGES,
        "extra_body": {"top_k": 5},
    }
    with pytest.raises(anthropic.APIStatusError) as err:
        with client(server, "tok-carol").messages.stream(**body) as stream:
            for _ in stream:
                pass
    error = err.value.body
    assert isinstance(error, dict) and error["type"] == "error", error
    assert error["error"]["type"] == "api_error", error
    assert "the upstream stream broke off" in error["error"]["message"], error
    assert claude.received[-1].body.get("top_k") == 5  # it went to Anthropic as it was sent
    row = activity(server, "carol")[0]
    assert row["api"] == "messages" and row["status"] == 502 and row["upstream"] == "claude"


# -- the same promises on this API ------------------------------------------------------------


def test_a_dropped_stream_is_charged_what_was_generated_and_a_spent_budget_is_a_429(
    jupyter_app_factory, fresh_provider: FakeProvider
) -> None:
    import socket
    import urllib.parse

    server = jupyter_app_factory(
        {
            "upstreams": upstreams_for(fresh_provider, a1=DEAR, a2=DEAR, b1=DEAR),
            "default_model": "fake-small",
            "admin_users": ["carol"],
            "user_daily_budget_usd": 0.002,
        },
        named_users=True,
    )
    fresh_provider.word_delay = 0.02
    fresh_provider.script(" ".join(f"w{i}" for i in range(60)))
    body = json.dumps(
        {
            "model": "fake-small",
            "max_tokens": 100,
            "stream": True,
            "messages": [{"role": "user", "content": "talk"}],
        }
    ).encode()
    u = urllib.parse.urlparse(server.proxy_url)
    sock = socket.create_connection((u.hostname, u.port))
    sock.sendall(
        f"POST {u.path}v1/messages HTTP/1.1\r\nHost: {u.netloc}\r\nx-api-key: tok-alice\r\n"
        f"anthropic-version: 2023-06-01\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    sock.settimeout(10)
    got = b""
    while got.count(b"content_block_delta") < 3:
        try:
            piece = sock.recv(4096)
        except TimeoutError:
            raise AssertionError(got) from None
        assert piece, got
        got += piece
    sock.close()  # gone after a few words: the provider generates (and bills) the rest
    row = activity(server, "alice")[0]
    assert row["api"] == "messages" and row["status"] == 499
    # what the provider generated and billed, all 60 words: not what the client read (3 words),
    # nor one token per chunk the proxy had read when the client left, nor the reservation (100)
    billed = fresh_provider.received[0]
    assert billed.output_tokens == 60
    assert row["completion_tokens"] == billed.output_tokens
    assert row["prompt_tokens"] == billed.prompt_tokens
    assert row["cost_usd"] == pytest.approx((billed.prompt_tokens + 60) * 10.0 / 1e6)  # DEAR
    # alice's budget is now all but spent: a request that may cost more than what is left is
    # refused, in Anthropic's shape
    with pytest.raises(anthropic.RateLimitError) as spent:
        client(server, "tok-alice").messages.create(
            model="fake-small", max_tokens=150, messages=[{"role": "user", "content": "more"}]
        )
    assert spent.value.body["error"]["type"] == "rate_limit_error"
    assert "budget" in spent.value.body["error"]["message"]


def test_streamed_tool_arguments_that_are_not_json_are_told_as_text(
    server: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    """The stream holds the JSON answer's promise: arguments that are not a JSON object become
    text, never a ``tool_use`` whose ``partial_json`` the client cannot read."""
    claude = client(server, "tok-alice")
    for arguments in ("{city: Lyon", '["Lyon"]', '{"city": NaN}'):
        fresh_provider.script(tool_call("get_weather", arguments))
        with claude.messages.stream(
            model="fake-small",
            max_tokens=50,
            tools=[WEATHER],
            messages=[{"role": "user", "content": "Lyon?"}],
        ) as stream:
            kinds = [event.type for event in stream]
            final = stream.get_final_message()
        assert "input_json" not in kinds, arguments
        assert [block.type for block in final.content] == ["text"], arguments
        assert "not a JSON object" in final.content[0].text  # type: ignore[union-attr]
        assert final.stop_reason == "end_turn"
        assert kinds[-2:] == ["message_delta", "message_stop"]
    # a call whose arguments are an object still streams as a tool_use, in its own block
    fresh_provider.script(tool_call("get_weather", '{"city": "Lyon"}'))
    with claude.messages.stream(
        model="fake-small",
        max_tokens=50,
        tools=[WEATHER],
        messages=[{"role": "user", "content": "Lyon?"}],
    ) as stream:
        final = stream.get_final_message()
    assert [(b.type, getattr(b, "input", None)) for b in final.content] == [
        ("tool_use", {"city": "Lyon"})
    ]
    assert final.stop_reason == "tool_use"


@pytest.mark.parametrize(
    ("faults", "overloaded"),
    [(("overloaded", "overloaded"), True), (("overloaded", "api_error"), False)],
    ids=["every-upstream-overloaded", "one-overloaded-one-broken"],
)
def test_a_529_comes_back_only_when_every_upstream_is_overloaded(
    jupyter_app_factory, faults: tuple[str, str], overloaded: bool
) -> None:
    keys = {
        "test-anthropic-key-c1": AnthropicKey("c1"),
        "test-anthropic-key-c2": AnthropicKey("c2"),
    }
    with FakeAnthropic(keys) as fake:
        server = jupyter_app_factory(
            {
                "upstreams": [
                    {
                        "name": name,
                        "provider": "anthropic",
                        "base_url": fake.base_url,
                        "api_key": key,
                        "models": {"claude-small": "claude-fake-small"},
                    }
                    for name, key in (
                        ("c1", "test-anthropic-key-c1"),
                        ("c2", "test-anthropic-key-c2"),
                    )
                ],
                "default_model": "claude-small",
            },
            named_users=True,
        )
        for alias, fault in zip(("c1", "c2"), faults, strict=True):
            fake.set_fault(alias, fault)
        with pytest.raises(anthropic.APIStatusError) as err:
            client(server, "tok-alice").messages.create(
                model="claude-small", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
            )
        tried = {r.alias for r in fake.received}
    assert tried == {"c1", "c2"}  # both were asked before the answer was given up
    kind = err.value.body["error"]["type"]
    if overloaded:
        assert isinstance(err.value, anthropic.OverloadedError)
        assert err.value.status_code == 529 and kind == "overloaded_error"
    else:
        assert err.value.status_code != 529 and kind != "overloaded_error"
        assert isinstance(err.value, anthropic.InternalServerError)


@pytest.mark.parametrize("model", ["fake-small", "claude-small"])  # translated; sent as it is
def test_server_tools_and_mcp_servers_no_one_offers_are_dropped_and_named(
    server: InProcessJupyter, fresh_provider: FakeProvider, claude: FakeAnthropic, model: str
) -> None:
    """Anthropic's server tools and its MCP connector are hosted tools (c.RSQLProxy.hosted_tools):
    offered to no one here, each is left out and named in x-rsql-dropped, translated or sent as
    it came, and the request answered with the client's own tools; nothing of them goes out."""
    carol = client(server, "tok-carol")
    ask = {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": "news?"}]}
    for tool, kind in (
        ({"type": "web_search_20250305", "name": "web_search", "max_uses": 3}, "web_search"),
        ({"type": "code_execution_20250522", "name": "code_execution"}, "code_interpreter"),
    ):
        raw = carol.messages.with_raw_response.create(**ask, tools=[WEATHER, tool])  # type: ignore[arg-type, list-item]
        assert kind in raw.headers["x-rsql-dropped"].split(",")
        sent = (claude if model == "claude-small" else fresh_provider).received[-1].body
        assert "web_search" not in json.dumps(sent) and "code_execution" not in json.dumps(sent)
        assert "get_weather" in json.dumps(sent["tools"])
    mcp = [{"type": "url", "url": "https://mcp.example.org/sse", "name": "example"}]
    raw = carol.messages.with_raw_response.create(
        **ask,
        tools=[WEATHER],  # type: ignore[list-item]
        extra_body={"mcp_servers": mcp},  # type: ignore[arg-type]
    )
    assert "mcp" in raw.headers["x-rsql-dropped"].split(",")
    sent = (claude if model == "claude-small" else fresh_provider).received[-1].body
    assert "mcp.example.org" not in json.dumps(sent)
    # its only tools: an answer without them would pass for theirs, so it is refused
    with pytest.raises(anthropic.BadRequestError) as err:
        carol.messages.create(**ask, extra_body={"mcp_servers": mcp})  # type: ignore[arg-type]
    assert "pass for theirs" in err.value.body["error"]["message"]
