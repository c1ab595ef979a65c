"""A tolerant reader at every inbound API (issue 54): a request shape the provider's own API
accepts is never refused for its shape. Sent as it came to an upstream that speaks the API, what
the proxy does not read passes untouched; translated for a chat upstream, what has a meaning
there is mapped (a system turn at its own position), what has none is dropped and named in the
answer's ``x-rsql-dropped`` header, and only what would change the answer's meaning is refused
with a 400 naming it. Over HTTP through the hub service's handlers, with an OpenAI-compatible
and an Anthropic upstream (and one that speaks the Responses API)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from tornado import httpclient

from tests.helpers import upstreams_for
from tests.helpers.fake_anthropic import FakeAnthropic
from tests.helpers.fake_anthropic import KeyPolicy as AnthropicKey
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.policy_proxy import Proxy, proxy_starter

CLAUDE_KEY = "test-anthropic-key-tolerant"
USER = {"role": "user", "content": [{"type": "text", "text": "What is in the report?"}]}
# Claude Code's shape with a gateway's model name: its environment as a system turn after the
# first user turn
SYSTEM_TURN = {"role": "system", "content": [{"type": "text", "text": "Working directory: /home"}]}


@pytest.fixture
def claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic({CLAUDE_KEY: AnthropicKey("claude")}) as fake:
        yield fake


@pytest.fixture
async def proxy(
    tmp_path: Path, fresh_provider: FakeProvider, claude: FakeAnthropic
) -> AsyncIterator[Proxy]:
    speaks = {"models": {"native-small": "fake-small"}, "responses_api": True}
    upstreams = [
        *upstreams_for(fresh_provider, b1=speaks),
        {
            "name": "claude",
            "provider": "anthropic",
            "base_url": claude.base_url,
            "api_key": CLAUDE_KEY,
            "models": {"claude-small": "claude-fake-small"},
        },
    ]
    async with proxy_starter(tmp_path, fresh_provider) as start:
        yield await start(upstreams=upstreams)


async def post(p: Proxy, path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    res = await p.client.fetch(
        p.base + path,
        method="POST",
        raise_error=False,
        body=json.dumps(body),
        headers={"Authorization": "Bearer tok-alice"},
    )
    assert isinstance(res, httpclient.HTTPResponse)
    return res.code, dict(res.headers), json.loads(res.body) if res.body else {}


def dropped(headers: dict[str, str]) -> list[str]:
    value = headers.get("X-Rsql-Dropped") or headers.get("x-rsql-dropped") or ""
    return value.split(",") if value else []


async def test_a_system_turn_anywhere_in_messages_is_a_system_message_at_its_position(
    proxy: Proxy, fresh_provider: FakeProvider
) -> None:
    later = {"role": "user", "content": "and the totals?"}
    body = {
        "model": "fake-small",
        "max_tokens": 50,
        "system": "You are terse.",
        "messages": [USER, SYSTEM_TURN, later],
    }
    status, headers, answer = await post(proxy, "v1/messages", body)
    assert status == 200, answer
    sent = fresh_provider.received[-1].body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "system", "user"]
    assert "Working directory" in json.dumps(sent[2]) and dropped(headers) == []


async def test_what_a_chat_upstream_cannot_read_is_dropped_and_named(
    proxy: Proxy, fresh_provider: FakeProvider
) -> None:
    """Fields and blocks a chat model has no use for (sampling it lacks, earlier reasoning, a
    hosted tool's past calls, types new to the API) are left out and named; a block new to us
    that carries text keeps its text; a search result is its text."""
    assistant = {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "hm", "signature": "sig"},
            {"type": "server_tool_use", "id": "srv_1", "name": "web_search", "input": {}},
            {"type": "web_search_tool_result", "tool_use_id": "srv_1", "content": []},
            {"type": "text", "text": "Found it."},
        ],
    }
    user = {
        "role": "user",
        "content": [
            {
                "type": "search_result",
                "title": "Q3",
                "source": "wiki",
                "content": [{"type": "text", "text": "Sales rose 4%."}],
            },
            {"type": "container_upload", "file_id": "file_1"},
            {"type": "brand_new_block", "text": "kept as text"},
            {"type": "text", "text": "Summarise."},
        ],
    }
    body = {
        "model": "fake-small",
        "max_tokens": 50,
        "top_k": 5,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "context_management": {"edits": []},
        "field_new_to_the_api": {"x": 1},
        "messages": [USER, assistant, user],
    }
    status, headers, answer = await post(proxy, "v1/messages", body)
    assert status == 200, answer
    names = dropped(headers)
    for name in ("top_k", "thinking", "context_management", "field_new_to_the_api"):
        assert name in names, names
    for block in (
        "server_tool_use",
        "web_search_tool_result",
        "container_upload",
        "brand_new_block",
    ):
        assert block in names, names
    sent = json.dumps(fresh_provider.received[-1].body)
    assert "Sales rose 4%" in sent and "kept as text" in sent and "Found it." in sent
    assert "file_1" not in sent and "top_k" not in sent and "budget_tokens" not in sent


async def test_what_the_answer_needs_and_a_chat_model_cannot_read_is_refused_naming_it(
    proxy: Proxy, fresh_provider: FakeProvider
) -> None:
    document = {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}
    body = {
        "model": "fake-small",
        "max_tokens": 50,
        "messages": [
            {"role": "user", "content": [document, {"type": "text", "text": "Sum it up"}]}
        ],
    }
    status, _, answer = await post(proxy, "v1/messages", body)
    assert status == 400, answer
    assert answer["error"]["type"] == "invalid_request_error"
    assert "messages[0].content[0].source" in answer["error"]["message"]
    assert "would not be read" in answer["error"]["message"]
    status, _, answer = await post(
        proxy,
        "v1/responses",
        {
            "model": "fake-small",
            "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}],
        },
    )
    assert status == 400 and answer["error"]["param"] == "input[0].content[0].file_data", answer
    assert fresh_provider.received == []


async def test_an_anthropic_upstream_gets_what_the_proxy_does_not_read_as_it_came(
    proxy: Proxy, claude: FakeAnthropic
) -> None:
    document = {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}
    claude.documents["https://example.com/a.pdf"] = 2  # the provider fetches it
    body = {
        "model": "claude-small",
        "max_tokens": 50,
        "top_k": 5,
        "output_config": {"effort": "low"},
        "messages": [
            {"role": "user", "content": [document, {"type": "text", "text": "Sum it up"}]},
            SYSTEM_TURN,
            {"role": "user", "content": "briefly"},
        ],
    }
    status, headers, answer = await post(proxy, "v1/messages", body)
    assert status == 200, answer
    sent = claude.received[-1].body
    assert sent["messages"] == body["messages"]
    assert (sent["top_k"], sent["output_config"]) == (5, {"effort": "low"})
    assert dropped(headers) == []


async def test_responses_items_a_chat_upstream_cannot_read_are_dropped_and_named(
    proxy: Proxy, fresh_provider: FakeProvider
) -> None:
    """Codex's conversation as it grows: reasoning, a hosted tool's earlier call, a free-form
    tool's call and its output, and an item type new to us."""
    body = {
        "model": "fake-small",
        "truncation": "auto",
        "prompt_cache_retention": "24h",
        "max_tool_calls": 3,
        "input": [
            {"role": "user", "content": "patch the file"},
            {"type": "reasoning", "summary": [], "encrypted_content": "gAAA"},
            {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {}},
            {
                "type": "custom_tool_call",
                "call_id": "c1",
                "name": "apply_patch",
                "input": "*** Begin",
            },
            {"type": "custom_tool_call_output", "call_id": "c1", "output": "Done"},
            {"type": "item_new_to_the_api", "id": "x_1"},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "now test it"},
                    {"type": "part_new_to_us"},
                ],
            },
        ],
    }
    status, headers, answer = await post(proxy, "v1/responses", body)
    assert status == 200, answer
    names = dropped(headers)
    for name in ("truncation", "prompt_cache_retention", "max_tool_calls", "reasoning"):
        assert name in names, names
    for name in ("web_search_call", "item_new_to_the_api", "part_new_to_us"):
        assert name in names, names
    sent = fresh_provider.received[-1].body["messages"]
    call = next(m for m in sent if m.get("tool_calls"))
    assert call["tool_calls"][0]["type"] == "custom"
    assert call["tool_calls"][0]["custom"] == {"name": "apply_patch", "input": "*** Begin"}
    assert {"role": "tool", "tool_call_id": "c1", "content": "Done"} in sent


async def test_a_responses_upstream_gets_items_the_proxy_does_not_read_as_they_came(
    proxy: Proxy, fresh_provider: FakeProvider
) -> None:
    items = [
        {"role": "user", "content": "hello"},
        {"type": "item_new_to_the_api", "id": "x_1"},
    ]
    status, headers, answer = await post(
        proxy, "v1/responses", {"model": "native-small", "input": items, "truncation": "auto"}
    )
    assert status == 200, answer
    sent = fresh_provider.received[-1]
    assert sent.path == "responses"
    assert sent.body["input"] == items and sent.body["truncation"] == "auto"
    assert dropped(headers) == []


async def test_a_name_in_the_header_is_never_the_clients_raw_text(proxy: Proxy) -> None:
    body = {
        "model": "fake-small",
        "max_tokens": 20,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "x\r\nSet-Cookie: a=b"}, {"type": "text", "text": "hi"}],
            }
        ],
    }
    status, headers, answer = await post(proxy, "v1/messages", body)
    assert status == 200, answer
    assert "Set-Cookie" not in headers
    assert all(
        set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-?")
        for name in dropped(headers)
    )
